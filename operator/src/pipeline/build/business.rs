//! The dashboard's business panels over the InfluxDB sink's series (docs/influxdb.md),
//! when the pipeline has the sink: events per second by name, unique users by event, and
//! each declared funnel's conversion per day. InfluxQL against the InfluxDB datasource
//! whose uid the spec names; the measurement and tag names are the processor's
//! (`pulse_processor::influx`), pinned by a test that runs these queries on a real server.

use pulse_core::config::RollupInterval;
use pulse_crds::InfluxSpec;
use serde_json::{Value, json};

use crate::pipeline::validate::ValidPipeline;

/// The measurement of the rollups' counts and unique users.
pub const EVENTS_MEASUREMENT: &str = "pulse_events";
/// The measurement of declared funnels' conversion per day.
pub const FUNNEL_MEASUREMENT: &str = "pulse_funnel";

/// An InfluxQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// (stored interval name, GROUP BY time, seconds) of an interval.
fn grain(interval: RollupInterval) -> (&'static str, &'static str, u32) {
    match interval {
        RollupInterval::Minute => ("minute", "1m", 60),
        RollupInterval::Hour => ("hour", "1h", 3_600),
        RollupInterval::Day => ("day", "1d", 86_400),
    }
}

/// The panel time range of a panel whose points are a day apart. The sink stamps a day's
/// point with the day's start, so under the dashboard's 6 h range such a panel is empty
/// from 06:00 on; it shows the week instead (the sink rewrites funnel days over a week).
const DAILY_PANEL_RANGE: &str = "7d";

/// The panel's own time range (`timeFrom`) for a grain: only daily panels need one.
fn time_from(group: &str) -> Option<&'static str> {
    (group == "1d").then_some(DAILY_PANEL_RANGE)
}

fn panel(
    id: u32,
    title: &str,
    influx: &InfluxSpec,
    queries: &[(String, String)],
    unit: &str,
    time_from: Option<&str>,
    (x, y): (u32, u32),
) -> Value {
    let targets: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (alias, query))| {
            json!({
                "refId": ((b'A' + i as u8) as char).to_string(),
                "datasource": { "type": "influxdb", "uid": influx.grafana_datasource_uid },
                "query": query,
                "rawQuery": true,
                "resultFormat": "time_series",
                "alias": alias,
            })
        })
        .collect();
    let mut panel = json!({
        "id": id,
        "title": title,
        "type": "timeseries",
        "datasource": { "type": "influxdb", "uid": influx.grafana_datasource_uid },
        "gridPos": { "x": x, "y": y, "w": 12, "h": 8 },
        "fieldConfig": { "defaults": { "unit": unit }, "overrides": [] },
        "targets": targets,
    });
    if let Some(range) = time_from {
        panel["timeFrom"] = json!(range);
    }
    panel
}

