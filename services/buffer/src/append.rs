//! Appending events to a partition's stream: the entry and the partition's backlog count
//! move together in one script, so the processor's acknowledgement (which lowers the count)
//! always finds what it subtracts.

use crate::TenantLayout;
use pulse_core::buffer::ENTRY_FIELD;
use redis::RedisResult;

use crate::Connection;

/// Appends an entry and adds its event count to the partition's backlog, atomically.
pub const APPEND_SCRIPT: &str = r"
local id = redis.call('XADD', KEYS[1], '*', ARGV[1], ARGV[2])
redis.call('INCRBY', KEYS[2], ARGV[3])
return id
";

/// Ingest's append: checks the high-water mark and appends in one step, so requests that
/// run in parallel cannot pass the mark together (a check before the append, even a
/// fresh one, lets every request of a burst through).
///
/// KEYS: the backlog counts to sum (`ARGV[1]` of them), then one stream key per entry.
/// ARGV: the number of backlog keys, the mark, the entry field, then per entry: the
/// 1-based index of its partition's backlog key among KEYS, its payload, its event count.
/// Either every entry is appended (`{1, backlog after}`) or none is, when the summed
/// backlog plus the request's events would pass the mark (`{0, backlog}`).
pub const APPEND_BELOW_MARK_SCRIPT: &str = r"
local counted = tonumber(ARGV[1])
local mark = tonumber(ARGV[2])
local backlog = 0
for i = 1, counted do
  backlog = backlog + (tonumber(redis.call('GET', KEYS[i])) or 0)
end
local entries = (#ARGV - 3) / 3
local adding = 0
for e = 0, entries - 1 do
  adding = adding + tonumber(ARGV[6 + 3 * e])
end
if backlog + adding > mark then
  return {0, backlog}
end
for e = 0, entries - 1 do
  redis.call('XADD', KEYS[counted + 1 + e], '*', ARGV[3], ARGV[5 + 3 * e])
  redis.call('INCRBY', KEYS[tonumber(ARGV[4 + 3 * e])], ARGV[6 + 3 * e])
end
return {1, backlog + adding}
";

/// Appends one entry holding `events` events (`payload`: their JSON array) to `partition`'s
/// stream and returns the entry's id.
pub async fn append_entry(
    conn: &mut Connection,
    tenant: &str,
    partition: u32,
    payload: &[u8],
    events: u64,
) -> RedisResult<String> {
    redis::Script::new(APPEND_SCRIPT)
        .key(TenantLayout::of(tenant).stream(partition))
        .key(TenantLayout::of(tenant).backlog(partition))
        .arg(ENTRY_FIELD)
        .arg(payload)
        .arg(events)
        .invoke_async(conn)
        .await
}
