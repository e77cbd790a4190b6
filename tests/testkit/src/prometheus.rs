use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::ports::free_port;
use crate::{Binary, Error, Result, ServerProcess, WorkDir};

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One scrape job of [`Prometheus`]: `/metrics` of each address, every [`Prometheus::SCRAPE_INTERVAL`].
#[derive(Debug, Clone)]
pub struct ScrapeJob {
    /// The `job` label.
    pub job: String,
    /// `host:port` of each target.
    pub targets: Vec<String>,
}

impl ScrapeJob {
    pub fn new(job: &str, targets: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ScrapeJob { job: job.to_string(), targets: targets.into_iter().map(Into::into).collect() }
    }
}

/// Prometheus (built by `make env`) on a free loopback port with its TSDB in a temp dir,
/// scraping the given jobs every second from a generated config, optionally evaluating rule
/// files. Its HTTP API is at [`Self::url`]; [`Self::query_range`] and [`Self::query`] run PromQL.
#[derive(Debug)]
pub struct Prometheus {
    process: ServerProcess,
    port: u16,
    http: reqwest::Client,
    _dir: WorkDir,
}

impl Prometheus {
    /// How often every target is scraped and rules are evaluated.
    pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

    /// Starts Prometheus scraping `jobs`, with `rule_files` loaded, and waits until `/-/ready`
    /// answers 200.
    pub async fn start(jobs: &[ScrapeJob], rule_files: &[&Path]) -> Result<Self> {
        let dir = WorkDir::new("prometheus")?;
        let port = free_port()?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, scrape_config(jobs, rule_files))
            .map_err(|e| Error::io(format!("writing {}", config.display()), e))?;
        let mut command = Command::new(Binary::Prometheus.path()?);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let process = ServerProcess::spawn("prometheus", command, &dir.join("prometheus.log"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::client("building an HTTP client", e))?;
        let mut prometheus = Prometheus { process, port, http, _dir: dir };
        let ready = format!("{}/-/ready", prometheus.url());
        let http = prometheus.http.clone();
        prometheus
            .process
            .wait_ready(START_TIMEOUT, move || {
                let (http, ready) = (http.clone(), ready.clone());
                async move {
                    let r = http.get(&ready).send().await.map_err(|e| e.to_string())?;
                    if r.status().is_success() { Ok(()) } else { Err(format!("/-/ready: {}", r.status())) }
                }
            })
            .await?;
        Ok(prometheus)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server process, e.g. for its log.
    pub fn process_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }

    /// A range query over the last `range` at `step` (`/api/v1/query_range`), as a Grafana
    /// time-series panel runs it: the `result` array (one entry per series, each with
    /// `metric` and `values`). A query that does not parse or fails is an error with
    /// Prometheus's message.
    pub async fn query_range(&self, expr: &str, range: Duration, step: Duration) -> Result<Vec<Value>> {
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| Error::client("reading the clock", e))?
            .as_secs_f64();
        let start = end - range.as_secs_f64();
        let params = [
            ("query", expr.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{}", step.as_secs_f64())),
        ];
        self.api("query_range", &params).await
    }

    /// An instant query at the current time (`/api/v1/query`): the `result` array.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>> {
        self.api("query", &[("query", expr.to_string())]).await
    }

    /// The alerts of the loaded rules (`/api/v1/alerts`), each with `labels` and `state`
    /// (`pending` or `firing`).
    pub async fn alerts(&self) -> Result<Vec<Value>> {
        let data = self.get("alerts", &[]).await?;
        Ok(data["alerts"].as_array().cloned().unwrap_or_default())
    }

    /// Every active scrape target as `(job, scrape URL, health, last error)`, health being
    /// `up`, `down`, or `unknown` until its first scrape (Prometheus finds the targets of a
    /// new config within about 5 s).
    pub async fn targets(&self) -> Result<Vec<(String, String, String, String)>> {
        let data = self.get("targets", &[("state", "active".to_string())]).await?;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Ok(data["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (text(&t["labels"]["job"]), text(&t["scrapeUrl"]), text(&t["health"]), text(&t["lastError"]))
            })
            .collect())
    }

    async fn api(&self, endpoint: &str, params: &[(&str, String)]) -> Result<Vec<Value>> {
        let data = self.get(endpoint, params).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// `GET /api/v1/<endpoint>`: its `data`, or an error with Prometheus's `error`.
    async fn get(&self, endpoint: &str, params: &[(&str, String)]) -> Result<Value> {
        let context = format!("Prometheus /api/v1/{endpoint}");
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/{endpoint}", self.url()), params)
            .map_err(|e| Error::client(&context, e))?;
        let reply = self.http.get(url).send().await.map_err(|e| Error::client(&context, e))?;
        let status = reply.status();
        let body: Value = reply.json().await.map_err(|e| Error::client(&context, e))?;
        if body["status"] != "success" {
            let message = format!("{status} {}: {}", body["errorType"], body["error"]);
            return Err(Error::client(&context, message));
        }
        Ok(body["data"].clone())
    }
}

/// The config file: every job scraped each second, `rule_files` evaluated each second.
fn scrape_config(jobs: &[ScrapeJob], rule_files: &[&Path]) -> String {
    let interval = format!("{}s", Prometheus::SCRAPE_INTERVAL.as_secs());
    let mut text = format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  evaluation_interval: {interval}\n"
    );
    if !rule_files.is_empty() {
        text.push_str("rule_files:\n");
        for f in rule_files {
            text.push_str(&format!("  - {}\n", Value::String(f.display().to_string())));
        }
    }
    text.push_str("scrape_configs:\n");
    for job in jobs {
        let targets: Vec<Value> = job.targets.iter().cloned().map(Value::String).collect();
        text.push_str(&format!(
            "  - job_name: {}\n    static_configs:\n      - targets: {}\n",
            Value::String(job.job.clone()),
            Value::Array(targets)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_scrapes_every_job_each_second_and_loads_the_rules() {
        let jobs = [
            ScrapeJob::new("ingest", ["127.0.0.1:1"]),
            ScrapeJob::new("query", ["127.0.0.1:2", "127.0.0.1:3"]),
        ];
        let text = scrape_config(&jobs, &[Path::new("/r/pulse-rules.yaml")]);
        let parsed: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
        assert_eq!(parsed["global"]["scrape_interval"], "1s");
        assert_eq!(parsed["rule_files"][0], "/r/pulse-rules.yaml");
        assert_eq!(parsed["scrape_configs"][1]["job_name"], "query");
        assert_eq!(parsed["scrape_configs"][1]["static_configs"][0]["targets"][1], "127.0.0.1:3");
    }
}
