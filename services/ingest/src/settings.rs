//! The command line of pulse-ingest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Log output format (shared by every binary).
pub use pulse_serve::LogFormat;

/// pulse-ingest: HTTP events into a Pulse pipeline's Redis buffer.
#[derive(Debug, Clone, Parser)]
#[command(name = "pulse-ingest", version, about)]
pub struct Args {
    /// The pipeline config file (JSON or YAML), as the operator renders it.
    #[arg(long, env = "PULSE_CONFIG")]
    pub config: PathBuf,
    /// The address to serve HTTP on.
    #[arg(long, env = "PULSE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// The longest a request waits on Redis before answering 503, in milliseconds.
    #[arg(long, env = "PULSE_REDIS_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub redis_timeout_ms: u64,
    /// How often ingest re-reads the persistence settings of every Redis master, in
    /// milliseconds (strict durability also verifies them with every write).
    #[arg(long, env = "PULSE_DURABILITY_CHECK_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub durability_check_interval_ms: u64,
    /// How long in-flight requests may finish after SIGTERM, in seconds.
    #[arg(long, env = "PULSE_SHUTDOWN_GRACE_SECS", default_value_t = 25)]
    pub shutdown_grace_secs: u64,
    /// Connection limits and read timeouts.
    #[command(flatten)]
    pub connections: pulse_serve::ConnectionArgs,
    /// Log format.
    #[arg(long, env = "PULSE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

/// What ingest runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: PathBuf,
    pub redis_timeout: Duration,
    pub durability_check_interval: Duration,
    pub shutdown_grace: Duration,
    /// Connection cap and header/body read timeouts.
    pub connections: pulse_serve::ConnectionLimits,
}

impl Settings {
    /// Settings for `config` with the defaults of the command line.
    pub fn new(config: PathBuf) -> Self {
        Settings {
            config,
            redis_timeout: Duration::from_millis(2000),
            durability_check_interval: Duration::from_millis(1000),
            shutdown_grace: crate::DEFAULT_SHUTDOWN_GRACE,
            connections: pulse_serve::ConnectionLimits::default(),
        }
    }
}

impl From<&Args> for Settings {
    fn from(args: &Args) -> Self {
        Settings {
            config: args.config.clone(),
            redis_timeout: Duration::from_millis(args.redis_timeout_ms),
            durability_check_interval: Duration::from_millis(args.durability_check_interval_ms),
            shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
            connections: pulse_serve::ConnectionLimits::from(&args.connections),
        }
    }
}
