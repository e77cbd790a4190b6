//! The command line of pulse-query.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log pipelines).
    Json,
    /// Human-readable lines.
    Text,
}

/// pulse-query: the HTTP query API of a Pulse pipeline.
#[derive(Debug, Clone, Parser)]
#[command(name = "pulse-query", version, about)]
pub struct Args {
    /// The pipeline config file (JSON or YAML), as the operator renders it.
    #[arg(long, env = "PULSE_CONFIG")]
    pub config: PathBuf,
    /// The address to serve HTTP on.
    #[arg(long, env = "PULSE_LISTEN", default_value = "0.0.0.0:8081")]
    pub listen: SocketAddr,
    /// The most raw events one ad-hoc query may read; more is a clear error (422).
    #[arg(long, env = "PULSE_MAX_QUERY_EVENTS", default_value_t = 5_000_000)]
    pub max_events: usize,
    /// The most memory the in-memory funnel and retention views may take, in MiB (about 50
    /// bytes per event, and 35 per event per declared funnel); past it they stop, with a
    /// warning, and those queries read raw events.
    #[arg(long, env = "PULSE_MAX_VIEW_MEMORY_MIB", default_value_t = 512)]
    pub max_view_memory_mib: u64,
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

/// What the query API runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: PathBuf,
    pub max_events: usize,
    /// Bytes.
    pub max_view_memory: u64,
    pub shutdown_grace: Duration,
    /// Connection cap and header/body read timeouts.
    pub connections: pulse_serve::ConnectionLimits,
}

impl Settings {
    /// Settings for `config` with the defaults of the command line.
    pub fn new(config: PathBuf) -> Self {
        Settings {
            config,
            max_events: 5_000_000,
            max_view_memory: 512 << 20,
            shutdown_grace: Duration::from_secs(25),
            connections: pulse_serve::ConnectionLimits::default(),
        }
    }
}

impl From<&Args> for Settings {
    fn from(args: &Args) -> Self {
        Settings {
            config: args.config.clone(),
            max_events: args.max_events.max(1),
            max_view_memory: args.max_view_memory_mib.saturating_mul(1 << 20),
            shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
            connections: pulse_serve::ConnectionLimits::from(&args.connections),
        }
    }
}
