//! `pulse-processor rebuild`: recomputes every pre-aggregate and the event blocks from the
//! raw events (so events stored before blocks existed are converted). It takes
//! every partition's lease (processors pause on partitions they lose), drains what was
//! delivered but not yet stored, rebuilds with each partition's last delivered position as
//! the new watermark, and gives the leases back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pulse_buffer::TenantLayout;
use pulse_store::{BatchRollups, PartitionLease};

use crate::lease::PartitionLeaseKeys;
use crate::stream::PartitionStream;
use crate::{Context, ProcessorError};

/// What a rebuild did.
#[derive(Debug)]
pub struct RebuildReport {
    pub buckets: usize,
    /// Event blocks written from the raw events.
    pub blocks: usize,
    pub drained_entries: usize,
}

pub async fn rebuild(ctx: Arc<Context>, wait: Duration) -> Result<RebuildReport, ProcessorError> {
    let mut conn = ctx.conn.clone();
    let started = Instant::now();
    // Ask running processors to let go of their partitions; the flag expires by itself if
    // this command dies.
    let pause = TenantLayout::of(&ctx.tenant).paused();
    let _: () = redis::cmd("SET")
        .arg(&pause)
        .arg(&ctx.owner)
        .arg("PX")
        .arg(PAUSE_TTL.as_millis() as u64)
        .query_async(&mut conn)
        .await?;
    let result = rebuild_paused(&ctx, wait, started).await;
    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&pause).query_async(&mut conn).await;
    result
}

/// How long processors stay paused if the rebuild dies without clearing the flag.
const PAUSE_TTL: Duration = Duration::from_secs(15 * 60);

async fn rebuild_paused(
    ctx: &Arc<Context>,
    wait: Duration,
    started: Instant,
) -> Result<RebuildReport, ProcessorError> {
    let mut conn = ctx.conn.clone();
    let mut leases = Vec::new();
    for partition in 0..ctx.partitions {
        let keys = PartitionLeaseKeys::new(&ctx.tenant, partition);
        loop {
            if let Some(fence) = keys.acquire(&mut conn, &ctx.owner).await? {
                leases.push(PartitionLease { partition, fence });
                break;
            }
            if started.elapsed() > wait {
                release_all(ctx, &leases).await;
                return Err(ProcessorError::Rebuild(format!(
                    "partition {partition} is still held by a processor after {wait:?}; retry, or stop the processors"
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    tracing::info!(partitions = leases.len(), "holding every lease; draining delivered entries");
    let mut drained = 0;
    let mut watermarks = Vec::new();
    for lease in &leases {
        let stream = PartitionStream::new(&ctx.tenant, lease.partition);
        stream.ensure_group(&mut conn).await?;
        // One writer at a time: it may use the whole process's memory.
        let mut state = crate::worker::WriterState::new(1, std::time::Instant::now());
        drained += crate::worker::finish_open_record(ctx, &stream, *lease, &mut state).await?;
        loop {
            let pending = stream.read(&mut conn, true, ctx.read_count).await?;
            if pending.is_empty() {
                break;
            }
            let turn = crate::StoreTurn::take(ctx).await;
            drained +=
                crate::worker::process_read(ctx, &stream, *lease, pending, true, &mut state, &turn).await?;
        }
        watermarks.push((lease.partition, stream.last_delivered(&mut conn).await?, lease.fence));
    }
    let rollups = BatchRollups { intervals: &ctx.intervals, numeric: &ctx.numeric, tz: &ctx.tz };
    let result = match ctx.store.rebuild(&rollups, &watermarks).await {
        Ok(buckets) => ctx.store.rebuild_event_blocks().await.map(|blocks| (buckets, blocks)),
        Err(e) => Err(e),
    };
    release_all(ctx, &leases).await;
    let (buckets, blocks) = result?;
    // Query replicas read the new blocks (events stored before blocks existed among them).
    for ids in blocks.chunks(1_000) {
        pulse_buffer::publish_changes(&mut conn, &ctx.tenant, &[], ids).await?;
    }
    Ok(RebuildReport { buckets, blocks: blocks.len(), drained_entries: drained })
}

async fn release_all(ctx: &Context, leases: &[PartitionLease]) {
    let mut conn = ctx.conn.clone();
    for lease in leases {
        let _ = PartitionLeaseKeys::new(&ctx.tenant, lease.partition).release(&mut conn, &ctx.owner).await;
    }
}
