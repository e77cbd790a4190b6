//! Backpressure instead of loss: a full backlog and the tenant's rate limit answer 429 with
//! Retry-After, and ingest accepts again once the backlog drains or tokens refill.

mod support;

use std::time::Duration;

use pulse_buffer::TenantLayout;
use pulse_testkit::{AppendFsync, RedisCluster, RedisOptions, RedisServer};
use serde_json::Value;
use support::{Pipeline, TestIngest, batch, event};

fn events(prefix: &str, n: usize) -> Vec<Value> {
    (0..n).map(|i| event(&format!("{prefix}-{i}"), &format!("user-{i}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backlog_answers_429_and_accepts_again_once_drained() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest =
        TestIngest::start(&redis.url(), Pipeline { high_water_mark: 100, ..Pipeline::default() }).await;
    assert_eq!(ingest.post("/v1/batch", batch(&events("a", 40))).await.status, 202);
    assert_eq!(ingest.post("/v1/batch", batch(&events("b", 40))).await.status, 202);
    let refused = ingest.post("/v1/batch", batch(&events("c", 40))).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(refused.code(), "backlog_full");
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    assert_eq!(ingest.buffered().await.len(), 80, "the refused batch added nothing, and nothing was trimmed");

    // Drain as the processor does: delete stored entries and subtract their events.
    let mut conn = redis.connection().await.expect("connect");
    for p in 0..ingest.partitions {
        let _: () = redis::cmd("DEL")
            .arg(TenantLayout::of(&ingest.tenant).stream(p))
            .query_async(&mut conn)
            .await
            .expect("DEL");
        let _: () = redis::cmd("SET")
            .arg(TenantLayout::of(&ingest.tenant).backlog(p))
            .arg(0)
            .query_async(&mut conn)
            .await
            .expect("SET");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = ingest.post("/v1/batch", batch(&events("c", 40))).await;
        if reply.status == 202 {
            break;
        }
        assert_eq!(reply.status, 429, "{}", reply.text);
        assert!(tokio::time::Instant::now() < deadline, "ingest never accepted again after the drain");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends 40 batches of 10 events (over every partition) at once to a backlog whose mark is
/// 120, and checks that the mark held: the check and the append are one step in Redis.
async fn parallel_batches_never_pass_the_mark(redis: &RedisServer, durability: &'static str) {
    const MARK: u64 = 120;
    const BATCH: usize = 10;
    let pipeline = Pipeline { high_water_mark: MARK, durability, ..Pipeline::default() };
    let ingest = std::sync::Arc::new(TestIngest::start(&redis.url(), pipeline).await);
    let sends = (0..40).map(|b| {
        let ingest = std::sync::Arc::clone(&ingest);
        tokio::spawn(async move { ingest.post("/v1/batch", batch(&events(&format!("p{b}"), BATCH))).await })
    });
    let mut accepted = 0u64;
    let mut refused = 0u64;
    for reply in futures::future::join_all(sends).await {
        let reply = reply.expect("the request task ran");
        match reply.status {
            202 => accepted += 1,
            429 => {
                assert_eq!(reply.code(), "backlog_full", "{}", reply.text);
                assert_eq!(reply.retry_after.as_deref(), Some("1"));
                refused += 1;
            }
            other => panic!("{durability}: status {other}: {}", reply.text),
        }
    }
    let buffered = ingest.buffered().await.len() as u64;
    assert_eq!(buffered, accepted * BATCH as u64, "{durability}: every accepted batch whole, no refused one");
    assert!(buffered <= MARK, "{durability}: {buffered} events buffered with a mark of {MARK}");
    assert_eq!(accepted, MARK / BATCH as u64, "{durability}: the backlog filled up to the mark");
    assert_eq!(refused, 40 - accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_batches_never_pass_the_high_water_mark() {
    let redis = RedisServer::start().await.expect("redis");
    parallel_batches_never_pass_the_mark(&redis, "fast").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_strict_batches_never_pass_the_high_water_mark() {
    let redis = RedisServer::start_with(RedisOptions { append_only: Some(AppendFsync::Always) })
        .await
        .expect("redis");
    parallel_batches_never_pass_the_mark(&redis, "strict").await;
}

/// On a Redis Cluster a script reaches one partition: each partition's part of a request is
/// checked against its own count plus the rest of the backlog and of the request, so a
/// batch spread over every partition is refused whole when it would pass the mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backlog_answers_429_on_a_redis_cluster() {
    let cluster = RedisCluster::start().await.expect("redis cluster");
    let seed = cluster.urls()[0].clone();
    let pipeline = Pipeline { partitions: 8, cluster: true, high_water_mark: 100, ..Pipeline::default() };
    let ingest = TestIngest::start(&seed, pipeline).await;
    assert_eq!(ingest.post("/v1/batch", batch(&events("a", 40))).await.status, 202);
    assert_eq!(ingest.post("/v1/batch", batch(&events("b", 40))).await.status, 202);
    let refused = ingest.post("/v1/batch", batch(&events("c", 40))).await;
    assert_eq!((refused.status, refused.code()), (429, "backlog_full"), "{}", refused.text);
    let mut conn = cluster.connection().await.expect("cluster connection");
    let mut backlog = 0u64;
    for p in 0..ingest.partitions {
        let count: Option<u64> = redis::cmd("GET")
            .arg(TenantLayout::of(&ingest.tenant).backlog(p))
            .query_async(&mut conn)
            .await
            .expect("GET the backlog");
        backlog += count.unwrap_or(0);
    }
    assert_eq!(backlog, 80, "no partition took a part of the refused batch");
    assert_eq!(ingest.post("/v1/batch", batch(&events("d", 20))).await.status, 202, "up to the mark");
}

fn rate_limited(events_per_second: u32, burst: u32) -> String {
    format!("  rateLimit:\n    eventsPerSecond: {events_per_second}\n    burst: {burst}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_429_then_refills() {
    let redis = RedisServer::start().await.expect("redis");
    let pipeline = Pipeline { ingest_yaml: rate_limited(50, 100), ..Pipeline::default() };
    let ingest = TestIngest::start(&redis.url(), pipeline).await;
    assert_eq!(
        ingest.post("/v1/batch", batch(&events("a", 100))).await.status,
        202,
        "the burst is available"
    );
    let refused = ingest.post("/v1/batch", batch(&events("b", 20))).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(refused.code(), "rate_limited");
    let wait: u64 = refused.retry_after.as_deref().and_then(|s| s.parse().ok()).expect("Retry-After seconds");
    assert!(wait >= 1);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let again = ingest.post("/v1/batch", batch(&events("b", 20))).await;
    assert_eq!(again.status, 202, "accepted after Retry-After: {}", again.text);

    let too_big = ingest.post("/v1/batch", batch(&events("c", 150))).await;
    assert_eq!(too_big.status, 413, "{}", too_big.text);
    assert_eq!(too_big.code(), "batch_exceeds_burst");
    assert_eq!(ingest.buffered().await.len(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_shared_by_every_ingest_pod_of_a_tenant() {
    let redis = RedisServer::start().await.expect("redis");
    let pipeline = Pipeline { ingest_yaml: rate_limited(10, 100), ..Pipeline::default() };
    let first = TestIngest::start(&redis.url(), pipeline.clone()).await;
    let second = TestIngest::start(&redis.url(), pipeline).await;
    // Both serve the same tenant with their own key file; use the first's key on both.
    std::fs::write(second.write_key_file(), &first.write_key).expect("share the key");
    assert_eq!(first.post("/v1/batch", batch(&events("a", 100))).await.status, 202);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        // The second pod reloads its key within a second; then it must see an empty bucket.
        let reply = second
            .post_with(
                "/v1/batch",
                batch(&events("b", 50)),
                &[("Authorization", format!("Bearer {}", first.write_key))],
            )
            .await;
        if reply.status != 401 {
            assert_eq!(reply.status, 429, "{}", reply.text);
            assert_eq!(reply.code(), "rate_limited");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the second pod never picked up the key");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
