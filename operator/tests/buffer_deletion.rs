//! `deletionPolicy: Delete` on a Redis Cluster: every key of the tenant goes, whichever node
//! holds it, the query cache's answers included, and no key of another tenant does.

use pulse_buffer::TenantLayout;
use pulse_operator::pipeline::external::{delete_buffer, ensure_buffer};
use pulse_testkit::RedisCluster;

const PARTITIONS: u32 = 6;
const CACHED_ANSWERS: usize = 50;

/// Every key of every node of the cluster.
async fn keys_on_every_node(cluster: &RedisCluster) -> Vec<String> {
    let mut keys = Vec::new();
    for url in cluster.urls() {
        let client = redis::Client::open(url.as_str()).expect("client");
        let mut node = client.get_multiplexed_async_connection().await.expect("node connection");
        let found: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut node).await.expect("KEYS");
        keys.extend(found);
    }
    keys
}

fn of_tenant<'a>(keys: &'a [String], tenant: &str) -> Vec<&'a String> {
    let (own, partition) = (format!("pulse:{{{tenant}}}:"), format!("pulse:{{{tenant}:"));
    keys.iter().filter(|k| k.starts_with(&own) || k.starts_with(&partition)).collect()
}

#[tokio::test]
async fn delete_leaves_no_key_of_the_tenant_on_a_redis_cluster() {
    let cluster = RedisCluster::start().await.expect("Redis Cluster");
    let url = cluster.urls()[0].clone();
    let mut conn = cluster.connection().await.expect("cluster connection");
    // Two tenants, one's name the start of the other's, each with every key the services
    // write: the streams and their group as the operator makes them, the other keys set as
    // strings (DEL takes any type), and cached answers.
    for tenant in ["shop", "shop-eu"] {
        ensure_buffer(&url, true, tenant, PARTITIONS).await.expect("streams and groups");
        let layout = TenantLayout::of(tenant);
        let mut written = layout.fixed_keys(PARTITIONS);
        written.retain(|k| !k.ends_with(":events"));
        written.extend((0..CACHED_ANSWERS).map(|n| layout.query_cache("trends", &format!("{n:032x}"))));
        for key in written {
            let _: () = redis::cmd("SET").arg(&key).arg("1").query_async(&mut conn).await.expect("SET");
        }
    }
    let before = keys_on_every_node(&cluster).await;
    let expected = TenantLayout::of("shop").fixed_keys(PARTITIONS).len() + CACHED_ANSWERS;
    assert_eq!(of_tenant(&before, "shop").len(), expected, "the tenant's keys are all there");

    let deleted = delete_buffer(&url, true, "shop", PARTITIONS).await.expect("delete");
    let after = keys_on_every_node(&cluster).await;
    assert!(of_tenant(&after, "shop").is_empty(), "left behind: {:?}", of_tenant(&after, "shop"));
    assert_eq!(deleted, expected as u64);
    assert_eq!(of_tenant(&after, "shop-eu").len(), expected, "the other tenant keeps every key");
}
