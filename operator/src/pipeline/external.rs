//! State outside Kubernetes: the Redis streams and consumer group of each partition, and
//! the MongoDB collections and indexes (through `pulse_store`'s `ensure_schema`, the one
//! function the processor also runs). On deletion, `deletionPolicy: Delete` drops them.

use std::time::Duration;

use pulse_buffer::Connection;
use pulse_buffer::TenantLayout;
use pulse_core::buffer::CONSUMER_GROUP;
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
            .arg(TenantLayout::of(tenant).stream(partition))
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

/// Deletes every key of the tenant: those with fixed names ([`TenantLayout::fixed_keys`]),
/// then whatever else carries one of its hash tags (the query cache's answers). On a Redis
/// Cluster a hash tag is one slot, so its keys are scanned on the node that holds it.
/// Deleting a stream deletes its consumer group. Keys already gone are fine.
pub async fn delete_buffer(url: &str, cluster: bool, tenant: &str, partitions: u32) -> Result<u64, Error> {
    let mut conn = connect_redis(url, cluster).await?;
    let layout = TenantLayout::of(tenant);
    let mut deleted = 0u64;
    for key in layout.fixed_keys(partitions) {
        deleted += delete(&mut conn, &key).await?;
    }
    for (prefix, sample) in layout.hash_tags(partitions) {
        for key in keys_of_tag(&mut conn, &prefix, &sample).await? {
            deleted += delete(&mut conn, &key).await?;
        }
    }
    Ok(deleted)
}

async fn delete(conn: &mut Connection, key: &str) -> Result<u64, Error> {
    redis::cmd("DEL").arg(key).query_async(conn).await.map_err(|e| Error::redis("DEL", e))
}

/// The keys starting with `prefix`, a hash tag's prefix (`sample` is a key of the tag): a
/// SCAN of the server, or of the cluster node holding the tag's slot.
async fn keys_of_tag(conn: &mut Connection, prefix: &str, sample: &str) -> Result<Vec<String>, Error> {
    use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
    let node = match conn {
        Connection::Single(_) => None,
        Connection::Cluster(_) => {
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(sample)
                .query_async(conn)
                .await
                .map_err(|e| Error::redis("CLUSTER KEYSLOT", e))?;
            Some(RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                slot,
                SlotAddr::Master,
            ))))
        }
    };
    let (mut keys, mut cursor) = (Vec::new(), 0u64);
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor).arg("MATCH").arg(format!("{prefix}*")).arg("COUNT").arg(1000);
        let reply = match (&mut *conn, &node) {
            (Connection::Cluster(c), Some(route)) => c.route_command(scan, route.clone()).await,
            (c, _) => scan.query_async::<redis::Value>(c).await,
        };
        let (next, found): (u64, Vec<String>) =
            reply.and_then(|v| Ok(redis::from_redis_value(v)?)).map_err(|e| Error::redis("SCAN", e))?;
        keys.extend(found);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Drops the tenant's database; a database already gone is fine.
pub async fn delete_storage(uri: &str, database: &str) -> Result<(), Error> {
    let store = store(uri, database).await?;
    store.database().drop().await.map_err(|e| Error::storage("dropping the database", e))
}
