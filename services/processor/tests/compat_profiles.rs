//! End to end with the real SDKs: Segment and PostHog calls through ingest's compat
//! endpoints reach storage exactly once, and their identify / `set` / `set_once` calls
//! become per-user profiles, also when a client retries an old identify later.
//! The SDKs are installed by tests/env/python-sdks.sh (`make env`); the scripts are
//! ingest's (services/ingest/tests/sdk).

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use pulse_testkit::{FerretDb, RedisServer};
use serde_json::{Value, json};
use support::Pipeline;

const DRAIN: Duration = Duration::from_secs(120);

fn sdk_python() -> PathBuf {
    if let Some(python) = std::env::var_os("PULSE_SDK_PYTHON") {
        return PathBuf::from(python);
    }
    let cache = std::env::var_os("PULSE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/pulse")
    });
    let python = cache.join("venv-sdks/bin/python");
    assert!(python.exists(), "{} is missing: run `make env` to install the SDKs", python.display());
    python
}

/// Runs an SDK script of ingest's tests with `plan`; returns the ids it sent.
fn run_sdk(script: &str, plan: Value, id_field: &str) -> Vec<String> {
    use std::io::Write;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ingest/tests/sdk").join(script);
    let mut child = std::process::Command::new(sdk_python())
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the SDK script");
    child.stdin.take().expect("stdin").write_all(plan.to_string().as_bytes()).expect("write the plan");
    let output = child.wait_with_output().expect("SDK script output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("the script's report");
    assert_eq!(report["errors"], json!([]), "no failed upload: {stderr}");
    report["sent"]
        .as_array()
        .expect("sent")
        .iter()
        .map(|m| m[id_field].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_calls_are_stored_once_and_identifies_become_profiles() {
    let redis = RedisServer::start().await.expect("redis");
    let ferret = FerretDb::start().await.expect("ferretdb");
    let pipeline = Pipeline::new(&redis.url(), false, &ferret, 4);
    let ingest = pipeline.start_ingest().await;
    let _processor = pipeline.start_processor("processor");

    let segment_plan = |calls: Vec<Value>| json!({ "host": format!("{}/compat/segment", ingest.url), "key": pipeline.write_key, "gzip": true, "calls": calls });
    let posthog_plan = |calls: Vec<Value>| json!({ "host": format!("{}/compat/posthog", ingest.url), "key": pipeline.write_key, "gzip": true, "calls": calls });
    let mut sent = Vec::new();
    sent.extend(run_sdk(
        "segment_send.py",
        segment_plan(vec![
            json!({ "call": "identify", "user": "ada", "traits": { "email": "ada@example.com", "plan": "free" } }),
            json!({ "call": "track", "user": "ada", "event": "Upgraded", "properties": { "revenue": 20 } }),
            json!({ "call": "identify", "user": "ada", "traits": { "plan": "pro", "company.name": "Acme" } }),
            json!({ "call": "page", "user": "ada", "name": "Pricing" }),
        ]),
        "messageId",
    ));
    sent.extend(run_sdk(
        "posthog_send.py",
        posthog_plan(vec![
            json!({ "call": "set_once", "user": "bob", "properties": { "first_source": "ads" } }),
            json!({ "call": "set", "user": "bob", "properties": { "$browser": "Firefox" } }),
            json!({ "call": "set_once", "user": "bob", "properties": { "first_source": "email" } }),
            json!({ "call": "capture", "user": "bob", "event": "clicked", "properties": { "$set": { "plan": "team" } } }),
        ]),
        "uuid",
    ));
    pipeline.wait_drained(DRAIN).await;
    pipeline.assert_exact(&sent.iter().cloned().collect::<BTreeSet<_>>()).await;

    let store = pipeline.store().await;
    let ada = store.profile("ada").await.expect("read").expect("ada has a profile");
    assert_eq!(
        Value::Object(ada),
        json!({ "email": "ada@example.com", "plan": "pro", "company.name": "Acme" })
    );
    let bob = store.profile("bob").await.expect("read").expect("bob has a profile");
    assert_eq!(Value::Object(bob), json!({ "first_source": "ads", "$browser": "Firefox", "plan": "team" }));

    // A client re-sends the first identify (same messageId) after the second: a duplicate,
    // stored once, and it does not turn the plan back to free.
    let first = json!({
        "batch": [{ "type": "identify", "messageId": sent[0], "userId": "ada", "traits": { "email": "ada@example.com", "plan": "free" } }]
    });
    let reply = ingest
        .http
        .post(format!("{}/compat/segment/v1/batch", ingest.url))
        .basic_auth(&pipeline.write_key, Some(""))
        .header("Content-Type", "application/json")
        .body(first.to_string())
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(reply.status(), 200);
    pipeline.wait_drained(DRAIN).await;
    pipeline.assert_exact(&sent.iter().cloned().collect::<BTreeSet<_>>()).await;
    let ada = store.profile("ada").await.expect("read").expect("ada has a profile");
    assert_eq!(ada["plan"], "pro", "a retried old identify does not overwrite a newer one");
}
