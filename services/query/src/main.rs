//! The query API: answers trend, funnel, retention and cohort queries over HTTP with the
//! pipeline's read key, from pre-aggregates or raw events.

use clap::Parser;

/// Command-line configuration of pulse-query.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {}

fn main() {
    let _args = Args::parse();
    eprintln!("pulse-query: not built yet; see its issue");
    std::process::exit(2);
}
