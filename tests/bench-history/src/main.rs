//! Puts a tenant's store into the state it reaches after days of traffic, quickly and
//! through the processor's own batch function (`pulse_processor::worker::store_entries`:
//! raw events, event blocks, rollups, profiles), so the history benchmark measures the
//! processor on a store built the way the processor builds it. No stream is involved: the
//! entries are made in memory, one per simulated ingest request, routed to partitions as
//! ingest routes them, and each partition's writer holds its lease in Redis (taken and
//! released as a processor does), so the processor started afterwards fences higher.
//!
//! Days count back from `--end-ms` (a UTC midnight, default today's): a run loads the days
//! `--days-from` (already loaded) to `--days-to` back, oldest first, so runs add up:
//! `--days-to 1`, then `--days-from 1 --days-to 3` is the same store as `--days-to 3`.
//! Progress goes to stderr; the summary to stdout (and with --json one JSON line, last).
//! Exits 1 when the store or Redis fails, 2 on bad flags.
//!
//! ```text
//! pulse-bench-history --config pipeline.yaml --days-to 10 --events-per-day 1000000
//! ```

mod load;
mod traffic;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use pulse_core::buffer::partition_of;
use pulse_processor::Context;
use pulse_processor::lease::{LEASE_TTL, PartitionLeaseKeys};
use pulse_store::PartitionLease;

use crate::load::{LoadStats, PartitionLoad};
use crate::traffic::{DAY_MS, HOUR_MS, Traffic};

const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How long to wait for a partition's lease (a processor stopped without releasing it).
const LEASE_WAIT: Duration = Duration::from_secs(30);

/// pulse-bench-history: loads days of synthetic history into a pipeline's store.
#[derive(Debug, Parser)]
#[command(name = "pulse-bench-history", version, about)]
struct Args {
    /// The pipeline config file (as the processor reads it: Redis, store, partitions,
    /// rollups, processor.batchSize).
    #[arg(long)]
    config: PathBuf,
    /// Days of history already loaded (by earlier runs with the same flags).
    #[arg(long, default_value_t = 0)]
    days_from: u32,
    /// Days of history to reach.
    #[arg(long)]
    days_to: u32,
    /// Events per day.
    #[arg(long, default_value_t = 1_000_000)]
    events_per_day: u64,
    /// Users in the pool (`user-000000` upwards); about 60% of them are active on a day.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// The end of the history, epoch milliseconds, a UTC midnight (default: today's).
    #[arg(long)]
    end_ms: Option<i64>,
    /// Seed of the generated traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also print the summary as one JSON line, last.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn validate(self) -> Result<Self, String> {
        if self.days_to <= self.days_from || self.days_to > 3650 {
            return Err(format!(
                "--days-to {} must be above --days-from {} and at most 3650",
                self.days_to, self.days_from
            ));
        }
        if self.events_per_day == 0 || self.users == 0 {
            return Err("--events-per-day and --users must be at least 1".to_string());
        }
        if let Some(end) = self.end_ms
            && (end <= 0 || end % DAY_MS != 0)
        {
            return Err(format!("--end-ms {end} is not a UTC midnight in epoch milliseconds"));
        }
        Ok(self)
    }
}

#[derive(Debug, thiserror::Error)]
enum LoaderError {
    #[error("{0}")]
    Connect(#[from] pulse_processor::ProcessorError),
    #[error("Redis, partition {partition}'s lease: {source}")]
    Lease {
        partition: u32,
        #[source]
        source: redis::RedisError,
    },
    #[error(
        "partition {0}'s lease is held by another owner for over {LEASE_WAIT:?}: is a processor running?"
    )]
    LeaseHeld(u32),
    #[error("a partition's lease was lost while loading: another writer took it")]
    LeaseLost,
    #[error(transparent)]
    Load(#[from] load::LoadError),
}

