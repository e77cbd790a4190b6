//! The command line of pulse-query.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Log output format (shared by every binary).
pub use pulse_serve::LogFormat;

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
    /// The most ad-hoc queries (raw-event reads and their computation) this replica runs
    /// at once. Each holds one or two store cursors while it reads: keep replicas times
    /// this well under the store's limit (FerretDB: 100 open cursors per database, shared
    /// with the processor).
    #[arg(long, env = "PULSE_MAX_RAW_QUERIES", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_raw_queries: u32,
    /// How many more ad-hoc queries may wait for a turn; past it they are refused at once
    /// (503 with Retry-After). Identical queries wait for the one computing and take no place.
    #[arg(long, env = "PULSE_RAW_QUERY_QUEUE", default_value_t = 64)]
    pub raw_query_queue: u32,
    /// The longest an ad-hoc query waits for a turn before it is refused (503 with
    /// Retry-After), in seconds.
    #[arg(long, env = "PULSE_RAW_QUERY_WAIT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub raw_query_wait_secs: u64,
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
    /// Ad-hoc queries computed at once, waiting at most, and the longest wait.
    pub max_raw_queries: usize,
    pub raw_query_queue: usize,
    pub raw_query_wait: Duration,
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
            max_raw_queries: 8,
            raw_query_queue: 64,
            raw_query_wait: Duration::from_secs(10),
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
            max_raw_queries: args.max_raw_queries as usize,
            raw_query_queue: args.raw_query_queue as usize,
            raw_query_wait: Duration::from_secs(args.raw_query_wait_secs),
            shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
            connections: pulse_serve::ConnectionLimits::from(&args.connections),
        }
    }
}
