//! Poison in the buffer: events no store takes (as a gap in ingest's validation would let
//! through) and entries that are not events. The partition moves on, every other event is
//! stored exactly once with rollups equal to a recount, the poison is listed as failed
//! events, and `replay-failed` sends failed events back once they can be stored.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use pulse_core::buffer::{BufferedEvent, partition_of};
use pulse_store::{FailedEvent, FailureReason};
use pulse_testkit::{FerretDb, RedisServer};
use serde_json::{Value, json};
use support::{Pipeline, events};

const DRAIN: Duration = Duration::from_secs(120);

fn buffered(id: &str, user: &str, properties: Value) -> BufferedEvent {
    let now = jiff::Timestamp::now().as_millisecond();
    serde_json::from_value(json!({
        "event_id": id, "event": "purchase", "distinct_id": user, "timestamp": now - 1000,
        "received_at": now, "properties": properties,
    }))
    .expect("event")
}

/// Appends `payload` to the user's partition as ingest would, bypassing its validation.
async fn append_raw(
    pipeline: &Pipeline,
    conn: &mut pulse_buffer::Connection,
    user: &str,
    payload: &[u8],
    n: u64,
) {
    let partition = partition_of(user, pipeline.partitions);
    pulse_buffer::append_entry(conn, &pipeline.tenant, partition, payload, n).await.expect("append");
}

