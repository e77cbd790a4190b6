//! Malformed Segment and PostHog payloads get the same clear errors as the native API:
//! each case is sent in the SDK's format and, side by side, as the equivalent native
//! request; both must be refused with the same status and codes, the compat one naming
//! the SDK's field. Nothing refused reaches the streams.

mod support;

use std::io::Write;

use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use pulse_testkit::RedisServer;
use serde_json::{Value, json};
use support::{Pipeline, Reply, TestIngest};

/// A case: its name, the compat body, the equivalent native body, and the fields the
/// compat refusal names (request error, then each event error).
type Case = (&'static str, String, String, (Option<&'static str>, &'static [&'static str]));

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

fn basic(key: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:")))
}

/// `(code, field)` of the request error and `(index, code, field)` of each event error.
fn errors(reply: &Reply) -> (String, Option<String>, Vec<(u64, String, String)>) {
    let events = reply.json["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["index"].as_u64().unwrap_or(u64::MAX),
                        e["code"].as_str().unwrap_or("").to_string(),
                        e["field"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (reply.code().to_string(), reply.json["error"]["field"].as_str().map(str::to_string), events)
}

/// The compat reply has the native reply's status and codes; the fields are the SDK's.
fn assert_same(case: &str, compat: &Reply, native: &Reply, fields: (Option<&str>, &[&str])) {
    assert_eq!(compat.status, native.status, "{case}: compat {} vs native {}", compat.text, native.text);
    let (code, field, events) = errors(compat);
    let (native_code, _, native_events) = errors(native);
    assert_eq!(code, native_code, "{case}: {}", compat.text);
    assert_eq!(field.as_deref(), fields.0, "{case}: error.field of {}", compat.text);
    let codes = |e: &[(u64, String, String)]| e.iter().map(|(i, c, _)| (*i, c.clone())).collect::<Vec<_>>();
    assert_eq!(codes(&events), codes(&native_events), "{case}: event errors of {}", compat.text);
    let named: Vec<&str> = events.iter().map(|(_, _, f)| f.as_str()).collect();
    assert_eq!(named, fields.1, "{case}: event error fields of {}", compat.text);
    assert!(compat.json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{case}: a message");
}

fn native_event(overrides: Value) -> Value {
    let mut e = json!({ "event_id": "n-1", "event": "clicked", "distinct_id": "u-1" });
    for (k, v) in overrides.as_object().expect("object") {
        if v.is_null() {
            e.as_object_mut().expect("object").remove(k);
        } else {
            e[k] = v.clone();
        }
    }
    e
}

fn segment_message(overrides: Value) -> Value {
    let mut m = json!({ "type": "track", "messageId": "s-1", "event": "clicked", "userId": "u-1" });
    for (k, v) in overrides.as_object().expect("object") {
        if v.is_null() {
            m.as_object_mut().expect("object").remove(k);
        } else {
            m[k] = v.clone();
        }
    }
    m
}

fn posthog_event(overrides: Value) -> Value {
    let mut e = json!({ "uuid": "p-1", "event": "clicked", "distinct_id": "u-1" });
    for (k, v) in overrides.as_object().expect("object") {
        if v.is_null() {
            e.as_object_mut().expect("object").remove(k);
        } else {
            e[k] = v.clone();
        }
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_segment_payloads_get_the_native_errors() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
    let auth = [("Authorization", basic(&ingest.write_key))];
    let segment = |body: String| ingest.post_with("/compat/segment/v1/batch", body, &auth);
    let native = |body: String| ingest.post("/v1/batch", body);
    let one = |m: Value| json!({ "batch": [m] }).to_string();
    let native_one = |e: Value| json!({ "batch": [e] }).to_string();

    let cases: Vec<Case> = vec![
        ("not JSON", "{\"batch\": [".into(), "{\"batch\": [".into(), (None, &[])),
        (
            "batch not an array",
            json!({ "batch": "x" }).to_string(),
            json!({ "batch": "x" }).to_string(),
            (Some("batch"), &[]),
        ),
        (
            "empty batch",
            json!({ "batch": [] }).to_string(),
            json!({ "batch": [] }).to_string(),
            (Some("batch"), &[]),
        ),
        (
            "no user",
            one(segment_message(json!({ "userId": null }))),
            native_one(native_event(json!({ "distinct_id": null }))),
            (None, &["userId"]),
        ),
        (
            "no event name",
            one(segment_message(json!({ "event": null }))),
            native_one(native_event(json!({ "event": null }))),
            (None, &["event"]),
        ),
        (
            "properties not an object",
            one(segment_message(json!({ "properties": "plan=pro" }))),
            native_one(native_event(json!({ "properties": "plan=pro" }))),
            (None, &["properties"]),
        ),
        (
            "bad timestamp",
            one(segment_message(json!({ "timestamp": "yesterday" }))),
            native_one(native_event(json!({ "timestamp": "yesterday" }))),
            (None, &["timestamp"]),
        ),
        (
            "timestamp older than retention",
            one(segment_message(json!({ "originalTimestamp": "2001-01-01T00:00:00Z" }))),
            native_one(native_event(json!({ "timestamp": "2001-01-01T00:00:00Z" }))),
            (None, &["originalTimestamp"]),
        ),
        (
            "messageId not a string",
            one(segment_message(json!({ "messageId": 5 }))),
            native_one(native_event(json!({ "event_id": 5 }))),
            (None, &["messageId"]),
        ),
        (
            "event too large",
            one(segment_message(json!({ "properties": { "blob": "x".repeat(40_000) } }))),
            native_one(native_event(json!({ "properties": { "blob": "x".repeat(40_000) } }))),
            (None, &[""]),
        ),
        (
            "identify traits too deep",
            one(
                json!({ "type": "identify", "userId": "u", "traits": { "a": { "b": { "c": { "d": { "e": 1 } } } } } }),
            ),
            native_one(native_event(
                json!({ "properties": { "$set": { "a": { "b": { "c": { "d": { "e": 1 } } } } } } }),
            )),
            (None, &["traits.a.b.c.d"]),
        ),
        (
            "too many events",
            json!({ "batch": vec![segment_message(json!({})); 1001] }).to_string(),
            json!({ "batch": vec![native_event(json!({})); 1001] }).to_string(),
            (Some("batch"), &[]),
        ),
    ];
    for (case, compat_body, native_body, fields) in cases {
        assert_same(case, &segment(compat_body).await, &native(native_body).await, fields);
    }

    // A batch keeps its valid messages and lists the refused ones by index.
    let mixed = json!({ "batch": [segment_message(json!({ "messageId": "ok-1" })), segment_message(json!({ "userId": null, "messageId": "bad" }))] });
    let reply = segment(mixed.to_string()).await;
    assert_eq!(
        (reply.status, reply.json["success"].clone(), reply.json["accepted"].clone()),
        (200, json!(true), json!(1)),
        "{}",
        reply.text
    );
    assert_eq!(errors(&reply).2, vec![(1, "missing_field".to_string(), "userId".to_string())]);

    // A single-call endpoint refuses like /v1/events.
    let single = ingest
        .post_with("/compat/segment/v1/track", segment_message(json!({ "event": 7 })).to_string(), &auth)
        .await;
    let native_single = ingest.post("/v1/events", native_event(json!({ "event": 7 })).to_string()).await;
    assert_same("single track", &single, &native_single, (Some("event"), &["event"]));

    // Auth, encoding and routing.
    let body = one(segment_message(json!({})));
    let no_key = ingest.post_with("/compat/segment/v1/batch", body.clone(), &[]).await;
    assert_eq!((no_key.status, no_key.code()), (401, "unauthorized"), "{}", no_key.text);
    let wrong =
        ingest.post_with("/compat/segment/v1/batch", body.clone(), &[("Authorization", basic("nope"))]).await;
    assert_eq!((wrong.status, wrong.code()), (401, "unauthorized"), "{}", wrong.text);
    let body_key = json!({ "batch": [segment_message(json!({ "messageId": "body-key" }))], "writeKey": ingest.write_key });
    let in_body = ingest.post_with("/compat/segment/v1/batch", body_key.to_string(), &[]).await;
    assert_eq!(in_body.status, 200, "writeKey in the body is accepted: {}", in_body.text);
    let bad_gzip = ingest
        .post_with(
            "/compat/segment/v1/batch",
            b"\x1f\x8bnot gzip".to_vec(),
            &[auth[0].clone(), ("Content-Encoding", "gzip".into())],
        )
        .await;
    assert_eq!((bad_gzip.status, bad_gzip.code()), (400, "invalid_gzip"), "{}", bad_gzip.text);
    let form = ingest
        .post_with(
            "/compat/segment/v1/batch",
            body.clone(),
            &[auth[0].clone(), ("Content-Type", "application/x-www-form-urlencoded".into())],
        )
        .await;
    assert_eq!((form.status, form.code()), (415, "unsupported_media_type"), "{}", form.text);
    let unknown = ingest.post_with("/compat/segment/v1/trak", body, &auth).await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"), "{}", unknown.text);

    let buffered: Vec<String> = ingest.buffered().await.into_iter().map(|(_, e)| e.event_id).collect();
    let mut buffered = buffered.into_iter().filter(|id| id != "n-1").collect::<Vec<_>>();
    buffered.sort();
    assert_eq!(buffered, vec!["body-key", "ok-1"], "only the accepted messages are buffered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_posthog_payloads_get_the_native_errors() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
    let key = ingest.write_key.clone();
    let posthog = |body: String| ingest.post_with("/compat/posthog/batch/", body, &[]);
    let native = |body: String| ingest.post("/v1/batch", body);
    let one = |e: Value| json!({ "api_key": key, "batch": [e] }).to_string();
    let native_one = |e: Value| json!({ "batch": [e] }).to_string();

    let cases: Vec<Case> = vec![
        ("not JSON", "{\"batch\": [".into(), "{\"batch\": [".into(), (None, &[])),
        (
            "empty batch",
            json!({ "api_key": key, "batch": [] }).to_string(),
            json!({ "batch": [] }).to_string(),
            (Some("batch"), &[]),
        ),
        (
            "no distinct_id",
            one(posthog_event(json!({ "distinct_id": null }))),
            native_one(native_event(json!({ "distinct_id": null }))),
            (None, &["distinct_id"]),
        ),
        (
            "no event name",
            one(posthog_event(json!({ "event": null }))),
            native_one(native_event(json!({ "event": null }))),
            (None, &["event"]),
        ),
        (
            "uuid not a string",
            one(posthog_event(json!({ "uuid": ["x"] }))),
            native_one(native_event(json!({ "event_id": ["x"] }))),
            (None, &["uuid"]),
        ),
        (
            "properties not an object",
            one(posthog_event(json!({ "properties": [1] }))),
            native_one(native_event(json!({ "properties": [1] }))),
            (None, &["properties"]),
        ),
        (
            "timestamp in the future",
            one(posthog_event(
                json!({ "timestamp": "2999-01-01T00:00:00Z", "properties": { "$ignore_sent_at": true } }),
            )),
            native_one(native_event(json!({ "timestamp": "2999-01-01T00:00:00Z" }))),
            (None, &["timestamp"]),
        ),
        (
            "empty property name",
            one(posthog_event(json!({ "properties": { "": 1 } }))),
            native_one(native_event(json!({ "properties": { "": 1 } }))),
            (None, &["properties"]),
        ),
    ];
    for (case, compat_body, native_body, fields) in cases {
        assert_same(case, &posthog(compat_body).await, &native(native_body).await, fields);
    }

    // One event posted on its own refuses like /v1/events.
    let mut single = posthog_event(json!({ "distinct_id": [1] }));
    single["api_key"] = json!(key);
    let reply = ingest.post_with("/compat/posthog/capture/", single.to_string(), &[]).await;
    let native_single =
        ingest.post("/v1/events", native_event(json!({ "distinct_id": [1] })).to_string()).await;
    assert_eq!((reply.status, reply.code()), (native_single.status, native_single.code()), "{}", reply.text);

    // Auth: the key is in the body.
    let no_key = posthog(json!({ "batch": [posthog_event(json!({}))] }).to_string()).await;
    assert_eq!(
        (no_key.status, no_key.code(), no_key.json["error"]["field"].clone()),
        (401, "unauthorized", json!("api_key")),
        "{}",
        no_key.text
    );
    let wrong =
        posthog(json!({ "api_key": "phc_nope", "batch": [posthog_event(json!({}))] }).to_string()).await;
    assert_eq!((wrong.status, wrong.code()), (401, "unauthorized"), "{}", wrong.text);

    // gzip as posthog-js sends it (no Content-Encoding) is read; a corrupt one is refused.
    let js = json!([{ "event": "$pageview", "uuid": "js-1", "properties": { "distinct_id": "u-js", "token": key } }]);
    let reply = ingest
        .post_with(
            "/compat/posthog/e/?compression=gzip-js",
            gzip(js.to_string().as_bytes()),
            &[("Content-Type", "text/plain".into())],
        )
        .await;
    assert_eq!((reply.status, reply.json["status"].clone()), (200, json!(1)), "{}", reply.text);
    let corrupt = ingest.post_with("/compat/posthog/batch/", b"\x1f\x8b\x08\x00garbage".to_vec(), &[]).await;
    assert_eq!((corrupt.status, corrupt.code()), (400, "invalid_gzip"), "{}", corrupt.text);

    let buffered: Vec<String> = ingest.buffered().await.into_iter().map(|(_, e)| e.event_id).collect();
    let buffered = buffered.into_iter().filter(|id| id != "n-1").collect::<Vec<_>>();
    assert_eq!(buffered, vec!["js-1"], "only the accepted event is buffered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_the_compat_endpoints() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
    let doc: Value = ingest
        .http
        .get(format!("{}/openapi.json", ingest.url))
        .send()
        .await
        .expect("get openapi")
        .json()
        .await
        .expect("openapi is JSON");
    for path in ["/compat/segment/v1/batch", "/compat/segment/v1/{kind}", "/compat/posthog/batch/"] {
        let post = &doc["paths"][path]["post"];
        assert!(post["responses"]["200"].is_object(), "{path} documents its 200: {post}");
        assert!(post["responses"]["503"].is_object(), "{path} documents its 503");
    }
}

/// What no store can hold, and JSON keys sent twice, are refused on the compat endpoints
/// exactly as on the native ones (the same codes), naming the SDK's fields: every path
/// into the buffer applies the same rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstorable_messages_and_duplicate_keys_get_the_native_errors() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
    let auth = [("Authorization", basic(&ingest.write_key))];
    let key = ingest.write_key.clone();
    let segment_one = |m: Value| json!({ "batch": [m] }).to_string();
    let posthog_one = |e: Value| json!({ "api_key": key, "batch": [e] }).to_string();
    let native_one = |e: Value| json!({ "batch": [e] }).to_string();

    let segment_cases: Vec<Case> = vec![
        (
            "nested arrays in properties",
            segment_one(segment_message(json!({ "properties": { "a": [[1, 2], [3]] } }))),
            native_one(native_event(json!({ "properties": { "a": [[1, 2], [3]] } }))),
            (None, &["properties.a[0]"]),
        ),
        (
            "nested arrays in identify traits",
            segment_one(json!({ "type": "identify", "userId": "u", "traits": { "tags": [["x"]] } })),
            native_one(native_event(json!({ "properties": { "$set": { "tags": [["x"]] } } }))),
            (None, &["traits.tags[0]"]),
        ),
        (
            "NUL in a trait name",
            segment_one(json!({ "type": "identify", "userId": "u", "traits": { "e\u{0}mail": "x" } })),
            native_one(native_event(json!({ "properties": { "$set": { "e\u{0}mail": "x" } } }))),
            (None, &["traits.e\u{0}mail"]),
        ),
        (
            "NUL in userId",
            segment_one(segment_message(json!({ "userId": "u\u{0}" }))),
            native_one(native_event(json!({ "distinct_id": "u\u{0}" }))),
            (None, &["userId"]),
        ),
        (
            "NUL in messageId",
            segment_one(segment_message(json!({ "messageId": "m\u{0}" }))),
            native_one(native_event(json!({ "event_id": "m\u{0}" }))),
            (None, &["messageId"]),
        ),
        (
            "an event name of spaces",
            segment_one(segment_message(json!({ "event": "   " }))),
            native_one(native_event(json!({ "event": "   " }))),
            (None, &["event"]),
        ),
        (
            "an empty nested property name",
            segment_one(segment_message(json!({ "properties": { "o": { "": 1 } } }))),
            native_one(native_event(json!({ "properties": { "o": { "": 1 } } }))),
            (None, &["properties.o"]),
        ),
        (
            "batch twice",
            format!(
                r#"{{"batch": [{}], "batch": [{}]}}"#,
                segment_message(json!({})),
                segment_message(json!({}))
            ),
            format!(r#"{{"batch": [{}], "batch": [{}]}}"#, native_event(json!({})), native_event(json!({}))),
            (Some("batch"), &[]),
        ),
    ];
    for (case, compat_body, native_body, fields) in segment_cases {
        let compat = ingest.post_with("/compat/segment/v1/batch", compat_body, &auth).await;
        assert_same(case, &compat, &ingest.post("/v1/batch", native_body).await, fields);
    }

    let posthog_cases: Vec<Case> = vec![
        (
            "nested arrays in $set",
            posthog_one(posthog_event(json!({ "$set": { "tags": [["x"]] } }))),
            native_one(native_event(json!({ "properties": { "$set": { "tags": [["x"]] } } }))),
            (None, &["properties.$set.tags[0]"]),
        ),
        (
            "an empty $unset name",
            posthog_one(posthog_event(json!({ "properties": { "$unset": [""] } }))),
            native_one(native_event(json!({ "properties": { "$unset": [""] } }))),
            (None, &["properties.$unset[0]"]),
        ),
        (
            "NUL in a $unset name",
            posthog_one(posthog_event(json!({ "properties": { "$unset": ["a\u{0}"] } }))),
            native_one(native_event(json!({ "properties": { "$unset": ["a\u{0}"] } }))),
            (None, &["properties.$unset[0]"]),
        ),
        (
            "NUL in distinct_id",
            posthog_one(posthog_event(json!({ "distinct_id": "\u{0}" }))),
            native_one(native_event(json!({ "distinct_id": "\u{0}" }))),
            (None, &["distinct_id"]),
        ),
        (
            "a blank event name",
            posthog_one(posthog_event(json!({ "event": " " }))),
            native_one(native_event(json!({ "event": " " }))),
            (None, &["event"]),
        ),
    ];
    for (case, compat_body, native_body, fields) in posthog_cases {
        let compat = ingest.post_with("/compat/posthog/batch/", compat_body, &[]).await;
        assert_same(case, &compat, &ingest.post("/v1/batch", native_body).await, fields);
    }

    // A key sent twice inside a message refuses the request (the SDK body is read whole),
    // naming the key by its path in the SDK's body.
    let twice = r#"{"batch": [{"type": "track", "messageId": "d-1", "event": "e", "userId": "u", "properties": {"plan": 1, "plan": 2}}]}"#;
    let reply = ingest.post_with("/compat/segment/v1/batch", twice, &auth).await;
    assert_eq!(
        (reply.status, reply.code(), reply.json["error"]["field"].clone()),
        (400, "duplicate_key", json!("batch[0].properties.plan")),
        "{}",
        reply.text
    );
    let twice = format!(
        r#"{{"api_key": "{key}", "batch": [{{"uuid": "d-2", "event": "e", "event": "f", "distinct_id": "u"}}]}}"#
    );
    let reply = ingest.post_with("/compat/posthog/batch/", twice, &[]).await;
    assert_eq!(
        (reply.status, reply.code(), reply.json["error"]["field"].clone()),
        (400, "duplicate_key", json!("batch[0].event")),
        "{}",
        reply.text
    );

    let buffered: Vec<String> = ingest.buffered().await.into_iter().map(|(_, e)| e.event_id).collect();
    assert!(buffered.is_empty(), "nothing refused is buffered: {buffered:?}");
}
