//! State outside Kubernetes: the Redis streams and consumer group of each partition, and
//! the MongoDB collections and indexes (through `pulse_store`'s `ensure_schema`, the one
//! function the processor also runs). On deletion, `deletionPolicy: Delete` drops them.

use std::time::Duration;

use pulse_buffer::Connection;
use pulse_core::buffer::{CONSUMER_GROUP, backlog_key, rate_limit_key, stream_key};
use pulse_store::Store;

use crate::error::Error;

const TIMEOUT: Duration = Duration::from_secs(5);

async fn connect_redis(url: &str, cluster: bool) -> Result<Connection, Error> {
    Connection::open(url, cluster, TIMEOUT).await.map_err(|e| Error::redis("connecting", e))
}

/// Creates each partition's stream and the processors' consumer group if missing, as the
/// processor does at start (XGROUP CREATE ... 0 MKSTREAM; BUSYGROUP means it exists).
pub async fn ensure_buffer(url: &str, cluster: bool, tenant: &str, partitions: u32) -> Result<(), Error> {
    let mut conn = connect_redis(url, cluster).await?;
    for partition in 0..partitions {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream_key(tenant, partition))
            .arg(CONSUMER_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if e.to_string().contains("BUSYGROUP") => {}
            other => {
                other.map_err(|e| Error::redis(format!("creating the group of partition {partition}"), e))?
            }
        }
    }
    Ok(())
}

async fn store(uri: &str, database: &str) -> Result<Store, Error> {
    let mut options = mongodb::options::ClientOptions::parse(uri)
        .await
        .map_err(|e| Error::storage("parsing the URI", e))?;
    options.server_selection_timeout = Some(TIMEOUT);
    options.connect_timeout = Some(TIMEOUT);
    options.app_name = Some("pulse-operator".into());
    let client = mongodb::Client::with_options(options).map_err(|e| Error::storage("connecting", e))?;
    Ok(Store::new(client.database(database)))
}

/// How many acknowledged events the processor set aside as failed.
pub async fn count_failed_events(uri: &str, database: &str) -> Result<u64, Error> {
    let store = store(uri, database).await?;
    store.count_failed_events().await.map_err(|e| Error::storage("counting failed events", e))
}

/// Creates the tenant's collections and indexes if missing.
pub async fn ensure_storage(uri: &str, database: &str) -> Result<(), Error> {
    let store = store(uri, database).await?;
    store.ensure_schema().await.map_err(|e| Error::storage("ensuring the schema", e))?;
    Ok(())
}

/// The keys of one partition and of the tenant that the services write.
fn tenant_keys(tenant: &str, partitions: u32) -> Vec<String> {
    let mut keys = vec![
        rate_limit_key(tenant),
        pulse_buffer::rollup_changes_key(tenant),
        format!("pulse:{{{tenant}}}:processors"),
        format!("pulse:{{{tenant}}}:paused"),
    ];
    for p in 0..partitions {
        let tag = format!("pulse:{{{tenant}:{p}}}");
        keys.extend([
            stream_key(tenant, p),
            backlog_key(tenant, p),
            format!("{tag}:lease"),
            format!("{tag}:lease-counter"),
            format!("{tag}:lease-token"),
        ]);
    }
    keys
}

/// Deletes every key of the tenant: the known keys one by one (they live in different
/// slots of a cluster), then, on a single Redis, whatever else carries the tenant's hash
/// tags (on a cluster, the query cache's answers are left to expire with their TTL).
/// Deleting a stream deletes its consumer group. Keys already gone are fine.
pub async fn delete_buffer(url: &str, cluster: bool, tenant: &str, partitions: u32) -> Result<u64, Error> {
    let mut conn = connect_redis(url, cluster).await?;
    let mut deleted = 0u64;
    for key in tenant_keys(tenant, partitions) {
        let n: u64 =
            redis::cmd("DEL").arg(&key).query_async(&mut conn).await.map_err(|e| Error::redis("DEL", e))?;
        deleted += n;
    }
    if !cluster {
        for pattern in [format!("pulse:{{{tenant}:*"), format!("pulse:{{{tenant}}}:*")] {
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| Error::redis("SCAN", e))?;
                for key in keys {
                    let n: u64 = redis::cmd("DEL")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| Error::redis("DEL", e))?;
                    deleted += n;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
    }
    Ok(deleted)
}

/// Drops the tenant's database; a database already gone is fine.
pub async fn delete_storage(uri: &str, database: &str) -> Result<(), Error> {
    let store = store(uri, database).await?;
    store.database().drop().await.map_err(|e| Error::storage("dropping the database", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partitions_keys_are_deleted() {
        let keys = tenant_keys("acme", 2);
        for k in [
            "pulse:{acme:0}:events",
            "pulse:{acme:1}:backlog",
            "pulse:{acme:1}:lease",
            "pulse:{acme}:rate-limit",
            "pulse:{acme}:rollup-changes",
        ] {
            assert!(keys.contains(&k.to_string()), "{k} missing from {keys:?}");
        }
    }
}
