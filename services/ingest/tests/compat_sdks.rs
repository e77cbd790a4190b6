//! The official Segment and PostHog Python SDKs, unchanged but for their host, send to
//! ingest's compat endpoints; every call lands in the buffer exactly once, with the SDK's
//! message id, the right user, name, time and properties, also through the SDKs' own
//! retries. The SDKs are installed by tests/env/python-sdks.sh (`make env`).

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use pulse_core::buffer::{BufferedEvent, partition_of};
use pulse_testkit::RedisServer;
use serde_json::{Value, json};
use support::{Pipeline, TestIngest};

/// The venv's python: `PULSE_SDK_PYTHON`, else the one `make env` installs.
fn sdk_python() -> PathBuf {
    if let Some(python) = std::env::var_os("PULSE_SDK_PYTHON") {
        return PathBuf::from(python);
    }
    let cache = std::env::var_os("PULSE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/pulse")
    });
    let python = cache.join("venv-sdks/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make env` (tests/env/python-sdks.sh) to install the SDKs",
        python.display()
    );
    python
}

/// Runs `script` (in tests/sdk) with `plan` on stdin; returns what it printed.
async fn run_sdk(script: &'static str, plan: Value) -> Value {
    use tokio::io::AsyncWriteExt;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk").join(script);
    let mut child = tokio::process::Command::new(sdk_python())
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the SDK script");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(plan.to_string().as_bytes()).await.expect("write the plan");
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the SDK script finishes")
        .expect("SDK script output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("{script} printed no report ({e}): {}\n{stderr}", String::from_utf8_lossy(&output.stdout))
    });
    assert_eq!(report["errors"], json!([]), "the SDK reported no failed upload; stderr: {stderr}");
    report
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).expect("timestamp").to_string()
}

fn ms_of(iso: &str) -> i64 {
    iso.parse::<jiff::Timestamp>().expect("the SDK's timestamp is RFC 3339").as_millisecond()
}

/// The buffered events by id, asserting each is buffered once, in its user's partition.
async fn buffered_once(ingest: &TestIngest) -> HashMap<String, BufferedEvent> {
    let mut by_id = HashMap::new();
    for (partition, e) in ingest.buffered().await {
        assert_eq!(
            partition,
            partition_of(&e.distinct_id, ingest.partitions),
            "{} in its user's partition",
            e.event_id
        );
        assert!(!e.id_generated, "{} carries the SDK's id", e.event_id);
        let id = e.event_id.clone();
        assert!(by_id.insert(id.clone(), e).is_none(), "{id} is buffered twice");
    }
    by_id
}

/// The stored time is the SDK's event time corrected by the client's clock skew: on one
/// machine the correction is the send latency, so it lies between the SDK's time and the
/// receive time, and never before the SDK's time (1 ms for rounding).
fn assert_time(e: &BufferedEvent, sdk_time: i64, started: i64) {
    assert!(
        e.timestamp >= sdk_time - 1 && e.timestamp - sdk_time <= e.received_at - started,
        "{}: stored {} for the SDK's {} (received {}, sent after {})",
        e.event_id,
        e.timestamp,
        sdk_time,
        e.received_at,
        started
    );
}

fn segment_plan(ingest: &TestIngest, calls: Vec<Value>, batch_size: usize) -> Value {
    json!({ "host": format!("{}/compat/segment", ingest.url), "key": ingest.write_key, "gzip": true, "batch_size": batch_size, "calls": calls })
}

