//! The pipeline's Grafana dashboard: a ConfigMap labelled `grafana_dashboard: "1"` for
//! Grafana's sidecar, and a GrafanaDashboard when grafana-operator is installed. Panels
//! query Prometheus for the services' own metrics (labelled with the tenant) and
//! kube-state-metrics for replicas; with the InfluxDB sink on, business panels query
//! InfluxDB (`business.rs`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

use super::{Child, ChildKind, Component, dashboard_name, metadata};
use crate::error::Error;
use crate::pipeline::validate::ValidPipeline;

/// The label Grafana's dashboard sidecar looks for.
pub const SIDECAR_LABEL: &str = "grafana_dashboard";
const FILE: &str = "pulse-dashboard.json";

fn panel(
    id: u32,
    title: &str,
    kind: &str,
    exprs: &[(&str, String)],
    unit: &str,
    (x, y): (u32, u32),
) -> Value {
    let targets: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (legend, expr))| {
            json!({ "refId": ((b'A' + i as u8) as char).to_string(), "expr": expr, "legendFormat": legend })
        })
        .collect();
    json!({
        "id": id,
        "title": title,
        "type": kind,
        "datasource": { "type": "prometheus", "uid": "${datasource}" },
        "gridPos": { "x": x, "y": y, "w": 12, "h": 8 },
        "fieldConfig": { "defaults": { "unit": unit }, "overrides": [] },
        "targets": targets,
    })
}

/// The dashboard JSON of a pipeline; `funnels` are the names of its declared funnels.
/// The panel of acknowledged events set aside as failed (the last fixed panel).
const FAILED_EVENTS_PANEL: u32 = 9;

pub fn dashboard_json(view: &ValidPipeline) -> Value {
    let t = &view.tenant;
    let ns = &view.namespace;
    let sel = format!("tenant=\"{t}\"");
    let mut panels = vec![
        panel(
            1,
            "Ingest rate",
            "timeseries",
            &[("accepted", format!("sum(rate(pulse_ingest_events_accepted_total{{{sel}}}[1m]))"))],
            "ops",
            (0, 0),
        ),
        panel(
            2,
            "Ingest errors",
            "timeseries",
            &[
                (
                    "{{reason}}",
                    format!("sum by (reason) (rate(pulse_ingest_events_rejected_total{{{sel}}}[1m]))"),
                ),
                (
                    "request {{reason}}",
                    format!("sum by (reason) (rate(pulse_ingest_requests_rejected_total{{{sel}}}[1m]))"),
                ),
            ],
            "ops",
            (12, 0),
        ),
        panel(
            3,
            "Ingest latency p99",
            "timeseries",
            &[(
                "p99",
                format!(
                    "histogram_quantile(0.99, sum by (le) (rate(pulse_ingest_request_duration_seconds_bucket{{{sel}}}[5m])))"
                ),
            )],
            "s",
            (0, 8),
        ),
        panel(
            4,
            "Backlog per partition",
            "timeseries",
            &[("{{partition}}", format!("max by (partition) (pulse_processor_backlog_events{{{sel}}})"))],
            "short",
            (12, 8),
        ),
        panel(
            5,
            "Freshness",
            "timeseries",
            &[
                (
                    "newest applied",
                    format!("time() - max(pulse_processor_newest_applied_received_at_seconds{{{sel}}})"),
                ),
                (
                    "p99",
                    format!(
                        "histogram_quantile(0.99, sum by (le) (rate(pulse_processor_freshness_seconds_bucket{{{sel}}}[5m])))"
                    ),
                ),
            ],
            "s",
            (0, 16),
        ),
        panel(
            6,
            "Processor throughput",
            "timeseries",
            &[("stored", format!("sum(rate(pulse_processor_events_stored_total{{{sel}}}[1m]))"))],
            "ops",
            (12, 16),
        ),
        panel(
            7,
            "Replicas",
            "timeseries",
            &Component::ALL.map(|c| {
                (
                    c.as_str(),
                    format!(
                        "kube_deployment_status_replicas_available{{namespace=\"{ns}\",deployment=\"{}\"}}",
                        c.name(&view.name)
                    ),
                )
            }),
            "short",
            (0, 24),
        ),
        panel(
            8,
            "Event counts",
            "stat",
            &[
                ("accepted", format!("sum(increase(pulse_ingest_events_accepted_total{{{sel}}}[$__range]))")),
                ("stored", format!("sum(increase(pulse_processor_events_stored_total{{{sel}}}[$__range]))")),
            ],
            "short",
            (12, 24),
        ),
        panel(
            FAILED_EVENTS_PANEL,
            "Failed events",
            "timeseries",
            &[(
                "{{reason}}",
                format!("sum by (reason) (increase(pulse_processor_failed_events_total{{{sel}}}[5m]))"),
            )],
            "short",
            (0, 32),
        ),
    ];
    // One conversion panel per declared funnel, from the gauge the operator exports from
    // each Funnel's status summary.
    for (i, funnel) in view.config.funnels.iter().enumerate() {
        let id = FAILED_EVENTS_PANEL + 1 + i as u32;
        let expr = format!(
            "pulse_operator_funnel_conversion_ratio{{namespace=\"{ns}\",pipeline=\"{}\",funnel=\"{}\"}}",
            view.name, funnel.name
        );
        panels.push(panel(
            id,
            &format!("Funnel {}: conversion", funnel.name),
            "stat",
            &[(funnel.name.as_str(), expr)],
            "percentunit",
            ((i as u32 % 2) * 12, 40 + (i as u32 / 2) * 8),
        ));
    }
    let funnel_rows = view.config.funnels.len().div_ceil(2) as u32;
    let next_id = FAILED_EVENTS_PANEL + 1 + view.config.funnels.len() as u32;
    panels.extend(super::business::business_panels(view, next_id, 40 + funnel_rows * 8));
    json!({
        "title": format!("Pulse: {} / {}", view.namespace, view.name),
        "uid": dashboard_uid(view),
        "tags": ["pulse"],
        "timezone": view.spec.timezone,
        "schemaVersion": 39,
        "refresh": "30s",
        "time": { "from": "now-6h", "to": "now" },
        "templating": { "list": [{
            "name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"
        }] },
        "panels": panels,
    })
}

