//! Event blocks against a real MongoDB-wire server: events read from blocks equal the raw
//! events (odd properties included), `events_between` filters and keeps one copy per event
//! id, retention and compaction delete what they should, and a rebuild writes blocks from
//! raw events.

use std::collections::{BTreeMap, BTreeSet};

use pulse_core::buffer::BufferedEvent;
use pulse_core::duration::DurationSpec;
use pulse_core::rollup::StreamPosition;
use pulse_store::blocks::block_collection;
use pulse_store::collections::{
    EVENT_BLOCK_INDEX_PREFIX, EVENT_BLOCKS_PREFIX, LEGACY_EVENT_BLOCK_INDEX, LEGACY_EVENT_BLOCKS,
};
use pulse_store::recount::event_of_document;
use pulse_store::{CompactionDays, EventWrite, Store, StoreError};
use pulse_testkit::{Backend, FerretDb, unique_name};
use serde_json::json;

const DAY: i64 = 86_400_000;
/// 2026-11-20T00:00:00Z.
const T0: i64 = 1_795_132_800_000;

async fn store(ferret: &FerretDb) -> Store {
    let client = ferret.client().await.expect("client");
    let store = Store::new(client.database(&unique_name("blocks")));
    store.ensure_schema().await.expect("schema");
    store
}

fn event(id: &str, name: &str, ts: i64, properties: serde_json::Value) -> BufferedEvent {
    BufferedEvent {
        event_id: id.to_string(),
        id_generated: false,
        event: name.to_string(),
        distinct_id: format!("user-{}", id.len() % 3),
        timestamp: ts,
        received_at: ts + 1_234,
        properties: properties.as_object().cloned().unwrap_or_default(),
    }
}

fn pos(n: u64) -> StreamPosition {
    StreamPosition { millis: 1_000 + n, sequence: n % 2 }
}

/// Stores the events raw and as blocks, as the processor does with a batch.
async fn write(store: &Store, partition: u32, first: u64, events: &[BufferedEvent]) -> Vec<String> {
    let writes: Vec<EventWrite<'_>> = events
        .iter()
        .enumerate()
        .map(|(i, e)| EventWrite { partition, position: pos(first + i as u64), event: e })
        .collect();
    let flags = store.insert_events(&writes, true).await.expect("insert");
    let stored: Vec<(StreamPosition, &BufferedEvent)> =
        writes.iter().zip(&flags).filter(|(_, f)| **f).map(|(w, _)| (w.position, w.event)).collect();
    let last = first + events.len().max(1) as u64 - 1;
    store.write_event_blocks(partition, pos(first), pos(last), &stored).await.expect("write blocks")
}

async fn raw_events(store: &Store) -> BTreeMap<String, BufferedEvent> {
    let raw = store.raw_event_documents(mongodb::bson::doc! {}).await.expect("raw events");
    raw.iter().map(event_of_document).map(|e| (e.event_id.clone(), e)).collect()
}

fn by_id(events: Vec<BufferedEvent>) -> BTreeMap<String, BufferedEvent> {
    let n = events.len();
    let map: BTreeMap<String, BufferedEvent> = events.into_iter().map(|e| (e.event_id.clone(), e)).collect();
    assert_eq!(map.len(), n, "one event per id");
    map
}

/// The blocks in every day's collection.
async fn block_count(store: &Store) -> u64 {
    count_in_days(store, EVENT_BLOCKS_PREFIX).await
}

/// The index entries in every day's collection.
async fn entry_count(store: &Store) -> u64 {
    count_in_days(store, EVENT_BLOCK_INDEX_PREFIX).await
}

async fn count_in_days(store: &Store, prefix: &str) -> u64 {
    let mut total = 0;
    for name in store.database().list_collection_names().await.expect("collections") {
        if name.starts_with(prefix) {
            total += count(store, &name).await;
        }
    }
    total
}

/// The names of the days' index collections.
async fn index_collections(store: &Store) -> Vec<String> {
    let names = store.database().list_collection_names().await.expect("collections");
    let mut names: Vec<String> =
        names.into_iter().filter(|n| n.starts_with(EVENT_BLOCK_INDEX_PREFIX)).collect();
    names.sort();
    names
}

async fn count(store: &Store, collection: &str) -> u64 {
    store
        .database()
        .collection::<mongodb::bson::Document>(collection)
        .count_documents(mongodb::bson::doc! {})
        .await
        .expect("count")
}