// The processor's allocator: the loader runs its batch function.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::parse().validate() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("pulse-bench-history: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pulse-bench-history: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), LoaderError> {
    let owner = format!("bench-history-{}", std::process::id());
    let ctx = pulse_processor::connect(&args.config, owner.clone()).await?;
    let now = jiff::Timestamp::now().as_millisecond();
    let end = args.end_ms.unwrap_or(now - now.rem_euclid(DAY_MS));
    let leases = acquire_leases(&ctx, &owner).await?;
    let lost = Arc::new(AtomicBool::new(false));
    let renewer = tokio::spawn(renew_leases(Arc::clone(&ctx), owner.clone(), Arc::clone(&lost)));
    let traffic = Traffic { seed: args.seed, events_per_day: args.events_per_day, users: args.users };
    let run_ms = u64::try_from(now).unwrap_or(0);
    let mut loads: Vec<PartitionLoad> =
        leases.iter().map(|l| PartitionLoad::new(*l, ctx.partitions, run_ms)).collect();
    eprintln!(
        "loading days {} to {} back from {} ({} events a day, {} users, {} partitions, batches of {} events)",
        args.days_from,
        args.days_to,
        date(end),
        args.events_per_day,
        args.users,
        ctx.partitions,
        ctx.batch_events
    );

    let started = Instant::now();
    let mut total = LoadStats::default();
    let mut last_progress = Instant::now();
    for day in (args.days_from..args.days_to).rev() {
        let day_start = end - i64::from(day + 1) * DAY_MS;
        let day_started = Instant::now();
        let mut today = LoadStats::default();
        for hour in 0..24 {
            let hour_start = day_start + hour * HOUR_MS;
            for request in traffic.hour(hour_start) {
                let Some(first) = request.events.first() else { continue };
                let partition = partition_of(&first.distinct_id, ctx.partitions) as usize;
                if let Some(load) = loads.get_mut(partition) {
                    load.push(request.events);
                }
            }
            let last = day == args.days_from && hour == 23;
            let batch_events = ctx.batch_events;
            // Every partition's writer at once, as the processor runs them; the context's
            // store turns let two batches write at a time, as in the processor.
            let stored = futures::future::join_all(loads.iter_mut().map(|load| {
                let batches = load.take_batches(batch_events, last);
                load.store(&ctx, batches)
            }))
            .await;
            for stats in stored {
                today.add(stats?);
            }
            if lost.load(Ordering::Acquire) {
                return Err(LoaderError::LeaseLost);
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                let secs = started.elapsed().as_secs_f64();
                let events = total.events + today.events;
                eprintln!(
                    "  {} hour {:02}: {} events of the day stored; {events} in all, {:.0} events/s, {secs:.0} s elapsed",
                    date(day_start),
                    hour,
                    today.events,
                    events as f64 / secs.max(1e-9),
                );
            }
        }
        total.add(today);
        let secs = day_started.elapsed().as_secs_f64();
        eprintln!(
            "day {} of history loaded ({}): {} events stored in {secs:.1} s, {:.0} events/s; {} events in {:.0} s in all",
            args.days_from + (args.days_to - day),
            date(day_start),
            today.events,
            today.events as f64 / secs.max(1e-9),
            total.events,
            started.elapsed().as_secs_f64(),
        );
    }
    // A processor compacts its partitions' rollup logs and folds their profile changes every
    // 10 minutes: the state after days of traffic has them compacted.
    let now = jiff::Timestamp::now().as_millisecond();
    for partition in 0..ctx.partitions {
        let compacting = Instant::now();
        match ctx.store.compact_rollup_log(partition, now).await {
            Ok(done) => eprintln!(
                "partition {partition}: rollup log compacted ({} records, {:.1} s)",
                done.records_merged,
                compacting.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("partition {partition}: rollup log not compacted ({e}); the processor will"),
        }
        let folding = Instant::now();
        match ctx.store.compact_profile_changes(partition).await {
            Ok(done) => eprintln!(
                "partition {partition}: profile changes of {} users folded ({} changes, {:.1} s)",
                done.users,
                done.replaced,
                folding.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!("partition {partition}: profile changes not folded ({e}); the processor will")
            }
        }
    }
    renewer.abort();
    release_leases(&ctx, &owner).await;
    report(args, &total, started.elapsed());
    Ok(())
}

