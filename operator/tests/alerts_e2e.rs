//! The alert rules on real series: ingest and the processor of a pipeline the operator
//! rendered run under steady load while a real Prometheus scrapes them and evaluates
//! charts/pulse/rules/pulse-rules.yaml. Stopping the processor makes the backlog and
//! unowned-partition alerts fire; starting it again makes them resolve and the freshness
//! alert fire, since the events that waited reach the rollups late. The promtool tests
//! prove each rule's logic on made-up series; this proves the rules select the series the
//! services really export. Only the rules' `for` durations (to 0 s) and the backlog
//! threshold (500,000 to 1,000 events) are shortened for the test.

mod monitoring;
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use monitoring::{listener, load, materialise};
use pulse_testkit::{Prometheus, ScrapeJob, WorkDir, unique_name};
use serde_json::Value;
use support::*;
use tokio::sync::oneshot;

fn rules_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/pulse/rules/pulse-rules.yaml")
}

/// The rules with every `for` at 0 s and the backlog threshold at 1,000 events.
fn shortened_rules() -> String {
    let text = std::fs::read_to_string(rules_file()).expect("rules file");
    let mut fors = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => {
                fors += 1;
                format!("{}for: 0s", &l[..l.len() - l.trim_start().len()])
            }
            None => l.to_string(),
        })
        .collect();
    let alerts = text.matches("- alert: ").count();
    assert_eq!(fors, alerts, "every alert has a `for`");
    let shortened = lines.join("\n");
    assert_eq!(
        shortened.matches("(pulse_ingest_backlog_events) > 500000").count(),
        1,
        "the backlog threshold"
    );
    shortened.replace("(pulse_ingest_backlog_events) > 500000", "(pulse_ingest_backlog_events) > 1000")
}

/// The processor in this process, on a fixed address so Prometheus finds it again after a
/// restart.
struct Processor {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), pulse_processor::ProcessorError>>,
}

impl Processor {
    async fn start(config: &Path, address: &str) -> Processor {
        let ctx = pulse_processor::connect(config, unique_name("alerts")).await.expect("processor connects");
        let listener = tokio::net::TcpListener::bind(address).await.expect("bind the processor's address");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(pulse_processor::run(ctx, listener, async {
            let _ = rx.await;
        }));
        Processor { stop: Some(tx), task }
    }

    /// Stops it as SIGTERM would: it gives its partitions up and its /metrics goes away.
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let stopped = (&mut self.task).await.expect("the processor task");
        stopped.expect("the processor stops cleanly");
    }
}

/// The alerts of `tenant` in state `state`, by name.
async fn alerts(prometheus: &Prometheus, tenant: &str, state: &str) -> Result<Vec<String>, String> {
    let all = prometheus.alerts().await.map_err(|e| e.to_string())?;
    Ok(all
        .iter()
        .filter(|a| a["labels"]["tenant"] == tenant && a["state"] == state)
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
        .collect())
}

async fn wait_alerts(prometheus: &Prometheus, tenant: &str, what: &str, check: impl Fn(&[String]) -> bool) {
    wait_for(what, WAIT, || async {
        let firing = alerts(prometheus, tenant, "firing").await?;
        if check(&firing) { Ok(()) } else { Err(format!("firing: {firing:?}")) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_processor_under_load_fires_the_backlog_alerts_and_its_return_the_freshness_one() {
    let s = setup("alerts", &[]).await;
    let name = "shop";
    apply_pipeline(&s.pipelines, &pipeline_yaml(name, &database(), "")).await;
    let maps: kube::Api<ConfigMap> = kube::Api::namespaced(s.client.clone(), &s.ns);
    wait_for("the rendered config", WAIT, || async {
        maps.get(&format!("{name}-config"))
            .await
            .map(|_| ())
            .map_err(|e| format!("{e}\n{}", s.operator.log_tail()))
    })
    .await;
    let dir = WorkDir::new("alerts-e2e").expect("workdir");
    let (config, write_key, tenant) = materialise(&s.client, &s.ns, name, dir.path()).await;
    let rules = dir.join("pulse-rules.yaml");
    std::fs::write(&rules, shortened_rules()).expect("rules");

    let (ingest_listener, ingest) = listener().await;
    tokio::spawn(pulse_ingest::run(
        pulse_ingest::Settings::new(config.clone()),
        ingest_listener,
        std::future::pending(),
    ));
    let processor_address = {
        let (l, address) = listener().await;
        drop(l);
        address
    };
    let processor = Processor::start(&config, &processor_address).await;
    let jobs = [
        ScrapeJob::new("ingest", [ingest.clone()]),
        ScrapeJob::new("processor", [processor_address.clone()]),
    ];
    let prometheus = Prometheus::start(&jobs, &[rules.as_path()]).await.expect("Prometheus");

    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let traffic = tokio::spawn(load(format!("http://{ingest}"), write_key, stop.clone(), accepted.clone()));
    // The processor keeps up: events are stored and the processor holds every partition.
    let stored = format!("sum(pulse_processor_events_stored_total{{tenant=\"{tenant}\"}}) > 0");
    wait_for("events stored, seen by Prometheus", WAIT, || async {
        let r = prometheus.query(&stored).await.map_err(|e| e.to_string())?;
        if r.is_empty() { Err("none yet".to_string()) } else { Ok(()) }
    })
    .await;

    processor.stop().await;
    wait_alerts(&prometheus, &tenant, "backlog and unowned partitions firing", |firing| {
        firing.iter().any(|a| a == "PulseBacklogNearHighWaterMark")
            && firing.iter().any(|a| a == "PulsePartitionUnowned")
    })
    .await;
    let backlog = prometheus
        .query(&format!("max(pulse_ingest_backlog_events{{tenant=\"{tenant}\"}})"))
        .await
        .expect("backlog");
    let backlog: f64 = backlog[0]["value"][1].as_str().and_then(|v| v.parse().ok()).expect("a backlog value");
    assert!(backlog > 1000.0, "{backlog}");

    // Long enough that the waiting events are older than the freshness threshold (10 s)
    // when they are applied.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let processor = Processor::start(&config, &processor_address).await;
    wait_alerts(&prometheus, &tenant, "freshness firing, unowned partitions resolved", |firing| {
        firing.iter().any(|a| a == "PulseFreshnessP99High")
            && !firing.iter().any(|a| a == "PulsePartitionUnowned")
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = traffic.await;
    let firing: Vec<Value> = prometheus.alerts().await.expect("alerts");
    println!("alerts after the processor's return: {}", serde_json::to_string(&firing).unwrap_or_default());
    processor.stop().await;
}