/// The business panels, from panel id `first_id` and grid row `y` on; none without the sink.
pub fn business_panels(view: &ValidPipeline, first_id: u32, y: u32) -> Vec<Value> {
    let Some(influx) = view.spec.influx.as_ref() else { return Vec::new() };
    let tenant = literal(&view.tenant);
    let intervals = &view.config.rollups.intervals;
    let mut panels = Vec::new();
    let mut id = first_id;
    let mut place = |panels: &mut Vec<Value>, make: &dyn Fn(u32, (u32, u32)) -> Value| {
        let n = panels.len() as u32;
        panels.push(make(id, ((n % 2) * 12, y + (n / 2) * 8)));
        id += 1;
    };
    let finest = [RollupInterval::Minute, RollupInterval::Hour, RollupInterval::Day]
        .into_iter()
        .find(|i| intervals.contains(i));
    if let Some(interval) = finest {
        let (name, group, secs) = grain(interval);
        let query = format!(
            r#"SELECT sum("count") / {secs} FROM "{EVENTS_MEASUREMENT}" WHERE "tenant" = {tenant} AND "interval" = '{name}' AND $timeFilter GROUP BY time({group}), "event" fill(0)"#
        );
        place(&mut panels, &|id, pos| {
            panel(
                id,
                "Events per second by name",
                influx,
                &[("$tag_event".into(), query.clone())],
                "ops",
                time_from(group),
                pos,
            )
        });
    }
    // Unique users are counted per hour and per day (not per minute).
    let users = [RollupInterval::Hour, RollupInterval::Day].into_iter().find(|i| intervals.contains(i));
    if let Some(interval) = users {
        let (name, group, _) = grain(interval);
        let query = format!(
            r#"SELECT sum("users") FROM "{EVENTS_MEASUREMENT}" WHERE "tenant" = {tenant} AND "interval" = '{name}' AND $timeFilter GROUP BY time({group}), "event""#
        );
        let title = format!("Unique users per {name} by event");
        place(&mut panels, &|id, pos| {
            panel(id, &title, influx, &[("$tag_event".into(), query.clone())], "short", time_from(group), pos)
        });
    }
    if !view.config.funnels.is_empty() {
        let queries: Vec<(String, String)> = view
            .config
            .funnels
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    format!(
                        r#"SELECT last("conversion") FROM "{FUNNEL_MEASUREMENT}" WHERE "tenant" = {tenant} AND "funnel" = {} AND $timeFilter GROUP BY time(1d)"#,
                        literal(&f.name)
                    ),
                )
            })
            .collect();
        place(&mut panels, &|id, pos| {
            panel(
                id,
                "Funnel conversion per day",
                influx,
                &queries,
                "percentunit",
                Some(DAILY_PANEL_RANGE),
                pos,
            )
        });
    }
    panels
}

/// Every InfluxQL query of a dashboard's panels, with the datasource uid it names.
pub fn influx_queries(dashboard: &Value) -> Vec<(String, String)> {
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["datasource"]["type"] == "influxdb")
        .map(|t| {
            (
                t["datasource"]["uid"].as_str().unwrap_or_default().to_string(),
                t["query"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::build::dashboard_json;
    use crate::pipeline::build::fixtures;

    #[test]
    fn no_sink_no_business_panels() {
        let view = fixtures::valid(fixtures::ACME);
        assert!(business_panels(&view, 1, 0).is_empty());
        assert!(influx_queries(&dashboard_json(&view)).is_empty());
    }

    #[test]
    fn with_the_sink_the_dashboard_has_rate_users_and_funnel_panels_on_the_named_datasource() {
        let view = fixtures::valid(&fixtures::acme_with_influx());
        let json = dashboard_json(&view);
        let titles: Vec<&str> =
            json["panels"].as_array().expect("panels").iter().filter_map(|p| p["title"].as_str()).collect();
        for t in ["Events per second by name", "Unique users per hour by event", "Funnel conversion per day"]
        {
            assert!(titles.contains(&t), "{t} missing from {titles:?}");
        }
        let queries = influx_queries(&json);
        assert_eq!(queries.len(), 3);
        assert!(queries.iter().all(|(uid, q)| uid == "influx-main" && q.contains("\"tenant\" = 'acme'")));
        assert!(queries[0].1.contains("sum(\"count\") / 60") && queries[0].1.contains("'minute'"));
        assert!(queries[2].1.contains("\"funnel\" = 'signup'"));
        let ids: std::collections::BTreeSet<u64> =
            json["panels"].as_array().expect("panels").iter().filter_map(|p| p["id"].as_u64()).collect();
        assert_eq!(ids.len(), titles.len(), "panel ids are unique");
    }

    #[test]
    fn daily_panels_show_the_week_and_finer_ones_the_dashboards_range() {
        let view = fixtures::valid(&fixtures::acme_with_influx());
        let json = dashboard_json(&view);
        let time_from = |title: &str| {
            json["panels"]
                .as_array()
                .expect("panels")
                .iter()
                .find(|p| p["title"] == title)
                .map(|p| p["timeFrom"].clone())
        };
        assert_eq!(time_from("Funnel conversion per day"), Some(json!("7d")));
        assert_eq!(time_from("Events per second by name"), Some(Value::Null));
        assert_eq!(time_from("Unique users per hour by event"), Some(Value::Null));
    }

    #[test]
    fn literals_escape_quotes() {
        assert_eq!(literal(r"it's\"), r"'it\'s\\'");
    }
}