/// Events over three UTC days, four names, two users, with ordinary properties.
fn sample(prefix: &str, n: usize) -> Vec<BufferedEvent> {
    let names = ["view", "signup", "purchase", "churn"];
    (0..n)
        .map(|i| {
            let ts = T0 + ((i as i64 * 7_919) % 3_000) * 86_400;
            event(&format!("{prefix}{i}"), names[i % 4], ts, json!({ "i": i, "plan": "pro" }))
        })
        .collect()
}

#[tokio::test]
async fn events_read_from_blocks_equal_the_raw_events_odd_properties_included() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let store = store(&ferret).await;
    let odd = [
        json!({ "nested": { "a": [1, { "b": null }], "c": { "d": { "e": true } } } }),
        json!({ "ünïcödé 🎉": "日本語 \u{0} \"quoted\"", "emoji": ["👍", "\u{1F600}"] }),
        json!({ "a.b": 1, "$dollar": { "x.y": { "$z": 2 } }, "100%": "%2E", "%24": "$" }),
        json!({ "big": u64::MAX, "min": i64::MIN, "max": i64::MAX, "float": 1.5e300, "neg": -0.25, "one": 1.0 }),
        json!({}),
    ];
    let mut events: Vec<BufferedEvent> = odd
        .iter()
        .enumerate()
        // Half a day apart: one batch, three UTC days, three blocks.
        .map(|(i, p)| event(&format!("odd-{i}"), "view.page", T0 + i as i64 * DAY / 2, p.clone()))
        .collect();
    events[1].id_generated = true;
    if ferret.backend() == Backend::Postgresql {
        // PostgreSQL holds no NUL (U+0000) in any text, so FerretDB on it refuses the whole
        // document (ingest refuses such events first: docs/api.md); with that one character
        // changed, the same odd event round-trips as it does on SQLite and MongoDB.
        let nul = [EventWrite { partition: 3, position: pos(0), event: &events[1] }];
        let refused = store.insert_events(&nul, true).await;
        assert!(matches!(refused, Err(StoreError::Refused { events: 1, .. })), "{refused:?}");
        events[1].properties.insert("ünïcödé 🎉".to_string(), json!("日本語 \u{1} \"quoted\""));
    }
    let ids = write(&store, 3, 10, &events).await;
    assert_eq!(ids.len(), 3, "one block per UTC day: {ids:?}");
    assert!(ids[0].starts_with("0003|"), "{}", ids[0]);
    assert!(ids[0].ends_with("|2026-11-20|s"), "a small block: {}", ids[0]);

    let raw = raw_events(&store).await;
    let mut from_blocks = Vec::new();
    for id in &ids {
        from_blocks.extend(store.read_event_block(id).await.expect("read").expect("the block exists"));
    }
    assert_eq!(by_id(from_blocks), raw, "block events equal the raw ones");
    assert_eq!(raw["odd-3"].properties["big"], json!(u64::MAX as f64), "as the raw document has it");
    assert_eq!(raw["odd-2"].properties["$dollar"]["x.y"]["$z"], json!(2));
    assert!(store.read_event_block("0003|nope").await.expect("read").is_none());
    // Many at once (one find past 16 ids of a day), the missing ones absent.
    let mut asked: Vec<String> = (0..20).map(|i| format!("0003|a|b|2026-11-20|nope-{i}")).collect();
    asked.extend(ids.iter().cloned());
    let mut many = store.read_event_blocks(&asked).await.expect("read many");
    many.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(many.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), ids);
    assert_eq!(by_id(many.into_iter().flat_map(|(_, e)| e).collect()), raw);
    let streamed: Vec<(String, Vec<BufferedEvent>)> =
        futures::TryStreamExt::try_collect(store.stream_event_blocks(asked)).await.expect("stream");
    assert_eq!(by_id(streamed.into_iter().flat_map(|(_, e)| e).collect()), raw);

    let refs = store.event_block_refs(None, i64::MIN, i64::MAX).await.expect("refs");
    assert_eq!(refs.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), ids);
    assert_eq!(refs[0].partition, 3);
    assert_eq!((refs[0].lo, refs[0].hi, refs[0].events), (T0, T0 + DAY / 2, 2));
    assert_eq!(refs[0].names, vec!["view.page".to_string()]);

    // A redelivered batch writes the same blocks again: nothing new.
    assert_eq!(write(&store, 3, 10, &events).await, ids);
    assert_eq!(block_count(&store).await, 3);
    assert_eq!(entry_count(&store).await, 3);
    // Each in its day's collection, and its entry in its day's index.
    let days: std::collections::BTreeSet<String> = ids.iter().map(|id| block_collection(id)).collect();
    assert_eq!(days.len(), 3, "{days:?}");
    assert_eq!(
        index_collections(&store).await,
        ["event_block_index_20261120", "event_block_index_20261121", "event_block_index_20261122"]
    );
    // A time range reads the entries of its days only.
    let second_day = store.event_block_refs(None, T0 + DAY, T0 + 2 * DAY).await.expect("refs");
    assert_eq!(second_day.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), ids[1..2]);
}

