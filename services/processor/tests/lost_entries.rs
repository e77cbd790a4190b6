//! Entries gone from the buffer under an unfinished batch: a writer began the record of a
//! batch and died, and the stream lost the batch's entries (trimmed by hand, or a Redis
//! restart in `fast` durability). The partition must move on, not wait for them for ever.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use pulse_buffer::TenantLayout;
use pulse_core::rollup::StreamPosition;
use pulse_store::Ballot;
use pulse_testkit::{FerretDb, RedisServer};
use support::{Pipeline, events};

const DRAIN: Duration = Duration::from_secs(120);

/// Stream entries as XRANGE returns them: id, then field-value pairs.
type RawEntries = Vec<(String, Vec<(String, Vec<u8>)>)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_whose_unfinished_batch_lost_its_entries_moves_on() {
    let redis = RedisServer::start().await.expect("redis");
    let ferret = FerretDb::start().await.expect("ferretdb");
    let pipeline = Pipeline::new(&redis.url(), false, &ferret, 1);
    let ingest = pipeline.start_ingest().await;
    let mut conn =
        pulse_buffer::Connection::open(&redis.url(), false, Duration::from_secs(5)).await.expect("redis");
    let settings = [("PULSE_LEASE_TTL_MS", "2000")];

    let before = events("before", 40, 5, 1);
    ingest.send(&before).await;
    let processor = pipeline.start_processor_with("first", &settings);
    pipeline.wait_drained_on(&mut conn, DRAIN).await;
    drop(processor);

    // The next batch's entries; a writer takes their record, then they are lost.
    let lost = events("lost", 30, 5, 2);
    ingest.send(&lost).await;
    let key = TenantLayout::of(&pipeline.tenant).stream(0);
    let entries: RawEntries =
        redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(&mut conn).await.expect("xrange");
    let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
    let position = |id: &str| StreamPosition::parse(id).expect("a stream id");
    let (first, last) = (position(ids[0]), position(ids[ids.len() - 1]));
    let store = pipeline.store().await;
    let log = store.log_state(0).await.expect("the log");
    let record = log.tail.record + 1;
    let took = store.take_ballot(0, record, 0, Ballot::Begin, (first, last), "gone#1").await.expect("ballot");
    assert!(took, "the dead writer's ballot");
    let _: u64 = redis::cmd("XDEL").arg(&key).arg(&ids).query_async(&mut conn).await.expect("xdel");
    // What ingest counted for them is gone with them.
    let _: i64 = redis::cmd("DECRBY")
        .arg(TenantLayout::of(&pipeline.tenant).backlog(0))
        .arg(lost.len())
        .query_async(&mut conn)
        .await
        .expect("decrby");

    let after = events("after", 40, 5, 3);
    ingest.send(&after).await;
    let processor = pipeline.start_processor_with("second", &settings);
    pipeline.wait_drained_on(&mut conn, DRAIN).await;
    drop(processor);

    let ids = |events: &[serde_json::Value]| -> BTreeSet<String> {
        events.iter().map(|e| e["event_id"].as_str().expect("id").to_string()).collect()
    };
    let stored: BTreeSet<String> = ids(&before).union(&ids(&after)).cloned().collect();
    pipeline.assert_exact(&stored).await;
    let log = store.log_state(0).await.expect("the log");
    assert!(log.open.is_none() && log.tail.record > record, "the lost record ended: {log:?}");
    let said = std::fs::read_to_string(pipeline.dir().join("second.log")).unwrap_or_default();
    assert!(said.contains("gone from the buffer"), "the processor says what happened:\n{said}");
}
