//! The generated dashboard proven on a running pipeline: the operator renders a pipeline with
//! a funnel and the InfluxDB sink, ingest, processor and query run from the config it
//! rendered under steady load, a real Prometheus scrapes them, the operator and
//! kube-state-metrics (the Deployments on the local control plane), and every panel query of
//! the dashboard the operator wrote (its ConfigMap) is run the way Grafana
//! would run it: PromQL through Prometheus's HTTP API as a range query, InfluxQL on the real
//! influxd the sink writes to, template variables filled as Grafana fills them. Each must
//! parse and return at least one series with a value. Panels that this stack cannot prove
//! are listed in [`NOT_PROVABLE`] with the reason; the test fails if one of them starts to
//! return data (then take it off the list). A query with a misspelt metric name fails and
//! names its panel, which the test also checks.

mod monitoring;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use monitoring::{listener, load, materialise};
use pulse_testkit::{InfluxDb, KubeStateMetrics, Prometheus, ScrapeJob, WorkDir};
use serde_json::{Value, json};
use support::*;

/// Panels the local stack cannot prove, by title, and why: none today (kube-state-metrics
/// reports the Deployments the operator created, which kwok makes Available).
const NOT_PROVABLE: &[(&str, &str)] = &[];

/// The dashboard's time range (`now-6h` to `now`), which a panel's `timeFrom` overrides.
const DASHBOARD_RANGE_SECS: u64 = 6 * 3600;

/// The time range Grafana gives a panel's queries, in seconds: its `timeFrom` (`7d`, `6h`,
/// `30m`) or the dashboard's.
fn panel_range_secs(panel: &Value) -> Result<u64, String> {
    let Some(from) = panel["timeFrom"].as_str() else { return Ok(DASHBOARD_RANGE_SECS) };
    let (n, unit) = from.split_at(from.len().saturating_sub(1));
    let n: u64 = n.parse().map_err(|_| format!("timeFrom {from:?}"))?;
    match unit {
        "m" => Ok(n * 60),
        "h" => Ok(n * 3600),
        "d" => Ok(n * 86_400),
        _ => Err(format!("timeFrom {from:?}")),
    }
}
/// How long the panels have to show data once the load runs: scrapes every second, the
/// sink flushes every second, and the operator refreshes funnel summaries every minute.
const PROOF_WAIT: Duration = Duration::from_secs(180);

const FUNNEL: &str = "signup";

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

async fn influxql(influx: &InfluxDb, database: &str, q: &str) -> Result<Value, String> {
    let url = format!("{}/query?db={}&epoch=ms&q={}", influx.url(), encode(database), encode(q));
    let reply = reqwest::Client::new().post(url).send().await.map_err(|e| e.to_string())?;
    let status = reply.status();
    let body: Value = reply.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status} {body}"));
    }
    match body["results"][0]["error"].as_str() {
        Some(e) => Err(e.to_string()),
        None => Ok(body),
    }
}

/// A PromQL panel query with Grafana's global variables filled for a range of `range`
/// seconds and a 1 s step (Grafana's `$__rate_interval` is at least four scrape intervals).
fn fill_promql(expr: &str, range: u64) -> String {
    expr.replace("$__range_ms", &(range * 1000).to_string())
        .replace("$__range_s", &range.to_string())
        .replace("$__range", &format!("{range}s"))
        .replace("$__rate_interval", "4s")
        .replace("$__interval_ms", "1000")
        .replace("$__interval", "1s")
}

/// An InfluxQL panel query with Grafana's `$timeFilter` for a range of `range` seconds.
fn fill_influxql(query: &str, range: u64) -> String {
    query.replace("$timeFilter", &format!("time > now() - {range}s")).replace("$__interval", "1s")
}

/// Where the panels' queries run.
struct Backends<'a> {
    prometheus: &'a Prometheus,
    influx: &'a InfluxDb,
    influx_database: &'a str,
    /// The earliest time worth looking at (the load's start), as seconds before now.
    window: &'a dyn Fn() -> Duration,
}