#[tokio::test]
async fn events_between_filters_by_name_and_time_keeps_one_copy_and_refuses_too_many() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let store = store(&ferret).await;
    let events = sample("s", 400);
    for (i, chunk) in events.chunks(50).enumerate() {
        write(&store, (i % 3) as u32, i as u64 * 100, chunk).await;
    }
    // A crash before the ack: the redelivery, batched otherwise, writes other blocks with
    // the same events.
    let again: Vec<(StreamPosition, &BufferedEvent)> =
        events[20..130].iter().enumerate().map(|(i, e)| (pos(20 + i as u64), e)).collect();
    store.write_event_blocks(0, pos(20), pos(129), &again).await.expect("write again");

    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let cases: Vec<(Option<Vec<String>>, i64, i64)> = vec![
        (None, i64::MIN / 2, i64::MAX / 2),
        (Some(names(&["purchase"])), T0, T0 + DAY),
        (Some(names(&["view", "churn"])), T0 + DAY / 3, T0 + 2 * DAY + 5),
        (Some(names(&["nothing"])), i64::MIN / 2, i64::MAX / 2),
        (None, T0 + DAY, T0 + DAY),
    ];
    for (names, from, to) in cases {
        let got = store.events_between(names.as_deref(), from, to, 10_000).await.expect("events");
        let want: BTreeMap<String, BufferedEvent> = events
            .iter()
            .filter(|e| e.timestamp >= from && e.timestamp < to)
            .filter(|e| names.as_ref().is_none_or(|n| n.contains(&e.event)))
            .map(|e| (e.event_id.clone(), e.clone()))
            .collect();
        assert_eq!(by_id(got), want, "names {names:?} in [{from}, {to})");
    }

    // In a spawned task, as the query service and the processor run them (their futures
    // must be `Send`).
    let spawned = store.clone();
    let all =
        tokio::spawn(async move { spawned.events_between(None, i64::MIN / 2, i64::MAX / 2, 400).await })
            .await
            .expect("task")
            .expect("exactly the limit");
    assert_eq!(all.len(), 400);
    let over = store.events_between(None, i64::MIN / 2, i64::MAX / 2, 399).await;
    assert!(matches!(over, Err(StoreError::TooManyEvents { limit: 399 })), "{over:?}");
}

#[tokio::test]
async fn retention_deletes_expired_blocks_and_readers_skip_entries_whose_block_is_gone() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let store = store(&ferret).await;
    let now = T0 + 40 * DAY;
    let old = vec![event("old-1", "view", T0, json!({})), event("old-2", "view", T0 + 1, json!({}))];
    let recent =
        vec![event("new-1", "view", now - DAY - 1, json!({})), event("new-2", "view", now - 1, json!({}))];
    let old_ids = write(&store, 0, 0, &old).await;
    let recent_ids = write(&store, 0, 10, &recent).await;
    assert_eq!((old_ids.len(), recent_ids.len()), (1, 2));

    // A retention interrupted between a block and its entry: the entry stays, readers skip it.
    store
        .database()
        .collection::<mongodb::bson::Document>(&block_collection(&recent_ids[0]))
        .delete_one(mongodb::bson::doc! { "_id": &recent_ids[0] })
        .await
        .expect("delete one block");
    let left = store.events_between(None, i64::MIN / 2, i64::MAX / 2, 100).await.expect("events");
    assert_eq!(by_id(left).keys().cloned().collect::<Vec<_>>(), vec!["new-2", "old-1", "old-2"]);

    store.delete_expired(now, DurationSpec::days(30), false).await.expect("retention");
    assert!(store.read_event_block(&old_ids[0]).await.expect("read").is_none());
    let collections = store.database().list_collection_names().await.expect("collections");
    assert!(!collections.contains(&block_collection(&old_ids[0])), "an expired day's collection is dropped");
    assert!(collections.contains(&block_collection(&recent_ids[1])), "a kept day's collection stays");
    assert_eq!(
        index_collections(&store).await.len(),
        2,
        "an expired day's index is dropped: {collections:?}"
    );
    let refs: Vec<String> = store
        .event_block_refs(None, i64::MIN, i64::MAX)
        .await
        .expect("refs")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(refs, recent_ids, "expired entries are deleted, recent ones kept");
    let left = store.events_between(None, i64::MIN / 2, i64::MAX / 2, 100).await.expect("events");
    assert_eq!(by_id(left).keys().cloned().collect::<Vec<_>>(), vec!["new-2"]);
    assert!(raw_events(&store).await.keys().all(|id| id.starts_with("new-")), "raw events expire too");
}