fn posthog_plan(ingest: &TestIngest, calls: Vec<Value>, batch_size: usize) -> Value {
    json!({ "host": format!("{}/compat/posthog", ingest.url), "key": ingest.write_key, "gzip": true, "batch_size": batch_size, "calls": calls })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_sdk_calls_land_once_with_their_ids_users_names_times_and_properties() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline { partitions: 4, ..Pipeline::default() }).await;
    let started = now_ms();
    let hour_ago = started - 3_600_000;
    let calls = vec![
        json!({ "call": "track", "user": "u-1", "event": "Signed Up", "properties": { "plan": "pro", "seats": 3 }, "timestamp": iso(hour_ago) }),
        json!({ "call": "identify", "user": "u-1", "traits": { "email": "ada@example.com", "plan": "pro" } }),
        json!({ "call": "page", "anonymous": "anon-7", "category": "Docs", "name": "Pricing", "properties": { "url": "/pricing" } }),
        json!({ "call": "screen", "user": "u-2", "anonymous": "anon-8", "name": "Home" }),
        json!({ "call": "group", "user": "u-2", "group": "acme", "traits": { "seats": 12 } }),
        json!({ "call": "alias", "user": "u-2", "previous": "anon-8" }),
    ];
    let report = run_sdk("segment_send.py", segment_plan(&ingest, calls, 100)).await;
    let sent = report["sent"].as_array().expect("sent");
    let buffered = buffered_once(&ingest).await;
    assert_eq!(buffered.len(), sent.len(), "every call once, nothing else");

    let expected = [
        ("Signed Up", "u-1", json!({ "plan": "pro", "seats": 3 })),
        ("$identify", "u-1", json!({ "$set": { "email": "ada@example.com", "plan": "pro" } })),
        (
            "$pageview",
            "anon-7",
            json!({ "url": "/pricing", "$page_name": "Pricing", "$page_category": "Docs" }),
        ),
        ("$screen", "u-2", json!({ "$screen_name": "Home", "$anonymous_id": "anon-8" })),
        ("$group", "u-2", json!({ "$group_id": "acme", "$group_traits": { "seats": 12 } })),
        ("$create_alias", "u-2", json!({ "$previous_id": "anon-8" })),
    ];
    for (message, (name, user, properties)) in sent.iter().zip(expected) {
        let id = message["messageId"].as_str().expect("messageId");
        let e = buffered.get(id).unwrap_or_else(|| panic!("{name} ({id}) is buffered"));
        assert_eq!((e.event.as_str(), e.distinct_id.as_str()), (name, user), "{id}");
        let mut stored = e.properties.clone();
        let context = stored.remove("$context").expect("the SDK's context is kept");
        assert_eq!(context["library"]["name"], "analytics-python");
        assert_eq!(Value::Object(stored), properties, "{name}");
        assert_time(e, ms_of(message["timestamp"].as_str().expect("timestamp")), started);
    }
    let first = &buffered[sent[0]["messageId"].as_str().expect("id")];
    assert!(
        (first.timestamp - hour_ago).abs() < 3_600_000 / 2,
        "an explicit past time is kept, not the send time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posthog_sdk_captures_and_person_updates_land_once() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline { partitions: 4, ..Pipeline::default() }).await;
    let started = now_ms();
    let calls = vec![
        json!({ "call": "capture", "user": "u-1", "event": "clicked", "properties": { "button": "buy", "price": 9.5 }, "timestamp": iso(started - 3_600_000) }),
        json!({ "call": "capture", "user": "u-1", "event": "$pageview", "properties": { "$current_url": "https://example.com/pricing" } }),
        json!({ "call": "set", "user": "u-1", "properties": { "email": "ada@example.com" } }),
        json!({ "call": "set_once", "user": "u-2", "properties": { "first_plan": "free" } }),
        json!({ "call": "capture", "user": "u-2", "event": "upgraded", "properties": { "$set": { "plan": "pro" } } }),
    ];
    let report = run_sdk("posthog_send.py", posthog_plan(&ingest, calls, 100)).await;
    let sent = report["sent"].as_array().expect("sent");
    let buffered = buffered_once(&ingest).await;
    assert_eq!(buffered.len(), sent.len(), "every call once, nothing else");

    let expected = [
        ("clicked", "u-1", json!({ "button": "buy", "price": 9.5 })),
        ("$pageview", "u-1", json!({ "$current_url": "https://example.com/pricing" })),
        ("$set", "u-1", json!({ "$set": { "email": "ada@example.com" } })),
        ("$set_once", "u-2", json!({ "$set_once": { "first_plan": "free" } })),
        ("upgraded", "u-2", json!({ "$set": { "plan": "pro" } })),
    ];
    for (message, (name, user, properties)) in sent.iter().zip(expected) {
        let id = message["uuid"].as_str().expect("uuid");
        let e = buffered.get(id).unwrap_or_else(|| panic!("{name} ({id}) is buffered"));
        assert_eq!((e.event.as_str(), e.distinct_id.as_str()), (name, user), "{id}");
        assert_eq!(e.properties["$lib"], "posthog-python", "the SDK's own properties are kept");
        let mine: serde_json::Map<String, Value> = e
            .properties
            .iter()
            .filter(|(k, _)| properties.get(k.as_str()).is_some())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(Value::Object(mine), properties, "{name}");
        assert!(!e.properties.contains_key("token"), "the API key is not a property");
        assert_time(e, ms_of(message["timestamp"].as_str().expect("timestamp")), started);
    }
}

