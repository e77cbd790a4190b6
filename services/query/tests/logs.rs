//! The query API's logs, as the binary writes them: JSON lines whose request lines carry
//! the tenant and the trace id (the client's W3C `traceparent`, or a new one), and never a
//! key, good or bad.

mod support;

use std::time::Duration;

use pulse_testkit::{FerretDb, PipelineFiles, PipelineSpec, RedisServer, unique_name};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_logs_carry_the_tenant_and_the_trace_id_and_no_key() {
    let redis = RedisServer::start().await.expect("redis");
    let ferret = FerretDb::start().await.expect("ferretdb");
    let tenant = unique_name("ql");
    let mut spec = PipelineSpec::new(&tenant, &redis.url(), &ferret.uri());
    spec.read_key = format!("rk-{}", unique_name("secret"));
    let read_key = spec.read_key.clone();
    let files = PipelineFiles::write(spec).expect("pipeline config");
    let (query, url) = support::start_binary(&files, "json", "info,tower_http=debug").await;
    let http = reqwest::Client::new();

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traced = http
        .get(format!("{url}/v1/events"))
        .bearer_auth(&read_key)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .expect("traced request");
    assert!(traced.status().is_success(), "{}", traced.status());
    let wrong_key = format!("{read_key}-wrong");
    let refused = http.get(format!("{url}/v1/events")).bearer_auth(&wrong_key).send().await.expect("refused");
    assert_eq!(refused.status(), 401);

    // Both requests' lines are written once they are answered.
    let lines = || -> Vec<Value> {
        let log = std::fs::read_to_string(query.log()).unwrap_or_default();
        log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect()
    };
    let request_lines = |lines: &[Value]| -> Vec<Value> {
        lines.iter().filter(|l| l["span"]["name"] == "request").cloned().collect()
    };
    let mut found = Vec::new();
    for _ in 0..50 {
        found = request_lines(&lines());
        if found.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(query.log()).unwrap_or_default();
    assert!(found.len() >= 2, "no request lines in the log:\n{log}");
    for line in &found {
        assert_eq!(line["span"]["tenant"], tenant.as_str(), "{line}");
        let id = line["span"]["trace_id"].as_str().unwrap_or_default();
        assert_eq!(id.len(), 32, "{line}");
    }
    assert!(
        found.iter().any(|l| l["span"]["trace_id"] == trace_id && l["span"]["path"] == "/v1/events"),
        "the client's trace id is not on its request's lines:\n{log}"
    );
    assert!(
        found.iter().any(|l| l["span"]["trace_id"] != trace_id),
        "a request without traceparent gets a trace id of its own:\n{log}"
    );
    assert!(!log.contains(&read_key), "a key is in the log:\n{log}");
    drop((redis, ferret));
}
