//! The processor: reads the tenant's Redis stream partitions and writes raw events and
//! pre-aggregates to MongoDB, exactly once under redelivery and crashes.

use clap::Parser;

/// Command-line configuration of pulse-processor.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {}

fn main() {
    let _args = Args::parse();
    eprintln!("pulse-processor: not built yet; see its issue");
    std::process::exit(2);
}