#[tokio::test]
async fn compaction_merges_a_days_small_blocks_into_one_and_reads_stay_the_same() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let store = store(&ferret).await;
    // Ten small batches on one day, three on another, and two on partition 1.
    let day_one: Vec<BufferedEvent> =
        (0..50).map(|i| event(&format!("a{i}"), "view", T0 + i * 60_000, json!({ "i": i }))).collect();
    let day_two: Vec<BufferedEvent> =
        (0..15).map(|i| event(&format!("b{i}"), "buy", T0 + DAY + i, json!({}))).collect();
    let mut small = Vec::new();
    for (i, batch) in day_one.chunks(5).enumerate() {
        small.extend(write(&store, 0, i as u64 * 10, batch).await);
    }
    // One batch written twice under other boundaries: copies of the same events.
    let copies: Vec<(StreamPosition, &BufferedEvent)> =
        day_one[0..7].iter().enumerate().map(|(i, e)| (pos(i as u64), e)).collect();
    small.extend(store.write_event_blocks(0, pos(1), pos(7), &copies).await.expect("write copies"));
    for (i, batch) in day_two.chunks(5).enumerate() {
        write(&store, 0, 500 + i as u64 * 10, batch).await;
    }
    store.write_event_blocks(1, pos(0), pos(0), &[(pos(0), &day_one[0])]).await.expect("write partition 1");
    let before = by_id(store.events_between(None, i64::MIN / 2, i64::MAX / 2, 1_000).await.expect("events"));

    // A writer that wrote to day two only passes over day two: too few small blocks there.
    let mut day_two_only = CompactionDays::default();
    day_two_only.add_blocks(&[format!("0000|{}|{}|2026-11-21", pos(500).to_key(), pos(504).to_key())]);
    assert!(!day_two_only.is_empty());
    let passed = store.compact_event_blocks(0, day_two_only).await.expect("compact day two");
    assert!(passed.merged.is_empty() && passed.left.is_empty(), "{passed:?}");
    let none = store.compact_event_blocks(0, CompactionDays::default()).await.expect("compact no day");
    assert!(none.merged.is_empty(), "no day named, no day passed over: {none:?}");

    let spawned = store.clone();
    let compacted =
        tokio::spawn(async move { spawned.compact_event_blocks(0, CompactionDays::every()).await })
            .await
            .expect("task")
            .expect("compact");
    assert!(compacted.left.is_empty(), "{compacted:?}");
    let merged = compacted.merged;
    assert_eq!(merged.len(), 1, "{merged:?}");
    assert!(merged[0].starts_with("0000|") && merged[0].contains("|2026-11-20|c"), "{}", merged[0]);
    let merged_events = store.read_event_block(&merged[0]).await.expect("read").expect("merged block");
    assert_eq!(by_id(merged_events).len(), 50, "each event once");
    for id in &small {
        assert!(store.read_event_block(id).await.expect("read").is_none(), "{id} was merged");
    }
    // 1 merged + 3 of day two on partition 0, 1 on partition 1.
    assert_eq!(entry_count(&store).await, 5);
    assert_eq!(block_count(&store).await, 5);
    let after = by_id(store.events_between(None, i64::MIN / 2, i64::MAX / 2, 1_000).await.expect("events"));
    assert_eq!(after, before);
    let again = store.compact_event_blocks(0, CompactionDays::every()).await.expect("compact again");
    assert!(again.merged.is_empty(), "nothing left to merge: {again:?}");
}

