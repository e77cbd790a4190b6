//! The generated dashboard's business panels against a real InfluxDB 1.x: the JSON parses,
//! every panel names a datasource that exists (the Prometheus variable, or the InfluxDB uid
//! of the spec), every InfluxQL query reads a measurement the processor's sink writes, and
//! each runs on the server without error and finds the sink's points.

use std::collections::BTreeSet;

use pulse_core::config::NamedFunnel;
use pulse_crds::AnalyticsPipeline;
use pulse_operator::pipeline::build::{
    EVENTS_MEASUREMENT, FUNNEL_MEASUREMENT, dashboard_json, influx_queries,
};
use pulse_operator::pipeline::validate::validate;
use pulse_testkit::InfluxDb;
use serde_json::Value;

const PIPELINE: &str = r#"
apiVersion: pulse.dev/v1alpha1
kind: AnalyticsPipeline
metadata: { name: shop, namespace: team-a, uid: 1f0c1d2e-0000-4000-8000-000000000009 }
spec:
  buffer:
    redis: { external: { urlSecretRef: { name: shop-redis, key: url } } }
    partitions: 4
  storage:
    mongodb: { uriSecretRef: { name: shop-mongodb, key: uri } }
    database: pulse_shop
  rollups: { intervals: [minute, hour, day], numericProperties: [revenue] }
  influx:
    url: http://influxdb.monitoring:8086
    database: pulse
    grafanaDatasourceUid: influx-main
"#;

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

async fn influxql(influx: &InfluxDb, database: &str, q: &str) -> Value {
    let url = format!("{}/query?db={}&epoch=ms&q={}", influx.url(), encode(database), encode(q));
    let reply = reqwest::Client::new().post(url).send().await.expect("influx answers");
    let status = reply.status();
    let body: Value = reply.json().await.expect("json");
    assert!(status.is_success(), "{q}: {status} {body}");
    if let Some(e) = body["results"][0]["error"].as_str() {
        panic!("{q}: {e}");
    }
    body
}

/// Points as the processor's sink writes them (docs/influxdb.md; the processor's tests pin
/// the same names on its real output): a bucket per interval and event, numeric stats and
/// a funnel's conversion per day, in line protocol.
async fn write_sink_points(influx: &InfluxDb, database: &str, tenant: &str) {
    let now = jiff::Timestamp::now().as_millisecond();
    let mut lines = Vec::new();
    for (interval, ms) in [("minute", 60_000), ("hour", 3_600_000), ("day", 86_400_000)] {
        let start = now / ms * ms - ms;
        for event in ["page_viewed", "purchase"] {
            let users = if interval == "minute" { String::new() } else { ",users=3i".to_string() };
            lines.push(format!(
                "{EVENTS_MEASUREMENT},event={event},interval={interval},tenant={tenant} count=7i{users} {start}"
            ));
            lines.push(format!(
                "pulse_event_numeric,event={event},interval={interval},property=revenue,tenant={tenant} \
                 sum=12.5,min=1.0,max=9.0,count=3i {start}"
            ));
        }
    }
    let day = now / 86_400_000 * 86_400_000 - 86_400_000;
    lines.push(format!(
        "{FUNNEL_MEASUREMENT},funnel=signup,tenant={tenant} entered=10i,converted=4i,conversion=0.4 {day}"
    ));
    let url = format!("{}/write?db={}&precision=ms", influx.url(), encode(database));
    let reply = reqwest::Client::new().post(url).body(lines.join("\n")).send().await.expect("influx answers");
    assert_eq!(reply.status().as_u16(), 204, "{}", reply.text().await.unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_business_panels_query_existing_measurements_and_run_on_a_real_influxdb() {
    let influx = InfluxDb::start().await.expect("influxd");
    let database = pulse_testkit::unique_name("dash").replace('-', "_");
    influxql(&influx, "", &format!(r#"CREATE DATABASE "{database}""#)).await;
    let pipeline: AnalyticsPipeline = serde_yaml::from_str(PIPELINE).expect("pipeline");
    let funnel: NamedFunnel =
        serde_yaml::from_str("name: signup\nsteps: [{ event: page_viewed }, { event: purchase }]\n")
            .expect("funnel");
    let view = validate(&pipeline, vec![funnel]).expect("valid");
    write_sink_points(&influx, &database, &view.tenant).await;

    // The JSON as the ConfigMap holds it parses back.
    let text = serde_json::to_string_pretty(&dashboard_json(&view)).expect("serialize");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard JSON parses");

    // Datasources: Prometheus through the dashboard's variable, InfluxDB by the spec's uid.
    let variables: BTreeSet<String> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str().map(|n| format!("${{{n}}}")))
        .collect();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let ds = &panel["datasource"];
        match ds["type"].as_str() {
            Some("prometheus") => assert!(variables.contains(ds["uid"].as_str().unwrap_or_default()), "{ds}"),
            Some("influxdb") => assert_eq!(ds["uid"], "influx-main"),
            other => panic!("panel {} has datasource type {other:?}", panel["title"]),
        }
    }

    let queries = influx_queries(&dashboard);
    assert_eq!(queries.len(), 3, "rate, users and funnel panels");
    let shown = influxql(&influx, &database, "SHOW MEASUREMENTS").await;
    let measurements: BTreeSet<String> = shown["results"][0]["series"][0]["values"]
        .as_array()
        .expect("measurements")
        .iter()
        .filter_map(|v| v[0].as_str().map(str::to_string))
        .collect();
    for (uid, query) in &queries {
        assert_eq!(uid, "influx-main");
        let from =
            query.split("FROM \"").nth(1).and_then(|r| r.split('"').next()).expect("a FROM measurement");
        assert!(measurements.contains(from), "{from} is not among {measurements:?}");
        // Grafana replaces $timeFilter with the dashboard's range.
        let runnable = query.replace("$timeFilter", "time > now() - 7d");
        let result = influxql(&influx, &database, &runnable).await;
        let series = result["results"][0]["series"].as_array().map(Vec::len).unwrap_or(0);
        assert!(series > 0, "{runnable} found none of the sink's points: {result}");
    }
}