/// Runs every query of `panel`; the problems found, each naming the panel and the query.
async fn prove_panel(backends: &Backends<'_>, panel: &Value) -> Vec<String> {
    let name = format!("panel {} {:?}", panel["id"], panel["title"].as_str().unwrap_or_default());
    let targets = panel["targets"].as_array().cloned().unwrap_or_default();
    if targets.is_empty() {
        return vec![format!("{name}: no queries")];
    }
    let range = match panel_range_secs(panel) {
        Ok(r) => r,
        Err(e) => return vec![format!("{name}: {e}")],
    };
    let mut problems = Vec::new();
    for target in &targets {
        let ref_id = target["refId"].as_str().unwrap_or("?");
        let kind = target["datasource"]["type"].as_str().or(panel["datasource"]["type"].as_str());
        match kind {
            Some("prometheus") => {
                let raw = target["expr"].as_str().unwrap_or_default();
                let expr = fill_promql(raw, range);
                if expr.contains('$') {
                    problems.push(format!("{name} {ref_id}: a variable Grafana would not fill in {raw}"));
                    continue;
                }
                let window = (backends.window)().max(Duration::from_secs(10));
                match backends.prometheus.query_range(&expr, window, Duration::from_secs(1)).await {
                    Err(e) => problems.push(format!("{name} {ref_id}: {expr}: {e}")),
                    Ok(series) => {
                        let valued = series.iter().any(|s| {
                            s["values"].as_array().into_iter().flatten().any(|v| {
                                v[1].as_str().and_then(|x| x.parse::<f64>().ok()).is_some_and(|x| !x.is_nan())
                            })
                        });
                        if !valued {
                            problems.push(format!(
                                "{name} {ref_id}: {expr}: no series with a value ({} series)",
                                series.len()
                            ));
                        }
                    }
                }
            }
            Some("influxdb") => {
                let raw = target["query"].as_str().unwrap_or_default();
                let query = fill_influxql(raw, range);
                if query.contains('$') {
                    problems.push(format!("{name} {ref_id}: a variable Grafana would not fill in {raw}"));
                    continue;
                }
                match influxql(backends.influx, backends.influx_database, &query).await {
                    Err(e) => problems.push(format!("{name} {ref_id}: {query}: {e}")),
                    Ok(result) => {
                        let values = result["results"][0]["series"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
                            .filter(|row| {
                                row.as_array().is_some_and(|r| r.iter().skip(1).any(|v| !v.is_null()))
                            })
                            .count();
                        if values == 0 {
                            problems.push(format!("{name} {ref_id}: {query}: no series with a value"));
                        }
                    }
                }
            }
            other => problems.push(format!("{name} {ref_id}: datasource type {other:?}")),
        }
    }
    problems
}

/// Runs every panel; the problems of the panels that must be proven, and the titles of the
/// listed ones that were proven anyway.
async fn prove_dashboard(backends: &Backends<'_>, dashboard: &Value) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut proven_anyway = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default();
        let found = prove_panel(backends, panel).await;
        if NOT_PROVABLE.iter().any(|(t, _)| *t == title) {
            if found.is_empty() {
                proven_anyway.push(title.to_string());
            }
        } else {
            problems.extend(found);
        }
    }
    (problems, proven_anyway)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_of_the_generated_dashboard_returns_data_from_a_running_pipeline() {
    let influx = InfluxDb::start().await.expect("influxd");
    let influx_database = pulse_testkit::unique_name("proof").replace('-', "_");
    influxql(&influx, "", &format!(r#"CREATE DATABASE "{influx_database}""#)).await.expect("create database");
    let s = setup("proof", &[]).await;
    let name = "shop";
    let extra = format!(
        "  rollups: {{ intervals: [minute, hour, day], numericProperties: [revenue] }}\n  \
         influx: {{ url: \"{}\", database: {influx_database}, grafanaDatasourceUid: influx-main, flushInterval: 1s }}",
        influx.url()
    );
    apply_pipeline(&s.pipelines, &pipeline_yaml(name, &database(), &extra)).await;
    let funnels: Api<pulse_crds::Funnel> = Api::namespaced(s.client.clone(), &s.ns);
    let funnel = json!({
        "apiVersion": "pulse.dev/v1alpha1", "kind": "Funnel", "metadata": { "name": FUNNEL },
        "spec": { "pipelineRef": { "name": name }, "steps": [{ "event": "page_viewed" }, { "event": "purchase" }], "window": "1d" }
    });
    funnels
        .patch(FUNNEL, &PatchParams::apply("test").force(), &Patch::Apply(&funnel))
        .await
        .expect("apply funnel");

    // The services start from a config that carries the funnel (the sink writes its
    // conversion), as pods would after the operator rolled them.
    let maps: Api<ConfigMap> = Api::namespaced(s.client.clone(), &s.ns);
    wait_for("the config to carry the funnel", WAIT, || async {
        let map = maps.get(&format!("{name}-config")).await.map_err(|e| e.to_string())?;
        let text = map.data.and_then(|d| d.get("pipeline.yaml").cloned()).unwrap_or_default();
        if text.contains(FUNNEL) { Ok(()) } else { Err(format!("{text}\n{}", s.operator.log_tail())) }
    })
    .await;
    let dir = WorkDir::new("dashboard-proof").expect("workdir");
    let (config, write_key, tenant) = materialise(&s.client, &s.ns, name, dir.path()).await;

    let (ingest_listener, ingest) = listener().await;
    let (processor_listener, processor) = listener().await;
    let (query_listener, query) = listener().await;
    let settings = pulse_ingest::Settings::new(config.clone());
    tokio::spawn(pulse_ingest::run(settings, ingest_listener, std::future::pending()));
    let ctx = pulse_processor::connect(&config, "proof-0".to_string()).await.expect("processor connects");
    tokio::spawn(pulse_processor::run(ctx, processor_listener, std::future::pending()));
    let settings = pulse_query::Settings::new(config.clone());
    tokio::spawn(pulse_query::run(settings, query_listener, std::future::pending()));

    let kube_state_metrics =
        KubeStateMetrics::start(s.stack.kubeconfig(), &[&s.ns]).await.expect("kube-state-metrics");
    let jobs = [
        ScrapeJob::new("kube-state-metrics", [kube_state_metrics.address()]),
        ScrapeJob::new("ingest", [ingest.clone()]),
        ScrapeJob::new("processor", [processor.clone()]),
        ScrapeJob::new("query", [query.clone()]),
        ScrapeJob::new("operator", [format!("127.0.0.1:{}", s.operator.metrics_port)]),
    ];
    let prometheus = Prometheus::start(&jobs, &[]).await.expect("Prometheus");
    wait_for("every target scraped", WAIT, || async {
        let targets = prometheus.targets().await.map_err(|e| e.to_string())?;
        let up = targets.iter().filter(|(_, _, health, _)| health == "up").count();
        if up == jobs.len() { Ok(()) } else { Err(format!("{targets:?}")) }
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let traffic = tokio::spawn(load(format!("http://{ingest}"), write_key, stop.clone(), accepted.clone()));
    // An entry in the buffer that is not events (written by something other than ingest):
    // the processor sets it aside as a failed event.
    let url = std::fs::read_to_string(dir.join("buffer-redisUrlFile")).expect("redis url");
    let mut conn = pulse_buffer::Connection::open(&url, false, Duration::from_secs(5)).await.expect("redis");
    pulse_buffer::append_entry(&mut conn, &tenant, 0, b"this is not a JSON array", 1).await.expect("append");

    let dashboard = || async {
        let map = maps.get(&format!("{name}-dashboard")).await.map_err(|e| e.to_string())?;
        let text = map.data.and_then(|d| d.get("pulse-dashboard.json").cloned()).unwrap_or_default();
        serde_json::from_str::<Value>(&text).map_err(|e| format!("the dashboard JSON: {e}"))
    };
    let window = move || started.elapsed() + Duration::from_secs(5);
    let backends = Backends {
        prometheus: &prometheus,
        influx: &influx,
        influx_database: &influx_database,
        window: &window,
    };
    let outcome = wait_for_outcome(PROOF_WAIT, || async {
        let dashboard = dashboard().await.map_err(|e| vec![e])?;
        let (problems, proven_anyway) = prove_dashboard(&backends, &dashboard).await;
        if problems.is_empty() { Ok((dashboard, proven_anyway)) } else { Err(problems) }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.await;
    let (dashboard, proven_anyway) = match outcome {
        Ok(v) => v,
        Err(problems) => panic!(
            "after {PROOF_WAIT:?} of load ({} batches accepted), these panel queries return no data:\n  {}\noperator log:\n{}",
            accepted.load(Ordering::Relaxed),
            problems.join("\n  "),
            s.operator.log_tail()
        ),
    };
    assert!(proven_anyway.is_empty(), "{proven_anyway:?} returned data: take them off NOT_PROVABLE");

    let panels = dashboard["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for (title, _) in NOT_PROVABLE {
        assert!(
            titles.contains(title),
            "NOT_PROVABLE names {title:?}, which the dashboard no longer has: {titles:?}"
        );
    }
    // Every kind of panel was there: system, funnel and business.
    for expected in ["Ingest rate", "Failed events", "Funnel signup: conversion", "Funnel conversion per day"]
    {
        assert!(titles.contains(&expected), "{expected} missing from {titles:?}");
    }
    let proven: Vec<&Value> =
        panels.iter().filter(|p| !NOT_PROVABLE.iter().any(|(t, _)| p["title"] == *t)).collect();
    let queries: usize = proven.iter().map(|p| p["targets"].as_array().map_or(0, Vec::len)).sum();
    println!(
        "dashboard proof: {} of {} panels proven ({queries} queries), not provable here: {:?}",
        proven.len(),
        panels.len(),
        NOT_PROVABLE.iter().map(|(t, _)| t).collect::<Vec<_>>()
    );

    // The crash-loop alert (charts/pulse/rules) reads the processor's container restarts
    // from kube-state-metrics: its selector matches the pods the operator's Deployment made.
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/pulse/rules/pulse-rules.yaml"),
    )
    .expect("rules file");
    let selector = r#"kube_pod_container_status_restarts_total{container="processor"}"#;
    assert!(rules.contains(selector), "the crash-loop alert no longer reads {selector}");
    let restarts = prometheus
        .query(&format!(
            r#"kube_pod_container_status_restarts_total{{namespace="{}",container="processor"}}"#,
            s.ns
        ))
        .await
        .expect("query restarts");
    assert!(!restarts.is_empty(), "no series for {selector} in {}", s.ns);

    // A misspelt metric name fails, naming the panel.
    let mut broken = panels.iter().find(|p| p["title"] == "Ingest rate").expect("Ingest rate").clone();
    let expr =
        broken["targets"][0]["expr"].as_str().expect("expr").replace("events_accepted", "event_accepted");
    broken["targets"][0]["expr"] = Value::String(expr);
    let problems = prove_panel(&backends, &broken).await;
    assert!(
        problems.len() == 1 && problems[0].contains("\"Ingest rate\"") && problems[0].contains("no series"),
        "{problems:?}"
    );
    // And so does a query that does not parse.
    let mut broken = panels.iter().find(|p| p["title"] == "Backlog per partition").expect("Backlog").clone();
    broken["targets"][0]["expr"] = Value::String("max by (partition (pulse_processor_backlog_events)".into());
    let problems = prove_panel(&backends, &broken).await;
    assert!(
        problems.len() == 1
            && problems[0].contains("\"Backlog per partition\"")
            && problems[0].contains("parse error"),
        "{problems:?}"
    );
}

/// Polls `check` until it succeeds or `timeout` passes; then the last problems.
async fn wait_for_outcome<T, F, Fut>(timeout: Duration, mut check: F) -> Result<T, Vec<String>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Vec<String>>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(problems) if started.elapsed() > timeout => return Err(problems),
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}
