//! The pulse-processor binary.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pulse_processor::settings::{Args, Command};
use tokio::sync::watch;

// A batch makes many small allocations (events, documents, rollup keys): with glibc's
// allocator they took about half of the writer's CPU (perf, `make bench-history`'s loader),
// CPU the store's own processes need on the same cores.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    pulse_serve::init_logging(args.log_format);
    let Some(config) = args.config.clone() else {
        eprintln!("pulse-processor: --config <pipeline config file> is required (or PULSE_CONFIG)");
        return ExitCode::from(2);
    };
    pulse_processor::lease::set_lease_ttl(Duration::from_millis(args.lease_ttl_ms));
    let owner = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7());
    let command = args.command.unwrap_or(Command::Run);
    // The service stops on SIGTERM from the start on, also while it waits for Redis and the
    // store; the one-off commands keep the signal's default (they stop at once).
    let stop = matches!(command, Command::Run).then(pulse_serve::shutdown_watch);
    let connecting = pulse_processor::connect(&config, owner);
    let connected = match stop.clone() {
        Some(stop) => tokio::select! {
            connected = connecting => connected,
            () = stopped(stop) => {
                tracing::info!("stopped before Redis and the store answered");
                return ExitCode::SUCCESS;
            }
        },
        None => connecting.await,
    };
    let ctx = match connected {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("pulse-processor: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        Command::Run => {
            let listener = match tokio::net::TcpListener::bind(args.listen).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("pulse-processor: cannot listen on {}: {e}", args.listen);
                    return ExitCode::FAILURE;
                }
            };
            let stop = stop.unwrap_or_else(pulse_serve::shutdown_watch);
            match pulse_processor::run(ctx, listener, stopped(stop)).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pulse-processor: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Rebuild { wait_secs } => {
            match pulse_processor::rebuild::rebuild(ctx, Duration::from_secs(wait_secs)).await {
                Ok(report) => {
                    println!(
                        "rebuilt {} rollup buckets and {} event blocks from raw events ({} delivered entries drained first)",
                        report.buckets, report.blocks, report.drained_entries
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pulse-processor rebuild: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::ReplayFailed { ids, discard } => {
            let request = pulse_processor::replay::ReplayRequest { ids, discard };
            match pulse_processor::replay::replay_failed(&ctx, &request).await {
                Ok(report) => {
                    let skipped = if report.skipped == 1 {
                        "record that is not an event"
                    } else {
                        "records that are not events"
                    };
                    println!(
                        "replayed {} failed events, discarded {}, skipped {} {skipped} (see --discard)",
                        report.replayed, report.discarded, report.skipped
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pulse-processor replay-failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Resolves when `stop` flips.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
