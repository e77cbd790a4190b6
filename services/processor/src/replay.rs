//! `pulse-processor replay-failed`: sends failed events back through the buffer after a
//! fix (a newer Pulse, a store that takes them), each to its user's partition, and forgets
//! each once the buffer has it. Replaying is safe to repeat: events keep their ids, so one
//! stored meanwhile is a duplicate, and one the store still refuses is set aside again.

use pulse_core::buffer::partition_of;
use pulse_store::{FailedEvent, FailureReason};

use crate::{Context, ProcessorError};

/// What to replay.
pub struct ReplayRequest {
    /// Only these failed-event ids (all when empty).
    pub ids: Vec<String>,
    /// Forget the selected failed events without sending them again.
    pub discard: bool,
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub replayed: usize,
    pub discarded: usize,
    /// Records that are not events (undecodable entries, refused profile changes), which
    /// cannot be replayed (only discarded).
    pub skipped: usize,
}

/// Listed a page at a time, so a large failed-events collection is never read whole.
const PAGE: usize = 500;

/// Replays (or discards) the selected failed events, printing progress.
pub async fn replay_failed(ctx: &Context, request: &ReplayRequest) -> Result<ReplayReport, ProcessorError> {
    let mut report = ReplayReport::default();
    let mut after: Option<String> = None;
    loop {
        let page = ctx.store.list_failed_events(after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for failed in page.iter().filter(|f| request.ids.is_empty() || request.ids.contains(&f.id)) {
            if request.discard {
                ctx.store.delete_failed_event(&failed.id).await?;
                report.discarded += 1;
            } else if replay_one(ctx, failed).await? {
                report.replayed += 1;
            } else {
                report.skipped += 1;
                eprintln!(
                    "{}: an undecodable entry cannot be replayed; discard it with --discard",
                    failed.id
                );
            }
        }
        eprintln!(
            "replay-failed: {} replayed, {} discarded, {} skipped so far",
            report.replayed, report.discarded, report.skipped
        );
    }
    Ok(report)
}

/// Appends the event to its partition, then forgets the failed event. False when it is
/// not an event (an undecodable entry, a refused profile change).
async fn replay_one(ctx: &Context, failed: &FailedEvent) -> Result<bool, ProcessorError> {
    let event = match (failed.reason, failed.event()) {
        (FailureReason::StoreRefused, Some(event)) => event,
        _ => return Ok(false),
    };
    let partition = partition_of(&event.distinct_id, ctx.partitions);
    let payload = serde_json::to_vec(&[&event]).map_err(|e| ProcessorError::Rebuild(e.to_string()))?;
    let mut conn = ctx.conn.clone();
    pulse_buffer::append_entry(&mut conn, &ctx.tenant, partition, &payload, 1).await?;
    // Forgotten only once the buffer has it: a crash in between replays it twice, and the
    // event id makes the second a duplicate.
    ctx.store.delete_failed_event(&failed.id).await?;
    Ok(true)
}