/// Takes every partition's lease as a processor does (a new fencing token each), waiting
/// for a holder that stopped without releasing it.
async fn acquire_leases(ctx: &Context, owner: &str) -> Result<Vec<PartitionLease>, LoaderError> {
    let mut conn = ctx.conn.clone();
    let mut leases: Vec<PartitionLease> = Vec::new();
    for partition in 0..ctx.partitions {
        let keys = PartitionLeaseKeys::new(&ctx.tenant, partition);
        let deadline = Instant::now() + LEASE_WAIT;
        let fence = loop {
            match keys.acquire(&mut conn, owner).await {
                Ok(Some(fence)) => break fence,
                Ok(None) if Instant::now() < deadline => {
                    // The leases taken already must outlive this wait (the renewals start
                    // once all are taken).
                    for held in &leases {
                        let keys = PartitionLeaseKeys::new(&ctx.tenant, held.partition);
                        if !keys
                            .renew(&mut conn, owner)
                            .await
                            .map_err(|source| LoaderError::Lease { partition: held.partition, source })?
                        {
                            return Err(LoaderError::LeaseLost);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
                Ok(None) => return Err(LoaderError::LeaseHeld(partition)),
                Err(source) => return Err(LoaderError::Lease { partition, source }),
            }
        };
        leases.push(PartitionLease { partition, fence });
    }
    Ok(leases)
}

/// Renews every lease each third of its lifetime; flags `lost` when one is no longer ours.
async fn renew_leases(ctx: Arc<Context>, owner: String, lost: Arc<AtomicBool>) {
    let mut conn = ctx.conn.clone();
    loop {
        tokio::time::sleep(LEASE_TTL / 3).await;
        for partition in 0..ctx.partitions {
            let keys = PartitionLeaseKeys::new(&ctx.tenant, partition);
            match keys.renew(&mut conn, &owner).await {
                Ok(true) => {}
                Ok(false) => lost.store(true, Ordering::Release),
                // Transient: the next round tries again; a lease that expired meanwhile
                // is reported then.
                Err(e) => eprintln!("  renewing partition {partition}'s lease failed: {e}"),
            }
        }
    }
}

async fn release_leases(ctx: &Context, owner: &str) {
    let mut conn = ctx.conn.clone();
    for partition in 0..ctx.partitions {
        if let Err(e) = PartitionLeaseKeys::new(&ctx.tenant, partition).release(&mut conn, owner).await {
            eprintln!("  could not release partition {partition}'s lease ({e}); it expires by itself");
        }
    }
}

/// A UTC date, for progress lines.
fn date(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime("%Y-%m-%d").to_string()).unwrap_or_default()
}

fn report(args: &Args, total: &LoadStats, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    let rate = total.events as f64 / secs.max(1e-9);
    println!(
        "loaded days {} to {}: {} events in {secs:.1} s = {rate:.0} events/s ({} batches, {} split after a store timeout, {} retried)",
        args.days_from, args.days_to, total.events, total.batches, total.splits, total.retries
    );
    if args.json {
        let json = serde_json::json!({
            "days_from": args.days_from,
            "days_to": args.days_to,
            "events": total.events,
            "seconds": secs,
            "events_per_s": rate.round(),
            "batches": total.batches,
            "splits": total.splits,
            "retries": total.retries,
        });
        println!("{json}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, String> {
        let base = ["pulse-bench-history", "--config", "p.yaml"];
        Args::try_parse_from(base.iter().chain(extra)).map_err(|e| e.to_string())?.validate()
    }

    #[test]
    fn flags_are_checked() {
        assert!(args(&["--days-to", "10"]).is_ok());
        assert!(args(&["--days-from", "3", "--days-to", "10", "--end-ms", "1764547200000"]).is_ok());
        for bad in [
            &["--days-to", "0"][..],
            &["--days-from", "3", "--days-to", "3"],
            &["--days-to", "1", "--events-per-day", "0"],
            &["--days-to", "1", "--end-ms", "1764547200001"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }
}
