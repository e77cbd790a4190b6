//! Strict durability is verified with every write and continuously, not once at start:
//! from the moment Redis's persistence weakens (CONFIG SET, or a restart with weaker
//! settings) strict ingest acknowledges nothing, and it recovers once they are restored.

mod support;

use std::time::Duration;

use pulse_testkit::{AppendFsync, RedisCluster, RedisOptions, RedisServer};
use support::{Pipeline, Reply, TestIngest};

/// Generous bound for ingest to notice a change; tests poll, they never time anything.
const NOTICE_WITHIN: Duration = Duration::from_secs(30);

async fn strict_ingest() -> (RedisServer, TestIngest) {
    let redis = RedisServer::start_with(RedisOptions { append_only: Some(AppendFsync::Always) })
        .await
        .expect("redis");
    let pipeline = Pipeline { durability: "strict", ..Pipeline::default() };
    let ingest = TestIngest::start(&redis.url(), pipeline).await;
    (redis, ingest)
}

async fn config_set(redis: &RedisServer, name: &str, value: &str) {
    let mut conn = redis.connection().await.expect("connect");
    config_set_on(&mut conn, name, value).await;
}

async fn config_set_on(conn: &mut impl redis::aio::ConnectionLike, name: &str, value: &str) {
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg(name).arg(value).query_async(conn).await.expect("CONFIG SET");
}

async fn send(ingest: &TestIngest, n: &mut u32) -> Reply {
    *n += 1;
    let body = format!(r#"{{"event_id":"e{n}","event":"a","distinct_id":"u{n}"}}"#);
    ingest.post("/v1/events", body).await
}

/// Sends events until one gets `status`, within [`NOTICE_WITHIN`]; returns that reply.
async fn until_status(ingest: &TestIngest, n: &mut u32, status: u16) -> Reply {
    let deadline = tokio::time::Instant::now() + NOTICE_WITHIN;
    loop {
        let reply = send(ingest, n).await;
        if reply.status == status {
            return reply;
        }
        assert!(tokio::time::Instant::now() < deadline, "no {status} within {NOTICE_WITHIN:?}: {reply:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn readyz(ingest: &TestIngest) -> (u16, String) {
    let reply = ingest.http.get(format!("{}/readyz", ingest.url)).send().await.expect("readyz");
    (reply.status().as_u16(), reply.text().await.expect("body"))
}

fn assert_refused(reply: &Reply, setting: &str) {
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.code(), "buffer_unavailable", "{}", reply.text);
    assert!(reply.retry_after.is_some(), "503 says when to retry");
    assert!(reply.text.contains(setting), "the reason names {setting}: {}", reply.text);
}

/// The first write after the weakening is refused, then /readyz says not ready; once the
/// setting is restored events are accepted again.
async fn weaken_and_restore(name: &str, weak: &str, strong: &str) {
    let (redis, ingest) = strict_ingest().await;
    let mut n = 0;
    assert_eq!(send(&ingest, &mut n).await.status, 202, "strict ingest accepts on a durable Redis");

    config_set(&redis, name, weak).await;
    // Not a poll: the very first write after the change must be refused, or an event
    // would be acknowledged that a crash can lose.
    let first = send(&ingest, &mut n).await;
    assert_refused(&first, name);
    let (status, text) = readyz(&ingest).await;
    assert_eq!(status, 503, "not ready while {name} is {weak}: {text}");
    assert!(text.contains(name), "{text}");

    config_set(&redis, name, strong).await;
    until_status(&ingest, &mut n, 202).await;
    assert_eq!(readyz(&ingest).await.0, 200, "ready again once {name} is {strong}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appendfsync_everysec_at_runtime_is_refused_until_restored() {
    weaken_and_restore("appendfsync", "everysec", "always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appendonly_no_at_runtime_is_refused_until_restored() {
    weaken_and_restore("appendonly", "no", "yes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_with_weaker_settings_is_refused() {
    let (mut redis, ingest) = strict_ingest().await;
    let mut n = 0;
    assert_eq!(send(&ingest, &mut n).await.status, 202);

    redis.restart_with(RedisOptions { append_only: Some(AppendFsync::EverySec) }).await.expect("restart");
    // Requests during the reconnect may get 503 for that reason; none may get 202.
    let deadline = tokio::time::Instant::now() + NOTICE_WITHIN;
    loop {
        let reply = send(&ingest, &mut n).await;
        assert_ne!(reply.status, 202, "acknowledged on a Redis with appendfsync everysec");
        if reply.text.contains("appendfsync") {
            assert_refused(&reply, "appendfsync");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no durability refusal: {reply:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, text) = readyz(&ingest).await;
    assert_eq!(status, 503, "{text}");

    redis.restart_with(RedisOptions { append_only: None }).await.expect("restart without AOF");
    let refused = until_status(&ingest, &mut n, 503).await;
    for _ in 0..20 {
        let reply = send(&ingest, &mut n).await;
        assert_ne!(reply.status, 202, "acknowledged on a Redis without an append-only file");
        if reply.text.contains("appendonly") {
            assert_refused(&reply, "appendonly");
        }
    }
    assert_eq!(refused.code(), "buffer_unavailable");

    redis.restart_with(RedisOptions { append_only: Some(AppendFsync::Always) }).await.expect("restart");
    until_status(&ingest, &mut n, 202).await;
}

/// Sets `name` to `value` on every node of `cluster`.
async fn config_set_everywhere(cluster: &RedisCluster, name: &str, value: &str) {
    for url in cluster.urls() {
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
        config_set_on(&mut conn, name, value).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_on_a_cluster_verifies_the_master_of_each_write() {
    let cluster = RedisCluster::start().await.expect("redis cluster");
    config_set_everywhere(&cluster, "appendfsync", "always").await;
    config_set_everywhere(&cluster, "appendonly", "yes").await;
    let pipeline = Pipeline { durability: "strict", cluster: true, partitions: 8, ..Pipeline::default() };
    let ingest = TestIngest::start(&cluster.urls()[0], pipeline).await;
    let events: Vec<_> = (0..50).map(|i| support::event(&format!("c{i}"), &format!("user-{i}"))).collect();
    let reply = ingest.post("/v1/batch", support::batch(&events)).await;
    assert_eq!(reply.status, 202, "strict writes through MULTI/EXEC on a cluster: {}", reply.text);

    config_set_everywhere(&cluster, "appendfsync", "everysec").await;
    let reply = ingest.post("/v1/batch", support::batch(&events)).await;
    assert_refused(&reply, "appendfsync");
}
