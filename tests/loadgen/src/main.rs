//! Load generator for Pulse ingest: drives `POST /v1/batch` (or, with `--format`, the
//! Segment or PostHog compat endpoint) with precomputed batches over
//! keep-alive connections, flat out or at a target rate, and reports throughput, latency
//! percentiles and the server's peak memory. Exits 1 when no request succeeded, 2 on bad
//! flags or an unreachable server.
//!
//! ```text
//! PULSE_WRITE_KEY=... pulse-loadgen --url http://127.0.0.1:8080 --pid "$(pgrep -n pulse-ingest)"
//! pulse-loadgen --key ... --rate 100000 --duration 30 --events signup:1,page_viewed:8 --gzip --json
//! ```

mod batch;
mod config;
mod cpu;
mod format;
mod gzip;
mod mix;
mod outcome;
mod pacing;
mod pool;
mod report;
mod rss;
mod run;

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use rand::Rng;

use crate::batch::EventShape;
use crate::config::{Args, LoadConfig};
use crate::cpu::CpuMeter;
use crate::pool::BodyPool;
use crate::report::Summary;
use crate::rss::RssSampler;

fn main() -> ExitCode {
    let config = match Args::parse().validate() {
        Ok(config) => config,
        Err(message) => return fail(&message),
    };
    match load(config) {
        Ok(code) => code,
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("pulse-loadgen: {message}");
    ExitCode::from(2)
}

fn load(config: LoadConfig) -> Result<ExitCode, String> {
    println!("{}", report::header(&config));
    let mut rng = rand::rng();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    // 48 random bits: ids of two runs do not collide.
    let run_id = format!("{:012x}", rng.random::<u64>() >> 16);
    let shape = EventShape {
        run_id,
        mix: config.events.clone(),
        users: config.users,
        now_ms,
        spread_ms: config.spread_ms,
        spread_end_ms: config.spread_end_ms.unwrap_or(now_ms),
        format: config.format,
        api_key: config.key.clone(),
    };
    let pool = BodyPool::build(&shape, config.pool, config.batch_size, config.gzip, &mut rng)
        .map_err(|e| format!("compressing the bodies: {e}"))?;
    println!("{}", report::bodies(config.pool, pool.events(), pool.mean_sizes()));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(run::check_reachable(&config.authority))?;
    let sampler = config.pid.map(RssSampler::start).transpose()?;
    let cpu = CpuMeter::start(config.pid);
    let report = runtime.block_on(run::run(config.clone(), pool));
    let cpu = cpu.stop();
    let memory = sampler.map(RssSampler::stop);

    let summary = Summary { config: &config, report: &report, memory, cpu };
    println!("{}", summary.human());
    if config.json {
        println!("{}", summary.json());
    }
    if report.tally.ok == 0 {
        eprintln!("pulse-loadgen: no request succeeded");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
