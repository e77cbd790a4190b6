//! The demo's processes and its talk with them: kubectl against the local cluster, the
//! operator and the three services as local processes, sending traffic and querying.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::StreamExt;
use jiff::tz::TimeZone;
use pulse_testkit::{KubeStack, ServerProcess};
use serde_json::{Value, json};

use crate::report::progress;

/// Where the release binaries are: next to this one (target/release).
pub fn binaries_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding pulse-demo's own path: {e}"))?;
    let dir = exe.parent().map(Path::to_path_buf).ok_or("pulse-demo has no parent dir")?;
    for b in ["pulse-operator", "pulse-ingest", "pulse-processor", "pulse-query"] {
        if !dir.join(b).exists() {
            return Err(format!("{b} is not in {}: run `make demo`, which builds it", dir.display()));
        }
    }
    Ok(dir)
}

/// The repository (examples/ and crds/ are read from it).
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// Polls `check` until it succeeds or `timeout` passes (then the last error).
pub async fn wait_until<T, F, Fut>(timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if started.elapsed() > timeout => return Err(format!("after {timeout:?}: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// kubectl in the demo's namespace of the local cluster.
pub struct Cluster<'a> {
    pub stack: &'a KubeStack,
    pub namespace: &'a str,
}

impl Cluster<'_> {
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .stack
            .kubectl()
            .map_err(|e| e.to_string())?
            .args(["-n", self.namespace])
            .args(args)
            .output()
            .map_err(|e| format!("running kubectl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
        }
    }

    pub fn apply(&self, path: &Path) -> Result<String, String> {
        self.kubectl(&["apply", "--server-side", "-f", &path.to_string_lossy()])
    }

    pub fn secret(&self, name: &str, key: &str, value: &str) -> Result<String, String> {
        self.kubectl(&["create", "secret", "generic", name, &format!("--from-literal={key}={value}")])
    }

    fn secret_value(&self, name: &str, key: &str) -> Result<String, String> {
        let path = format!("jsonpath={{.data.{}}}", key.replace('.', "\\."));
        let encoded = self.kubectl(&["get", "secret", name, "-o", &path])?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| format!("secret {name} key {key}: {e}"))?;
        String::from_utf8(bytes).map_err(|e| format!("secret {name} key {key}: {e}"))
    }

    /// The pipeline's ConfigMap and the Secrets its pods mount, as local files: the config
    /// with each mounted path replaced by the local file holding the same Secret key.
    pub fn materialise(&self, pipeline: &str, dir: &Path) -> Result<Materialised, String> {
        let text = self.kubectl(&[
            "get",
            "configmap",
            &format!("{pipeline}-config"),
            "-o",
            "jsonpath={.data.pipeline\\.yaml}",
        ])?;
        let mut config: serde_yaml::Value =
            serde_yaml::from_str(&text).map_err(|e| format!("the rendered config: {e}"))?;
        let spec: Value =
            serde_json::from_str(&self.kubectl(&["get", "analyticspipeline", pipeline, "-o", "json"])?)
                .map_err(|e| format!("the pipeline: {e}"))?;
        let secret_ref = |path: &str| -> Result<(String, String), String> {
            let r = spec.pointer(path).ok_or(format!("the pipeline has no {path}"))?;
            Ok((r["name"].as_str().unwrap_or_default().into(), r["key"].as_str().unwrap_or_default().into()))
        };
        let (redis_secret, redis_key) = secret_ref("/spec/buffer/redis/external/urlSecretRef")?;
        let (mongo_secret, mongo_key) = secret_ref("/spec/storage/mongodb/uriSecretRef")?;
        let keys = format!("{pipeline}-keys");
        let write_key = self.secret_value(&keys, "write-key")?;
        let read_key = self.secret_value(&keys, "read-key")?;
        let files = [
            ("buffer", "redisUrlFile", "redis-url", self.secret_value(&redis_secret, &redis_key)?),
            ("storage", "mongodbUriFile", "mongodb-uri", self.secret_value(&mongo_secret, &mongo_key)?),
            ("keys", "writeKeyFile", "write-key", write_key.clone()),
            ("keys", "readKeyFile", "read-key", read_key.clone()),
        ];
        for (section, field, file, value) in files {
            let path = dir.join("secrets").join(file);
            std::fs::write(&path, value).map_err(|e| format!("writing {}: {e}", path.display()))?;
            config[section][field] = serde_yaml::Value::String(path.to_string_lossy().into_owned());
        }
        let timezone = config["timezone"].as_str().unwrap_or("UTC").to_string();
        let timezone = TimeZone::get(&timezone).map_err(|e| format!("time zone {timezone}: {e}"))?;
        let file = dir.join("pipeline.yaml");
        let text = serde_yaml::to_string(&config).map_err(|e| format!("the config: {e}"))?;
        std::fs::write(&file, text).map_err(|e| format!("writing {}: {e}", file.display()))?;
        Ok(Materialised { file, write_key, read_key, timezone })
    }
}

pub struct Materialised {
    pub file: PathBuf,
    pub write_key: String,
    pub read_key: String,
    pub timezone: TimeZone,
}

/// A Pulse binary running as a local process, logging to a file in the demo's dir.
pub struct Service {
    pub url: String,
    pub log: PathBuf,
    process: ServerProcess,
}

