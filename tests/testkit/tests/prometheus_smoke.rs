//! Proves the test Prometheus is real: it scrapes the generated config's targets (and says
//! which fail), answers PromQL, refuses a query that does not parse with its parser's message,
//! and evaluates the rule files it was given.

use std::time::{Duration, Instant};

use pulse_testkit::{Prometheus, ScrapeJob, WorkDir, free_port};

#[tokio::test]
async fn prometheus_scrapes_answers_promql_and_evaluates_rules() {
    let dir = WorkDir::new("prometheus-smoke").expect("workdir");
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        "groups:\n  - name: smoke\n    rules:\n      - alert: Always\n        expr: vector(1) > 0\n",
    )
    .expect("rules");
    let closed = format!("127.0.0.1:{}", free_port().expect("port"));
    let prometheus = Prometheus::start(&[ScrapeJob::new("nothing", [closed.clone()])], &[rules.as_path()])
        .await
        .expect("start Prometheus");

    let series = prometheus.query("vector(42)").await.expect("query");
    assert_eq!(series.len(), 1);
    assert_eq!(series[0]["value"][1], "42");
    let refused = prometheus.query("sum(rate(").await.expect_err("a query that does not parse");
    assert!(refused.to_string().contains("parse error"), "{refused}");

    let started = Instant::now();
    loop {
        let targets = prometheus.targets().await.expect("targets");
        let alerts = prometheus.alerts().await.expect("alerts");
        let firing = alerts.iter().any(|a| a["labels"]["alertname"] == "Always" && a["state"] == "firing");
        let down = targets
            .iter()
            .any(|(job, url, health, _)| job == "nothing" && url.contains(&closed) && health == "down");
        if firing && down {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "after 60 s: targets {targets:?}, alerts {alerts:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let up = prometheus.query("up{job=\"nothing\"}").await.expect("query up");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["value"][1], "0", "the closed port is down: {up:?}");
}
