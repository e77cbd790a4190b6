//! The official Segment and PostHog SDKs for Python and Node, unchanged and given only the
//! ingest URL and the write key (as a user configures them), send to ingest: every call
//! lands in the buffer exactly once, with the SDK's message id, the right user, name, time
//! and properties, also through the SDKs' own retries of 429 and 503 (with and without
//! Retry-After), and a wrong key stops each SDK after one request with a 401 it reports.
//! The SDKs are installed by tests/env/python-sdks.sh and tests/env/node-sdks.sh (`make env`).

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use pulse_buffer::TenantLayout;
use pulse_core::buffer::{BufferedEvent, partition_of};
use pulse_testkit::RedisServer;
use serde_json::{Value, json};
use support::{Pipeline, TestIngest};

/// The SDKs under test.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sdk {
    /// segment-analytics-python
    SegmentPython,
    /// @segment/analytics-node
    SegmentNode,
    /// posthog (Python)
    PostHogPython,
    /// posthog-node
    PostHogNode,
}

use Sdk::{PostHogNode, PostHogPython, SegmentNode, SegmentPython};

fn cache_dir() -> PathBuf {
    std::env::var_os("PULSE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/pulse"))
}

impl Sdk {
    fn is_segment(self) -> bool {
        matches!(self, SegmentPython | SegmentNode)
    }

    /// The field of the sent report that holds the event id.
    fn id_field(self) -> &'static str {
        if self.is_segment() { "messageId" } else { "uuid" }
    }

    /// The library name the SDK stamps on its events (Segment's `context.library.name`,
    /// PostHog's `$lib`).
    fn library(self) -> &'static str {
        match self {
            SegmentPython => "analytics-python",
            SegmentNode => "@segment/analytics-node",
            PostHogPython => "posthog-python",
            PostHogNode => "posthog-node",
        }
    }

    /// The SDK's own settings for a batch size, in its option names; nothing about where to
    /// send: the plan gives only the ingest URL and the key.
    fn settings(self, batch_size: usize) -> Value {
        match self {
            SegmentPython => json!({ "gzip": true, "upload_size": batch_size, "max_queue_size": 100_000 }),
            PostHogPython => json!({ "gzip": true, "flush_at": batch_size, "max_queue_size": 100_000 }),
            SegmentNode => json!({ "flushAt": batch_size }),
            PostHogNode => {
                json!({ "flushAt": batch_size, "maxBatchSize": batch_size, "maxQueueSize": 100_000 })
            }
        }
    }

    /// The program and script that drive the SDK.
    fn command(self) -> tokio::process::Command {
        let scripts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk");
        match self {
            SegmentPython | PostHogPython => {
                let python = std::env::var_os("PULSE_SDK_PYTHON")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| cache_dir().join("venv-sdks/bin/python"));
                assert!(
                    python.exists(),
                    "{} is missing: run `make env` (tests/env/python-sdks.sh) to install the SDKs",
                    python.display()
                );
                let script = if self == SegmentPython { "segment_send.py" } else { "posthog_send.py" };
                let mut command = tokio::process::Command::new(python);
                command.arg(scripts.join(script));
                command
            }
            SegmentNode | PostHogNode => {
                let modules = std::env::var_os("PULSE_SDK_NODE_MODULES")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| cache_dir().join("node-sdks/node_modules"));
                assert!(
                    modules.exists(),
                    "{} is missing: run `make env` (tests/env/node-sdks.sh) to install the SDKs",
                    modules.display()
                );
                let script = if self == SegmentNode { "segment_send.cjs" } else { "posthog_send.cjs" };
                let mut command = tokio::process::Command::new("node");
                command.arg(scripts.join(script)).env("NODE_PATH", modules);
                command
            }
        }
    }

    /// What the SDK sends to, given the ingest's base URL and key: nothing else.
    fn plan(self, url: &str, key: &str, calls: Vec<Value>, batch_size: usize) -> Value {
        json!({ "host": url, "key": key, "settings": self.settings(batch_size), "calls": calls })
    }
}

/// What an SDK script printed: the calls as sent, and the errors it reported.
struct Report {
    sent: Vec<Value>,
    errors: Vec<Value>,
    stderr: String,
}

/// Runs the SDK with `plan` on stdin; returns its report.
async fn run_sdk(sdk: Sdk, plan: Value) -> Report {
    use tokio::io::AsyncWriteExt;
    let mut child = sdk
        .command()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start the {sdk:?} script: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(plan.to_string().as_bytes()).await.expect("write the plan");
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the {sdk:?} script finishes"))
        .expect("SDK script output");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{sdk:?} failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("{sdk:?} printed no report ({e}): {}\n{stderr}", String::from_utf8_lossy(&output.stdout))
    });
    let list = |field: &str| report[field].as_array().cloned().unwrap_or_default();
    Report { sent: list("sent"), errors: list("errors"), stderr }
}

