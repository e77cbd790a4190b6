//! The generated dashboard's JSON checked beyond parsing, for pipelines with and without the
//! InfluxDB sink, funnels and each rollup grain: what Grafana would show wrongly or not at
//! all without an error. Panel ids are unique and panels do not overlap on the 24-column
//! grid; every panel and query names a datasource that exists (the dashboard's Prometheus
//! variable, or the spec's InfluxDB uid); every template variable a query uses is defined
//! or one Grafana fills itself, and every defined one is used; every `{{label}}` of a legend
//! is a label the query keeps; every unit is one of Grafana's and fits what the query
//! measures (rates per second, seconds, ratios, counts). The queries' data is proven apart,
//! on a running pipeline (dashboard_proof.rs).

use std::collections::BTreeSet;

use pulse_core::config::NamedFunnel;
use pulse_crds::AnalyticsPipeline;
use pulse_operator::pipeline::build::dashboard_json;
use pulse_operator::pipeline::validate::validate;
use serde_json::Value;

const INFLUX_UID: &str = "influx-main";

/// Variables Grafana fills itself: its global ones, InfluxQL's `$timeFilter` and the InfluxDB
/// alias patterns `$tag_<name>`.
const GRAFANA_VARIABLES: &[&str] =
    &["__range", "__range_s", "__range_ms", "__interval", "__interval_ms", "__rate_interval", "timeFilter"];

/// Grafana's unit ids that the dashboards may use.
const GRAFANA_UNITS: &[&str] =
    &["short", "none", "ops", "reqps", "s", "ms", "percent", "percentunit", "bytes"];

fn pipeline(rollups: &str, influx: bool) -> AnalyticsPipeline {
    let influx = if influx {
        format!(
            "  influx: {{ url: http://influxdb.monitoring:8086, database: pulse, grafanaDatasourceUid: {INFLUX_UID} }}\n"
        )
    } else {
        String::new()
    };
    let yaml = format!(
        r#"
apiVersion: pulse.dev/v1alpha1
kind: AnalyticsPipeline
metadata: {{ name: shop, namespace: team-a, uid: 1f0c1d2e-0000-4000-8000-000000000010 }}
spec:
  buffer:
    redis: {{ external: {{ urlSecretRef: {{ name: shop-redis, key: url }} }} }}
    partitions: 4
  storage:
    mongodb: {{ uriSecretRef: {{ name: shop-mongodb, key: uri }} }}
    database: pulse_shop
  rollups: {{ intervals: [{rollups}], numericProperties: [revenue] }}
{influx}"#
    );
    serde_yaml::from_str(&yaml).expect("pipeline")
}

fn funnels(names: &[&str]) -> Vec<NamedFunnel> {
    names
        .iter()
        .map(|n| {
            serde_yaml::from_str(&format!(
                "name: {n}\nsteps: [{{ event: page_viewed }}, {{ event: purchase }}]\n"
            ))
            .expect("funnel")
        })
        .collect()
}

/// The dashboards of the pipelines the checks run on: every combination that changes panels.
fn dashboards() -> Vec<(String, Value)> {
    let cases = [
        ("no sink, no funnel", "minute, hour, day", false, vec![]),
        ("sink, every grain, two funnels", "minute, hour, day", true, vec!["signup", "checkout"]),
        ("sink, days only, one funnel", "day", true, vec!["signup"]),
        ("sink, hours only", "hour", true, vec![]),
    ];
    cases
        .into_iter()
        .map(|(name, rollups, influx, names)| {
            let view = validate(&pipeline(rollups, influx), funnels(&names)).expect("valid");
            (name.to_string(), dashboard_json(&view))
        })
        .collect()
}

fn panels(dashboard: &Value) -> &Vec<Value> {
    dashboard["panels"].as_array().expect("panels")
}

/// Each query of a panel with its datasource type (the target's, else the panel's).
fn queries(panel: &Value) -> Vec<(String, String)> {
    panel["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let kind =
                t["datasource"]["type"].as_str().or(panel["datasource"]["type"].as_str()).unwrap_or_default();
            let q = t["expr"].as_str().or(t["query"].as_str()).unwrap_or_default();
            (kind.to_string(), q.to_string())
        })
        .collect()
}

/// The `$name` and `${name}` references in a text.
fn variables(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let (name, braced) = match rest.strip_prefix('{') {
            Some(inner) => (inner.split('}').next().unwrap_or_default(), true),
            None => (
                rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or_default(),
                false,
            ),
        };
        if !name.is_empty() {
            found.insert(name.to_string());
        }
        rest = &rest[name.len() + usize::from(braced)..];
    }
    found
}

#[test]
fn panel_ids_are_unique_and_panels_do_not_overlap() {
    for (case, dashboard) in dashboards() {
        let panels = panels(&dashboard);
        let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().expect("numeric id")).collect();
        assert_eq!(ids.len(), panels.len(), "{case}: panel ids repeat");
        assert!(!ids.contains(&0), "{case}: a panel has id 0");
        let boxes: Vec<(u64, u64, u64, u64, &str)> = panels
            .iter()
            .map(|p| {
                let g = &p["gridPos"];
                let n = |k: &str| {
                    g[k].as_u64().unwrap_or_else(|| panic!("{case}: gridPos.{k} of {}", p["title"]))
                };
                (n("x"), n("y"), n("w"), n("h"), p["title"].as_str().unwrap_or_default())
            })
            .collect();
        for (i, a) in boxes.iter().enumerate() {
            assert!(a.0 + a.2 <= 24 && a.2 > 0 && a.3 > 0, "{case}: {} is off the grid: {a:?}", a.4);
            for b in &boxes[i + 1..] {
                let apart = a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
                assert!(apart, "{case}: {} and {} overlap: {a:?} {b:?}", a.4, b.4);
            }
        }
        let uid = dashboard["uid"].as_str().expect("uid");
        assert!(!uid.is_empty() && uid.len() <= 40, "{case}: uid {uid:?}");
    }
}