/// `count` calls over 97 users, each with its index as a property.
fn many(count: usize, call: &str) -> Vec<Value> {
    (0..count)
        .map(|i| json!({ "call": call, "user": format!("user-{}", i % 97), "event": "bulk", "properties": { "i": i } }))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_a_thousand_from_each_sdk_land_once() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline { partitions: 8, ..Pipeline::default() }).await;
    let segment = run_sdk("segment_send.py", segment_plan(&ingest, many(3000, "track"), 1000)).await;
    let posthog = run_sdk("posthog_send.py", posthog_plan(&ingest, many(3000, "capture"), 1000)).await;
    let buffered = buffered_once(&ingest).await;
    assert_eq!(buffered.len(), 6000);
    for (report, id_field) in [(&segment, "messageId"), (&posthog, "uuid")] {
        for (i, message) in report["sent"].as_array().expect("sent").iter().enumerate() {
            let e = &buffered[message[id_field].as_str().expect("id")];
            assert_eq!(
                (e.distinct_id.clone(), e.properties["i"].clone()),
                (format!("user-{}", i % 97), json!(i))
            );
        }
    }
    let metrics = ingest.http.get(format!("{}/metrics", ingest.url)).send().await.expect("metrics");
    let text = metrics.text().await.expect("metrics text");
    let sizes: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("pulse_ingest_batch_events_sum") || l.starts_with("pulse_ingest_batch_events_count")
        })
        .collect();
    println!("requests and events per request: {sizes:?}");
}

/// Requests the buffer refused with 503 so far.
async fn unavailable_count(ingest: &TestIngest) -> u64 {
    let text = ingest
        .http
        .get(format!("{}/metrics", ingest.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|l| {
            l.starts_with("pulse_ingest_requests_rejected_total")
                && l.contains("reason=\"buffer_unavailable\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Redis is down when the SDK first sends, so ingest answers 503 with Retry-After; once
/// Redis is back the SDK's own retries go through, and nothing is buffered twice.
async fn retried_through_a_503_window(
    script: &'static str,
    plan: impl Fn(&TestIngest) -> Value,
    id_field: &str,
) {
    let mut redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline { partitions: 4, ..Pipeline::default() }).await;
    redis.kill();
    let sender = tokio::spawn(run_sdk(script, plan(&ingest)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while unavailable_count(&ingest).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the SDK's first upload was never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.restart().await.expect("restart redis");
    let report = sender.await.expect("the SDK script ran");
    let refused = unavailable_count(&ingest).await;
    assert!(refused >= 1, "the SDK was answered 503 at least once");
    let buffered = buffered_once(&ingest).await;
    let sent = report["sent"].as_array().expect("sent");
    assert_eq!(buffered.len(), sent.len(), "every call once after {refused} refused uploads");
    for message in sent {
        assert!(buffered.contains_key(message[id_field].as_str().expect("id")), "{message} is buffered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_sdk_retries_through_a_503_window_without_duplicates() {
    retried_through_a_503_window(
        "segment_send.py",
        |i| segment_plan(i, many(500, "track"), 100),
        "messageId",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posthog_sdk_retries_through_a_503_window_without_duplicates() {
    retried_through_a_503_window("posthog_send.py", |i| posthog_plan(i, many(500, "capture"), 100), "uuid")
        .await;
}
