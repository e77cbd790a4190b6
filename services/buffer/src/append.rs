//! Appending events to a partition's stream: the entry and the partition's backlog count
//! move together in one script, so the processor's acknowledgement (which lowers the count)
//! always finds what it subtracts.

use pulse_core::buffer::{ENTRY_FIELD, backlog_key, stream_key};
use redis::RedisResult;

use crate::Connection;

/// Appends an entry and adds its event count to the partition's backlog, atomically.
pub const APPEND_SCRIPT: &str = r"
local id = redis.call('XADD', KEYS[1], '*', ARGV[1], ARGV[2])
redis.call('INCRBY', KEYS[2], ARGV[3])
return id
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
        .key(stream_key(tenant, partition))
        .key(backlog_key(tenant, partition))
        .arg(ENTRY_FIELD)
        .arg(payload)
        .arg(events)
        .invoke_async(conn)
        .await
}
