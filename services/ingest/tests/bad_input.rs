//! Bad input to ingest: each kind gets the right 4xx and a JSON error with a stable code and,
//! where there is one, the field; a batch reports its refused events by index and keeps the
//! valid ones. Nothing of a refused request, nor any refused event, reaches the streams.

mod support;

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use jiff::Timestamp;
use jiff::tz::Offset;
use pulse_testkit::RedisServer;
use serde_json::{Map, Value, json};
use support::{Pipeline, Reply, TestIngest, batch, event};

/// The default body limit (1 MiB) and event limit (32 KiB).
const MAX_BODY_BYTES: usize = 1_048_576;
const MAX_EVENT_BYTES: usize = 32_768;

async fn start() -> (RedisServer, TestIngest) {
    let redis = RedisServer::start().await.expect("redis-server starts");
    let ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
    (redis, ingest)
}

/// Asserts the whole request was refused with `status` and `code`, naming `field` (or no
/// field), with a message for people.
fn assert_refused(case: &str, reply: &Reply, status: u16, code: &str, field: Option<&str>) {
    assert_eq!((reply.status, reply.code()), (status, code), "{case}: {}", reply.text);
    assert_eq!(reply.json["error"]["field"].as_str(), field, "{case}: error.field in {}", reply.text);
    let message = reply.json["error"]["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "{case}: the error has a message: {}", reply.text);
}

/// `(index, code, field)` of each per-event error of the answer.
fn event_errors(reply: &Reply) -> Vec<(u64, &str, &str)> {
    let Some(errors) = reply.json["errors"].as_array() else { return Vec::new() };
    errors
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap_or(u64::MAX),
                e["code"].as_str().unwrap_or(""),
                e["field"].as_str().unwrap_or(""),
            )
        })
        .collect()
}

