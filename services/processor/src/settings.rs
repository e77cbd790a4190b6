//! The command line of pulse-processor.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Log output format (shared by every binary).
pub use pulse_serve::LogFormat;

/// pulse-processor: moves a pipeline's events from its Redis buffer into MongoDB, exactly
/// once, keeping the pre-aggregates live.
#[derive(Debug, Clone, Parser)]
#[command(name = "pulse-processor", version, about)]
pub struct Args {
    /// The pipeline config file (JSON or YAML).
    #[arg(long, env = "PULSE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Where to serve /healthz, /readyz and /metrics.
    #[arg(long, env = "PULSE_LISTEN", default_value = "0.0.0.0:9090")]
    pub listen: SocketAddr,
    /// How long a partition lease lasts without renewal, in milliseconds: a processor that
    /// dies (or stalls) holds its partitions this long before another takes them over. Its
    /// holder renews it every third of this. Shorter only for tests that move leases often.
    #[arg(
        long,
        env = "PULSE_LEASE_TTL_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(300..=600_000),
        global = true
    )]
    pub lease_ttl_ms: u64,
    /// Log format.
    #[arg(long, env = "PULSE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Process the pipeline's partitions until SIGTERM (the default).
    Run,
    /// Recompute every pre-aggregate from the raw events, holding every partition's lease
    /// meanwhile (running processors pause on the partitions they lose).
    Rebuild {
        /// How long to wait for the running processors' leases, in seconds.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
    },
    /// Send failed events (the store refused them on every try) back through the buffer
    /// after a fix, each to its user's partition, and forget each once the buffer has it.
    /// See docs/operations.md, "Failed events".
    ReplayFailed {
        /// Only these failed-event ids (`<partition>|<entry>|<index>`, as the failed events
        /// API lists them); all when none is given.
        #[arg(long = "id")]
        ids: Vec<String>,
        /// Forget the selected failed events without sending them again.
        #[arg(long)]
        discard: bool,
    },
}
