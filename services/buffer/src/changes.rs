//! The tenant's stream of rollup changes: after a batch's rollups are applied, the processor
//! adds the ids of the period documents it touched; every query replica reads the stream
//! from where it last was (no consumer group: each replica needs every change) and re-reads
//! just those documents, so late and backfilled events reach pre-aggregated answers within
//! a second. The stream is capped; a replica that falls behind by more than the cap catches
//! up with its periodic full read.

use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, RedisResult};

use crate::Connection;

/// About how many changes the stream keeps.
const KEEP: usize = 100_000;
/// The entry field holding the changed document ids, comma-separated.
const FIELD: &str = "periods";

/// `pulse:{<tenant>}:rollup-changes`.
pub fn rollup_changes_key(tenant: &str) -> String {
    format!("pulse:{{{tenant}}}:rollup-changes")
}

/// Adds one change: the period documents `ids` were updated.
pub async fn publish_rollup_changes(conn: &mut Connection, tenant: &str, ids: &[String]) -> RedisResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let options = redis::streams::StreamMaxlen::Approx(KEEP);
    let _: String =
        conn.xadd_maxlen(rollup_changes_key(tenant), options, "*", &[(FIELD, ids.join(","))]).await?;
    Ok(())
}

/// The id of the newest change, or `0-0` when there is none: read before a full read of
/// the rollups, so that changes made during it are read again after.
pub async fn newest_rollup_change(conn: &mut Connection, tenant: &str) -> RedisResult<String> {
    let reply: StreamRangeReply = conn.xrevrange_count(rollup_changes_key(tenant), "+", "-", 1).await?;
    Ok(reply.ids.first().map(|e| e.id.clone()).unwrap_or_else(|| "0-0".to_string()))
}

/// Up to `count` changes after `after`: the newest change id read, and the changed ids.
pub async fn read_rollup_changes(
    conn: &mut Connection,
    tenant: &str,
    after: &str,
    count: usize,
) -> RedisResult<(Option<String>, Vec<String>)> {
    let key = rollup_changes_key(tenant);
    let reply: Option<StreamReadReply> =
        conn.xread_options(&[&key], &[after], &StreamReadOptions::default().count(count)).await?;
    let mut newest = None;
    let mut ids = Vec::new();
    for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
        if let Some(redis::Value::BulkString(bytes)) = entry.map.get(FIELD) {
            ids.extend(
                String::from_utf8_lossy(bytes).split(',').filter(|s| !s.is_empty()).map(str::to_string),
            );
        }
        newest = Some(entry.id);
    }
    Ok((newest, ids))
}