fn replay(pipeline: &Pipeline, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pulse-processor"))
        .arg("--config")
        .arg(&pipeline.config)
        .arg("--log-format")
        .arg("text")
        .arg("replay-failed")
        .args(args)
        .output()
        .expect("run replay-failed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_are_set_aside_and_the_partition_moves_on() {
    let redis = RedisServer::start().await.expect("redis");
    let ferret = FerretDb::start().await.expect("ferretdb");
    let pipeline = Pipeline::new(&redis.url(), false, &ferret, 2);
    let ingest = pipeline.start_ingest().await;
    let processor = pipeline.start_processor("processor");
    let mut conn =
        pulse_buffer::Connection::open(&redis.url(), false, Duration::from_secs(5)).await.expect("redis");

    let before = events("before", 300, 20, 1);
    ingest.send(&before).await;
    // Entries mixing good events with poison, for users who also have good events elsewhere:
    // nested arrays (FerretDB refuses them), a NUL in a key (no MongoDB takes it), and a
    // refused first copy of an id whose second copy is fine.
    let mut good = BTreeSet::new();
    let mut poison = BTreeSet::new();
    for (i, bad) in
        [json!({"matrix": [[1, 2], [3]]}), json!({"a\u{0}b": 1}), json!({"deep": {"x": [[true]]}})]
            .into_iter()
            .enumerate()
    {
        let user = format!("user-{i}");
        let entry = [
            buffered(&format!("g1-{i}"), &user, json!({"revenue": 1.5})),
            buffered(&format!("p-{i}"), &user, bad),
            buffered(&format!("g2-{i}"), &user, json!({"revenue": 2.5})),
        ];
        good.extend([format!("g1-{i}"), format!("g2-{i}")]);
        poison.insert(format!("p-{i}"));
        append_raw(&pipeline, &mut conn, &user, &serde_json::to_vec(&entry).expect("json"), 3).await;
    }
    let retried = [
        buffered("r-0", "user-9", json!({"bad": [["x"]]})),
        buffered("r-0", "user-9", json!({"good": ["x"]})),
    ];
    good.insert("r-0".to_string());
    // A name no store takes in a rollup update path (a NUL), though the raw document holds
    // it as a value; and one that FerretDB refused there before keys were encoded (white
    // space at its ends), now stored.
    let mut odd = buffered("n-0", "user-7", json!({}));
    odd.event = "checkout\u{0}done".to_string();
    let mut spaced = buffered("s-0", "user-7", json!({}));
    spaced.event = "\u{85}`WH\u{337d6}L ".to_string();
    good.insert("s-0".to_string());
    let named = [buffered("g-7", "user-7", json!({})), odd, spaced];
    good.insert("g-7".to_string());
    poison.insert("n-0".to_string());
    append_raw(&pipeline, &mut conn, "user-7", &serde_json::to_vec(&named).expect("json"), 3).await;
    append_raw(&pipeline, &mut conn, "user-9", &serde_json::to_vec(&retried).expect("json"), 2).await;
    append_raw(&pipeline, &mut conn, "user-5", b"this is not a JSON array", 0).await;
    // An event whose profile change names an empty property: stores take no empty name as
    // an update path, but profile changes are inserted records that hold names as values,
    // so it is stored and applied like any other. (What a store still refuses of a change,
    // it refuses of the event that carries it: `profiles.rs` in the store's tests covers
    // the set-aside of a refused change.)
    let profile = [buffered("prof-0", "user-8", json!({"$unset": [""], "$set": {"plan": "pro"}}))];
    good.insert("prof-0".to_string());
    append_raw(&pipeline, &mut conn, "user-8", &serde_json::to_vec(&profile).expect("json"), 1).await;
    let after = events("after", 300, 20, 2);
    ingest.send(&after).await;

    pipeline.wait_drained(DRAIN).await;
    let ids = |events: &[Value]| -> BTreeSet<String> {
        events.iter().map(|e| e["event_id"].as_str().expect("id").to_string()).collect()
    };
    let mut stored: BTreeSet<String> = ids(&before).union(&ids(&after)).cloned().collect();
    stored.extend(good.iter().cloned());
    // Raw events are exactly the storable ones, and no rollup counts a failed event.
    pipeline.assert_exact(&stored).await;
    pipeline.assert_blocks_hold_the_raw_events().await;

    let store = pipeline.store().await;
    let failed = store.list_failed_events(None, 100).await.expect("failed events");
    let refused: BTreeSet<String> = failed
        .iter()
        .filter(|f| f.reason == FailureReason::StoreRefused)
        .filter_map(|f| f.event_id.clone())
        .collect();
    let mut expected = poison.clone();
    expected.insert("r-0".to_string());
    assert_eq!(refused, expected, "every refused event is listed, and only those");
    assert!(failed.iter().all(|f| !f.detail.is_empty()), "each says what the store said");
    let undecodable: Vec<&FailedEvent> =
        failed.iter().filter(|f| f.reason == FailureReason::UndecodableEntry).collect();
    assert_eq!(undecodable.len(), 1, "the entry that is not events is listed");
    assert_eq!(undecodable[0].payload, "this is not a JSON array");
    assert!(
        !failed.iter().any(|f| f.reason == FailureReason::ProfileRefused),
        "the profile change with an empty name is taken: {failed:?}"
    );
    let user8 = store.profile("user-8").await.expect("read").expect("user-8 has a profile");
    assert_eq!(Value::Object(user8), json!({ "plan": "pro" }));
    let nul = failed.iter().find(|f| f.event_id.as_deref() == Some("p-1")).expect("the NUL event");
    assert_eq!(
        nul.event().expect("its payload is the event").properties.keys().next().map(String::as_str),
        Some("a\u{0}b"),
        "the payload keeps the event as sent"
    );
    let log = std::fs::read_to_string(pipeline.dir().join("processor.log")).unwrap_or_default();
    assert!(!log.contains("matrix"), "no event payload in the processor's logs");

    // The query API lists them with the read key, a page at a time.
    let query = pipeline.start_query().await;
    let http = reqwest::Client::new();
    let page = |after: Option<String>| {
        let mut params = vec![("limit", "4".to_string())];
        params.extend(after.map(|after| ("after", after)));
        let url =
            reqwest::Url::parse_with_params(&format!("{query}/v1/failed-events"), &params).expect("url");
        http.get(url).header("Authorization", "bearer rk").send()
    };
    let (mut listed, mut after) = (Vec::new(), None);
    loop {
        let reply = page(after.clone()).await.expect("query answers");
        assert_eq!(reply.status(), 200);
        let body: Value = reply.json().await.expect("json");
        let items = body["result"]["failedEvents"].as_array().expect("a list").clone();
        listed.extend(items.iter().map(|f| f["id"].as_str().expect("id").to_string()));
        match body["result"]["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    let recorded: Vec<String> = failed.iter().map(|f| f.id.clone()).collect();
    assert_eq!(listed, recorded, "the API pages through every failed event, in id order");
    let refused =
        http.get(format!("{query}/v1/failed-events")).header("Authorization", "Bearer wrong").send().await;
    assert_eq!(refused.expect("answers").status(), 401, "the read key is required");

    // Replaying events the store still refuses sets them aside again, under new entries.
    let out = replay(&pipeline, &[]);
    assert!(out.status.success(), "replay-failed: {}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("replayed 5 failed events"), "it says what it did: {said}");
    assert!(said.contains("skipped 1 record that is not an event"), "{said}");
    pipeline.wait_drained(DRAIN).await;
    let again = store.list_failed_events(None, 100).await.expect("failed events");
    let again_ids: BTreeSet<String> = again.iter().filter_map(|f| f.event_id.clone()).collect();
    // (r-0's refused copy too: the store refuses the document before it sees its id.)
    assert_eq!(again_ids, expected, "still refused, still listed");
    assert!(again.iter().all(|f| !failed.iter().any(|old| old.id == f.id && old.event_id.is_some())));

    // After a fix (here: a failed event that a store can take), a replay stores it.
    let fixed = buffered("fixed-1", "user-3", json!({"revenue": 4.0}));
    store
        .record_failed_events(&[FailedEvent::refused(0, "1-0", 0, &fixed, "refused by an older Pulse")])
        .await
        .expect("record");
    let out = replay(&pipeline, &["--id", "0|1-0|0"]);
    assert!(out.status.success(), "replay-failed: {}", String::from_utf8_lossy(&out.stderr));
    pipeline.wait_drained(DRAIN).await;
    stored.insert("fixed-1".to_string());
    pipeline.assert_exact(&stored).await;
    let left = store.list_failed_events(None, 100).await.expect("failed events");
    assert!(!left.iter().any(|f| f.id == "0|1-0|0"), "a replayed event is no longer listed");

    // Discarding forgets the undecodable entry.
    let out = replay(&pipeline, &["--discard", "--id", &undecodable[0].id]);
    assert!(out.status.success());
    assert_eq!(store.count_failed_events().await.expect("count"), expected.len() as u64);
    drop(processor);
}