/// Asserts the tenant's streams hold exactly the events `ids`, each once.
async fn assert_buffered_exactly(ingest: &TestIngest, ids: &[String]) {
    let mut buffered: Vec<String> = ingest.buffered().await.into_iter().map(|(_, e)| e.event_id).collect();
    buffered.sort();
    let mut expected = ids.to_vec();
    expected.sort();
    assert_eq!(buffered, expected, "only the valid events of accepted requests are buffered");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// A valid event `id` with `field` set to `value`.
fn with(id: &str, field: &str, value: Value) -> Value {
    let mut e = event(id, "u-1");
    e[field] = value;
    e
}

/// A valid event `id` without `field`.
fn without(id: &str, field: &str) -> Value {
    let mut e = event(id, "u-1");
    e.as_object_mut().expect("an event is an object").remove(field);
    e
}

/// A bad event and the per-event error it must get.
struct BadEvent {
    what: &'static str,
    event: Value,
    code: &'static str,
    field: &'static str,
}

fn bad(what: &'static str, event: Value, code: &'static str, field: &'static str) -> BadEvent {
    BadEvent { what, event, code, field }
}

/// Sends each bad event alone to /v1/events (the request is refused and names the event
/// error), then all of them in one batch between two valid events (202: the valid ones are
/// accepted, each bad one is reported by its index). Returns the ids of the valid events.
async fn assert_refused_alone_and_in_a_batch(ingest: &TestIngest, cases: &[BadEvent]) -> Vec<String> {
    for case in cases {
        let reply = ingest.post("/v1/events", case.event.to_string()).await;
        let field = (!case.field.is_empty()).then_some(case.field);
        assert_refused(case.what, &reply, 400, "invalid_body", field);
        assert_eq!(event_errors(&reply), [(0, case.code, case.field)], "{}: {}", case.what, reply.text);
    }

    let valid = vec!["valid-first".to_string(), "valid-last".to_string()];
    let mut events = vec![event(&valid[0], "u-1")];
    events.extend(cases.iter().map(|c| c.event.clone()));
    events.push(event(&valid[1], "u-2"));
    let reply = ingest.post("/v1/batch", batch(&events)).await;
    assert_eq!(reply.status, 202, "the valid events of a batch are accepted: {}", reply.text);
    assert_eq!((&reply.json["accepted"], &reply.json["rejected"]), (&json!(2), &json!(cases.len())));
    let expected: Vec<(u64, &str, &str)> =
        cases.iter().zip(1..).map(|(c, index)| (index, c.code, c.field)).collect();
    assert_eq!(event_errors(&reply), expected, "{}", reply.text);
    valid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_utf8_json_or_in_a_supported_encoding_are_refused_whole() {
    let (_redis, ingest) = start().await;
    let one = event("body-1", "u-1").to_string();
    let two = batch(&[event("body-2", "u-1"), event("body-3", "u-2")]);
    let auth = ("Authorization", format!("Bearer {}", ingest.write_key));
    let with_header = |name: &'static str, value: &str| [auth.clone(), (name, value.to_string())];

    let mut not_utf8 = br#"{"event":"caf"#.to_vec();
    not_utf8.extend_from_slice(b"\xe9\"");
    not_utf8.extend_from_slice(br#","distinct_id":"u-1","event_id":"body-4"}"#);
    let truncated_gzip = {
        let whole = gzip(two.as_bytes());
        whole[..whole.len() / 2].to_vec()
    };
    // 4 MiB of spaces deflate to a few KiB.
    let bomb = gzip(format!("{two}{}", " ".repeat(4 * MAX_BODY_BYTES)).as_bytes());
    assert!(bomb.len() < MAX_BODY_BYTES / 64, "the bomb itself is small");

    for path in ["/v1/events", "/v1/batch"] {
        let body = if path == "/v1/events" { &one } else { &two };
        let not_json = [
            ("malformed JSON", body.as_bytes()[..body.len() - 3].to_vec()),
            ("trailing data after the JSON", format!("{body}{body}").into_bytes()),
            ("an empty body", Vec::new()),
            ("a body that is not UTF-8", not_utf8.clone()),
        ];
        for (what, bytes) in not_json {
            let reply = ingest.post(path, bytes).await;
            assert_refused(&format!("{what} to {path}"), &reply, 400, "invalid_json", None);
        }

        let reply = ingest.post_with(path, body.clone(), &with_header("Content-Encoding", "br")).await;
        let field = Some("Content-Encoding");
        assert_refused(&format!("Content-Encoding br to {path}"), &reply, 415, "unsupported_encoding", field);
        let gzipped = [
            ("plain JSON declared as gzip", body.as_bytes().to_vec(), 400, "invalid_gzip"),
            ("a truncated gzip body", truncated_gzip.clone(), 400, "invalid_gzip"),
            ("a gzip bomb inflating past 1 MiB", bomb.clone(), 413, "body_too_large"),
        ];
        for (what, bytes, status, code) in gzipped {
            let reply = ingest.post_with(path, bytes, &with_header("Content-Encoding", "gzip")).await;
            assert_refused(&format!("{what} to {path}"), &reply, status, code, None);
        }

        for media_type in ["application/x-www-form-urlencoded", "application/xml"] {
            let reply = ingest.post_with(path, body.clone(), &with_header("Content-Type", media_type)).await;
            let (what, field) = (format!("Content-Type {media_type} to {path}"), Some("Content-Type"));
            assert_refused(&what, &reply, 415, "unsupported_media_type", field);
        }
    }
    assert_buffered_exactly(&ingest, &[]).await;

    // gzip itself works: the same batch, compressed, is accepted.
    let reply =
        ingest.post_with("/v1/batch", gzip(two.as_bytes()), &with_header("Content-Encoding", "gzip")).await;
    assert_eq!((reply.status, &reply.json["accepted"]), (202, &json!(2)), "{}", reply.text);
    assert_buffered_exactly(&ingest, &["body-2".into(), "body-3".into()]).await;

    // Bytes after the end of the gzip stream make the body corrupt, not ignorable.
    let mut trailing_garbage = gzip(batch(&[event("body-5", "u-1"), event("body-6", "u-2")]).as_bytes());
    trailing_garbage.extend_from_slice(b"garbage");
    let reply =
        ingest.post_with("/v1/batch", trailing_garbage, &with_header("Content-Encoding", "gzip")).await;
    // Trailing bytes after the gzip stream make the body corrupt, not ignorable.
    assert_refused("bytes after the end of the gzip stream", &reply, 400, "invalid_gzip", None);
    assert_buffered_exactly(&ingest, &["body-2".into(), "body-3".into()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_this_pipelines_write_key_are_unauthorized() {
    let redis = RedisServer::start().await.expect("redis-server starts");
    let ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
    let other = TestIngest::start(&redis.url(), Pipeline::default()).await;
    assert_ne!(ingest.tenant, other.tenant);

    let cases: [(&str, &[(&str, String)]); 5] = [
        ("no Authorization header", &[]),
        ("a wrong key", &[("Authorization", "Bearer wk-not-a-key".to_string())]),
        ("another tenant's key", &[("Authorization", format!("Bearer {}", other.write_key))]),
        ("the key without the Bearer scheme", &[("Authorization", ingest.write_key.clone())]),
        ("an empty Bearer key", &[("Authorization", "Bearer ".to_string())]),
    ];
    for (i, (what, headers)) in cases.iter().enumerate() {
        let one = event(&format!("auth-{i}"), "u-1").to_string();
        let reply = ingest.post_with("/v1/events", one, headers).await;
        assert_refused(&format!("{what} on /v1/events"), &reply, 401, "unauthorized", Some("Authorization"));
        let two = batch(&[event(&format!("auth-{i}-a"), "u-1"), event(&format!("auth-{i}-b"), "u-2")]);
        let reply = ingest.post_with("/v1/batch", two, headers).await;
        assert_refused(&format!("{what} on /v1/batch"), &reply, 401, "unauthorized", Some("Authorization"));
    }
    assert_buffered_exactly(&ingest, &[]).await;

    // The other tenant's key is genuine: its own ingest takes it.
    let reply = other.post("/v1/events", event("other-1", "u-1").to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_buffered_exactly(&other, &["other-1".into()]).await;
    assert_buffered_exactly(&ingest, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_are_not_a_batch_or_an_event_are_refused_whole() {
    let (_redis, ingest) = start().await;
    let array = json!([event("shape-1", "u-1"), event("shape-2", "u-2")]).to_string();
    let cases = [
        ("a JSON array", "/v1/events", array.clone(), "invalid_body", None),
        ("a batch object", "/v1/events", batch(&[event("shape-4", "u-1")]), "invalid_body", Some("event")),
        ("batch as a string", "/v1/batch", r#"{"batch": "x"}"#.to_string(), "invalid_body", Some("batch")),
        (
            "batch as an object",
            "/v1/batch",
            json!({ "batch": event("shape-5", "u-1") }).to_string(),
            "invalid_body",
            Some("batch"),
        ),
        ("no batch field", "/v1/batch", "{}".to_string(), "invalid_body", Some("batch")),
        ("a JSON string", "/v1/batch", r#""events""#.to_string(), "invalid_body", Some("batch")),
        ("an empty batch", "/v1/batch", r#"{"batch": []}"#.to_string(), "empty_batch", Some("batch")),
        ("an empty array", "/v1/batch", "[]".to_string(), "empty_batch", Some("batch")),
    ];
    for (what, path, body, code, field) in cases {
        let reply = ingest.post(path, body).await;
        assert_refused(&format!("{what} to {path}"), &reply, 400, code, field);
    }
    // /v1/events says which event error made the array or the batch object unusable.
    let reply = ingest.post("/v1/events", array).await;
    assert_eq!(event_errors(&reply), [(0, "invalid_type", "")], "{}", reply.text);
    let reply = ingest.post("/v1/events", batch(&[event("shape-4", "u-1")])).await;
    assert_eq!(event_errors(&reply), [(0, "missing_field", "event")], "{}", reply.text);

    // Every event refused: nothing is accepted and `errors` lists each.
    let all_bad = batch(&[
        without("shape-7", "event"),
        json!(42),
        with("shape-8", "distinct_id", json!(7)),
        Value::Null,
    ]);
    let reply = ingest.post("/v1/batch", all_bad).await;
    assert_refused("a batch of invalid events", &reply, 400, "no_valid_events", None);
    assert_eq!(
        event_errors(&reply),
        [
            (0, "missing_field", "event"),
            (1, "invalid_type", ""),
            (2, "invalid_type", "distinct_id"),
            (3, "invalid_type", "")
        ],
        "{}",
        reply.text
    );

    // A mixed batch keeps exactly its valid events.
    let mixed = batch(&[
        event("mixed-0", "u-1"),
        with("mixed-1", "event", json!("")),
        event("mixed-2", "u-2"),
        json!("page_viewed"),
        event("mixed-4", "u-3"),
        with("mixed-5", "timestamp", json!("yesterday")),
    ]);
    let reply = ingest.post("/v1/batch", mixed).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!((&reply.json["accepted"], &reply.json["rejected"]), (&json!(3), &json!(3)), "{}", reply.text);
    assert_eq!(
        event_errors(&reply),
        [(1, "empty", "event"), (3, "invalid_type", ""), (5, "invalid_timestamp", "timestamp")],
        "{}",
        reply.text
    );
    assert_buffered_exactly(&ingest, &["mixed-0".into(), "mixed-2".into(), "mixed-4".into()]).await;

    // A field a batch does not have, beside a valid batch: refused whole.
    let unknown_top_level = json!({ "batch": [event("shape-3", "u-1")], "sent_at": "2026-11-24T10:00:00Z" });
    let reply = ingest.post("/v1/batch", unknown_top_level.to_string()).await;
    assert_buffered_exactly(&ingest, &["mixed-0".into(), "mixed-2".into(), "mixed-4".into()]).await;
    // The unknown field itself is named, not `batch`.
    assert_refused("an unknown top-level field", &reply, 400, "invalid_body", Some("sent_at"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_event_fields_are_reported_by_field() {
    let (_redis, ingest) = start().await;
    let cases = [
        bad("missing event", without("f-1", "event"), "missing_field", "event"),
        bad("missing distinct_id", without("f-2", "distinct_id"), "missing_field", "distinct_id"),
        bad("null distinct_id", with("f-3", "distinct_id", Value::Null), "missing_field", "distinct_id"),
        bad("distinct_id as a number", with("f-4", "distinct_id", json!(42)), "invalid_type", "distinct_id"),
        bad("an empty event name", with("f-5", "event", json!("")), "empty", "event"),
        bad("an empty distinct_id", with("f-6", "distinct_id", json!("")), "empty", "distinct_id"),
        bad("event as an object", with("f-7", "event", json!({ "name": "a" })), "invalid_type", "event"),
        bad("event_id as an array", with("unused", "event_id", json!(["f-8"])), "invalid_type", "event_id"),
        bad(
            "a typo: propertes",
            with("f-9", "propertes", json!({ "plan": "pro" })),
            "unknown_field",
            "propertes",
        ),
        bad(
            "properties as a string",
            with("f-10", "properties", json!("plan=pro")),
            "invalid_type",
            "properties",
        ),
        bad(
            "properties as an array",
            with("f-11", "properties", json!([1, 2])),
            "invalid_type",
            "properties",
        ),
        bad("an empty property name", with("f-12", "properties", json!({ "": 1 })), "empty", "properties"),
        bad("an event that is a string", json!("page_viewed"), "invalid_type", ""),
    ];
    let valid = assert_refused_alone_and_in_a_batch(&ingest, &cases).await;
    assert_buffered_exactly(&ingest, &valid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_outside_the_accepted_forms_and_range_are_refused() {
    let (_redis, ingest) = start().await;
    let now = Timestamp::now().as_millisecond();
    let hour = 3_600_000;
    let rfc3339 = |ms: i64| {
        let at = Timestamp::from_millisecond(ms).expect("a time within jiff's range");
        at.display_with_offset(Offset::constant(2)).to_string()
    };
    let timestamp = |what: &'static str, value: Value, code: &'static str| {
        bad(what, with(what, "timestamp", value), code, "timestamp")
    };
    let cases = [
        timestamp("no offset", json!("2026-11-24T10:00:00"), "invalid_timestamp"),
        timestamp("a date in words", json!("yesterday"), "invalid_timestamp"),
        timestamp("a day-first date", json!("24/11/2026"), "invalid_timestamp"),
        timestamp("two hours ahead", json!(now + 2 * hour), "timestamp_in_future"),
        timestamp("two hours ahead, RFC 3339", json!(rfc3339(now + 2 * hour)), "timestamp_in_future"),
        timestamp("epoch seconds", json!(now / 1000), "timestamp_too_old"),
        timestamp("before the retention", json!("2000-01-01T00:00:00Z"), "timestamp_too_old"),
        timestamp("a float", json!(now as f64 + 0.5), "invalid_timestamp"),
        timestamp("a boolean", json!(true), "invalid_type"),
    ];
    let mut valid = assert_refused_alone_and_in_a_batch(&ingest, &cases).await;

    // Within the range, both forms are taken: the refusals above are about the values.
    let accepted = [
        with("t-ok-1", "timestamp", json!(now - hour)),
        with("t-ok-2", "timestamp", json!(now + hour / 2)),
        with("t-ok-3", "timestamp", json!(rfc3339(now - 300 * 24 * hour))),
    ];
    let reply = ingest.post("/v1/batch", batch(&accepted)).await;
    assert_eq!((reply.status, &reply.json["accepted"]), (202, &json!(3)), "{}", reply.text);
    valid.extend(["t-ok-1", "t-ok-2", "t-ok-3"].map(String::from));
    assert_buffered_exactly(&ingest, &valid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_requests_over_the_limits_are_refused() {
    let (_redis, ingest) = start().await;
    let properties =
        |n: usize| -> Map<String, Value> { (0..n).map(|i| (format!("p{i}"), json!(i))).collect() };
    let deep =
        |levels: usize| (0..levels).fold(json!(1), |inner, level| json!({ format!("l{level}"): inner }));
    let padded = |id: &str, bytes: usize| {
        let mut e = with(id, "properties", json!({ "blob": "" }));
        let padding = bytes - e.to_string().len();
        e["properties"]["blob"] = json!("x".repeat(padding));
        e
    };

    let cases = [
        bad("an event name of 201 chars", with("l-1", "event", json!("e".repeat(201))), "too_long", "event"),
        bad(
            "a distinct_id of 201 chars",
            with("l-2", "distinct_id", json!("é".repeat(201))),
            "too_long",
            "distinct_id",
        ),
        bad("properties 6 deep", with("l-3", "properties", deep(6)), "too_deep", "properties.l5.l4.l3.l2.l1"),
        bad(
            "arrays 6 deep",
            with("l-4", "properties", json!({ "a": [{ "b": [{ "c": [1] }] }] })),
            "too_deep",
            "properties.a[0].b[0].c",
        ),
        bad(
            "257 properties",
            with("l-5", "properties", json!(properties(257))),
            "too_many_properties",
            "properties",
        ),
        bad("an event over 32 KiB", padded("l-6", MAX_EVENT_BYTES + 1), "event_too_large", ""),
    ];
    let mut valid = assert_refused_alone_and_in_a_batch(&ingest, &cases).await;

    // At the limits, events are taken: the refusals above are about the limits.
    let at_limits = [
        with("l-ok-1", "event", json!("e".repeat(200))),
        with("l-ok-2", "distinct_id", json!("é".repeat(200))),
        with("l-ok-3", "properties", deep(5)),
        with("l-ok-4", "properties", json!(properties(256))),
        padded("l-ok-5", MAX_EVENT_BYTES),
    ];
    let reply = ingest.post("/v1/batch", batch(&at_limits)).await;
    assert_eq!((reply.status, &reply.json["accepted"]), (202, &json!(5)), "{}", reply.text);
    valid.extend((1..=5).map(|i| format!("l-ok-{i}")));

    // A body over 1 MiB of events that are each fine.
    let big: Vec<Value> = (0..40).map(|i| padded(&format!("big-{i}"), 30_000)).collect();
    let body = batch(&big);
    assert!(body.len() > MAX_BODY_BYTES);
    let reply = ingest.post("/v1/batch", body).await;
    assert_refused("a body over 1 MiB", &reply, 413, "body_too_large", None);
    let reply = ingest.post("/v1/events", padded("big-one", MAX_BODY_BYTES + 1).to_string()).await;
    assert_refused("one event over 1 MiB", &reply, 413, "body_too_large", None);

    // 1001 events are refused whole; 1000 are taken.
    let many = |prefix: &str, n: usize| -> Vec<Value> {
        (0..n).map(|i| event(&format!("{prefix}-{i}"), "u-1")).collect()
    };
    let reply = ingest.post("/v1/batch", batch(&many("too-many", 1001))).await;
    assert_refused("1001 events", &reply, 413, "too_many_events", Some("batch"));
    let reply = ingest.post("/v1/batch", batch(&many("most", 1000))).await;
    assert_eq!((reply.status, &reply.json["accepted"]), (202, &json!(1000)), "{}", reply.text);
    valid.extend((0..1000).map(|i| format!("most-{i}")));

    assert_buffered_exactly(&ingest, &valid).await;
}

/// GETs `path` with the write key.
async fn get(ingest: &TestIngest, path: &str) -> Reply {
    let request = ingest.http.get(format!("{}{path}", ingest.url));
    let authorized = request.header("Authorization", format!("Bearer {}", ingest.write_key));
    let response = authorized.send().await.expect("request reaches ingest");
    let status = response.status().as_u16();
    let text = response.text().await.expect("response body");
    Reply { status, retry_after: None, json: serde_json::from_str(&text).unwrap_or(Value::Null), text }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods_get_json_errors() {
    let (_redis, ingest) = start().await;
    for (method, path, status, code) in [
        ("GET", "/v1/batch", 405, "method_not_allowed"),
        ("GET", "/v1/events", 405, "method_not_allowed"),
        ("POST", "/v1/event", 404, "not_found"),
        ("POST", "/v2/batch", 404, "not_found"),
        ("GET", "/v1/nothing", 404, "not_found"),
    ] {
        let reply = if method == "GET" {
            get(&ingest, path).await
        } else {
            ingest.post(path, event(&format!("route-{path}"), "u-1").to_string()).await
        };
        assert_refused(&format!("{method} {path}"), &reply, status, code, None);
    }
    assert_buffered_exactly(&ingest, &[]).await;
}

/// What passes here is stored as it is: events no MongoDB-wire store can hold (FerretDB
/// refuses arrays in arrays; no store takes NUL in a key, PostgreSQL in no text; stores
/// refuse empty path segments) are refused at the door, naming the field, instead of
/// being acknowledged and then refused by the store on every retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_no_store_can_hold_are_refused_naming_the_field() {
    let (_redis, ingest) = start().await;
    let props = |id: &str, p: Value| with(id, "properties", p);
    let cases = [
        bad("nested arrays", props("s-1", json!({ "a": [[1, 2], [3]] })), "nested_array", "properties.a[0]"),
        bad(
            "nested arrays deeper",
            props("s-2", json!({ "o": [{ "b": [1, [2]] }] })),
            "nested_array",
            "properties.o[0].b[1]",
        ),
        bad(
            "nested arrays in a profile $set",
            props("s-3", json!({ "$set": { "tags": [["a"], ["b"]] } })),
            "nested_array",
            "properties.$set.tags[0]",
        ),
        bad(
            "NUL in a property key",
            props("s-4", json!({ "a\u{0}b": 1 })),
            "invalid_character",
            "properties.a\u{0}b",
        ),
        bad(
            "NUL in a nested key",
            props("s-5", json!({ "o": { "l": [{ "\u{0}": 1 }] } })),
            "invalid_character",
            "properties.o.l[0].\u{0}",
        ),
        bad(
            "NUL in a string value",
            props("s-6", json!({ "v": "x\u{0}" })),
            "invalid_character",
            "properties.v",
        ),
        bad(
            "NUL in the event name",
            with("s-7", "event", json!("page\u{0}viewed")),
            "invalid_character",
            "event",
        ),
        bad(
            "NUL in distinct_id",
            with("s-8", "distinct_id", json!("u\u{0}1")),
            "invalid_character",
            "distinct_id",
        ),
        bad(
            "NUL in event_id",
            with("unused", "event_id", json!("s-9\u{0}")),
            "invalid_character",
            "event_id",
        ),
        bad(
            "NUL in a $unset name",
            props("s-10", json!({ "$unset": ["plan\u{0}"] })),
            "invalid_character",
            "properties.$unset[0]",
        ),
        bad("an event name of spaces", with("s-11", "event", json!("   ")), "empty", "event"),
        bad("a blank distinct_id", with("s-12", "distinct_id", json!(" \t")), "empty", "distinct_id"),
        bad("a blank event_id", with("unused", "event_id", json!("  ")), "empty", "event_id"),
        bad(
            "an empty $unset name",
            props("s-14", json!({ "$unset": ["plan", ""] })),
            "empty",
            "properties.$unset[1]",
        ),
        bad(
            "a blank $unset name",
            props("s-15", json!({ "$unset": [" "] })),
            "empty",
            "properties.$unset[0]",
        ),
        bad("an empty nested key", props("s-16", json!({ "o": { "": 1 } })), "empty", "properties.o"),
        bad(
            "an empty key in an array",
            props("s-17", json!({ "l": [{ "": 1 }] })),
            "empty",
            "properties.l[0]",
        ),
        bad("a blank property key", props("s-18", json!({ "  ": 1 })), "empty", "properties"),
        bad("an empty $set name", props("s-19", json!({ "$set": { "": "x" } })), "empty", "properties.$set"),
    ];
    let mut valid = assert_refused_alone_and_in_a_batch(&ingest, &cases).await;

    // What stores do hold is still taken: arrays of objects holding arrays, `$` and `.` in
    // keys (the store encodes them), spaces inside names, large but finite numbers.
    let fine = [
        props("s-ok-1", json!({ "a": [{ "b": [1, 2] }, { "b": [] }], "$browser": "x", "a.b": 1 })),
        with("s-ok-2", "event", json!(" signed up ")),
        props("s-ok-3", json!({ "revenue": 1.7e308, "$set": { "plan": " pro " }, "$unset": ["trial"] })),
    ];
    let reply = ingest.post("/v1/batch", batch(&fine)).await;
    assert_eq!((reply.status, &reply.json["accepted"]), (202, &json!(3)), "{}", reply.text);
    valid.extend(["s-ok-1", "s-ok-2", "s-ok-3"].map(String::from));
    assert_buffered_exactly(&ingest, &valid).await;
}

/// JSON cannot carry NaN or infinity, and a number beyond f64 (1e400) is refused as
/// invalid JSON rather than read as infinity: alone, or as one event of a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_beyond_f64_are_refused_as_invalid_json() {
    let (_redis, ingest) = start().await;
    for number in ["1e400", "-1e400"] {
        let text = format!(
            r#"{{"event_id": "n-1", "event": "paid", "distinct_id": "u-1", "properties": {{"revenue": {number}}}}}"#
        );
        let reply = ingest.post("/v1/events", text.clone()).await;
        assert_refused(number, &reply, 400, "invalid_json", None);
        let body = format!(r#"{{"batch": [{}, {text}]}}"#, event("n-ok", "u-1"));
        let reply = ingest.post("/v1/batch", body).await;
        assert_eq!(reply.status, 202, "{}", reply.text);
        assert_eq!(event_errors(&reply), [(1, "invalid_json", "")], "{}", reply.text);
    }
    assert_buffered_exactly(&ingest, &["n-ok".into(), "n-ok".into()]).await;
}

/// serde_json keeps the last of two equal keys; ingest refuses them instead, at any level,
/// so no event is silently dropped or changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_json_keys_are_refused_naming_the_field() {
    let (_redis, ingest) = start().await;
    let (a, b) = (event("dup-a", "u-1"), event("dup-b", "u-2"));
    let body = format!(r#"{{"batch": [{a}], "batch": [{b}]}}"#);
    let reply = ingest.post("/v1/batch", body).await;
    assert_refused("batch twice", &reply, 400, "duplicate_key", Some("batch"));

    let event_twice = r#"{"event_id": "dup-1", "event": "a", "event": "b", "distinct_id": "u-1"}"#;
    let property_twice =
        r#"{"event_id": "dup-2", "event": "a", "distinct_id": "u-1", "properties": {"o": {"k": 1, "k": 2}}}"#;
    let id_twice = r#"{"event_id": "dup-3", "event_id": "dup-4", "event": "a", "distinct_id": "u-1"}"#;
    for (text, field) in [(event_twice, "event"), (property_twice, "properties.o.k"), (id_twice, "event_id")]
    {
        let reply = ingest.post("/v1/events", text).await;
        assert_refused(field, &reply, 400, "invalid_body", Some(field));
        assert_eq!(event_errors(&reply), [(0, "duplicate_key", field)], "{}", reply.text);
    }
    let body =
        format!(r#"{{"batch": [{event_twice}, {}, {property_twice}, {id_twice}]}}"#, event("dup-ok", "u-1"));
    let reply = ingest.post("/v1/batch", body).await;
    assert_eq!((reply.status, &reply.json["accepted"]), (202, &json!(1)), "{}", reply.text);
    assert_eq!(
        event_errors(&reply),
        [
            (0, "duplicate_key", "event"),
            (2, "duplicate_key", "properties.o.k"),
            (3, "duplicate_key", "event_id")
        ],
        "{}",
        reply.text
    );
    assert_buffered_exactly(&ingest, &["dup-ok".into()]).await;
}

/// Rollups add a summed property's values across batches in the store, where a sum that
/// overflows to infinity cannot be written: such values are refused at the door, far
/// before that (two events of 1.5e308 would overflow).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_values_of_summed_properties_are_refused() {
    let redis = RedisServer::start().await.expect("redis-server starts");
    let pipeline = Pipeline {
        extra_yaml: "rollups:\n  intervals: [hour, day]\n  numericProperties: [revenue, cart.total]".into(),
        ..Pipeline::default()
    };
    let ingest = TestIngest::start(&redis.url(), pipeline).await;
    let props = |id: &str, p: Value| with(id, "properties", p);
    let cases = [
        bad(
            "a huge revenue",
            props("h-1", json!({ "revenue": 1.5e308 })),
            "number_out_of_range",
            "properties.revenue",
        ),
        bad(
            "a huge negative nested total",
            props("h-2", json!({ "cart": { "total": -1e300 } })),
            "number_out_of_range",
            "properties.cart.total",
        ),
    ];
    let mut valid = assert_refused_alone_and_in_a_batch(&ingest, &cases).await;
    // Properties that are not summed may hold any finite number.
    let reply = ingest
        .post("/v1/batch", batch(&[props("h-ok", json!({ "revenue": 1e250, "other": 1.5e308 }))]))
        .await;
    assert_eq!((reply.status, &reply.json["accepted"]), (202, &json!(1)), "{}", reply.text);
    valid.push("h-ok".into());
    assert_buffered_exactly(&ingest, &valid).await;
}
