//! The query API's logs, as the binary writes them: JSON lines whose request lines carry
//! the tenant and the trace id (the client's W3C `traceparent`, or a new one), and never a
//! key, good or bad.

use std::process::Command;
use std::time::Duration;

use pulse_testkit::{FerretDb, PipelineFiles, PipelineSpec, RedisServer, ServerProcess, unique_name};
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
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_pulse-query"));
    command
        .arg("--config")
        .arg(&files.config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--log-format")
        .arg("json")
        .env("RUST_LOG", "info,tower_http=debug");
    let mut query =
        ServerProcess::spawn("query", command, &files.dir().join("query.log")).expect("start query");
    let http = reqwest::Client::new();
    query
        .wait_ready(Duration::from_secs(60), || {
            let probe = http.get(format!("{url}/readyz")).send();
            async move {
                probe.await.ok().filter(|r| r.status().is_success()).ok_or_else(|| "not ready".to_string())
            }
        })
        .await
        .expect("query ready");

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
