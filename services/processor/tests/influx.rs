//! The InfluxDB sink against a real InfluxDB 1.x (influxd from the OS packages): after a
//! known event set, InfluxQL returns exactly the rollups stored in MongoDB; across a 30 s
//! InfluxDB outage the pipeline keeps going, and once the sink catches up there is no gap
//! and no point written twice.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use pulse_core::rollup::NumericStat;
use pulse_store::recount::BucketTotals;
use pulse_testkit::{FerretDb, InfluxDb, RedisServer};
use serde_json::Value;
use support::{Pipeline, events, events_within};

const DRAIN: Duration = Duration::from_secs(120);
const CONVERGE: Duration = Duration::from_secs(60);
const OUTAGE: Duration = Duration::from_secs(30);
const FUNNEL: &str = "browse-to-buy";

/// Adds an `influx` section to the pipeline's config, flushing every second and looking
/// back 4 days (the generated events are up to 3 days late), and a declared funnel.
fn with_influx(pipeline: &Pipeline, influx: &InfluxDb, database: &str) {
    let mut config = std::fs::read_to_string(&pipeline.config).expect("read config");
    config.push_str(&format!(
        "influx:\n  url: {}\n  database: {database}\n  flushInterval: 1s\n  lookback: 4d\n  backfill: 7d\n  \
         funnelInterval: 2s\n  batchPoints: 500\n\
         funnels:\n  - name: {FUNNEL}\n    steps: [{{ event: page_viewed }}, {{ event: purchase }}]\n    window: 1h\n",
        influx.url()
    ));
    std::fs::write(&pipeline.config, config).expect("write config");
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs InfluxQL, failing the test on an HTTP or statement error.
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

/// Each series' rows as (tags, column -> value).
fn rows(body: &Value) -> Vec<(BTreeMap<String, String>, BTreeMap<String, Value>)> {
    let mut out = Vec::new();
    for series in body["results"][0]["series"].as_array().into_iter().flatten() {
        let tags: BTreeMap<String, String> = series["tags"]
            .as_object()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        let columns: Vec<String> = series["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c.as_str().expect("name").to_string())
            .collect();
        for row in series["values"].as_array().expect("values") {
            let row = row.as_array().expect("row");
            out.push((tags.clone(), columns.iter().cloned().zip(row.iter().cloned()).collect()));
        }
    }
    out
}

/// Every bucket InfluxDB holds for `tenant`, keyed like the store's bucket ids
/// (`<interval>|<start, 15 digits>|<event>`), and how many points that took.
async fn influx_buckets(
    influx: &InfluxDb,
    database: &str,
    tenant: &str,
) -> (BTreeMap<String, BucketTotals>, usize) {
    let id = |tags: &BTreeMap<String, String>, row: &BTreeMap<String, Value>| {
        format!("{}|{:015}|{}", tags["interval"], row["time"].as_i64().expect("time"), tags["event"])
    };
    let mut out: BTreeMap<String, BucketTotals> = BTreeMap::new();
    let counts = influxql(
        influx,
        database,
        &format!(r#"SELECT "count", "users" FROM "pulse_events" WHERE "tenant" = '{tenant}' GROUP BY "event", "interval""#),
    )
    .await;
    let count_rows = rows(&counts);
    for (tags, row) in &count_rows {
        let totals = BucketTotals {
            events: row["count"].as_u64().expect("count"),
            users: row["users"].as_u64(),
            numeric: BTreeMap::new(),
        };
        assert!(out.insert(id(tags, row), totals).is_none(), "one point per bucket");
    }
    let numeric = influxql(
        influx,
        database,
        &format!(
            r#"SELECT "sum", "min", "max", "count" FROM "pulse_event_numeric" WHERE "tenant" = '{tenant}' GROUP BY "event", "interval", "property""#
        ),
    )
    .await;
    for (tags, row) in rows(&numeric) {
        let stat = NumericStat {
            sum: row["sum"].as_f64().expect("sum"),
            min: row["min"].as_f64().expect("min"),
            max: row["max"].as_f64().expect("max"),
            count: row["count"].as_u64().expect("count"),
        };
        out.entry(id(&tags, &row)).or_default().numeric.insert(tags["property"].clone(), stat);
    }
    (out, count_rows.len())
}

/// How InfluxDB differs from MongoDB's rollups, at most 5 examples; empty when equal.
async fn differences(pipeline: &Pipeline, influx: &InfluxDb, database: &str) -> Vec<String> {
    let stored = pipeline.store().await.stored_rollups().await.expect("stored rollups");
    let (written, _) = influx_buckets(influx, database, &pipeline.tenant).await;
    let mut wrong = Vec::new();
    for (id, want) in &stored {
        match written.get(id) {
            Some(got) if got.agrees_with(want) => {}
            got => wrong.push(format!("{id}: InfluxDB {got:?}, MongoDB {want:?}")),
        }
    }
    wrong.extend(
        written.keys().filter(|k| !stored.contains_key(*k)).map(|k| format!("{k}: only in InfluxDB")),
    );
    wrong.truncate(5);
    wrong
}

/// Waits until InfluxDB holds exactly MongoDB's rollups, failing with the differences.
async fn assert_converges(pipeline: &Pipeline, influx: &InfluxDb, database: &str) {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let wrong = differences(pipeline, influx, database).await;
        if wrong.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "InfluxDB still differs from MongoDB after {CONVERGE:?}, e.g.:\n{}",
            wrong.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn start() -> (RedisServer, FerretDb, InfluxDb, String) {
    let redis = RedisServer::start().await.expect("redis");
    let ferret = FerretDb::start().await.expect("ferretdb");
    let influx = InfluxDb::start().await.expect("influxd");
    let database = pulse_testkit::unique_name("pulse").replace('-', "_");
    influxql(&influx, "", &format!(r#"CREATE DATABASE "{database}""#)).await;
    (redis, ferret, influx, database)
}

/// Per day: (entered, converted), from InfluxDB's `pulse_funnel`.
async fn influx_funnel(influx: &InfluxDb, database: &str, tenant: &str) -> BTreeMap<i64, (u64, u64)> {
    let body = influxql(
        influx,
        database,
        &format!(r#"SELECT "entered", "converted" FROM "pulse_funnel" WHERE "tenant" = '{tenant}' AND "funnel" = '{FUNNEL}'"#),
    )
    .await;
    rows(&body)
        .into_iter()
        .map(|(_, r)| {
            (
                r["time"].as_i64().expect("time"),
                (r["entered"].as_u64().expect("entered"), r["converted"].as_u64().expect("converted")),
            )
        })
        .collect()
}

/// Per day: (entered, converted), by the core funnel engine over the stored raw events.
async fn engine_funnel(pipeline: &Pipeline) -> BTreeMap<i64, (u64, u64)> {
    use pulse_core::analytics::funnel::{self, FunnelQuery};
    use pulse_core::analytics::period::{self, Interval};
    let config = pulse_core::config::PipelineConfig::parse(
        &std::fs::read_to_string(&pipeline.config).expect("config"),
    )
    .expect("valid config");
    let def = &config.funnels[0].definition;
    let tz = pulse_core::rollup::time_zone(&pipeline.timezone).expect("tz");
    let now = jiff::Timestamp::now().as_millisecond();
    let query = FunnelQuery {
        from: period::start(now - 6 * 86_400_000, Interval::Day, &tz),
        to: now + 1,
        trend: Some(Interval::Day),
        session_timeout: None,
    };
    let events: Vec<pulse_core::analytics::AnalyticsEvent> = pipeline
        .store()
        .await
        .events_between(None, 0, i64::MAX, 1_000_000)
        .await
        .expect("events")
        .into_iter()
        .map(Into::into)
        .collect();
    let report = funnel::run(def, &query, &events, None, &tz, &Default::default()).expect("funnel");
    report.trend.iter().map(|p| (p.period_start, (p.entered, p.converted))).collect()
}

/// Waits until InfluxDB's funnel conversion per day equals the engine's over MongoDB.
async fn assert_funnel_converges(pipeline: &Pipeline, influx: &InfluxDb, database: &str) {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let want = engine_funnel(pipeline).await;
        let got = influx_funnel(influx, database, &pipeline.tenant).await;
        if got == want {
            assert!(want.values().any(|(entered, converted)| *entered > 0 && *converted > 0), "{want:?}");
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "funnel per day: InfluxDB {got:?}, engine {want:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxql_returns_exactly_the_rollups_stored_in_mongodb() {
    let (redis, ferret, influx, database) = start().await;
    let pipeline = Pipeline::new(&redis.url(), false, &ferret, 3);
    with_influx(&pipeline, &influx, &database);
    let ingest = pipeline.start_ingest().await;
    let _processor = pipeline.start_processor("processor");
    let sent = events("a", 1500, 120, 11);
    for chunk in sent.chunks(250) {
        ingest.send(chunk).await;
    }
    pipeline.wait_drained(DRAIN).await;
    assert_converges(&pipeline, &influx, &database).await;
    let (written, points) = influx_buckets(&influx, &database, &pipeline.tenant).await;
    // Every event name in every interval, with users on hour and day only.
    assert!(written.len() > 12, "{} buckets", written.len());
    assert_eq!(points, written.len());
    assert!(written.iter().all(|(id, t)| t.users.is_some() != id.starts_with("minute|")));
    assert!(written.values().all(|t| t.numeric.contains_key("revenue")));
    assert_funnel_converges(&pipeline, &influx, &database).await;
    // The documented schema (docs/influxdb.md), which the operator's dashboard queries.
    let shown = influxql(&influx, &database, "SHOW MEASUREMENTS").await;
    let measurements: Vec<&str> = shown["results"][0]["series"][0]["values"]
        .as_array()
        .expect("measurements")
        .iter()
        .filter_map(|v| v[0].as_str())
        .collect();
    assert_eq!(measurements, ["pulse_event_numeric", "pulse_events", "pulse_funnel"]);
    let tags = influxql(&influx, &database, r#"SHOW TAG KEYS FROM "pulse_events""#).await;
    assert_eq!(
        tags["results"][0]["series"][0]["values"],
        serde_json::json!([["event"], ["interval"], ["tenant"]])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_influxdb_outage_blocks_nothing_and_the_sink_catches_up_without_gap_or_double_point() {
    let (redis, ferret, mut influx, database) = start().await;
    let pipeline = Pipeline::new(&redis.url(), false, &ferret, 3);
    with_influx(&pipeline, &influx, &database);
    let ingest = pipeline.start_ingest().await;
    let _processor = pipeline.start_processor("processor");
    let before = events("b", 800, 100, 12);
    ingest.send(&before).await;
    pipeline.wait_drained(DRAIN).await;
    assert_converges(&pipeline, &influx, &database).await;

    influx.kill();
    let down = tokio::time::Instant::now();
    // Events during the outage: new periods, and late ones into periods already written.
    let during = events_within("c", 1200, 150, 13, 600_000, 86_400_000);
    for chunk in during.chunks(300) {
        ingest.send(chunk).await;
    }
    // The pipeline does not wait for InfluxDB.
    pipeline.wait_drained(DRAIN).await;
    let stored = pipeline.store().await.stored_rollups().await.expect("rollups");
    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;
    influx.restart().await.expect("restart influxd");

    assert_converges(&pipeline, &influx, &database).await;
    let (written, points) = influx_buckets(&influx, &database, &pipeline.tenant).await;
    assert_eq!(written.len(), stored.len(), "no gap: every bucket of MongoDB is in InfluxDB");
    assert_eq!(points, written.len(), "no double point: one point per bucket and time");
}
