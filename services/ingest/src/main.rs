//! HTTP ingest: accepts events over HTTP with the pipeline's write key, validates them, and
//! appends them to the tenant's Redis stream partitions, acknowledging only when durable.

use clap::Parser;

/// Command-line configuration of pulse-ingest.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {}

fn main() {
    let _args = Args::parse();
    eprintln!("pulse-ingest: not built yet; see its issue");
    std::process::exit(2);
}