/// Runs the SDK and asserts it reported no failed delivery.
async fn run_sdk_ok(sdk: Sdk, plan: Value) -> Report {
    let report = run_sdk(sdk, plan).await;
    assert!(
        report.errors.is_empty(),
        "{sdk:?} reported errors {:?}; stderr: {}",
        report.errors,
        report.stderr
    );
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

/// Every sent call is buffered once, and nothing else is.
async fn assert_sent_buffered_once(sdk: Sdk, ingest: &TestIngest, report: &Report) {
    let buffered = buffered_once(ingest).await;
    assert_eq!(buffered.len(), report.sent.len(), "{sdk:?}: every call once, nothing else");
    for message in &report.sent {
        let id = message[sdk.id_field()].as_str().expect("id");
        assert!(buffered.contains_key(id), "{sdk:?}: {message} is buffered");
    }
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

async fn segment_calls_land_once(sdk: Sdk) {
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
    let report = run_sdk_ok(sdk, sdk.plan(&ingest.url, &ingest.write_key, calls, 100)).await;
    let buffered = buffered_once(&ingest).await;
    assert_eq!(buffered.len(), report.sent.len(), "every call once, nothing else");

    let expected = [
        ("Signed Up", "u-1", json!({ "plan": "pro", "seats": 3 })),
        ("$identify", "u-1", json!({ "$set": { "email": "ada@example.com", "plan": "pro" } })),
        (
            "$pageview",
            "anon-7",
            if sdk == SegmentNode {
                // analytics-node copies the category into the page's properties too.
                json!({ "url": "/pricing", "category": "Docs", "$page_name": "Pricing", "$page_category": "Docs" })
            } else {
                json!({ "url": "/pricing", "$page_name": "Pricing", "$page_category": "Docs" })
            },
        ),
        ("$screen", "u-2", json!({ "$screen_name": "Home", "$anonymous_id": "anon-8" })),
        ("$group", "u-2", json!({ "$group_id": "acme", "$group_traits": { "seats": 12 } })),
        ("$create_alias", "u-2", json!({ "$previous_id": "anon-8" })),
    ];
    for (message, (name, user, properties)) in report.sent.iter().zip(expected) {
        let id = message["messageId"].as_str().expect("messageId");
        let e = buffered.get(id).unwrap_or_else(|| panic!("{name} ({id}) is buffered"));
        assert_eq!((e.event.as_str(), e.distinct_id.as_str()), (name, user), "{sdk:?} {id}");
        let mut stored = e.properties.clone();
        let context = stored.remove("$context").expect("the SDK's context is kept");
        assert_eq!(context["library"]["name"], sdk.library());
        assert_eq!(Value::Object(stored), properties, "{sdk:?} {name}");
        assert_time(e, ms_of(message["timestamp"].as_str().expect("timestamp")), started);
    }
    let first = &buffered[report.sent[0]["messageId"].as_str().expect("id")];
    assert!(
        (first.timestamp - hour_ago).abs() < 3_600_000 / 2,
        "an explicit past time is kept, not the send time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_python_calls_land_once_with_their_ids_users_names_times_and_properties() {
    segment_calls_land_once(SegmentPython).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_node_calls_land_once_with_their_ids_users_names_times_and_properties() {
    segment_calls_land_once(SegmentNode).await;
}

async fn posthog_calls_land_once(sdk: Sdk) {
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
    let report = run_sdk_ok(sdk, sdk.plan(&ingest.url, &ingest.write_key, calls, 100)).await;
    let buffered = buffered_once(&ingest).await;
    assert_eq!(buffered.len(), report.sent.len(), "every call once, nothing else");

    // By (event, user), each unique here: an SDK may queue its calls out of order.
    let mut expected: HashMap<(&str, &str), Value> = HashMap::from([
        (("clicked", "u-1"), json!({ "button": "buy", "price": 9.5 })),
        (("$pageview", "u-1"), json!({ "$current_url": "https://example.com/pricing" })),
        (("$set", "u-1"), json!({ "$set": { "email": "ada@example.com" } })),
        (("$set_once", "u-2"), json!({ "$set_once": { "first_plan": "free" } })),
        (("upgraded", "u-2"), json!({ "$set": { "plan": "pro" } })),
    ]);
    for message in &report.sent {
        let id = message["uuid"].as_str().expect("uuid");
        let e = buffered.get(id).unwrap_or_else(|| panic!("{sdk:?}: {id} is buffered"));
        let properties = expected
            .remove(&(e.event.as_str(), e.distinct_id.as_str()))
            .unwrap_or_else(|| panic!("{sdk:?}: {} of {} is one of the calls, once", e.event, e.distinct_id));
        assert_eq!(e.properties["$lib"], sdk.library(), "the SDK's own properties are kept");
        let mine: serde_json::Map<String, Value> = e
            .properties
            .iter()
            .filter(|(k, _)| properties.get(k.as_str()).is_some())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(Value::Object(mine), properties, "{sdk:?} {}", e.event);
        assert!(!e.properties.contains_key("token"), "the API key is not a property");
        assert_time(e, ms_of(message["timestamp"].as_str().expect("timestamp")), started);
    }
    assert!(expected.is_empty(), "{sdk:?}: calls never sent: {expected:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posthog_python_captures_and_person_updates_land_once() {
    posthog_calls_land_once(PostHogPython).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posthog_node_captures_and_person_updates_land_once() {
    posthog_calls_land_once(PostHogNode).await;
}

/// `count` calls over 97 users, each with its index as a property.
fn many(sdk: Sdk, count: usize) -> Vec<Value> {
    let call = if sdk.is_segment() { "track" } else { "capture" };
    (0..count)
        .map(|i| json!({ "call": call, "user": format!("user-{}", i % 97), "event": "bulk", "properties": { "i": i } }))
        .collect()
}

/// Each buffered event of a `many` plan is at its user, and every index is there once.
fn assert_many(sdk: Sdk, buffered: &HashMap<String, BufferedEvent>, report: &Report, count: usize) {
    let mut seen = vec![false; count];
    for message in &report.sent {
        let e = &buffered[message[sdk.id_field()].as_str().expect("id")];
        let i = e.properties["i"].as_u64().expect("index") as usize;
        assert_eq!(e.distinct_id, format!("user-{}", i % 97), "{sdk:?}");
        assert!(!std::mem::replace(&mut seen[i], true), "{sdk:?}: call {i} twice");
    }
    assert!(seen.iter().all(|s| *s), "{sdk:?}: every call sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_a_thousand_from_each_sdk_land_once() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline { partitions: 8, ..Pipeline::default() }).await;
    let mut reports = Vec::new();
    for sdk in [SegmentPython, SegmentNode, PostHogPython, PostHogNode] {
        let report = run_sdk_ok(sdk, sdk.plan(&ingest.url, &ingest.write_key, many(sdk, 3000), 1000)).await;
        reports.push((sdk, report));
    }
    let buffered = buffered_once(&ingest).await;
    assert_eq!(buffered.len(), 12_000);
    for (sdk, report) in &reports {
        assert_many(*sdk, &buffered, report, 3000);
    }
    let text = metrics(&ingest).await;
    let sizes: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("pulse_ingest_batch_events_sum") || l.starts_with("pulse_ingest_batch_events_count")
        })
        .collect();
    println!("requests and events per request: {sizes:?}");
}

async fn metrics(ingest: &TestIngest) -> String {
    ingest
        .http
        .get(format!("{}/metrics", ingest.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// Requests refused for `reason` so far.
async fn refused(ingest: &TestIngest, reason: &str) -> u64 {
    metrics(ingest)
        .await
        .lines()
        .find(|l| {
            l.starts_with("pulse_ingest_requests_rejected_total")
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits until ingest refused more than `before` requests for `reason`.
async fn until_refused(ingest: &TestIngest, reason: &str, before: u64, sdk: Sdk) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while refused(ingest, reason).await <= before {
        assert!(tokio::time::Instant::now() < deadline, "{sdk:?}: no upload was refused with {reason}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How the SDK reaches ingest: directly, or through a proxy that drops `Retry-After` from
/// every answer (ingest always sends it; the proxy shows what an SDK does without it).
async fn sdk_url(ingest: &TestIngest, retry_after: bool) -> String {
    if retry_after { ingest.url.clone() } else { support::proxy_without_retry_after(&ingest.url).await }
}

/// Sends one event by `url` and checks it is refused with `status`, with `Retry-After`
/// exactly when the SDK is to see it; returns the refusals for `reason` so far.
async fn probe(ingest: &TestIngest, url: &str, retry_after: bool, status: u16, reason: &str) -> u64 {
    let answer = ingest
        .http
        .post(format!("{url}/v1/batch"))
        .bearer_auth(&ingest.write_key)
        .header("Content-Type", "application/json")
        .body(support::batch(&[support::event("probe", "u-probe")]))
        .send()
        .await
        .expect("probe");
    assert_eq!(answer.status().as_u16(), status, "the probe is refused");
    assert_eq!(answer.headers().contains_key("retry-after"), retry_after, "Retry-After as the SDK sees it");
    refused(ingest, reason).await
}

/// Redis is down when the SDK first sends, so ingest answers 503; once Redis is back the
/// SDK's own retries go through, and nothing is lost or buffered twice.
async fn retried_through_a_503_window(sdk: Sdk, retry_after: bool) {
    let mut redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline { partitions: 4, ..Pipeline::default() }).await;
    let url = sdk_url(&ingest, retry_after).await;
    redis.kill();
    let before = probe(&ingest, &url, retry_after, 503, "buffer_unavailable").await;
    let sender = tokio::spawn(run_sdk_ok(sdk, sdk.plan(&url, &ingest.write_key, many(sdk, 500), 100)));
    until_refused(&ingest, "buffer_unavailable", before, sdk).await;
    redis.restart().await.expect("restart redis");
    let report = sender.await.expect("the SDK script ran");
    assert_sent_buffered_once(sdk, &ingest, &report).await;
    assert_eq!(report.sent.len(), 500, "{sdk:?}");
}

/// The backlog is at its high-water mark when the SDK first sends, so ingest answers 429;
/// once it drains the SDK's own retries go through, and nothing is lost or buffered twice.
async fn retried_through_a_full_backlog(sdk: Sdk, retry_after: bool) {
    let redis = RedisServer::start().await.expect("redis");
    let pipeline = Pipeline { partitions: 4, high_water_mark: 1_000, ..Pipeline::default() };
    let ingest = TestIngest::start(&redis.url(), pipeline).await;
    let url = sdk_url(&ingest, retry_after).await;
    let mut conn = redis.connection().await.expect("connect");
    let set_backlog = |conn: &mut redis::aio::MultiplexedConnection, events: u64| {
        let mut pipe = redis::pipe();
        for p in 0..ingest.partitions {
            pipe.cmd("SET").arg(TenantLayout::of(&ingest.tenant).backlog(p)).arg(if p == 0 {
                events
            } else {
                0
            });
        }
        let mut conn = conn.clone();
        async move { pipe.query_async::<()>(&mut conn).await.expect("SET the backlog") }
    };
    // A full backlog without entries: the processor's work, not this test's events.
    set_backlog(&mut conn, 1_000).await;
    let before = probe(&ingest, &url, retry_after, 429, "backlog_full").await;
    let sender = tokio::spawn(run_sdk_ok(sdk, sdk.plan(&url, &ingest.write_key, many(sdk, 300), 100)));
    until_refused(&ingest, "backlog_full", before, sdk).await;
    set_backlog(&mut conn, 0).await;
    let report = sender.await.expect("the SDK script ran");
    assert_sent_buffered_once(sdk, &ingest, &report).await;
    assert_eq!(report.sent.len(), 300, "{sdk:?}");
}

/// A wrong key: the SDK sends one request, is answered 401, reports it and stops.
async fn a_wrong_key_stops_after_one_request(sdk: Sdk) {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
    let report = run_sdk(sdk, sdk.plan(&ingest.url, "wk-not-this-pipelines", many(sdk, 5), 100)).await;
    assert!(!report.errors.is_empty(), "{sdk:?} reported the refusal; stderr: {}", report.stderr);
    for error in &report.errors {
        assert_eq!(error["status"], 401, "{sdk:?} reports the 401: {error}");
    }
    assert_eq!(refused(&ingest, "unauthorized").await, 1, "{sdk:?} sent one request and stopped");
    assert!(ingest.buffered().await.is_empty());
}

macro_rules! sdk_tests {
    ($($sdk:ident => $wrong_key:ident, $r503:ident, $r503_bare:ident, $r429:ident, $r429_bare:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $wrong_key() {
            a_wrong_key_stops_after_one_request($sdk).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $r503() {
            retried_through_a_503_window($sdk, true).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $r503_bare() {
            retried_through_a_503_window($sdk, false).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $r429() {
            retried_through_a_full_backlog($sdk, true).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $r429_bare() {
            retried_through_a_full_backlog($sdk, false).await;
        }
    )*};
}

sdk_tests! {
    SegmentPython => segment_python_stops_at_a_wrong_key, segment_python_retries_503, segment_python_retries_503_without_retry_after, segment_python_retries_429, segment_python_retries_429_without_retry_after;
    SegmentNode => segment_node_stops_at_a_wrong_key, segment_node_retries_503, segment_node_retries_503_without_retry_after, segment_node_retries_429, segment_node_retries_429_without_retry_after;
    PostHogPython => posthog_python_stops_at_a_wrong_key, posthog_python_retries_503, posthog_python_retries_503_without_retry_after, posthog_python_retries_429, posthog_python_retries_429_without_retry_after;
    PostHogNode => posthog_node_stops_at_a_wrong_key, posthog_node_retries_503, posthog_node_retries_503_without_retry_after, posthog_node_retries_429, posthog_node_retries_429_without_retry_after;
}
