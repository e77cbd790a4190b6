//! What the monitoring tests share: the pipeline's services run from the config the
//! operator rendered, and steady traffic to ingest.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use serde_json::json;

/// The rendered config with each Secret key the pods mount written to a local file, as the
/// demo does: the path of the local config.
pub async fn materialise(
    client: &kube::Client,
    ns: &str,
    pipeline: &str,
    dir: &Path,
) -> (PathBuf, String, String) {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let text = maps
        .get(&format!("{pipeline}-config"))
        .await
        .expect("config map")
        .data
        .and_then(|d| d.get("pipeline.yaml").cloned())
        .expect("pipeline.yaml");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("config");
    let value = |secret: Secret, key: &str| -> String {
        let bytes = secret.data.and_then(|d| d.get(key).cloned()).unwrap_or_else(|| panic!("key {key}"));
        String::from_utf8(bytes.0).expect("utf-8")
    };
    let keys = secrets.get(&format!("{pipeline}-keys")).await.expect("keys secret");
    let (write_key, read_key) = (value(keys.clone(), "write-key"), value(keys, "read-key"));
    let files = [
        ("buffer", "redisUrlFile", value(secrets.get("redis").await.expect("redis secret"), "url")),
        ("storage", "mongodbUriFile", value(secrets.get("mongodb").await.expect("mongodb secret"), "uri")),
        ("keys", "writeKeyFile", write_key.clone()),
        ("keys", "readKeyFile", read_key),
    ];
    for (section, field, content) in files {
        let path = dir.join(format!("{section}-{field}"));
        std::fs::write(&path, content).expect("secret file");
        config[section][field] = serde_yaml::Value::String(path.to_string_lossy().into_owned());
    }
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, serde_yaml::to_string(&config).expect("yaml")).expect("config file");
    let tenant = config["tenant"].as_str().expect("tenant").to_string();
    (file, write_key, tenant)
}

pub async fn listener() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("address").to_string();
    (l, addr)
}

/// Batches of funnel traffic every 100 ms until `stop` (at most 3,000 batches): each has
/// users going through the funnel's steps, and one event ingest refuses (an empty name).
/// Every 20th request carries a wrong key (ingest refuses the whole request).
pub async fn load(ingest: String, write_key: String, stop: Arc<AtomicBool>, accepted: Arc<AtomicU64>) {
    let http = reqwest::Client::new();
    for n in 0..3_000u64 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut batch = Vec::new();
        for u in 0..5 {
            let user = format!("user-{}-{u}", n % 200);
            batch.push(
                json!({ "event": "page_viewed", "distinct_id": user, "properties": { "revenue": 1.5 } }),
            );
            if u % 2 == 0 {
                batch.push(
                    json!({ "event": "purchase", "distinct_id": user, "properties": { "revenue": 20 } }),
                );
            }
        }
        batch.push(json!({ "event": "", "distinct_id": "nobody" }));
        let key = if n % 20 == 19 { "not-the-write-key" } else { write_key.as_str() };
        let sent = http
            .post(format!("{ingest}/v1/batch"))
            .bearer_auth(key)
            .json(&json!({ "batch": batch }))
            .send()
            .await;
        if let Ok(r) = sent
            && r.status().is_success()
        {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