#[test]
fn every_panel_and_query_names_a_datasource_that_exists() {
    for (case, dashboard) in dashboards() {
        let datasource_variables: BTreeSet<String> = dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["type"] == "datasource" && v["query"] == "prometheus")
            .filter_map(|v| v["name"].as_str().map(|n| format!("${{{n}}}")))
            .collect();
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or_default();
            let mut refs = vec![&panel["datasource"]];
            refs.extend(panel["targets"].as_array().into_iter().flatten().map(|t| &t["datasource"]));
            for ds in refs.into_iter().filter(|d| !d.is_null()) {
                match ds["type"].as_str() {
                    Some("prometheus") => assert!(
                        datasource_variables.contains(ds["uid"].as_str().unwrap_or_default()),
                        "{case}: {title}: {ds} is not a Prometheus datasource variable ({datasource_variables:?})"
                    ),
                    Some("influxdb") => assert_eq!(ds["uid"], INFLUX_UID, "{case}: {title}"),
                    other => panic!("{case}: {title}: datasource type {other:?}"),
                }
                assert_eq!(
                    ds["type"], panel["datasource"]["type"],
                    "{case}: {title}: a query on another datasource"
                );
            }
            let ref_ids: Vec<&str> = panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["refId"].as_str())
                .collect();
            let unique: BTreeSet<&&str> = ref_ids.iter().collect();
            assert!(
                !ref_ids.is_empty() && unique.len() == ref_ids.len(),
                "{case}: {title}: refIds {ref_ids:?}"
            );
        }
    }
}

#[test]
fn template_variables_are_defined_and_used() {
    for (case, dashboard) in dashboards() {
        let defined: BTreeSet<String> = dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str().map(str::to_string))
            .collect();
        let mut used = BTreeSet::new();
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or_default();
            let mut texts = vec![panel["datasource"]["uid"].as_str().unwrap_or_default().to_string()];
            for t in panel["targets"].as_array().into_iter().flatten() {
                for key in ["expr", "query", "legendFormat", "alias"] {
                    texts.push(t[key].as_str().unwrap_or_default().to_string());
                }
                texts.push(t["datasource"]["uid"].as_str().unwrap_or_default().to_string());
            }
            for name in texts.iter().flat_map(|t| variables(t)) {
                let known = defined.contains(&name)
                    || GRAFANA_VARIABLES.contains(&name.as_str())
                    || name.strip_prefix("tag_").is_some_and(|tag| !tag.is_empty());
                assert!(known, "{case}: {title} uses ${name}, which is neither defined nor Grafana's");
                used.insert(name);
            }
        }
        for name in &defined {
            assert!(used.contains(name), "{case}: ${name} is defined and never used");
        }
    }
}

#[test]
fn legends_name_only_labels_the_query_keeps() {
    for (case, dashboard) in dashboards() {
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or_default();
            for t in panel["targets"].as_array().into_iter().flatten() {
                let (Some(legend), Some(expr)) = (t["legendFormat"].as_str(), t["expr"].as_str()) else {
                    continue;
                };
                let kept: BTreeSet<&str> = expr
                    .split("by (")
                    .skip(1)
                    .flat_map(|r| r.split(')').next().unwrap_or_default().split(','))
                    .map(str::trim)
                    .collect();
                for label in legend.split("{{").skip(1).filter_map(|r| r.split("}}").next()) {
                    assert!(
                        kept.contains(label.trim()),
                        "{case}: {title}: legend {legend:?} names {label}, which {expr} aggregates away"
                    );
                }
            }
        }
    }
}

/// The unit a query's result has, from what it computes.
fn unit_of(kind: &str, query: &str) -> &'static str {
    if kind == "influxdb" {
        return if query.contains("\"conversion\"") {
            "percentunit"
        } else if query.contains("sum(\"count\") /") {
            "ops"
        } else {
            "short"
        };
    }
    if query.contains("_ratio") {
        "percentunit"
    } else if query.contains("histogram_quantile(") && query.contains("_seconds_bucket")
        || query.starts_with("time() -") && query.contains("_seconds")
    {
        "s"
    } else if query.contains("rate(") {
        "ops"
    } else {
        "short"
    }
}

#[test]
fn units_are_grafanas_and_fit_what_each_query_measures() {
    for (case, dashboard) in dashboards() {
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or_default();
            let unit = panel["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or_default();
            assert!(GRAFANA_UNITS.contains(&unit), "{case}: {title}: unit {unit:?} is not one of Grafana's");
            for (kind, query) in queries(panel) {
                assert_eq!(unit, unit_of(&kind, &query), "{case}: {title}: unit {unit} for {query}");
            }
        }
    }
}

#[test]
fn the_checks_catch_what_they_are_for() {
    assert_eq!(
        variables("sum(increase(x[$__range])) by ${datasource} $tag_event"),
        BTreeSet::from(["__range".to_string(), "datasource".to_string(), "tag_event".to_string()])
    );
    assert_eq!(unit_of("prometheus", "sum(rate(pulse_ingest_events_accepted_total[1m]))"), "ops");
    assert_eq!(
        unit_of("prometheus", "histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket[5m])))"),
        "s"
    );
    assert_eq!(unit_of("prometheus", "max by (partition) (pulse_processor_backlog_events)"), "short");
}
