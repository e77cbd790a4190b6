//! The life around requests: graceful shutdown, key rotation without a restart, the
//! OpenAPI document and the metrics.

mod support;

use std::time::Duration;

use pulse_testkit::RedisServer;
use support::{Pipeline, TestIngest, batch, event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_then_stops_accepting() {
    let redis = RedisServer::start().await.expect("redis");
    let mut ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
    let body = batch(&[event("in-flight-1", "u1"), event("in-flight-2", "u2")]);
    let (first_half, second_half) = body.split_at(body.len() / 2);
    let (first_half, second_half) = (first_half.to_string(), second_half.to_string());

    // A request whose body is still arriving when shutdown starts.
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let stream = futures::stream::unfold((0, Some(release_rx)), move |(step, release)| {
        let (first_half, second_half) = (first_half.clone(), second_half.clone());
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(first_half), (1, release))),
                1 => {
                    if let Some(release) = release {
                        let _ = release.await;
                    }
                    Some((Ok(second_half), (2, None)))
                }
                _ => None,
            }
        }
    });
    let url = format!("{}/v1/batch", ingest.url);
    let key = ingest.write_key.clone();
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .header("Authorization", format!("Bearer {key}"))
            .header("Content-Type", "application/json")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    ingest.shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = release_tx.send(());

    let response = in_flight.await.expect("task").expect("the in-flight request got an answer");
    assert_eq!(response.status(), 202, "the in-flight request completed");
    let server = ingest.server.take().expect("server task");
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("ingest exited after finishing in-flight work")
        .expect("task")
        .expect("clean exit");
    let refused = reqwest::Client::new().get(format!("{}/healthz", ingest.url)).send().await;
    assert!(refused.is_err(), "no new connections after shutdown");
    let ids: Vec<String> = ingest.buffered().await.into_iter().map(|(_, e)| e.event_id).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_write_key_is_picked_up_without_a_restart() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
    let old = ingest.write_key.clone();
    let with = |key: &str| vec![("Authorization", format!("Bearer {key}"))];
    let one = || batch(&[event(&pulse_testkit::unique_name("e"), "u")]);

    // Rotation step 1: the new key is added beside the old one.
    std::fs::write(ingest.write_key_file(), format!("{old}\nnew-key-2\n")).expect("add key");
    wait_for_status(&ingest, "new-key-2", 202).await;
    assert_eq!(
        ingest.post_with("/v1/batch", one(), &with(&old)).await.status,
        202,
        "the old key still works"
    );
    // Step 2: the old key is removed.
    std::fs::write(ingest.write_key_file(), "new-key-2\n").expect("remove old key");
    wait_for_status(&ingest, &old, 401).await;
    assert_eq!(ingest.post_with("/v1/batch", one(), &with("new-key-2")).await.status, 202);
}

async fn wait_for_status(ingest: &TestIngest, key: &str, wanted: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body = batch(&[event(&pulse_testkit::unique_name("e"), "u")]);
        let reply = ingest.post_with("/v1/batch", body, &[("Authorization", format!("Bearer {key}"))]).await;
        if reply.status == wanted {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "key {key} never got {wanted}: {}", reply.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_endpoints_and_errors() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
    let doc: serde_json::Value = ingest
        .http
        .get(format!("{}/openapi.json", ingest.url))
        .send()
        .await
        .expect("get openapi")
        .json()
        .await
        .expect("json");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    for path in ["/v1/events", "/v1/batch"] {
        let responses = &doc["paths"][path]["post"]["responses"];
        for status in ["202", "400", "401", "413", "415", "429", "503"] {
            assert!(responses.get(status).is_some(), "{path} documents {status}");
        }
    }
    let codes = doc["components"]["schemas"]["RequestErrorCode"].to_string();
    for code in [
        "unauthorized",
        "backlog_full",
        "rate_limited",
        "buffer_unavailable",
        "invalid_gzip",
        "duplicate_key",
    ] {
        assert!(codes.contains(code), "the error codes are documented: {code}");
    }
    // Every security scheme a path names is defined, as what the server takes.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["write_key"]["scheme"], "bearer", "write_key is defined: {schemes}");
    for path in ["/v1/events", "/v1/batch"] {
        assert_eq!(doc["paths"][path]["post"]["security"], serde_json::json!([{ "write_key": [] }]));
    }
    // Fields the server omits when empty are not required.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["ErrorResponse"]["required"], serde_json::json!(["error"]), "errors may be absent");
    assert_eq!(
        schemas["ErrorDetail"]["required"],
        serde_json::json!(["code", "message"]),
        "field may be absent"
    );
    let event_codes = schemas["IndexedEventError"]["properties"]["code"]["enum"].to_string();
    for code in ["duplicate_key", "nested_array", "invalid_character", "empty", "too_deep"] {
        assert!(event_codes.contains(code), "the event error codes are listed: {code} in {event_codes}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_accepted_and_refused_events_by_reason() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
    let events = vec![event("m-1", "u"), event("m-2", "u"), serde_json::json!({ "event": "x" })];
    assert_eq!(ingest.post("/v1/batch", batch(&events)).await.status, 202);
    let _ = ingest.post_with("/v1/batch", "{}", &[("Authorization", "Bearer wrong".to_string())]).await;
    let text = ingest
        .http
        .get(format!("{}/metrics", ingest.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let tenant = &ingest.tenant;
    let line = |name: &str| {
        text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in:\n{text}")).to_string()
    };
    assert!(line("pulse_ingest_events_accepted_total").ends_with(" 2"), "{text}");
    assert!(line("pulse_ingest_events_accepted_total").contains(&format!("tenant=\"{tenant}\"")));
    assert!(line("pulse_ingest_events_rejected_total").contains("reason=\"missing_field\""));
    assert!(line("pulse_ingest_requests_rejected_total").contains("reason=\"unauthorized\""));
    assert!(text.contains("pulse_ingest_request_duration_seconds_bucket"));
    assert!(text.contains("pulse_ingest_redis_duration_seconds_bucket"));
    assert!(text.contains("pulse_ingest_batch_events_bucket"));
}
