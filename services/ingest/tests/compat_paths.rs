//! Segment's and PostHog's SDKs given only the ingest URL post to their own APIs' paths at
//! the root: Segment's `/v1/batch` (shared with Pulse's own, told apart by auth and
//! payload), `/v1/track` and the other calls, PostHog's `/batch/`, `/i/v0/e/`, `/capture/`,
//! `/e/` and its flag probes. Refusals carry the top-level fields each real API answers
//! with, which the SDKs read to report them.

mod support;

use base64::Engine;
use pulse_testkit::RedisServer;
use serde_json::{Value, json};
use support::{Pipeline, Reply, TestIngest, batch, event};

fn basic(key: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:")))
}

fn track(id: &str, user: &str) -> Value {
    json!({ "type": "track", "event": "clicked", "userId": user, "messageId": id, "properties": { "n": 1 } })
}

/// The buffered event ids, sorted.
async fn ids(ingest: &TestIngest) -> Vec<String> {
    let mut ids: Vec<String> = ingest.buffered().await.into_iter().map(|(_, e)| e.event_id).collect();
    ids.sort();
    ids
}

fn assert_segment_ok(what: &str, reply: &Reply) {
    assert_eq!((reply.status, reply.json["success"].clone()), (200, json!(true)), "{what}: {}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_and_pulse_share_v1_batch_by_auth_and_payload() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
    let key = ingest.write_key.clone();
    let segment = |id: &str| json!({ "batch": [track(id, "u-1")], "sentAt": "2026-01-01T00:00:00Z" });

    let reply =
        ingest.post_with("/v1/batch", segment("basic").to_string(), &[("Authorization", basic(&key))]).await;
    assert_segment_ok("Basic auth", &reply);
    let mut in_body = segment("body-key");
    in_body["writeKey"] = json!(key);
    assert_segment_ok("writeKey in the body", &ingest.post_with("/v1/batch", in_body.to_string(), &[]).await);
    let reply = ingest.post("/v1/batch", segment("bearer-sent-at").to_string()).await;
    assert_segment_ok("Bearer with Segment's sentAt", &reply);
    let reply = ingest.post("/v1/batch", json!({ "batch": [track("bearer-type", "u-2")] }).to_string()).await;
    assert_segment_ok("Bearer with Segment messages", &reply);
    let native = ingest.post("/v1/batch", batch(&[event("native", "u-3")])).await;
    assert_eq!((native.status, native.json["accepted"].clone()), (202, json!(1)), "{}", native.text);
    assert!(native.json.get("success").is_none(), "Pulse's own answer: {}", native.text);
    assert_eq!(ids(&ingest).await, ["basic", "bearer-sent-at", "bearer-type", "body-key", "native"]);

    // Without any key, the refusal says both ways to send it.
    let none = ingest.post_with("/v1/batch", batch(&[event("x", "u")]), &[]).await;
    assert_eq!((none.status, none.code()), (401, "unauthorized"), "{}", none.text);
    let message = none.json["message"].as_str().unwrap_or_default();
    assert!(message.contains("Basic") && message.contains("Bearer"), "{}", none.text);

    // Every single-call endpoint, its short form, and the /compat alias.
    let auth = [("Authorization", basic(&key))];
    let calls = [
        ("/v1/track", json!({ "event": "e", "userId": "u-4", "messageId": "track" })),
        ("/v1/identify", json!({ "userId": "u-4", "messageId": "identify", "traits": { "plan": "pro" } })),
        ("/v1/page", json!({ "userId": "u-4", "messageId": "page", "name": "Home" })),
        ("/v1/screen", json!({ "userId": "u-4", "messageId": "screen", "name": "Home" })),
        ("/v1/group", json!({ "userId": "u-4", "messageId": "group", "groupId": "g" })),
        ("/v1/alias", json!({ "userId": "u-4", "messageId": "alias", "previousId": "a-4" })),
        ("/v1/t", json!({ "event": "e", "userId": "u-4", "messageId": "t" })),
        ("/v1/b", json!({ "batch": [track("b", "u-4")] })),
        ("/compat/segment/v1/track", json!({ "event": "e", "userId": "u-4", "messageId": "compat" })),
    ];
    for (path, body) in calls {
        assert_segment_ok(path, &ingest.post_with(path, body.to_string(), &auth).await);
    }
    let stored = ids(&ingest).await;
    for id in ["track", "identify", "page", "screen", "group", "alias", "t", "b", "compat"] {
        assert!(stored.iter().any(|s| s == id), "{id} is buffered: {stored:?}");
    }
    assert_eq!(stored.len(), 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_traits_come_from_the_context_when_the_message_has_none() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
    let auth = [("Authorization", basic(&ingest.write_key))];
    let body = json!({ "batch": [
        { "type": "identify", "userId": "u-1", "messageId": "ctx", "context": { "traits": { "email": "a@x" } } },
        { "type": "identify", "userId": "u-1", "messageId": "both", "traits": { "plan": "pro" }, "context": { "traits": { "email": "a@x" } } },
        { "type": "group", "userId": "u-1", "groupId": "g", "messageId": "group", "context": { "traits": { "seats": 3 } } },
    ] });
    assert_segment_ok("identify", &ingest.post_with("/v1/batch", body.to_string(), &auth).await);
    let buffered = ingest.buffered().await;
    let props = |id: &str| {
        buffered.iter().find(|(_, e)| e.event_id == id).map(|(_, e)| e.properties.clone()).expect(id)
    };
    assert_eq!(props("ctx")["$set"], json!({ "email": "a@x" }));
    assert_eq!(props("both")["$set"], json!({ "plan": "pro" }), "top-level traits win whole");
    assert_eq!(props("group")["$group_traits"], json!({ "seats": 3 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posthog_paths_answer_at_the_root() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
    let key = ingest.write_key.clone();
    let capture = |id: &str| json!({ "event": "e", "distinct_id": "u-1", "uuid": id, "api_key": key });
    for (path, id) in [
        ("/batch/", "batch"),
        ("/i/v0/e/", "i"),
        ("/capture/", "capture"),
        ("/e", "e"),
        ("/compat/posthog/e/", "compat"),
    ] {
        let body =
            if path == "/batch/" { json!({ "api_key": key, "batch": [capture(id)] }) } else { capture(id) };
        let reply = ingest.post_with(path, body.to_string(), &[]).await;
        assert_eq!((reply.status, reply.json["status"].clone()), (200, json!(1)), "{path}: {}", reply.text);
    }
    assert_eq!(ids(&ingest).await, ["batch", "capture", "compat", "e", "i"]);

    for path in ["/decide/?v=3", "/flags/?v=2", "/compat/posthog/decide/"] {
        let reply =
            ingest.post_with(path, json!({ "api_key": key, "distinct_id": "u-1" }).to_string(), &[]).await;
        assert_eq!(
            (reply.status, reply.json["featureFlags"].clone()),
            (200, json!({})),
            "{path}: {}",
            reply.text
        );
        assert!(
            reply.json["pulse"].as_str().is_some_and(|s| s.contains("no feature flags")),
            "{}",
            reply.text
        );
    }
    assert_eq!(ids(&ingest).await.len(), 5, "a probe stores nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compat_refusals_carry_the_real_apis_top_level_fields() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest =
        TestIngest::start(&redis.url(), Pipeline { high_water_mark: 2, ..Pipeline::default() }).await;
    let segment = json!({ "batch": [track("m", "u-1")] }).to_string();

    // Segment: `code` and `message` at the top level, the structured error beside them.
    let wrong = ingest.post_with("/v1/batch", segment.clone(), &[("Authorization", basic("nope"))]).await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert_eq!(wrong.json["code"], "unauthorized");
    assert_eq!(wrong.json["message"], wrong.json["error"]["message"]);
    assert_eq!(wrong.json["error"]["field"], "Authorization");
    let bad = ingest
        .post_with(
            "/v1/track",
            json!({ "event": 7, "userId": "u" }).to_string(),
            &[("Authorization", basic(&ingest.write_key))],
        )
        .await;
    assert_eq!((bad.status, bad.json["code"].clone()), (400, json!("invalid_body")), "{}", bad.text);
    assert_eq!(bad.json["error"]["field"], "event");

    // A full backlog: 429 with Retry-After, the same shape.
    let three = json!({ "batch": [track("a", "u-1"), track("b", "u-2"), track("c", "u-3")] }).to_string();
    let full = ingest.post_with("/v1/batch", three, &[("Authorization", basic(&ingest.write_key))]).await;
    assert_eq!((full.status, full.json["code"].clone()), (429, json!("backlog_full")), "{}", full.text);
    assert_eq!(full.retry_after.as_deref(), Some("1"));
    assert!(full.json["message"].as_str().is_some_and(|m| m.contains("high-water mark")), "{}", full.text);

    // PostHog: `type`, `code`, `detail` and `attr`, as its capture API answers.
    let wrong = ingest
        .post_with(
            "/batch/",
            json!({ "api_key": "phc_nope", "batch": [{ "event": "e", "distinct_id": "u" }] }).to_string(),
            &[],
        )
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert_eq!(
        (wrong.json["type"].clone(), wrong.json["code"].clone(), wrong.json["attr"].clone()),
        (json!("authentication_error"), json!("unauthorized"), json!("api_key"))
    );
    assert_eq!(wrong.json["detail"], wrong.json["error"]["message"]);

    // Pulse's own API keeps its shape.
    let native = ingest
        .post_with("/v1/batch", batch(&[event("n", "u")]), &[("Authorization", "Bearer nope".into())])
        .await;
    assert_eq!((native.status, native.code()), (401, "unauthorized"), "{}", native.text);
    assert!(native.json.get("code").is_none() && native.json.get("message").is_none(), "{}", native.text);
    assert_eq!(ids(&ingest).await, Vec::<String>::new());
}
