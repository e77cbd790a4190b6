//! Runs ingest in-process against a real Redis for the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use pulse_buffer::TenantLayout;
use pulse_core::buffer::{BufferedEvent, ENTRY_FIELD};
use pulse_ingest::Settings;
use pulse_testkit::{PipelineFiles, PipelineSpec};
use redis::AsyncCommands;
use redis::streams::StreamRangeReply;
use serde_json::Value;

/// A running ingest and what it writes to.
pub struct TestIngest {
    pub url: String,
    pub write_key: String,
    pub tenant: String,
    pub partitions: u32,
    pub redis_url: String,
    /// The config and secret files.
    pub files: PipelineFiles,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<Result<(), pulse_ingest::IngestError>>>,
    pub http: reqwest::Client,
}

/// What differs between tests' pipelines.
#[derive(Clone)]
pub struct Pipeline {
    pub tenant: String,
    pub partitions: u32,
    pub durability: &'static str,
    pub high_water_mark: u64,
    pub cluster: bool,
    /// Extra YAML under `ingest:` (limits, rate limit).
    pub ingest_yaml: String,
    /// Extra top-level YAML (e.g. `rollups:`).
    pub extra_yaml: String,
    pub redis_timeout: Duration,
    /// Connection cap and header/body read timeouts.
    pub connections: pulse_ingest::ConnectionLimits,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            tenant: pulse_testkit::unique_name("tenant"),
            partitions: 4,
            durability: "fast",
            high_water_mark: 1_000_000,
            cluster: false,
            ingest_yaml: String::new(),
            extra_yaml: String::new(),
            redis_timeout: Duration::from_millis(1000),
            connections: pulse_ingest::ConnectionLimits::default(),
        }
    }
}

impl TestIngest {
    /// Starts ingest for `pipeline` on Redis at `redis_url` and waits until it is ready.
    pub async fn start(redis_url: &str, pipeline: Pipeline) -> Self {
        let ingest = Self::start_unready(redis_url, pipeline).await;
        ingest.wait_ready().await;
        ingest
    }

    /// Starts ingest without waiting for readiness.
    pub async fn start_unready(redis_url: &str, pipeline: Pipeline) -> Self {
        let mut spec = PipelineSpec::new(&pipeline.tenant, redis_url, "mongodb://127.0.0.1:1/");
        spec.write_key = format!("wk-{}", pulse_testkit::unique_name("key"));
        spec.read_key = "rk-unused".to_string();
        spec.database = "pulse_test".to_string();
        spec.retention = "365d".to_string();
        spec.cluster = pipeline.cluster;
        spec.partitions = pipeline.partitions;
        spec.durability = Some(pipeline.durability.to_string());
        spec.high_water_mark = pipeline.high_water_mark;
        let ingest_yaml =
            if pipeline.ingest_yaml.is_empty() { "  limits: {}" } else { pipeline.ingest_yaml.as_str() };
        spec.extra = format!("ingest:\n{ingest_yaml}\n{}\n", pipeline.extra_yaml);
        let write_key = spec.write_key.clone();
        let files = PipelineFiles::write(spec).expect("pipeline config");
        let config_path = files.config.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut settings = Settings::new(config_path);
        settings.redis_timeout = pipeline.redis_timeout;
        settings.connections = pipeline.connections;
        settings.shutdown_grace = Duration::from_secs(10);
        let server = tokio::spawn(pulse_ingest::run(settings, listener, async {
            let _ = rx.await;
        }));
        TestIngest {
            url,
            write_key,
            tenant: pipeline.tenant,
            partitions: pipeline.partitions,
            redis_url: redis_url.to_string(),
            files,
            shutdown: Some(tx),
            server: Some(server),
            http: reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("http client"),
        }
    }

    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.url)).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "ingest did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Signals shutdown; the server task then finishes.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub fn write_key_file(&self) -> PathBuf {
        self.files.dir().join("write-key")
    }

    /// POSTs `body` to `path` with the write key; returns status, headers and JSON body.
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        self.post_with(path, body, &[("Authorization", format!("Bearer {}", self.write_key))]).await
    }

    pub async fn post_with(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, String)],
    ) -> Reply {
        let mut request = self.http.post(format!("{}{path}", self.url)).body(body);
        let mut has_type = false;
        for (name, value) in headers {
            has_type |= name.eq_ignore_ascii_case("content-type");
            request = request.header(*name, value);
        }
        if !has_type {
            request = request.header("Content-Type", "application/json");
        }
        let response = request.send().await.expect("request reaches ingest");
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
        let text = response.text().await.expect("response body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, retry_after, json, text }
    }

    /// Every event in every partition stream of this tenant, with its partition.
    pub async fn buffered(&self) -> Vec<(u32, BufferedEvent)> {
        let mut conn = redis::Client::open(self.redis_url.as_str())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis");
        let mut all = Vec::new();
        for p in 0..self.partitions {
            let reply: StreamRangeReply =
                conn.xrange_all(TenantLayout::of(&self.tenant).stream(p)).await.expect("XRANGE");
            for entry in reply.ids {
                let payload: String = entry.get(ENTRY_FIELD).expect("events field");
                let events: Vec<BufferedEvent> =
                    serde_json::from_str(&payload).expect("entry is a JSON array of events");
                all.extend(events.into_iter().map(|e| (p, e)));
            }
        }
        all
    }
}

impl Drop for TestIngest {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub json: Value,
    pub text: String,
}

impl Reply {
    /// The request-level error code, or "" when there is none.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

/// A valid event with a unique id.
pub fn event(id: &str, user: &str) -> Value {
    serde_json::json!({ "event_id": id, "event": "page_viewed", "distinct_id": user, "properties": { "path": "/pricing" } })
}

pub fn batch(events: &[Value]) -> String {
    serde_json::json!({ "batch": events }).to_string()
}

/// Starts an HTTP proxy in front of ingest at `target` that passes every request and answer
/// through unchanged but for the `Retry-After` header, which it drops: ingest always sends
/// one, and the SDK tests also need what an SDK does without it. Returns the proxy's URL.
pub async fn proxy_without_retry_after(target: &str) -> String {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::http::{StatusCode, header};
    use axum::response::Response;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
    let url = format!("http://{}", listener.local_addr().expect("proxy address"));
    let target = target.to_string();
    let client = reqwest::Client::new();
    let forward = move |request: Request| {
        let (client, target) = (client.clone(), target.clone());
        async move {
            let (parts, body) = request.into_parts();
            let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
                return Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(Body::empty())
                    .expect("response");
            };
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut upstream = client.request(parts.method, format!("{target}{path}")).body(body);
            for (name, value) in &parts.headers {
                if name != header::HOST && name != header::CONTENT_LENGTH {
                    upstream = upstream.header(name, value);
                }
            }
            let Ok(answer) = upstream.send().await else {
                return Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(Body::empty())
                    .expect("response");
            };
            let mut response = Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                if ![header::RETRY_AFTER, header::CONTENT_LENGTH, header::TRANSFER_ENCODING].contains(name) {
                    response = response.header(name, value);
                }
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            response.body(Body::from(bytes)).expect("response")
        }
    };
    let app = axum::Router::new().fallback(forward);
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}