#[tokio::test]
async fn small_blocks_wait_apart_from_a_days_big_ones_until_merged_into_them() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let store = store(&ferret).await;
    let events: Vec<BufferedEvent> =
        (0..2_200).map(|i| event(&format!("e{i}"), "view", T0 + i * 1_000, json!({ "i": i }))).collect();
    let (big_batch, small_batches) = events.split_at(1_000);
    let big = write(&store, 0, 0, big_batch).await;
    let mut small = Vec::new();
    for (i, batch) in small_batches.chunks(100).enumerate() {
        small.extend(write(&store, 0, 1_000 + i as u64 * 100, batch).await);
    }
    let (big_blocks, small_blocks) = ("event_blocks_20261120", "event_blocks_small_20261120");
    assert_eq!(big.iter().map(|id| block_collection(id)).collect::<Vec<_>>(), [big_blocks]);
    assert!(small.iter().all(|id| block_collection(id) == small_blocks), "{small:?}");
    assert_eq!((count(&store, big_blocks).await, count(&store, small_blocks).await), (1, 12));

    let compacted = store.compact_event_blocks(0, CompactionDays::every()).await.expect("compact");
    assert_eq!(compacted.merged.len(), 1, "{compacted:?}");
    assert_eq!(block_collection(&compacted.merged[0]), big_blocks, "1,200 events make a big block");
    assert_eq!((count(&store, big_blocks).await, count(&store, small_blocks).await), (2, 0));
    assert_eq!(entry_count(&store).await, 2);
    let read = by_id(store.events_between(None, i64::MIN / 2, i64::MAX / 2, 10_000).await.expect("events"));
    assert_eq!(read, by_id(events.clone()));

    // Retention drops the day's collections of small blocks too.
    write(&store, 1, 0, &small_batches[..3]).await;
    store.delete_expired(T0 + 40 * DAY, DurationSpec::days(30), false).await.expect("retention");
    let collections = store.database().list_collection_names().await.expect("collections");
    assert!(collections.iter().all(|c| !c.starts_with(EVENT_BLOCKS_PREFIX)), "{collections:?}");
}

#[tokio::test]
async fn rebuilt_blocks_hold_exactly_the_raw_events() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let store = store(&ferret).await;
    let events = sample("r", 2_500);
    // Raw events only, as stored before blocks existed...
    let writes: Vec<EventWrite<'_>> = events
        .iter()
        .enumerate()
        .map(|(i, e)| EventWrite { partition: (i % 2) as u32, position: pos(i as u64), event: e })
        .collect();
    store.insert_events(&writes, false).await.expect("insert");
    // ...and a stray block, which the rebuild replaces.
    let stray = event("stray", "view", T0, json!({}));
    store.write_event_blocks(0, pos(0), pos(0), &[(pos(0), &stray)]).await.expect("write");

    let written = store.rebuild_event_blocks().await.expect("rebuild");
    let refs = store.event_block_refs(None, i64::MIN, i64::MAX).await.expect("refs");
    assert_eq!(refs.iter().map(|r| r.id.clone()).collect::<BTreeSet<_>>(), written.into_iter().collect());
    assert!(refs.iter().all(|r| r.events <= 1_000 && r.id.contains("|r")), "{refs:?}");
    let partitions: BTreeSet<u32> = refs.iter().map(|r| r.partition).collect();
    assert_eq!(partitions, BTreeSet::from([0, 1]), "blocks keep the partition that stored the events");
    let got = by_id(store.events_between(None, i64::MIN / 2, i64::MAX / 2, 10_000).await.expect("events"));
    assert_eq!(got, raw_events(&store).await);
    assert_eq!(got.len(), 2_500);
}

