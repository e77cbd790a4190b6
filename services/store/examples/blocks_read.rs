//! How fast `Store::events_between` reads events from event blocks, next to a plain find of
//! raw event documents on the same server (FerretDB 1.24 on SQLite, started here).
//!
//!   cargo run --release -p pulse-store --example blocks_read
//!
//! Knobs (environment): BLOCKS_EVENTS (events written as blocks of 1,000, default
//! 1,000,000), BLOCKS_RAW (raw documents inserted and read back for comparison, default
//! 50,000).

use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Document, doc};
use pulse_core::buffer::BufferedEvent;
use pulse_core::rollup::StreamPosition;
use pulse_store::collections::EVENT_BLOCK_INDEX_PREFIX;
use pulse_store::recount::event_of_document;
use pulse_store::{EventWrite, Store};

const BLOCK: usize = 1_000;
const PARTITIONS: usize = 8;
const DAY: i64 = 86_400_000;
const NAMES: [&str; 8] =
    ["page_viewed", "signed_up", "purchase", "checkout_started", "search", "invite_sent", "logout", "login"];

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Events over 30 days in time order (as batches arrive), with typical small properties.
fn events(prefix: &str, n: usize, end: i64) -> Vec<BufferedEvent> {
    let start = end - 30 * DAY;
    let step = (30 * DAY) / n.max(1) as i64;
    (0..n)
        .map(|i| {
            let ts = start + i as i64 * step;
            let mut properties = serde_json::Map::new();
            properties.insert("plan".into(), if i % 3 == 0 { "pro".into() } else { "free".into() });
            properties.insert("revenue".into(), serde_json::json!((i % 10_000) as f64 / 100.0));
            properties.insert("path".into(), format!("/page/{}", i % 500).into());
            BufferedEvent {
                event_id: format!("{prefix}{i:08}-{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                id_generated: false,
                event: NAMES[(i * 7 + i / 13) % NAMES.len()].to_string(),
                distinct_id: format!("user-{}", (i * 31) % 10_000),
                timestamp: ts,
                received_at: ts + 150,
                properties,
            }
        })
        .collect()
}

fn rate(n: usize, seconds: f64) -> String {
    format!("{:.0} events/s", n as f64 / seconds)
}

#[tokio::main]
async fn main() {
    let total = knob("BLOCKS_EVENTS", 1_000_000);
    let raw_docs = knob("BLOCKS_RAW", 50_000);
    let ferret = pulse_testkit::FerretDb::start().await.expect("start FerretDB");
    let client = ferret.client().await.expect("client");
    let store = Store::new(client.database("blocks_read"));
    store.ensure_schema().await.expect("schema");
    let end = jiff::Timestamp::now().as_millisecond();

    let all = events("b", total, end);
    let started = Instant::now();
    let writes: Vec<_> = all
        .chunks(BLOCK)
        .enumerate()
        .map(|(i, chunk)| {
            let store = store.clone();
            let chunk: Vec<BufferedEvent> = chunk.to_vec();
            async move {
                let at = |n: usize| StreamPosition { millis: 1_000 + n as u64, sequence: 0 };
                let refs: Vec<(StreamPosition, &BufferedEvent)> =
                    chunk.iter().enumerate().map(|(j, e)| (at(i * BLOCK + j), e)).collect();
                store
                    .write_event_blocks(
                        (i % PARTITIONS) as u32,
                        at(i * BLOCK),
                        at(i * BLOCK + BLOCK - 1),
                        &refs,
                    )
                    .await
            }
        })
        .collect();
    let ids: Vec<Vec<String>> =
        futures::stream::iter(writes).buffered(4).try_collect().await.expect("write blocks");
    let written = started.elapsed().as_secs_f64();
    let blocks: usize = ids.iter().map(Vec::len).sum();
    let mut bytes: i64 = 0;
    for name in store.database().list_collection_names().await.expect("collections") {
        if !name.starts_with(EVENT_BLOCK_INDEX_PREFIX) {
            continue;
        }
        let mut cursor = store.database().collection::<Document>(&name).find(doc! {}).await.expect("index");
        while let Some(d) = cursor.try_next().await.expect("cursor") {
            bytes += d.get_i64("bytes").unwrap_or(0);
        }
    }
    println!(
        "wrote {total} events as {blocks} blocks in {written:.2} s ({}), {:.1} MB compressed, {:.1} bytes/event",
        rate(total, written),
        bytes as f64 / 1e6,
        bytes as f64 / total as f64
    );

    let listed = Instant::now();
    let refs = store.event_block_refs(None, i64::MIN / 2, i64::MAX / 2).await.expect("refs");
    println!("event_block_refs (all {}): {:.3} s", refs.len(), listed.elapsed().as_secs_f64());

    // One block at a time by `_id`, as a follower of new blocks reads them.
    let started = Instant::now();
    let sample = &refs[..refs.len().min(100)];
    for r in sample {
        store.read_event_block(&r.id).await.expect("read block").expect("block exists");
    }
    println!(
        "read_event_block, one at a time: {:.1} ms per block ({} blocks)",
        started.elapsed().as_secs_f64() * 1000.0 / sample.len().max(1) as f64,
        sample.len()
    );

    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases: [(&str, Option<Vec<String>>, i64, i64); 4] = [
        ("all events, all time", None, i64::MIN / 2, i64::MAX / 2),
        ("all events, all time (again)", None, i64::MIN / 2, i64::MAX / 2),
        ("one name (1/8), all time", Some(names(&["purchase"])), i64::MIN / 2, i64::MAX / 2),
        ("two names, last 7 days", Some(names(&["signed_up", "purchase"])), end - 7 * DAY, end + 1),
    ];
    for (label, names, from, to) in cases {
        let started = Instant::now();
        let got = store.events_between(names.as_deref(), from, to, 2 * total).await.expect("events_between");
        let s = started.elapsed().as_secs_f64();
        println!("events_between, {label}: {} events in {s:.3} s ({})", got.len(), rate(got.len(), s));
    }

    // The same machine's raw read: documents as the processor stores them, one find.
    let raw = events("r", raw_docs, end);
    let started = Instant::now();
    for chunk in raw.chunks(BLOCK) {
        let writes: Vec<EventWrite<'_>> = chunk
            .iter()
            .enumerate()
            .map(|(i, event)| EventWrite {
                partition: 0,
                position: StreamPosition { millis: i as u64, sequence: 0 },
                event,
            })
            .collect();
        store.insert_events(&writes, false).await.expect("insert raw");
    }
    let inserted = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let (mut n, mut raw_bytes) = (0, 0);
    let mut buffer = Vec::new();
    for collection in store.raw_event_collections().await.expect("collections") {
        let mut cursor =
            store.database().collection::<Document>(&collection).find(doc! {}).await.expect("find");
        while let Some(d) = cursor.try_next().await.expect("cursor") {
            buffer.clear();
            d.to_writer(&mut buffer).expect("encode");
            raw_bytes += buffer.len();
            std::hint::black_box(event_of_document(&d));
            n += 1;
        }
    }
    let s = started.elapsed().as_secs_f64();
    println!(
        "raw documents: inserted {raw_docs} in {inserted:.2} s; read {n} in {s:.3} s ({}), {:.0} BSON bytes/event",
        rate(n, s),
        raw_bytes as f64 / n.max(1) as f64
    );
}
