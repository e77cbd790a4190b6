//! The pulse-ingest binary: parses the command line, sets up logging and signals, and runs
//! ingest until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use pulse_ingest::settings::Args;
use pulse_ingest::{Settings, run};
use pulse_serve::{init_logging, shutdown_signal};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("pulse-ingest: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    match run(Settings::from(&args), listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pulse-ingest: {e}");
            ExitCode::FAILURE
        }
    }
}
