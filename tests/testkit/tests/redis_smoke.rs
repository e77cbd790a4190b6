//! Proves the test Redis servers are real: streams with consumer groups on a single server
//! and on a three-node cluster, and AOF persistence across a crash.

use pulse_testkit::{AppendFsync, RedisCluster, RedisOptions, RedisServer, unique_name};
use redis::AsyncCommands;
use redis::streams::{StreamReadOptions, StreamReadReply};

/// XADD three entries, read them through a consumer group, XACK them, and check nothing is
/// left pending.
async fn stream_roundtrip<C: redis::aio::ConnectionLike + Send + Sync>(conn: &mut C, key: &str) {
    let group = "processors";
    let _: () = conn.xgroup_create_mkstream(key, group, "0").await.expect("XGROUP CREATE");
    let mut ids = Vec::new();
    for n in 0..3 {
        let id: String = conn.xadd(key, "*", &[("event", format!("signup-{n}"))]).await.expect("XADD");
        ids.push(id);
    }
    let read: StreamReadReply = conn
        .xread_options(&[key], &[">"], &StreamReadOptions::default().group(group, "consumer-1").count(10))
        .await
        .expect("XREADGROUP");
    let entries = &read.keys[0].ids;
    let read_ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(read_ids, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let first: String = entries[0].get("event").expect("field event");
    assert_eq!(first, "signup-0");

    let acked: usize = conn.xack(key, group, &ids).await.expect("XACK");
    assert_eq!(acked, 3);
    let pending: redis::streams::StreamPendingReply = conn.xpending(key, group).await.expect("XPENDING");
    assert_eq!(pending.count(), 0, "every entry was acknowledged");
}

#[tokio::test]
async fn streams_and_consumer_groups_work_on_a_single_server() {
    let redis = RedisServer::start().await.expect("start redis-server");
    let mut conn = redis.connection().await.expect("connect");
    stream_roundtrip(&mut conn, &format!("{{{}}}:p0", unique_name("tenant"))).await;
}

#[tokio::test]
async fn acknowledged_writes_survive_a_crash_with_aof_always() {
    let mut redis = RedisServer::start_with(RedisOptions { append_only: Some(AppendFsync::Always) })
        .await
        .expect("start redis-server with AOF");
    let key = unique_name("durable");
    {
        let mut conn = redis.connection().await.expect("connect");
        let _: String = conn.xadd(&key, "*", &[("event", "purchase")]).await.expect("XADD");
    }
    redis.kill();
    redis.restart().await.expect("restart redis-server");
    let mut conn = redis.connection().await.expect("reconnect");
    let len: usize = conn.xlen(&key).await.expect("XLEN");
    assert_eq!(len, 1, "the acknowledged entry is back after SIGKILL and restart");
}

#[tokio::test]
async fn streams_work_on_a_three_node_cluster() {
    let cluster = RedisCluster::start().await.expect("start the Redis Cluster");
    assert_eq!(cluster.urls().len(), 3);
    let mut conn = cluster.connection().await.expect("connect to the cluster");
    for tenant in ["acme", "globex", "initech", "umbrella", "hooli", "stark"] {
        stream_roundtrip(&mut conn, &format!("pulse:{{{tenant}}}:events:0")).await;
    }
    // The hash-tagged keys of different tenants were routed to different nodes.
    let mut nodes_with_keys = 0;
    for url in cluster.urls() {
        let mut node = redis::Client::open(url.as_str())
            .expect("node url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to one node");
        let keys: usize = redis::cmd("DBSIZE").query_async(&mut node).await.expect("DBSIZE");
        nodes_with_keys += usize::from(keys > 0);
    }
    assert!(nodes_with_keys >= 2, "keys spread over {nodes_with_keys} node(s)");
}
