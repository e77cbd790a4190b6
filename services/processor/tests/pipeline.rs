//! The processor end to end: events through ingest and Redis into MongoDB exactly once,
//! with rollups equal to a recount and event blocks equal to the raw events, on a single
//! Redis and a Redis Cluster, across a processor's death, a MongoDB outage, a Redis outage
//! and a rebuild.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use pulse_testkit::{AppendFsync, FerretDb, RedisCluster, RedisOptions, RedisServer};
use serde_json::Value;
use support::{Pipeline, events};

const DRAIN: Duration = Duration::from_secs(120);
/// How long a server stays down in the outage tests.
const OUTAGE: Duration = Duration::from_secs(30);

fn ids(events: &[Value]) -> BTreeSet<String> {
    events.iter().map(|e| e["event_id"].as_str().expect("id").to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_stored_once_and_rollups_equal_a_recount_also_after_a_rebuild() {
    let redis = RedisServer::start().await.expect("redis");
    let ferret = FerretDb::start().await.expect("ferretdb");
    let pipeline = Pipeline::new(&redis.url(), false, &ferret, 4);
    let ingest = pipeline.start_ingest().await;
    let _processor = pipeline.start_processor("processor");
    let sent = events("a", 2000, 200, 1);
    for chunk in sent.chunks(250) {
        ingest.send(chunk).await;
    }
    // A client retrying some batches: duplicates.
    for chunk in sent.chunks(250).step_by(4) {
        ingest.send(chunk).await;
    }
    pipeline.wait_drained(DRAIN).await;
    pipeline.assert_exact(&ids(&sent)).await;
    pipeline.assert_blocks_hold_the_raw_events().await;
    assert_blocks_announced(&pipeline).await;

    // Blocks dropped (as if stored before blocks existed): the rebuild writes them again.
    let store = pipeline.store().await;
    let mut collections = store.database().list_collection_names().await.expect("collections");
    collections.retain(|c| c.starts_with("event_block"));
    for collection in collections {
        store
            .database()
            .collection::<mongodb::bson::Document>(&collection)
            .delete_many(mongodb::bson::doc! {})
            .await
            .expect("drop blocks");
    }
    let rebuilt = pipeline.rebuild();
    assert!(rebuilt.status.success(), "rebuild failed: {}", String::from_utf8_lossy(&rebuilt.stderr));
    assert!(String::from_utf8_lossy(&rebuilt.stdout).contains("rebuilt"), "it says what it did");
    assert!(String::from_utf8_lossy(&rebuilt.stdout).contains("event blocks"), "and the blocks");
    pipeline.assert_exact(&ids(&sent)).await;
    pipeline.assert_blocks_hold_the_raw_events().await;
    assert_blocks_announced(&pipeline).await;

    let more = events("b", 500, 200, 2);
    ingest.send(&more).await;
    pipeline.wait_drained(DRAIN).await;
    let all: BTreeSet<String> = ids(&sent).union(&ids(&more)).cloned().collect();
    pipeline.assert_exact(&all).await;
    pipeline.assert_blocks_hold_the_raw_events().await;
}

/// Every block in the index was announced on the changes stream.
async fn assert_blocks_announced(pipeline: &Pipeline) {
    let mut conn =
        pulse_buffer::Connection::open(&pipeline.redis_url, pipeline.cluster, Duration::from_secs(5))
            .await
            .expect("redis");
    let changes =
        pulse_buffer::read_changes(&mut conn, &pipeline.tenant, "0-0", 1_000_000).await.expect("changes");
    let announced: BTreeSet<String> = changes.blocks.into_iter().collect();
    let store = pipeline.store().await;
    let refs = store.event_block_refs(None, i64::MIN / 2, i64::MAX / 2).await.expect("refs");
    assert!(!refs.is_empty());
    let silent: Vec<&String> =
        refs.iter().map(|r| &r.id).filter(|id| !announced.contains(*id)).take(5).collect();
    assert!(silent.is_empty(), "blocks never announced: {silent:?}");
    assert!(!changes.periods.is_empty(), "periods are announced too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processors_share_a_redis_cluster_and_one_takes_over_when_the_other_dies() {
    let cluster = RedisCluster::start().await.expect("redis cluster");
    let ferret = FerretDb::start().await.expect("ferretdb");
    let pipeline = Pipeline::new(&cluster.urls()[0], true, &ferret, 6);
    let ingest = pipeline.start_ingest().await;
    let mut first = pipeline.start_processor("processor-1");
    let _second = pipeline.start_processor("processor-2");
    let sent = events("c", 1000, 300, 3);
    for chunk in sent.chunks(200) {
        ingest.send(chunk).await;
    }
    pipeline.wait_drained(DRAIN).await;
    first.kill();
    // The survivor must take over the dead one's partitions once their leases expire.
    let after = events("d", 1000, 300, 4);
    for chunk in after.chunks(200) {
        ingest.send(chunk).await;
    }
    pipeline.wait_drained(DRAIN).await;
    let all: BTreeSet<String> = ids(&sent).union(&ids(&after)).cloned().collect();
    pipeline.assert_exact(&all).await;
    pipeline.assert_blocks_hold_the_raw_events().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_outage_waits_in_redis_and_loses_nothing() {
    let redis = RedisServer::start().await.expect("redis");
    let mut ferret = FerretDb::start().await.expect("ferretdb");
    let pipeline = Pipeline::new(&redis.url(), false, &ferret, 4);
    let ingest = pipeline.start_ingest().await;
    let _processor = pipeline.start_processor("processor");
    let before = events("e", 500, 100, 5);
    ingest.send(&before).await;
    ferret.kill();
    let during = events("f", 1000, 100, 6);
    for chunk in during.chunks(250) {
        ingest.send(chunk).await;
    }
    tokio::time::sleep(OUTAGE).await;
    ferret.restart().await.expect("restart ferretdb");
    pipeline.wait_drained(DRAIN).await;
    let all: BTreeSet<String> = ids(&before).union(&ids(&during)).cloned().collect();
    pipeline.assert_exact(&all).await;
    pipeline.assert_blocks_hold_the_raw_events().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_stops_the_processor_until_redis_is_back_and_loses_nothing() {
    // Every acknowledged write on disk, so a restarted Redis has every accepted event.
    let options = RedisOptions { append_only: Some(AppendFsync::Always) };
    let mut redis = RedisServer::start_with(options).await.expect("redis");
    let ferret = FerretDb::start().await.expect("ferretdb");
    let pipeline = Pipeline::new(&redis.url(), false, &ferret, 4);
    let ingest = pipeline.start_ingest().await;
    let mut processor = pipeline.start_processor("processor");
    let before = events("g", 2000, 200, 7);
    for chunk in before.chunks(250) {
        ingest.send(chunk).await;
    }
    // Most likely in the middle of a batch: its entries stay pending in Redis.
    redis.kill();
    tokio::time::sleep(OUTAGE).await;
    processor.check_running().expect("the processor waits for Redis instead of exiting");
    redis.restart().await.expect("restart redis");
    let after = events("h", 500, 200, 8);
    ingest.send(&after).await;
    pipeline.wait_drained(DRAIN).await;
    let all: BTreeSet<String> = ids(&before).union(&ids(&after)).cloned().collect();
    pipeline.assert_exact(&all).await;
    pipeline.assert_blocks_hold_the_raw_events().await;
}
