//! The tenant's stream of changes: after a batch is stored, the processor adds the ids of
//! the period documents it touched and of the event blocks it wrote; every query replica
//! reads the stream from where it last was (no consumer group: each replica needs every
//! change) and re-reads just those documents, so late and backfilled events reach answers
//! within a second. The stream is capped; a replica that falls behind by more than the cap
//! catches up with its periodic full read.
//!
//! A block id may name events a reader has seen already (a batch redelivered after a crash,
//! a compaction merging small blocks): readers keep one event per event id.

use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, RedisResult};

use crate::Connection;
use crate::TenantLayout;

/// About how many changes the stream keeps.
const KEEP: usize = 100_000;
/// The entry field holding the changed period document ids, comma-separated.
const PERIODS: &str = "periods";
/// The entry field holding the written event block ids, comma-separated.
const BLOCKS: &str = "blocks";

/// What changed, as read from the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The id of the newest change read (to read after next time); None when none was.
    pub newest: Option<String>,
    /// Period documents updated.
    pub periods: Vec<String>,
    /// Event blocks written.
    pub blocks: Vec<String>,
}

/// Adds one change: the period documents `periods` were updated and the event blocks
/// `blocks` written. Nothing when both are empty.
pub async fn publish_changes(
    conn: &mut Connection,
    tenant: &str,
    periods: &[String],
    blocks: &[String],
) -> RedisResult<()> {
    let fields: Vec<(&str, String)> = [(PERIODS, periods), (BLOCKS, blocks)]
        .into_iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(field, ids)| (field, ids.join(",")))
        .collect();
    if fields.is_empty() {
        return Ok(());
    }
    let options = redis::streams::StreamMaxlen::Approx(KEEP);
    let _: String =
        conn.xadd_maxlen(TenantLayout::of(tenant).rollup_changes(), options, "*", &fields).await?;
    Ok(())
}

/// Up to `count` changes after `after` (a change id, or `0-0` for all).
pub async fn read_changes(
    conn: &mut Connection,
    tenant: &str,
    after: &str,
    count: usize,
) -> RedisResult<Changes> {
    let key = TenantLayout::of(tenant).rollup_changes();
    let reply: Option<StreamReadReply> =
        conn.xread_options(&[&key], &[after], &StreamReadOptions::default().count(count)).await?;
    let mut changes = Changes::default();
    for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
        for (field, ids) in [(PERIODS, &mut changes.periods), (BLOCKS, &mut changes.blocks)] {
            if let Some(redis::Value::BulkString(bytes)) = entry.map.get(field) {
                ids.extend(
                    String::from_utf8_lossy(bytes).split(',').filter(|s| !s.is_empty()).map(str::to_string),
                );
            }
        }
        changes.newest = Some(entry.id);
    }
    Ok(changes)
}

/// The id of the newest change, or `0-0` when there is none: read before a full read of
/// the rollups, so that changes made during it are read again after.
pub async fn newest_rollup_change(conn: &mut Connection, tenant: &str) -> RedisResult<String> {
    let reply: StreamRangeReply =
        conn.xrevrange_count(TenantLayout::of(tenant).rollup_changes(), "+", "-", 1).await?;
    Ok(reply.ids.first().map(|e| e.id.clone()).unwrap_or_else(|| "0-0".to_string()))
}

/// Up to `count` changes after `after`: the newest change id read, and the changed period
/// document ids (see [`read_changes`] for the blocks too).
pub async fn read_rollup_changes(
    conn: &mut Connection,
    tenant: &str,
    after: &str,
    count: usize,
) -> RedisResult<(Option<String>, Vec<String>)> {
    let changes = read_changes(conn, tenant, after, count).await?;
    Ok((changes.newest, changes.periods))
}