/// A stable uid within Grafana's 40 characters.
fn dashboard_uid(view: &ValidPipeline) -> String {
    let digest = super::config_map::config_digest(&format!("{}/{}", view.namespace, view.name));
    format!("pulse-{digest}")
}

fn text(view: &ValidPipeline) -> Result<String, Error> {
    serde_json::to_string_pretty(&dashboard_json(view)).map_err(|e| Error::serialization("dashboard", e))
}

/// The dashboard as a ConfigMap for Grafana's sidecar, in the spec's folder.
pub fn config_map(view: &ValidPipeline) -> Result<Child, Error> {
    let name = dashboard_name(&view.name);
    let mut meta = metadata(view, name.clone(), "dashboard");
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(view.spec.dashboards.labels.clone());
    labels.insert(SIDECAR_LABEL.into(), "1".into());
    meta.annotations =
        Some(BTreeMap::from([("grafana_folder".to_string(), view.spec.dashboards.folder.clone())]));
    let object = ConfigMap {
        metadata: meta,
        data: Some(BTreeMap::from([(FILE.to_string(), text(view)?)])),
        ..ConfigMap::default()
    };
    Child::new(ChildKind::ConfigMap, name, &object)
}

/// The dashboard as grafana-operator's GrafanaDashboard, for the Grafana instances the
/// spec's labels select.
pub fn grafana_dashboard(view: &ValidPipeline) -> Result<Child, Error> {
    let meta = serde_json::to_value(metadata(view, view.name.clone(), "dashboard"))
        .map_err(|e| Error::serialization("GrafanaDashboard metadata", e))?;
    let object = json!({
        "metadata": meta,
        "spec": {
            "instanceSelector": { "matchLabels": view.spec.dashboards.labels },
            "folder": view.spec.dashboards.folder,
            "json": text(view)?,
        }
    });
    Child::new(ChildKind::GrafanaDashboard, view.name.clone(), &object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::build::fixtures;

    #[test]
    fn the_dashboard_has_every_panel_and_one_per_funnel() {
        let view = fixtures::valid(fixtures::ACME);
        let json = dashboard_json(&view);
        let titles: Vec<_> = json["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .map(|p| p["title"].as_str().unwrap_or(""))
            .collect();
        for expected in [
            "Ingest rate",
            "Ingest errors",
            "Ingest latency p99",
            "Backlog per partition",
            "Freshness",
            "Processor throughput",
            "Replicas",
            "Event counts",
            "Failed events",
            "Funnel signup: conversion",
        ] {
            assert!(titles.contains(&expected), "{expected} missing from {titles:?}");
        }
        assert!(json.to_string().contains("tenant=\\\"acme\\\""));
    }

    #[test]
    fn the_config_map_is_labelled_for_the_sidecar_and_the_users_selector() {
        let view = fixtures::valid(fixtures::ACME);
        let cm = config_map(&view).expect("build").object;
        assert_eq!(cm["metadata"]["labels"][SIDECAR_LABEL], "1");
        assert_eq!(cm["metadata"]["labels"]["team"], "acme");
        assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "Acme");
        let parsed: Value =
            serde_json::from_str(cm["data"][FILE].as_str().expect("json")).expect("valid JSON");
        assert_eq!(parsed["uid"].as_str().map(str::len), Some(22));
    }

    #[test]
    fn the_grafana_dashboard_selects_instances_by_the_spec_labels() {
        let view = fixtures::valid(fixtures::ACME);
        let gd = grafana_dashboard(&view).expect("build").object;
        assert_eq!(gd["apiVersion"], "grafana.integreatly.org/v1beta1");
        assert_eq!(gd["spec"]["instanceSelector"]["matchLabels"]["team"], "acme");
        assert_eq!(gd["spec"]["folder"], "Acme");
    }
}