#[tokio::test]
async fn blocks_an_older_version_kept_in_one_collection_are_read_until_a_rebuild_moves_them() {
    use futures::TryStreamExt;
    let ferret = FerretDb::start().await.expect("ferretdb");
    let store = store(&ferret).await;
    let events: Vec<BufferedEvent> =
        (0..40).map(|i| event(&format!("l{i}"), "view", T0 + i * (DAY / 10), json!({ "i": i }))).collect();
    let ids = write(&store, 0, 0, &events).await;
    assert_eq!(ids.len(), 4, "four days");
    // As an older version stored them: every block in one collection.
    let db = store.database();
    let legacy = db.collection::<mongodb::bson::Document>(LEGACY_EVENT_BLOCKS);
    for id in &ids {
        let day = db.collection::<mongodb::bson::Document>(&block_collection(id));
        let blocks: Vec<mongodb::bson::Document> =
            day.find(mongodb::bson::doc! {}).await.expect("find").try_collect().await.expect("read");
        legacy.insert_many(blocks).await.expect("move");
        day.drop().await.expect("drop");
    }
    assert_eq!(block_count(&store).await, 0);

    let read = by_id(store.events_between(None, i64::MIN / 2, i64::MAX / 2, 100).await.expect("events"));
    assert_eq!(read, by_id(events.clone()), "read from the older collection");
    assert_eq!(store.read_event_blocks(&ids).await.expect("by id").len(), 4);

    // Retention deletes an expired day's block there too (the first day: events 0 to 9).
    store.delete_expired(T0 + 31 * DAY, DurationSpec::days(30), false).await.expect("retention");
    assert_eq!(count(&store, LEGACY_EVENT_BLOCKS).await, 3, "the expired day's block is gone");
    let kept = by_id(events[10..].to_vec());
    let read = by_id(store.events_between(None, i64::MIN / 2, i64::MAX / 2, 100).await.expect("events"));
    assert_eq!(read, kept);

    store.rebuild_event_blocks().await.expect("rebuild");
    let collections = db.list_collection_names().await.expect("collections");
    assert!(!collections.iter().any(|c| c == LEGACY_EVENT_BLOCKS), "the rebuild drops it: {collections:?}");
    assert_eq!(block_count(&store).await, 3);
    let rebuilt = by_id(store.events_between(None, i64::MIN / 2, i64::MAX / 2, 100).await.expect("events"));
    assert_eq!(rebuilt, kept);
}

#[tokio::test]
async fn the_index_an_older_version_kept_in_one_collection_is_read_then_moved_into_its_days() {
    use futures::TryStreamExt;
    let ferret = FerretDb::start().await.expect("ferretdb");
    let store = store(&ferret).await;
    let now = T0 + 40 * DAY;
    let expired = vec![event("x1", "view", T0 - DAY, json!({}))];
    let kept: Vec<BufferedEvent> =
        (0..30).map(|i| event(&format!("k{i}"), "view", now - 3 * DAY + i * (DAY / 10), json!({}))).collect();
    let expired_ids = write(&store, 0, 0, &expired).await;
    let kept_ids = write(&store, 1, 10, &kept).await;
    assert_eq!(kept_ids.len(), 3);
    // As an older version indexed them: every entry in one collection.
    let db = store.database();
    let legacy = db.collection::<mongodb::bson::Document>(LEGACY_EVENT_BLOCK_INDEX);
    for index in index_collections(&store).await {
        let day = db.collection::<mongodb::bson::Document>(&index);
        let entries: Vec<mongodb::bson::Document> =
            day.find(mongodb::bson::doc! {}).await.expect("find").try_collect().await.expect("read");
        legacy.insert_many(entries).await.expect("move");
        day.drop().await.expect("drop");
    }
    assert_eq!(entry_count(&store).await, 0);
    let all = |s: &Store| {
        let s = s.clone();
        async move { by_id(s.events_between(None, i64::MIN / 2, i64::MAX / 2, 100).await.expect("events")) }
    };
    assert_eq!(all(&store).await.len(), 31, "read through the older index");
    assert_eq!(store.oldest_event_time().await.expect("oldest"), Some(T0 - DAY));

    // Retention finds the expired block through it.
    store.delete_expired(now, DurationSpec::days(30), false).await.expect("retention");
    assert!(store.read_event_block(&expired_ids[0]).await.expect("read").is_none());
    assert_eq!(all(&store).await, by_id(kept.clone()));

    // A start moves the rest into the days' collections and drops it.
    store.ensure_schema().await.expect("schema moves the index");
    let collections = db.list_collection_names().await.expect("collections");
    assert!(!collections.iter().any(|c| c == LEGACY_EVENT_BLOCK_INDEX), "{collections:?}");
    assert_eq!(index_collections(&store).await.len(), 3);
    assert_eq!(entry_count(&store).await, 3);
    let refs = store.event_block_refs(None, i64::MIN, i64::MAX).await.expect("refs");
    assert_eq!(refs.into_iter().map(|r| r.id).collect::<Vec<_>>(), kept_ids);
    assert_eq!(all(&store).await, by_id(kept));
    assert_eq!(store.oldest_event_time().await.expect("oldest"), Some(now - 3 * DAY));
    store.ensure_schema().await.expect("again: nothing to move");
}