impl Service {
    pub async fn operator(bin: &Path, dir: &Path, stack: &KubeStack) -> Result<Service, String> {
        let port = free_port()?;
        let mut cmd = Command::new(bin.join("pulse-operator"));
        cmd.env("KUBECONFIG", stack.kubeconfig()).env("RUST_LOG", "info,kube=warn").args([
            "--namespace",
            "demo",
            "--leader-elect=false",
            "--image",
            "pulse:demo",
            "--metrics-address",
            &format!("127.0.0.1:{port}"),
        ]);
        Service::spawn("pulse-operator", cmd, port, "/healthz", dir).await
    }

    pub async fn start(bin: &Path, name: &str, config: &Path, dir: &Path) -> Result<Service, String> {
        let port = free_port()?;
        let mut cmd = Command::new(bin.join(name));
        let log = std::env::var("PULSE_DEMO_LOG").unwrap_or_else(|_| "info".into());
        cmd.env("RUST_LOG", log).arg("--config").arg(config).args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "text",
        ]);
        Service::spawn(name, cmd, port, "/readyz", dir).await
    }

    async fn spawn(name: &str, cmd: Command, port: u16, probe: &str, dir: &Path) -> Result<Service, String> {
        let log = dir.join(format!("{name}.log"));
        let mut process = ServerProcess::spawn(name, cmd, &log).map_err(|e| e.to_string())?;
        let url = format!("http://127.0.0.1:{port}");
        let probe_url = format!("{url}{probe}");
        process
            .wait_ready(Duration::from_secs(60), || async {
                let r = reqwest::get(&probe_url).await.map_err(|e| e.to_string())?;
                if r.status().is_success() { Ok(()) } else { Err(format!("{probe}: {}", r.status())) }
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(Service { url, log, process })
    }

    /// SIGTERM, then up to 10 s to finish what is in flight.
    pub fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(10));
    }
}

/// Sends `events` to ingest in batches of 500, four at a time, with a progress bar; the
/// number accepted. Any refused batch stops the demo with ingest's error.
pub async fn send(ingest: &str, write_key: &str, events: &[Value]) -> Result<usize, String> {
    let http = reqwest::Client::new();
    let done = Arc::new(AtomicUsize::new(0));
    let total = events.len();
    let url = format!("{ingest}/v1/batch");
    let results: Vec<Result<usize, String>> = futures::stream::iter(events.chunks(500))
        .map(|chunk| {
            let (http, url, done) = (http.clone(), url.clone(), done.clone());
            async move {
                let r = http
                    .post(&url)
                    .bearer_auth(write_key)
                    .json(&json!({ "batch": chunk }))
                    .send()
                    .await
                    .map_err(|e| format!("POST {url}: {e}"))?;
                let status = r.status();
                if !status.is_success() {
                    return Err(format!("ingest answered {status}: {}", r.text().await.unwrap_or_default()));
                }
                let n = done.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
                print!("{}", progress("sent", n, total, "events"));
                let _ = std::io::Write::flush(&mut std::io::stdout());
                Ok(chunk.len())
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    println!();
    results.into_iter().sum()
}

/// Waits until the processor has stored `expected` events (its own count of first
/// deliveries, from /metrics), showing progress, then until the query API counts them all.
pub async fn wait_stored(
    processor: &str,
    query: &str,
    read_key: &str,
    now: i64,
    expected: usize,
) -> Result<(), String> {
    let http = reqwest::Client::new();
    let metrics = format!("{processor}/metrics");
    let shown = AtomicUsize::new(usize::MAX);
    let stored = wait_until(Duration::from_secs(900), || async {
        let text = http
            .get(&metrics)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let stored = text
            .lines()
            .filter(|l| l.starts_with("pulse_processor_events_stored_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as usize;
        if stored != shown.swap(stored, Ordering::Relaxed) {
            print!("{}", progress("stored", stored, expected, "events"));
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
        if stored >= expected {
            Ok(())
        } else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Err(format!("{stored} of {expected} stored"))
        }
    })
    .await;
    println!();
    stored?;
    let url = format!("{query}/v1/events?from={}&to={}", now - 30 * crate::traffic::DAY, now + 60_000);
    wait_until(Duration::from_secs(60), || async {
        let names: Value = http
            .get(&url)
            .bearer_auth(read_key)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let counted: u64 =
            names["result"].as_array().into_iter().flatten().filter_map(|n| n["count"].as_u64()).sum();
        if counted as usize == expected {
            Ok(())
        } else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Err(format!("the query API counts {counted} events, {expected} were sent"))
        }
    })
    .await
}

/// The query API with the read key.
pub struct Query<'a> {
    pub http: &'a reqwest::Client,
    pub url: &'a str,
    pub key: &'a str,
}

impl Query<'_> {
    pub async fn get(&self, path: &str) -> Result<Value, String> {
        let r = self.http.get(format!("{}{path}", self.url)).bearer_auth(self.key).send().await;
        answer(path, r).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        let r = self.http.post(format!("{}{path}", self.url)).bearer_auth(self.key).json(body).send().await;
        answer(path, r).await
    }
}

async fn answer(path: &str, r: Result<reqwest::Response, reqwest::Error>) -> Result<Value, String> {
    let r = r.map_err(|e| format!("{path}: {e}"))?;
    let status = r.status();
    let body: Value = r.json().await.map_err(|e| format!("{path}: {e}"))?;
    if status.is_success() { Ok(body) } else { Err(format!("{path} answered {status}: {body}")) }
}
