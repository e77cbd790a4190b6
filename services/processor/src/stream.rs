//! Reading a partition's stream through the consumer group, and acknowledging what is
//! stored: XACK, XDEL and the backlog count move together in one script.

use pulse_buffer::Connection;
use pulse_buffer::TenantLayout;
use pulse_core::buffer::{BufferedEvent, CONSUMER_GROUP, ENTRY_FIELD};
use pulse_core::rollup::StreamPosition;
use redis::streams::StreamReadReply;

/// Acknowledges and deletes entries given as (id, events) pairs, and subtracts the events
/// of those it acknowledged (not those acknowledged before), so a repeated call is harmless.
const ACK: &str = r"
local total = 0
for i = 2, #ARGV, 2 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    total = total + tonumber(ARGV[i + 1])
  end
  redis.call('XDEL', KEYS[1], ARGV[i])
end
if total > 0 then
  if redis.call('DECRBY', KEYS[2], total) < 0 then
    redis.call('SET', KEYS[2], 0)
  end
end
return total
";

/// One stream entry: its position and its events (or why they could not be read).
pub struct Entry {
    pub id: String,
    pub position: StreamPosition,
    pub events: Result<Vec<BufferedEvent>, Undecodable>,
}

/// An entry whose content is not a list of events: what it holds, and why it was refused.
#[derive(Debug)]
pub struct Undecodable {
    pub reason: String,
    pub raw: Vec<u8>,
}

/// One partition's stream as its consumer sees it.
pub struct PartitionStream {
    pub partition: u32,
    key: String,
    backlog: String,
    /// The consumer is named after the partition, not the process: whoever holds the
    /// partition's lease reads (and so reclaims) the entries a dead holder left pending.
    consumer: String,
}

impl PartitionStream {
    pub fn new(tenant: &str, partition: u32) -> Self {
        PartitionStream {
            partition,
            key: TenantLayout::of(tenant).stream(partition),
            backlog: TenantLayout::of(tenant).backlog(partition),
            consumer: format!("p{partition}"),
        }
    }

    /// Creates the stream and its consumer group if missing.
    pub async fn ensure_group(&self, conn: &mut Connection) -> redis::RedisResult<()> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.key)
            .arg(CONSUMER_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Err(e) if e.to_string().contains("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Entries delivered before but not acknowledged (`pending`), or new ones.
    pub async fn read(
        &self,
        conn: &mut Connection,
        pending: bool,
        count: usize,
    ) -> redis::RedisResult<Vec<Entry>> {
        let from = if pending { "0" } else { ">" };
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(CONSUMER_GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(from)
            .query_async(conn)
            .await?;
        let items = reply.map(|r| r.keys).unwrap_or_default().into_iter().flat_map(|k| k.ids);
        Ok(items.filter_map(|item| entry_of(item, pending)).collect())
    }

    /// The entries from `first` to `last` that are still in the stream (not acknowledged),
    /// whoever they were delivered to: the entries of a record another writer began.
    pub async fn range(
        &self,
        conn: &mut Connection,
        first: StreamPosition,
        last: StreamPosition,
    ) -> redis::RedisResult<Vec<Entry>> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.key)
            .arg(first.to_redis_id())
            .arg(last.to_redis_id())
            .query_async(conn)
            .await?;
        Ok(reply.ids.into_iter().filter_map(|item| entry_of(item, false)).collect())
    }

    /// Whether the stream still holds an entry after `after` and before `before` (both
    /// excluded): one not yet counted, if `after` is where the rollup log ends.
    pub async fn holds_entries_between(
        &self,
        conn: &mut Connection,
        after: StreamPosition,
        before: StreamPosition,
    ) -> redis::RedisResult<bool> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.key)
            .arg(format!("({}", after.to_redis_id()))
            .arg(format!("({}", before.to_redis_id()))
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await?;
        Ok(!reply.ids.is_empty())
    }

    /// Acknowledges `entries` (stored), deletes them, and lowers the backlog.
    pub async fn ack(&self, conn: &mut Connection, entries: &[(String, u64)]) -> redis::RedisResult<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ACK).arg(2).arg(&self.key).arg(&self.backlog).arg(CONSUMER_GROUP);
        for (id, events) in entries {
            cmd.arg(id).arg(*events);
        }
        cmd.query_async(conn).await
    }

    /// The backlog count of the partition.
    pub async fn backlog(&self, conn: &mut Connection) -> redis::RedisResult<u64> {
        let n: Option<u64> = redis::cmd("GET").arg(&self.backlog).query_async(conn).await?;
        Ok(n.unwrap_or(0))
    }

    /// The last entry the group has delivered (all before it are delivered too).
    pub async fn last_delivered(&self, conn: &mut Connection) -> redis::RedisResult<StreamPosition> {
        let groups: Vec<std::collections::HashMap<String, redis::Value>> =
            redis::cmd("XINFO").arg("GROUPS").arg(&self.key).query_async(conn).await?;
        let id = groups
            .iter()
            .find(|g| matches!(g.get("name"), Some(redis::Value::BulkString(n)) if n == CONSUMER_GROUP.as_bytes()))
            .and_then(|g| match g.get("last-delivered-id") {
                Some(redis::Value::BulkString(id)) => Some(String::from_utf8_lossy(id).into_owned()),
                _ => None,
            })
            .unwrap_or_else(|| "0-0".to_string());
        Ok(StreamPosition::parse(&id).unwrap_or_default())
    }
}

/// A stream item as an entry; `pending`: read from the pending list, where an entry deleted
/// since (acknowledged elsewhere) comes back without its fields.
fn entry_of(item: redis::streams::StreamId, pending: bool) -> Option<Entry> {
    let position = StreamPosition::parse(&item.id)?;
    let events = match item.map.get(ENTRY_FIELD) {
        Some(redis::Value::BulkString(bytes)) => {
            serde_json::from_slice::<Vec<BufferedEvent>>(bytes).map_err(|e| Undecodable {
                reason: format!("not a JSON array of events: {e}"),
                raw: bytes.clone(),
            })
        }
        None if pending => Ok(Vec::new()),
        _ => Err(Undecodable { reason: format!("no `{ENTRY_FIELD}` field"), raw: Vec::new() }),
    };
    Some(Entry { id: item.id, position, events })
}
