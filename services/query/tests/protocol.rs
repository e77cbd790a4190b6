//! The query API's HTTP contract against a real FerretDB and Redis: every refusal is JSON
//! in the service's error shape (405, 413, 415 included), the `Authorization` scheme is
//! case-insensitive, `/readyz` answers while the store hangs, property keys containing `.`
//! can be named, and the OpenAPI document says what the server accepts and answers.

use std::sync::Arc;

use pulse_core::buffer::BufferedEvent;
use pulse_core::rollup::StreamPosition;
use pulse_store::Store;
use pulse_testkit::{FerretDb, PipelineFiles, PipelineSpec, RedisServer, unique_name};
use serde_json::{Value, json};

/// 2026-03-27 00:00 UTC.
const T0: i64 = 1_774_569_600_000;
const DAY: i64 = 86_400_000;

struct Service {
    url: String,
    read_key: String,
    http: reqwest::Client,
    _files: PipelineFiles,
}

/// A query API over a store holding `events` in one event block.
async fn start(redis: &RedisServer, ferret: &FerretDb, events: &[BufferedEvent]) -> Service {
    let mut spec = PipelineSpec::new(&unique_name("proto"), &redis.url(), &ferret.uri());
    spec.partitions = 1;
    spec.retention = "3650d".to_string();
    spec.extra = "rollups:\n  intervals: [hour, day]\n".to_string();
    let files = PipelineFiles::write(spec).expect("pipeline config");
    let (read_key, database, config) =
        (files.spec.read_key.clone(), files.spec.database.clone(), files.config.clone());
    let store = Store::new(ferret.client().await.expect("client").database(&database));
    store.ensure_schema().await.expect("schema");
    let position = StreamPosition { millis: 1, sequence: 0 };
    let positioned: Vec<(StreamPosition, &BufferedEvent)> = events.iter().map(|e| (position, e)).collect();
    store.write_event_blocks(0, position, position, &positioned).await.expect("blocks");

    let api = pulse_query::prepare(&pulse_query::Settings::new(config)).await.expect("query API");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, pulse_query::api::router(Arc::clone(&api))).await });
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http.get(format!("{url}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Service { url, read_key, http, _files: files }
}

fn event(id: &str, user: &str, ts: i64, properties: Value) -> BufferedEvent {
    BufferedEvent {
        event_id: id.into(),
        id_generated: false,
        event: "visit".into(),
        distinct_id: user.into(),
        timestamp: ts,
        received_at: ts,
        properties: properties.as_object().cloned().unwrap_or_default(),
    }
}

/// Status, Content-Type and JSON body of a reply.
async fn parts(reply: reqwest::Response) -> (u16, String, Value) {
    let status = reply.status().as_u16();
    let content_type =
        reply.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    (status, content_type, reply.json().await.unwrap_or(Value::Null))
}

fn trend_filtered_on(property: &str) -> Value {
    json!({
        "event": { "event": "visit", "filters": [{ "property": property, "op": "eq", "value": "mail" }] },
        "measure": { "kind": "count" }, "interval": "day", "from": T0, "to": T0 + DAY,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_json_and_the_scheme_is_case_insensitive() {
    let (redis, ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    let s = start(&redis, &ferret, &[]).await;
    let trends = format!("{}/v1/trends", s.url);
    let auth = format!("Bearer {}", s.read_key);

    let cases = [
        ("GET trends", s.http.get(&trends).header("Authorization", &auth), 405, "method_not_allowed"),
        (
            "text/plain",
            s.http
                .post(&trends)
                .header("Authorization", &auth)
                .header("Content-Type", "text/plain")
                .body("{}"),
            415,
            "unsupported_media_type",
        ),
        (
            "3 MiB",
            // Its own client: the server answers before reading the body and closes the
            // connection, which a pooled one would then reuse.
            reqwest::Client::new()
                .post(&trends)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .body(vec![b' '; 3 << 20]),
            413,
            "body_too_large",
        ),
        ("no such path", s.http.get(format!("{}/v2/nothing", s.url)), 404, "not_found"),
        ("no key", s.http.post(&trends).json(&trend_filtered_on("plan")), 401, "unauthorized"),
        // Times beyond the years 1 to 9999 once overflowed: a dropped connection or a panic.
        (
            "i64 extremes",
            s.http
                .get(format!("{}/v1/events?from={}&to={}", s.url, i64::MIN, i64::MIN + 1))
                .header("Authorization", &auth),
            400,
            "invalid_query",
        ),
        (
            "to near i64::MAX",
            s.http.post(&trends).header("Authorization", &auth).json(&json!({
                "event": { "event": "visit" }, "measure": { "kind": "dau" }, "interval": "day",
                "from": 0, "to": i64::MAX - 1,
            })),
            400,
            "invalid_query",
        ),
    ];
    for (what, request, status, code) in cases {
        let (got, content_type, body) = parts(request.send().await.expect("answers")).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{what}: {body}");
        assert_eq!(content_type, "application/json", "{what}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
    }

    for scheme in ["bearer", "BEARER", "Bearer"] {
        let reply = s
            .http
            .post(&trends)
            .header("Authorization", format!("{scheme} {}", s.read_key))
            .json(&trend_filtered_on("plan"))
            .send()
            .await
            .expect("answers");
        assert_eq!(reply.status(), 200, "scheme {scheme:?}");
    }
    // No Content-Type is taken as JSON (as ingest does).
    let reply = s
        .http
        .post(&trends)
        .header("Authorization", &auth)
        .body(trend_filtered_on("plan").to_string())
        .send()
        .await
        .expect("answers");
    assert_eq!(reply.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_when_the_store_hangs() {
    let (redis, mut ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    let s = start(&redis, &ferret, &[]).await;
    let pid = ferret.process_mut().pid().expect("ferretdb runs").to_string();
    // A stopped store accepts connections' bytes and never answers: a hung store.
    let signal = |sig: &str| {
        let done = std::process::Command::new("kill").args([sig, &pid]).status().expect("kill");
        assert!(done.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let probe = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        s.http.get(format!("{}/readyz", s.url)).send(),
    )
    .await;
    signal("-CONT");
    let reply = probe.expect("/readyz answered while the store hung").expect("answers");
    let (status, content_type, body) = parts(reply).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("not_ready")), "{body}");
    assert_eq!(content_type, "application/json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_property_key_containing_a_dot_can_be_filtered_and_broken_down_on() {
    let (redis, ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    let events = [
        event("e1", "u1", T0 + 1_000, json!({ "utm.source": "mail" })),
        event("e2", "u2", T0 + 2_000, json!({ "utm.source": "mail" })),
        event("e3", "u3", T0 + 3_000, json!({ "utm.source": "ads" })),
        event("e4", "u4", T0 + 4_000, json!({ "utm": { "source": "mail" } })),
    ];
    let s = start(&redis, &ferret, &events).await;
    let post =
        |body: Value| s.http.post(format!("{}/v1/trends", s.url)).bearer_auth(&s.read_key).json(&body).send();
    let (status, _, answer) = parts(post(trend_filtered_on("utm.source")).await.expect("answers")).await;
    assert_eq!(status, 200, "{answer}");
    let count = &answer["result"]["series"][0]["points"][0]["value"];
    assert_eq!(count, &json!(3.0), "two flat keys and one nested: {answer}");

    let breakdown = json!({
        "event": { "event": "visit" }, "measure": { "kind": "count" }, "interval": "day",
        "from": T0, "to": T0 + DAY, "breakdown": { "property": "utm.source", "top": 5 },
    });
    let (status, _, answer) = parts(post(breakdown).await.expect("answers")).await;
    assert_eq!(status, 200, "{answer}");
    let labels: Vec<String> =
        answer["result"]["series"].as_array().into_iter().flatten().map(|s| s["label"].to_string()).collect();
    assert!(labels.iter().any(|l| l.contains("ads")), "the flat key's values are a breakdown: {labels:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_says_what_is_accepted_and_answered() {
    let doc = pulse_query::openapi::document();
    let schemas = &doc["components"]["schemas"];
    let required = |schema: &str| -> Vec<String> {
        schemas[schema]["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    assert!(!required("ErrorDetail").contains(&"fields".to_string()), "fields is omitted when empty");
    for path in ["/v1/trends", "/v1/funnels", "/v1/retention", "/v1/cohorts"] {
        let responses = &doc["paths"][path]["post"]["responses"];
        for status in ["200", "400", "401", "413", "415", "422", "503"] {
            assert!(responses.get(status).is_some(), "{path} documents {status}");
        }
        assert!(responses["503"]["headers"].get("Retry-After").is_some(), "{path}: 503 has Retry-After");
    }
    assert_eq!(schemas["TrendRequest"]["properties"]["to"]["maximum"], json!(253_402_300_799_999_i64));
    let filter_rules = schemas["PropertyFilter"]["oneOf"].as_array().map_or(0, Vec::len);
    assert_eq!(filter_rules, 4, "which ops take value, values or neither is in the schema");
    let retention = &schemas["RetentionRequest"]["properties"];
    assert_eq!(retention["periods"]["minimum"], json!(1), "periods: 0 is refused: {retention}");
    let text = doc.to_string();
    assert_eq!(
        schemas["EventMatcher"]["properties"]["event"]["minLength"],
        json!(1),
        "event names may not be empty"
    );
    assert!(text.contains("Must be before `to`"), "the range rule is stated");
}
