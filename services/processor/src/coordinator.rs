//! Spreads a pipeline's partitions over its processors: each processor announces itself,
//! holds a fair share of the partition leases (partitions / live processors, rounded up),
//! takes over the leases of processors that died, and gives extra ones back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pulse_buffer::TenantLayout;
use rand::seq::SliceRandom;
use tokio::sync::watch;

use crate::Context;
use crate::lease::{PartitionLeaseKeys, lease_ttl};
use crate::metrics::{ErrorLabel, PartitionLabel};
use crate::stream::PartitionStream;

const TICK: Duration = Duration::from_millis(500);
const RETENTION_EVERY: Duration = Duration::from_secs(600);

struct Worker {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// How long the leases of abandoned batches and the member entry may take to give up at
/// the end of a shutdown: Redis may not answer, and they expire by themselves.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs until `shutdown` flips, then stops every worker after its current batch, waiting
/// at most until `drain_by` (a Redis or a store that does not answer must not hold the
/// process past its grace period): a batch still running then is abandoned, as a crash
/// would leave it, and redone by the partition's next holder (docs/exactness.md).
#[tracing::instrument(name = "coordinator", skip_all, fields(tenant = %ctx.tenant))]
pub async fn run(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>, drain: Duration) {
    let members = TenantLayout::of(&ctx.tenant).processors();
    let mut workers: HashMap<u32, Worker> = HashMap::new();
    let mut last_retention: Option<Instant> = None;
    // Each step that talks to Redis or the store gives way to the stop signal: a tick
    // against a Redis that does not answer takes seconds per command.
    let stopping = |mut shutdown: watch::Receiver<bool>| async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    while !*shutdown.borrow() {
        workers.retain(|_, w| !w.task.is_finished());
        let ticked = tokio::select! {
            ticked = tick(&ctx, &members, &mut workers) => ticked,
            () = stopping(shutdown.clone()) => break,
        };
        match ticked {
            Ok(()) => ctx.set_ready(true),
            Err(e) => {
                ctx.set_ready(false);
                tracing::warn!(error = %e, "coordination failed; retrying");
            }
        }
        ctx.metrics.partitions_owned.set(workers.len() as i64);
        // One processor, the holder of partition 0, expires old data.
        if workers.contains_key(&0) && last_retention.is_none_or(|t| t.elapsed() > RETENTION_EVERY) {
            last_retention = Some(Instant::now());
            let now = jiff::Timestamp::now().as_millisecond();
            let deleted = tokio::select! {
                deleted = ctx.store.delete_expired(now, ctx.retention, ctx.ttl_index) => deleted,
                () = stopping(shutdown.clone()) => break,
            };
            match deleted {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "expired data deleted"),
                Ok(_) => {}
                Err(e) => {
                    ctx.metrics.errors.get_or_create(&ErrorLabel { kind: "retention" }).inc();
                    tracing::warn!(error = %e, "retention delete failed; retrying later")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => {}
        }
    }
    ctx.set_ready(false);
    let drain_by = tokio::time::Instant::now() + drain;
    tracing::info!(partitions = workers.len(), "stopping: finishing current batches");
    for w in workers.values() {
        let _ = w.stop.send(true);
    }
    let mut abandoned = Vec::new();
    for (partition, mut w) in workers.drain() {
        if tokio::time::timeout_at(drain_by, &mut w.task).await.is_err() {
            w.task.abort();
            abandoned.push(partition);
        }
    }
    let mut conn = ctx.conn.clone();
    if !abandoned.is_empty() {
        abandoned.sort_unstable();
        tracing::warn!(
            partitions = ?abandoned,
            waited = ?drain,
            "stopping: batches still running (Redis or the store does not answer) are abandoned; \
             the partitions' next holders redo them"
        );
        let (tenant, owner) = (ctx.tenant.as_str(), ctx.owner.as_str());
        let releases = abandoned.iter().map(|&partition| {
            let mut conn = conn.clone();
            async move { PartitionLeaseKeys::new(tenant, partition).release(&mut conn, owner).await }
        });
        if tokio::time::timeout(GOODBYE_TIMEOUT, futures::future::join_all(releases)).await.is_err() {
            tracing::warn!(
                "the abandoned partitions' leases could not be given up; they expire by themselves"
            );
        }
    }
    let mut leave = redis::cmd("ZREM");
    leave.arg(&members).arg(&ctx.owner);
    if !matches!(tokio::time::timeout(GOODBYE_TIMEOUT, leave.query_async::<()>(&mut conn)).await, Ok(Ok(())))
    {
        tracing::warn!("could not leave the processor list; this process's entry expires by itself");
    }
}

async fn tick(
    ctx: &Arc<Context>,
    members: &str,
    workers: &mut HashMap<u32, Worker>,
) -> redis::RedisResult<()> {
    let mut conn = ctx.conn.clone();
    // A rebuild asks every processor to step aside until it is done.
    let paused: Option<String> =
        redis::cmd("GET").arg(TenantLayout::of(&ctx.tenant).paused()).query_async(&mut conn).await?;
    if paused.is_some() {
        for w in workers.values() {
            let _ = w.stop.send(true);
        }
        return Ok(());
    }
    let now = jiff::Timestamp::now().as_millisecond();
    let expires = now + lease_ttl().as_millis() as i64;
    let _: () = redis::cmd("ZADD").arg(members).arg(expires).arg(&ctx.owner).query_async(&mut conn).await?;
    let _: () =
        redis::cmd("ZREMRANGEBYSCORE").arg(members).arg("-inf").arg(now).query_async(&mut conn).await?;
    let live: u32 = redis::cmd("ZCARD").arg(members).query_async(&mut conn).await?;
    let fair = ctx.partitions.div_ceil(live.max(1)) as usize;

    if workers.len() < fair {
        let mut free: Vec<u32> = (0..ctx.partitions).filter(|p| !workers.contains_key(p)).collect();
        free.shuffle(&mut rand::rng());
        // Every lease first, then the writers: writers whose leases were taken before the
        // first of them reads the rollup log share that one read (`Context::start_log`).
        let mut acquired = Vec::new();
        let mut failed = None;
        for partition in free {
            if workers.len() + acquired.len() >= fair {
                break;
            }
            let keys = PartitionLeaseKeys::new(&ctx.tenant, partition);
            match keys.acquire(&mut conn, &ctx.owner).await {
                Ok(Some(fence)) => acquired.push((partition, fence, std::time::Instant::now())),
                Ok(None) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // The leases taken are worked (and renewed) even when a later one failed.
        for (partition, fence, at) in acquired {
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(crate::worker::run(Arc::clone(ctx), partition, fence, at, stopped));
            workers.insert(partition, Worker { stop, task });
        }
        if let Some(e) = failed {
            return Err(e);
        }
    } else if workers.len() > fair {
        let mut owned: Vec<u32> = workers.keys().copied().collect();
        owned.sort_unstable();
        for partition in owned.into_iter().skip(fair) {
            if let Some(w) = workers.get(&partition) {
                let _ = w.stop.send(true);
            }
        }
    }

    for partition in 0..ctx.partitions {
        let backlog = PartitionStream::new(&ctx.tenant, partition).backlog(&mut conn).await?;
        ctx.metrics.backlog_events.get_or_create(&PartitionLabel { partition }).set(backlog as i64);
    }
    Ok(())
}