#[tokio::test]
async fn a_days_raw_events_expire_whole_however_many_they_are() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let store = store(&ferret).await;
    let now = T0 + 40 * DAY;
    // More events in a day than FerretDB on SQLite deletes in one request (32,766).
    let old: Vec<BufferedEvent> =
        (0..40_000).map(|i| event(&format!("old-{i}"), "view", T0 + i, json!({}))).collect();
    for (n, chunk) in old.chunks(5_000).enumerate() {
        write(&store, 0, (n * 5_000) as u64, chunk).await;
    }
    let kept = write(&store, 0, 50_000, &[event("kept-1", "view", now - DAY, json!({}))]).await;

    store.delete_expired(now, DurationSpec::days(30), false).await.expect("retention");
    let collections = store.database().list_collection_names().await.expect("collections");
    assert!(
        !collections.contains(&pulse_store::raw_collection(T0)),
        "the expired day's raw events go: {collections:?}"
    );
    assert!(collections.contains(&pulse_store::raw_collection(now - DAY)), "{collections:?}");
    assert!(collections.contains(&block_collection(&kept[0])), "{collections:?}");
    let left = raw_events(&store).await;
    assert_eq!(left.keys().collect::<Vec<_>>(), ["kept-1"]);
}

#[tokio::test]
async fn an_event_id_is_one_event_within_its_utc_day() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let store = store(&ferret).await;
    let first = event("same", "view", T0 + 1_000, json!({}));
    let again_that_day = event("same", "view", T0 + DAY - 1, json!({}));
    let next_day = event("same", "view", T0 + DAY, json!({}));
    let insert = |events: Vec<BufferedEvent>, first: u64| {
        let store = store.clone();
        async move {
            let writes: Vec<EventWrite<'_>> = events
                .iter()
                .enumerate()
                .map(|(i, e)| EventWrite { partition: 0, position: pos(first + i as u64), event: e })
                .collect();
            store.insert_events(&writes, false).await.expect("insert")
        }
    };
    assert_eq!(
        insert(vec![first.clone(), again_that_day.clone()], 0).await,
        [true, false],
        "a copy in the batch"
    );
    assert_eq!(insert(vec![again_that_day], 10).await, [false], "a later copy the same UTC day");
    // Another UTC day's event with the same id is another event (docs/exactness.md).
    assert_eq!(insert(vec![next_day.clone(), next_day], 20).await, [true, false]);
    assert_eq!(store.raw_event_documents(mongodb::bson::doc! {}).await.expect("raw").len(), 2);
}

#[tokio::test]
async fn blocks_expire_even_when_the_store_refuses_to_delete_an_older_versions_raw_events_at_once() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let store = store(&ferret).await;
    let now = T0 + 40 * DAY;
    let old_ids = write(&store, 0, 0, &[event("old-1", "view", T0, json!({}))]).await;
    // More expired raw events in the single collection of versions before the day
    // collections than FerretDB on SQLite deletes in one request (32,766).
    let events =
        store.database().collection::<mongodb::bson::Document>(pulse_store::collections::LEGACY_EVENTS);
    let at = mongodb::bson::DateTime::from_millis(T0 + 1);
    let expired: Vec<mongodb::bson::Document> =
        (0..40_000).map(|i| mongodb::bson::doc! { "_id": format!("bulk-{i}"), "ts": at }).collect();
    for chunk in expired.chunks(5_000) {
        events.insert_many(chunk.to_vec()).await.expect("insert expired raw events");
    }

    let outcome = store.delete_expired(now, DurationSpec::days(30), false).await;
    let collections = store.database().list_collection_names().await.expect("collections");
    assert!(
        !collections.contains(&block_collection(&old_ids[0])),
        "the expired day's blocks go: {outcome:?}"
    );
    let left = events.count_documents(mongodb::bson::doc! {}).await.expect("count");
    match outcome {
        // The store took the deletion (PostgreSQL takes more parameters).
        Ok(_) => assert_eq!(left, 0, "expired raw events are deleted"),
        // It refused: said, not hidden.
        Err(e) => assert!(left > 0 && !e.to_string().is_empty(), "{e}"),
    }
}
