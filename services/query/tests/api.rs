//! The query API against a real FerretDB and Redis: events stored and rolled up as the
//! processor does, then queried over HTTP. Pre-aggregated answers must equal the raw-event
//! engine's on the same events; ad-hoc answers are cached; keys and tenants are kept apart;
//! bad queries get clear errors.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use jiff::tz::TimeZone;
use pulse_core::analytics::funnel::{self, FunnelQuery};
use pulse_core::analytics::lifecycle::{self, LifecycleQuery};
use pulse_core::analytics::paths::{self, PathQuery};
use pulse_core::analytics::people;
use pulse_core::analytics::retention::{self, RetentionQuery};
use pulse_core::analytics::stickiness::{self, StickinessQuery};
use pulse_core::analytics::trend::{self, TrendQuery, TrendReport};
use pulse_core::analytics::{AnalyticsEvent, Limits};
use pulse_core::buffer::{BufferedEvent, partition_of};
use pulse_core::config::RollupInterval;
use pulse_core::funnel::FunnelDefinition;
use pulse_core::rollup::{StreamPosition, time_zone};
use pulse_query::Settings;
use pulse_store::{BatchRollups, EventWrite, PartitionLease, Store, WriterMemory};
use pulse_testkit::{FerretDb, PipelineFiles, PipelineSpec, RedisServer, unique_name};
use serde_json::{Value, json};

const PARTITIONS: u32 = 4;
const TZ: &str = "Europe/Berlin";
/// 2026-03-27 00:00 UTC: the range crosses the switch to summer time in Berlin.
const T0: i64 = 1_774_569_600_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// The views' memory bound of the tests: the default.
const VIEWS: u64 = 512 << 20;

/// Deterministic events: `users` users doing a, b, c over four days, with revenue.
fn generated(prefix: &str, users: usize, n: usize) -> Vec<BufferedEvent> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let user = format!("{prefix}u{}", next() % users as u64);
            let name = ["a", "b", "c", "a"][(next() % 4) as usize];
            let ts = T0 + (next() % (4 * DAY as u64)) as i64;
            let revenue = (next() % 10_000) as f64 / 100.0;
            let plan = ["free", "pro"][(next() % 2) as usize];
            BufferedEvent {
                event_id: format!("{prefix}e{i}"),
                id_generated: false,
                event: name.to_string(),
                distinct_id: user,
                timestamp: ts,
                received_at: ts,
                properties: json!({ "revenue": revenue, "plan": plan })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// A tenant's pipeline: its store with events stored and rolled up, and its query API.
struct Tenant {
    url: String,
    read_key: String,
    write_key: String,
    http: reqwest::Client,
    events: Vec<AnalyticsEvent>,
    tz: TimeZone,
    store: Store,
    changes: pulse_buffer::Connection,
    tenant: String,
    intervals: Vec<RollupInterval>,
    _files: PipelineFiles,
}

impl Tenant {
    async fn start(
        redis: &RedisServer,
        ferret: &FerretDb,
        events: &[BufferedEvent],
        max_events: usize,
        max_view_memory: u64,
    ) -> Tenant {
        let intervals = [RollupInterval::Hour, RollupInterval::Day];
        Tenant::start_with(redis, ferret, events, max_events, max_view_memory, &intervals).await
    }

    /// A pipeline that keeps the rollups of `intervals`.
    async fn start_with(
        redis: &RedisServer,
        ferret: &FerretDb,
        events: &[BufferedEvent],
        max_events: usize,
        max_view_memory: u64,
        intervals: &[RollupInterval],
    ) -> Tenant {
        let tenant = unique_name("q");
        let mut spec = PipelineSpec::new(&tenant, &redis.url(), &ferret.uri());
        spec.partitions = PARTITIONS;
        spec.timezone = TZ.to_string();
        spec.retention = "3650d".to_string();
        spec.extra = format!(
            "rollups:\n  intervals: {intervals}\n  numericProperties: [revenue]\n\
             funnels:\n- name: checkout\n  steps: [{{event: a}}, {{event: b}}, {{event: c}}]\n  window: 1d\n",
            intervals = serde_json::to_string(intervals).expect("intervals"),
        );
        let files = PipelineFiles::write(spec).expect("pipeline config");
        let (read_key, write_key) = (files.spec.read_key.clone(), files.spec.write_key.clone());
        let (database, config) = (files.spec.database.clone(), files.config.clone());

        let client = ferret.client().await.expect("client");
        let store = Store::new(client.database(&database));
        store.ensure_schema().await.expect("schema");
        let changes = pulse_buffer::Connection::open(&redis.url(), false, std::time::Duration::from_secs(5))
            .await
            .expect("redis");
        store_as_the_processor_does(&store, &changes, &tenant, events, intervals).await;

        let settings = Settings { max_events, max_view_memory, ..Settings::new(config) };
        let store = store.clone();
        let api = pulse_query::prepare(&settings).await.expect("query API");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, pulse_query::api::router(Arc::clone(&api))).await });
        // Ready once the rollups and the views are read: answers then come from them.
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match http.get(format!("{url}/readyz")).send().await {
                Ok(r) if r.status().is_success() => break,
                other => assert!(std::time::Instant::now() < deadline, "not ready after 60 s: {other:?}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Tenant {
            url,
            read_key,
            write_key,
            http,
            events: events.iter().cloned().map(AnalyticsEvent::from).collect(),
            tz: time_zone(TZ).expect("tz"),
            store,
            changes,
            tenant,
            intervals: intervals.to_vec(),
            _files: files,
        }
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_as(path, body, &self.read_key).await
    }

    async fn post_as(&self, path: &str, body: &Value, key: &str) -> (u16, Value) {
        let reply = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("query API answers");
        let status = reply.status().as_u16();
        (status, reply.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let reply = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.read_key)
            .send()
            .await
            .expect("answers");
        let status = reply.status().as_u16();
        (status, reply.json().await.unwrap_or(Value::Null))
    }
}

/// Stores events partition by partition in batches, and applies the rollups, as the
/// processor does.
async fn store_as_the_processor_does(
    store: &Store,
    changes: &pulse_buffer::Connection,
    tenant: &str,
    events: &[BufferedEvent],
    intervals: &[RollupInterval],
) {
    let mut by_partition: HashMap<u32, Vec<&BufferedEvent>> = HashMap::new();
    for e in events {
        by_partition.entry(partition_of(&e.distinct_id, PARTITIONS)).or_default().push(e);
    }
    let tz = time_zone(TZ).expect("tz");
    let numeric = vec!["revenue".parse().expect("path")];
    let rollups = BatchRollups { intervals, numeric: &numeric, tz: &tz };
    // Stream positions only grow, from one call to the next too: the rollup log counts an
    // entry once, and takes none at or before its end.
    let base = jiff::Timestamp::now().as_millisecond() as u64;
    for (partition, events) in by_partition {
        let lease = PartitionLease { partition, fence: 1 };
        let mut memory = WriterMemory::default();
        for (b, batch) in events.chunks(300).enumerate() {
            let position = StreamPosition { millis: base + b as u64, sequence: 0 };
            let writes: Vec<EventWrite<'_>> =
                batch.iter().map(|e| EventWrite { partition, position, event: e }).collect();
            let stored = store.store_next_batch(lease, &writes, &rollups, &mut memory).await.expect("store");
            pulse_buffer::publish_changes(&mut changes.clone(), tenant, &stored.periods, &stored.blocks)
                .await
                .expect("changes");
        }
    }
}

fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        _ => a == b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preaggregated_trends_equal_the_raw_event_engine() {
    let (redis, ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    let t = Tenant::start(&redis, &ferret, &generated("p", 40, 1500), 1_000_000, VIEWS).await;
    let measures = [
        (json!({ "kind": "count" }), "hour"),
        (json!({ "kind": "count" }), "week"),
        (json!({ "kind": "uniqueUsers" }), "hour"),
        (json!({ "kind": "uniqueUsers" }), "day"),
        (json!({ "kind": "sum", "property": "revenue" }), "day"),
        (json!({ "kind": "average", "property": "revenue" }), "month"),
        (json!({ "kind": "min", "property": "revenue" }), "day"),
        (json!({ "kind": "max", "property": "revenue" }), "week"),
    ];
    for (measure, interval) in measures {
        let body = json!({
            "event": { "event": "a" }, "measure": measure, "interval": interval,
            "from": T0 - 5 * HOUR, "to": T0 + 5 * DAY,
        });
        let (status, answer) = t.post("/v1/trends", &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["answeredFrom"], "preaggregated", "{body}");
        let query: TrendQuery = serde_json::from_value(body.clone()).expect("query");
        let want: TrendReport =
            trend::run(&query, &t.events, None, &t.tz, &Limits::default()).expect("engine");
        let want = serde_json::to_value(want).expect("json");
        assert!(close(&answer["result"], &want), "{body}\n rollups: {}\n engine:  {want}", answer["result"]);
    }
    // A property filter needs raw events: same engine, other path.
    let body = json!({
        "event": { "event": "b", "filters": [{ "property": "plan", "op": "eq", "value": "pro" }] },
        "measure": { "kind": "count" }, "interval": "day", "from": T0, "to": T0 + 4 * DAY,
    });
    let (status, answer) = t.post("/v1/trends", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["answeredFrom"], "raw");
    let query: TrendQuery = serde_json::from_value(body).expect("query");
    let want =
        serde_json::to_value(trend::run(&query, &t.events, None, &t.tz, &Limits::default()).expect("engine"))
            .expect("json");
    assert!(close(&answer["result"], &want));

    // Events the processor writes now show up in pre-aggregated answers within seconds, late
    // ones (three days old) too.
    let now = jiff::Timestamp::now().as_millisecond();
    let fresh: Vec<BufferedEvent> = generated("n", 7, 30)
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e.event = "fresh".to_string();
            e.timestamp = now - 60_000 - i as i64 * 1_000 - if i % 2 == 0 { 3 * DAY } else { 0 };
            e
        })
        .collect();
    let body = json!({ "event": { "event": "fresh" }, "measure": { "kind": "count" }, "interval": "hour", "from": now - 4 * DAY, "to": now + HOUR });
    let total = |answer: &Value| -> f64 {
        answer["result"]["series"][0]["points"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["value"].as_f64())
            .sum()
    };
    let (_, before) = t.post("/v1/trends", &body).await;
    assert_eq!(total(&before), 0.0, "{before}");
    store_as_the_processor_does(&t.store, &t.changes, &t.tenant, &fresh, &t.intervals).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, answer) = t.post("/v1/trends", &body).await;
        assert_eq!(answer["answeredFrom"], "preaggregated");
        if total(&answer) == 30.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "30 new events not visible after 20 s: {answer}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_hoc_and_declared_funnels_and_retention_equal_the_engine_and_are_cached() {
    let (redis, ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    let t = Tenant::start(&redis, &ferret, &generated("f", 60, 2000), 1_000_000, VIEWS).await;
    let definition = json!({ "steps": [{ "event": "a" }, { "event": "b" }, { "event": "c" }], "window": "1d", "breakdown": "plan" });
    let body = json!({ "definition": definition, "from": T0, "to": T0 + 3 * DAY, "trend": "day" });
    let (status, first) = t.post("/v1/funnels", &body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["answeredFrom"], "raw");
    let def: FunnelDefinition = serde_json::from_value(definition).expect("definition");
    let query = FunnelQuery {
        from: T0,
        to: T0 + 3 * DAY,
        trend: Some(pulse_core::analytics::period::Interval::Day),
        session_timeout: None,
    };
    let want = funnel::run(&def, &query, &t.events, None, &t.tz, &Limits::default()).expect("engine");
    assert!(close(&first["result"], &serde_json::to_value(&want).expect("json")), "{}", first["result"]);
    let (_, again) = t.post("/v1/funnels", &body).await;
    assert_eq!(again["answeredFrom"], "cache");
    assert!(close(&again["result"], &first["result"]));

    let (status, declared) = t.get(&format!("/v1/funnels/checkout?from={T0}&to={}", T0 + 3 * DAY)).await;
    assert_eq!(status, 200, "{declared}");
    let def: FunnelDefinition = serde_json::from_value(
        json!({ "steps": [{ "event": "a" }, { "event": "b" }, { "event": "c" }], "window": "1d" }),
    )
    .expect("definition");
    let query = FunnelQuery { from: T0, to: T0 + 3 * DAY, trend: None, session_timeout: None };
    let want = funnel::run(&def, &query, &t.events, None, &t.tz, &Limits::default()).expect("engine");
    assert!(close(&declared["result"], &serde_json::to_value(&want).expect("json")));

    // Whole days in the pipeline's time zone (T0 is 01:00 in Berlin) come from the declared
    // funnel's view, with the conversion per day across the switch to summer time.
    let midnight = T0 - HOUR;
    for (days, trend) in [(1, None), (3, Some("day")), (4, Some("week"))] {
        let to = midnight + days * DAY - if days > 2 { HOUR } else { 0 };
        let trend_param = trend.map(|t| format!("&trend={t}")).unwrap_or_default();
        let (status, answer) =
            t.get(&format!("/v1/funnels/checkout?from={midnight}&to={to}{trend_param}")).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["answeredFrom"], "preaggregated", "{days} days: {answer}");
        let query = FunnelQuery {
            from: midnight,
            to,
            trend: trend.map(|t| serde_json::from_value(json!(t)).expect("interval")),
            session_timeout: None,
        };
        let want = funnel::run(&def, &query, &t.events, None, &t.tz, &Limits::default()).expect("engine");
        assert!(
            close(&answer["result"], &serde_json::to_value(&want).expect("json")),
            "{days} days\n view:   {}\n engine: {}",
            answer["result"],
            serde_json::to_value(&want).expect("json")
        );
    }

    let body = json!({
        "start": { "event": "a" }, "return": { "event": "b" }, "kind": "firstTime",
        "period": "day", "periods": 4, "from": T0, "to": T0 + 2 * DAY,
    });
    let (status, answer) = t.post("/v1/retention", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["answeredFrom"], "preaggregated", "{answer}");
    let query: RetentionQuery = serde_json::from_value(body.clone()).expect("query");
    let mut want = retention::run(&query, &t.events, None, &t.tz, &Limits::default()).expect("engine");
    // Days long past: every cell complete.
    want.mark_progress(query.period, jiff::Timestamp::now().as_millisecond(), &t.tz);
    assert!(close(&answer["result"], &serde_json::to_value(&want).expect("json")), "{}", answer["result"]);
    assert_eq!(answer["result"]["cohorts"][0]["progress"], json!(vec!["complete"; 4]), "{answer}");

    // A filtered start event is not pre-aggregated: raw events, same engine.
    let mut filtered = body.clone();
    filtered["start"] =
        json!({ "event": "a", "filters": [{ "property": "plan", "op": "eq", "value": "pro" }] });
    let (status, answer) = t.post("/v1/retention", &filtered).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["answeredFrom"], "raw", "{answer}");
    let query: RetentionQuery = serde_json::from_value(filtered).expect("query");
    let mut want = retention::run(&query, &t.events, None, &t.tz, &Limits::default()).expect("engine");
    want.mark_progress(query.period, jiff::Timestamp::now().as_millisecond(), &t.tz);
    assert!(close(&answer["result"], &serde_json::to_value(&want).expect("json")), "{}", answer["result"]);

    // Yesterday's and today's cohorts: today is under way and later days are to come, on
    // both paths (a 0 there is no "nobody came back").
    let today = pulse_core::analytics::period::start(
        jiff::Timestamp::now().as_millisecond(),
        pulse_core::analytics::period::Interval::Day,
        &t.tz,
    );
    for start in [
        json!({ "event": "a" }),
        json!({ "event": "a", "filters": [{ "property": "plan", "op": "eq", "value": "pro" }] }),
    ] {
        let recent = json!({
            "start": start, "return": { "event": "b" }, "period": "day", "periods": 3,
            "from": today - DAY / 2, "to": today + DAY / 2,
        });
        let (status, answer) = t.post("/v1/retention", &recent).await;
        assert_eq!(status, 200, "{answer}");
        let progress: Vec<&Value> =
            answer["result"]["cohorts"].as_array().expect("cohorts").iter().map(|c| &c["progress"]).collect();
        assert_eq!(
            progress,
            [&json!(["complete", "partial", "pending"]), &json!(["partial", "pending", "pending"])],
            "{answer}"
        );
    }

    // Events stored now, some three days late, reach the declared funnel's view within
    // seconds: new users who do a, b, c.
    let now = jiff::Timestamp::now().as_millisecond();
    let today =
        pulse_core::analytics::period::start(now, pulse_core::analytics::period::Interval::Day, &t.tz);
    let late: Vec<BufferedEvent> = (0..30)
        .map(|i| {
            let user = i / 3;
            let ts = today - if user % 2 == 0 { 3 * DAY } else { 0 } + HOUR + (i % 3) * 60_000;
            BufferedEvent {
                event_id: format!("late{i}"),
                id_generated: false,
                event: ["a", "b", "c"][(i % 3) as usize].to_string(),
                distinct_id: format!("late-user{user}"),
                timestamp: ts,
                received_at: now,
                properties: serde_json::Map::new(),
            }
        })
        .collect();
    let path = format!("/v1/funnels/checkout?from={}&to={}", today - 3 * DAY, today + DAY);
    let entered = |answer: &Value| answer["result"]["steps"][2]["users"].as_u64();
    let (_, before) = t.get(&path).await;
    assert_eq!(before["answeredFrom"], "preaggregated", "{before}");
    assert_eq!(entered(&before), Some(0), "{before}");
    store_as_the_processor_does(&t.store, &t.changes, &t.tenant, &late, &t.intervals).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, answer) = t.get(&path).await;
        assert_eq!(answer["answeredFrom"], "preaggregated");
        if entered(&answer) == Some(10) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "10 new conversions not visible after 20 s: {answer}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_and_stickiness_equal_the_engines_from_the_view_and_from_raw_events() {
    let (redis, ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    // 400 users with about 5 events each over four days: new, returning, resurrecting and
    // dormant users every day.
    let t = Tenant::start(&redis, &ferret, &generated("l", 400, 2000), 1_000_000, VIEWS).await;
    let now = jiff::Timestamp::now().as_millisecond();
    let pro = json!({ "event": "a", "filters": [{ "property": "plan", "op": "eq", "value": "pro" }] });
    let cohort = json!({ "conditions": [{ "type": "performed", "event": { "event": "c" }, "atLeast": 2, "from": T0, "to": T0 + 4 * DAY }] });
    for (event, cohort, source) in [
        (json!({ "event": "a" }), None, "preaggregated"),
        (pro, None, "raw"),
        (json!({ "event": "a" }), Some(cohort), "raw"),
    ] {
        let users = match &cohort {
            Some(c) => {
                let (status, answer) =
                    t.post("/v1/cohorts", &json!({ "conditions": c["conditions"], "limit": 1000 })).await;
                assert_eq!(status, 200, "{answer}");
                let members: HashSet<String> =
                    serde_json::from_value(answer["result"]["members"].clone()).expect("members");
                assert!(!members.is_empty() && members.len() < 400, "{answer}");
                Some(members)
            }
            None => None,
        };
        for period in ["day", "week"] {
            let mut body = json!({ "event": event, "period": period, "from": T0 + HOUR, "to": T0 + 4 * DAY });
            if let Some(c) = &cohort {
                body["cohort"] = c.clone();
            }
            let (status, answer) = t.post("/v1/lifecycle", &body).await;
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["answeredFrom"], source, "{body}: {answer}");
            let query: LifecycleQuery = serde_json::from_value(body.clone()).expect("query");
            let mut want =
                lifecycle::run(&query, &t.events, users.as_ref(), &t.tz, &Limits::default()).expect("engine");
            want.mark_progress(query.period, now, &t.tz);
            assert_eq!(answer["result"], serde_json::to_value(&want).expect("json"), "{body}");
            if period == "day" {
                let kinds =
                    |k: &str| want.periods.iter().any(|p| serde_json::to_value(p).expect("json")[k] != 0);
                assert!(["new", "returning", "resurrecting", "dormant"].into_iter().all(kinds), "{answer}");
            }

            body["period"] = json!(if period == "day" { "month" } else { "week" });
            let (status, answer) = t.post("/v1/stickiness", &body).await;
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["answeredFrom"], source, "{body}: {answer}");
            let query: StickinessQuery = serde_json::from_value(body.clone()).expect("query");
            let mut want = stickiness::run(&query, &t.events, users.as_ref(), &t.tz, &Limits::default())
                .expect("engine");
            want.mark_progress(query.period, now, &t.tz);
            assert_eq!(answer["result"], serde_json::to_value(&want).expect("json"), "{body}");
            assert!(want.periods.iter().any(|p| p.active_days.iter().skip(1).any(|&n| n > 0)), "{answer}");
        }
    }

    // This week's stickiness and today's lifecycle are under way, later days to come.
    let body = json!({ "event": { "event": "a" }, "period": "day", "from": now - DAY, "to": now + DAY });
    let (status, answer) = t.post("/v1/lifecycle", &body).await;
    assert_eq!(status, 200, "{answer}");
    let progress: Vec<&Value> =
        answer["result"]["periods"].as_array().expect("periods").iter().map(|p| &p["progress"]).collect();
    assert_eq!(progress, ["complete", "partial", "pending"], "{answer}");

    // Refusals name the field.
    for (path, body, status, field) in [
        (
            "/v1/stickiness",
            json!({ "event": { "event": "a" }, "period": "day", "from": T0, "to": T0 + DAY }),
            400,
            "period",
        ),
        (
            "/v1/lifecycle",
            json!({ "event": { "event": "a" }, "period": "hour", "from": T0, "to": T0 + DAY }),
            400,
            "period",
        ),
        (
            "/v1/lifecycle",
            json!({ "event": { "event": "" }, "period": "day", "from": T0, "to": T0 + DAY }),
            400,
            "event.event",
        ),
        (
            "/v1/lifecycle",
            json!({ "event": { "event": "a" }, "period": "day", "from": T0 + DAY, "to": T0 }),
            400,
            "to",
        ),
    ] {
        let (got, answer) = t.post(path, &body).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
        let fields: Vec<&str> = answer["error"]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .filter_map(|f| f["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{path} {body}: {answer}");
    }
    let years = json!({ "event": { "event": "a" }, "period": "day", "from": T0 - 20 * 365 * DAY, "to": T0 });
    let (status, answer) = t.post("/v1/lifecycle", &years).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("too_many_periods")), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_equal_the_engine_over_the_stored_events_and_are_cached() {
    let (redis, ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    let t = Tenant::start(&redis, &ferret, &generated("p", 300, 3000), 1_000_000, VIEWS).await;
    for body in [
        json!({ "start": { "event": "a" }, "steps": 3, "window": "6h", "from": T0, "to": T0 + 2 * DAY }),
        json!({ "start": { "event": "c" }, "direction": "before", "steps": 2, "window": "1d", "collapseRepeats": true,
                "include": ["a"], "endAt": "b", "top": 2, "from": T0 + DAY, "to": T0 + 3 * DAY }),
    ] {
        let (status, answer) = t.post("/v1/paths", &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["answeredFrom"], "raw", "{answer}");
        let query: PathQuery = serde_json::from_value(body.clone()).expect("query");
        let want = paths::run(&query, &t.events, None, &Limits::default()).expect("engine");
        assert!(want.users > 0 && want.distinct_paths > 1, "{want:?}");
        assert_eq!(answer["result"], serde_json::to_value(&want).expect("json"), "{body}");
        let (_, again) = t.post("/v1/paths", &body).await;
        assert_eq!(again["answeredFrom"], "cache");
        assert_eq!(again["result"], answer["result"]);
    }
    let bad = json!({ "start": { "event": "a" }, "steps": 0, "window": "400d", "from": T0, "to": T0 + DAY });
    let (status, answer) = t.post("/v1/paths", &bad).await;
    assert_eq!(status, 400, "{answer}");
    let fields: Vec<&str> = answer["error"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(fields, ["steps", "window"], "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_people_behind_a_number_are_paged_saved_and_filter_other_queries() {
    let (redis, ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    let t = Tenant::start(&redis, &ferret, &generated("h", 300, 3000), 1_000_000, VIEWS).await;
    let definition = json!({ "steps": [{ "event": "a" }, { "event": "b" }, { "event": "c" }], "window": "1h", "breakdown": "plan" });
    let funnel = json!({ "definition": definition, "from": T0, "to": T0 + 3 * DAY });
    let (status, report) = t.post("/v1/funnels", &funnel).await;
    assert_eq!(status, 200, "{report}");
    let steps: Vec<u64> = report["result"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["users"].as_u64())
        .collect();
    let dropped = steps[1] - steps[2];
    assert!(dropped > 10, "{steps:?}");

    // Who dropped off at c, 7 at a time, in id order, as the engine says.
    let of = json!({ "kind": "funnel", "query": funnel, "step": 3, "outcome": "droppedOff" });
    let (mut listed, mut after, mut pages) = (Vec::<String>::new(), None::<String>, 0);
    loop {
        let mut body = json!({ "of": of, "limit": 7 });
        if let Some(a) = &after {
            body["after"] = json!(a);
        }
        let (status, page) = t.post("/v1/people", &body).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["result"]["total"].as_u64(), Some(dropped), "{page}");
        listed.extend(
            page["result"]["users"]
                .as_array()
                .expect("users")
                .iter()
                .filter_map(|u| u.as_str().map(String::from)),
        );
        pages += 1;
        match page["result"]["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, dropped.div_ceil(7), "every page full but the last");
    let of_query: people::PeopleOf = serde_json::from_value(of.clone()).expect("of");
    let want = people::users(&of_query, &t.events, None, &t.tz, &Limits::default()).expect("engine");
    assert_eq!(listed, want);

    // Saved, read back, and used as a filter.
    let (status, saved) =
        t.post("/v1/people", &json!({ "of": of, "limit": 1, "saveAs": "dropped-at-c" })).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["result"]["saved"]["users"].as_u64(), Some(dropped), "{saved}");
    let (status, back) = t.get("/v1/cohorts/saved/dropped-at-c?limit=10000").await;
    assert_eq!(status, 200, "{back}");
    let source: people::PeopleOf =
        serde_json::from_value(back["result"]["cohort"]["source"]["of"].clone()).expect("the request saved");
    assert_eq!(source, of_query, "{back}");
    assert_eq!(back["result"]["members"]["users"], json!(want), "{back}");
    let trend = json!({
        "event": { "event": "a" }, "measure": { "kind": "uniqueUsers" }, "interval": "day", "from": T0, "to": T0 + 4 * DAY,
        "cohort": { "conditions": [{ "type": "inCohort", "name": "dropped-at-c" }] },
    });
    let (status, answer) = t.post("/v1/trends", &trend).await;
    assert_eq!(status, 200, "{answer}");
    let query: TrendQuery = serde_json::from_value(trend.clone()).expect("trend");
    let members: HashSet<String> = want.iter().cloned().collect();
    let expected =
        pulse_core::analytics::trend::run(&query, &t.events, Some(&members), &t.tz, &Limits::default())
            .expect("engine");
    assert!(close(&answer["result"], &serde_json::to_value(&expected).expect("json")), "{answer}");

    // A retention cell's people are as many as the cell says.
    let retention = json!({ "start": { "event": "a" }, "return": { "event": "b" }, "period": "day", "periods": 3, "from": T0, "to": T0 + 2 * DAY });
    let (_, table) = t.post("/v1/retention", &retention).await;
    let cell = table["result"]["cohorts"][0]["retained"][1].as_u64().expect("cell");
    let start = table["result"]["cohorts"][0]["periodStart"].clone();
    let (status, page) = t
        .post(
            "/v1/people",
            &json!({ "of": { "kind": "retention", "query": retention, "cohortStart": start, "offset": 1 } }),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["result"]["total"].as_u64(), Some(cell), "{page}");

    // Refusals.
    let missing = json!({ "of": of, "cohort": { "conditions": [{ "type": "inCohort", "name": "nobody-saved-this" }] } });
    let (status, answer) = t.post("/v1/people", &missing).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("not_found")), "{answer}");
    let past = json!({ "of": { "kind": "funnel", "query": funnel, "step": 4, "outcome": "reached" } });
    let (status, answer) = t.post("/v1/people", &past).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("not_in_report")), "{answer}");
    assert_eq!(answer["error"]["fields"][0]["field"], "of.step", "{answer}");
    let (status, answer) = t.post("/v1/people", &json!({ "of": of, "saveAs": "a|b" })).await;
    assert_eq!((status, answer["error"]["fields"][0]["field"].as_str()), (400, Some("saveAs")), "{answer}");
    let (status, answer) = t.get("/v1/cohorts/saved/never-saved").await;
    assert_eq!(status, 404, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_trends_read_every_event_of_whole_days_with_the_pipelines_timeout() {
    let (redis, ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    let t = Tenant::start(&redis, &ferret, &generated("s", 200, 4000), 1_000_000, VIEWS).await;
    // From 05:00 UTC: the sessions of the whole local days count, events before it included.
    let (from, to) = (T0 + 5 * HOUR, T0 + 3 * DAY);
    for (measure, timeout) in [
        (json!({ "kind": "sessions" }), None),
        (json!({ "kind": "sessionDuration", "p": 50 }), None),
        (json!({ "kind": "eventsPerSession" }), Some("2h")),
    ] {
        let mut body = json!({ "event": { "event": "b" }, "measure": measure, "interval": "day", "from": from, "to": to });
        if let Some(t) = timeout {
            body["sessionTimeout"] = json!(t);
        }
        let (status, answer) = t.post("/v1/trends", &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["answeredFrom"], "raw", "{answer}");
        let mut query: TrendQuery = serde_json::from_value(body.clone()).expect("query");
        // The pipeline's timeout (the default, 30m) when the query sets none.
        query.session_timeout.get_or_insert(pulse_core::duration::DurationSpec::minutes(30));
        let want = trend::run(&query, &t.events, None, &t.tz, &Limits::default()).expect("engine");
        // Sessions every day (a median duration may be 0: most sessions here are one event).
        assert!(want.series[0].points.iter().all(|p| p.value.is_some()), "{want:?}");
        assert!(close(&answer["result"], &serde_json::to_value(&want).expect("json")), "{body}: {answer}");
    }
    // A funnel within one session: raw events of every name, the pipeline's timeout.
    let definition =
        json!({ "steps": [{ "event": "a" }, { "event": "b" }], "window": "1d", "sameSession": true });
    let body = json!({ "definition": definition, "from": from, "to": to });
    let (status, answer) = t.post("/v1/funnels", &body).await;
    assert_eq!((status, &answer["answeredFrom"]), (200, &json!("raw")), "{answer}");
    let def: FunnelDefinition = serde_json::from_value(definition).expect("definition");
    let query: FunnelQuery =
        serde_json::from_value(json!({ "from": from, "to": to, "sessionTimeout": "30m" })).expect("query");
    let want = funnel::run(&def, &query, &t.events, None, &t.tz, &Limits::default()).expect("engine");
    assert!(close(&answer["result"], &serde_json::to_value(&want).expect("json")), "{answer}");
    let mut anywhere = def.clone();
    anywhere.same_session = false;
    let wider = funnel::run(&anywhere, &query, &t.events, None, &t.tz, &Limits::default()).expect("engine");
    assert!(want.steps[1].users < wider.steps[1].users, "one session converts fewer: {want:?}");

    let broken_down = json!({ "event": { "event": "b" }, "measure": { "kind": "sessions" }, "interval": "day", "from": from, "to": to,
                              "breakdown": { "property": "plan", "top": 2 } });
    let (status, answer) = t.post("/v1/trends", &broken_down).await;
    assert_eq!(
        (status, answer["error"]["fields"][0]["field"].as_str()),
        (400, Some("breakdown")),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_tenants_are_kept_apart() {
    let (redis, ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    let mut other_events = generated("o", 5, 50);
    for e in &mut other_events {
        e.event = "secret_event".to_string();
    }
    let a = Tenant::start(&redis, &ferret, &generated("k", 10, 100), 1_000, VIEWS).await;
    let b = Tenant::start(&redis, &ferret, &other_events, 1_000, VIEWS).await;
    let body = json!({ "event": { "event": "a" }, "measure": { "kind": "count" }, "interval": "day", "from": T0, "to": T0 + DAY });
    for (key, why) in [
        (a.write_key.as_str(), "a write key"),
        (b.read_key.as_str(), "another tenant's read key"),
        ("", "no key"),
    ] {
        let (status, answer) = a.post_as("/v1/trends", &body, key).await;
        assert_eq!(status, 401, "{why}: {answer}");
        assert_eq!(answer["error"]["code"], "unauthorized");
    }
    let (status, names) = a.get(&format!("/v1/events?from={}&to={}", T0 - DAY, T0 + 5 * DAY)).await;
    assert_eq!(status, 200, "{names}");
    let names: Vec<&str> =
        names["result"].as_array().expect("list").iter().filter_map(|n| n["event"].as_str()).collect();
    assert_eq!(names, ["a", "b", "c"], "only this tenant's events");
    let body = json!({ "conditions": [{ "type": "performed", "event": { "event": "secret_event" }, "from": 0, "to": T0 + 10 * DAY }] });
    let (status, cohort) = a.post("/v1/cohorts", &body).await;
    assert_eq!(status, 200, "{cohort}");
    assert_eq!(cohort["result"]["users"], 0, "another tenant's events are invisible");
    let (_, cohort) = b.post("/v1/cohorts", &body).await;
    assert_eq!(cohort["result"]["users"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_names_are_counted_whatever_rollup_intervals_the_pipeline_keeps() {
    let (redis, ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    let events = generated("n", 10, 120);
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for e in &events {
        *want.entry(e.event.clone()).or_default() += 1;
    }
    // Hours without days (a valid config), minutes only (their periods expire after days:
    // the raw events answer), and days.
    for intervals in [&[RollupInterval::Hour][..], &[RollupInterval::Minute], &[RollupInterval::Day]] {
        let t = Tenant::start_with(&redis, &ferret, &events, 1_000, VIEWS, intervals).await;
        let (status, names) = t.get(&format!("/v1/events?from={}&to={}", T0 - DAY, T0 + 5 * DAY)).await;
        assert_eq!(status, 200, "{intervals:?}: {names}");
        let got: BTreeMap<String, u64> = names["result"]
            .as_array()
            .expect("list")
            .iter()
            .map(|n| (n["event"].as_str().unwrap_or_default().to_string(), n["count"].as_u64().unwrap_or(0)))
            .collect();
        assert_eq!(got, want, "{intervals:?}: {names}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_get_clear_errors() {
    let (redis, ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    // At most 100 raw events per query.
    let t = Tenant::start(&redis, &ferret, &generated("b", 20, 400), 100, VIEWS).await;
    let cases = [
        ("/v1/trends", json!("not an object"), 400, "invalid_body", None),
        (
            "/v1/trends",
            json!({ "event": { "event": "a" }, "measure": { "kind": "count" }, "interval": "day", "from": T0, "to": T0 - 1 }),
            400,
            "invalid_query",
            Some("to"),
        ),
        (
            "/v1/trends",
            json!({ "event": { "event": "a" }, "measure": { "kind": "count" }, "interval": "hour", "from": 0, "to": T0 }),
            422,
            "too_many_periods",
            None,
        ),
        (
            "/v1/funnels",
            json!({ "definition": { "steps": [{ "event": "a" }], "window": "1h" }, "from": T0, "to": T0 + DAY }),
            400,
            "invalid_query",
            Some("definition.steps"),
        ),
        (
            "/v1/funnels",
            json!({ "definition": { "steps": [{ "event": "a" }, { "event": "b" }], "window": "1h" }, "from": T0, "to": T0 + 4 * DAY }),
            422,
            "too_many_events",
            None,
        ),
        ("/v1/cohorts", json!({ "conditions": [] }), 400, "invalid_query", Some("cohort.conditions")),
        // A duration as a number of milliseconds: named, with what a duration looks like.
        (
            "/v1/funnels",
            json!({ "definition": { "steps": [{ "event": "a" }, { "event": "b" }], "window": 60000 }, "from": T0, "to": T0 + DAY }),
            400,
            "invalid_query",
            Some("definition.window"),
        ),
        (
            "/v1/trends",
            json!({ "event": { "event": "a" }, "measure": { "kind": "count" }, "interval": "day", "from": "yesterday", "to": T0 }),
            400,
            "invalid_query",
            Some("from"),
        ),
        (
            "/v1/retention",
            json!({ "start": { "event": "a" }, "return": { "event": "b" }, "period": "day", "periods": 3, "from": T0 }),
            400,
            "invalid_query",
            Some("to"),
        ),
        // Epoch seconds, which would answer zeros as milliseconds.
        (
            "/v1/cohorts",
            json!({ "conditions": [{ "type": "performed", "event": { "event": "a" }, "from": T0 / 1000, "to": (T0 + DAY) / 1000 }] }),
            422,
            "epoch_seconds",
            Some("cohort.conditions[0].from"),
        ),
        (
            "/v1/trends",
            json!({ "event": { "event": "a" }, "measure": { "kind": "count" }, "interval": "day", "from": T0 / 1000, "to": (T0 + DAY) / 1000 }),
            422,
            "epoch_seconds",
            Some("from"),
        ),
    ];
    for (path, body, status, code, field) in cases {
        let (got, answer) = t.post(path, &body).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert!(!answer["error"]["message"].as_str().unwrap_or_default().is_empty());
        if let Some(field) = field {
            let fields: Vec<&str> = answer["error"]["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["field"].as_str())
                .collect();
            assert!(fields.iter().any(|f| f.starts_with(field)), "{field} in {fields:?}");
        }
    }
    let (status, answer) = t.get(&format!("/v1/funnels/nope?from={T0}&to={}", T0 + DAY)).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("unknown_funnel")));
    // Query parameters: missing, malformed and in epoch seconds, each named.
    for (query, field, reason) in [
        (format!("to={T0}"), "from", "required"),
        (format!("from=yesterday&to={T0}"), "from", "invalid digit"),
        (format!("from={T0}&to={}&trend=fortnight", T0 + DAY), "trend", "fortnight"),
        (format!("from={}&to={}", T0 / 1000, (T0 + DAY) / 1000), "from", "epoch seconds"),
    ] {
        let (status, answer) = t.get(&format!("/v1/funnels/checkout?{query}")).await;
        let expected = match reason {
            "epoch seconds" => (422, Some("epoch_seconds")),
            _ => (400, Some("invalid_query")),
        };
        assert_eq!((status, answer["error"]["code"].as_str()), expected, "{query}: {answer}");
        assert_eq!(answer["error"]["fields"][0]["field"], field, "{query}: {answer}");
        let said = answer["error"]["fields"][0]["reason"].as_str().unwrap_or_default();
        assert!(said.contains(reason), "{query}: {answer}");
    }
    let (status, answer) = t.get("/v1/events?from=soon").await;
    assert_eq!((status, answer["error"]["fields"][0]["field"].as_str()), (400, Some("from")), "{answer}");
    let (status, answer) = t.get("/v1/failed-events?limit=many").await;
    assert_eq!((status, answer["error"]["fields"][0]["field"].as_str()), (400, Some("limit")), "{answer}");

    let (status, doc) = t.get("/openapi.json").await;
    assert_eq!(status, 200);
    for schema in ["TrendRequest", "FunnelRequest", "RetentionRequest", "CohortRequest", "ErrorResponse"] {
        assert!(doc["components"]["schemas"].get(schema).is_some(), "{schema} in the OpenAPI document");
    }
    assert!(doc["paths"]["/v1/funnels/{name}"]["get"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_past_their_memory_bound_leave_declared_funnels_and_retention_to_raw_events() {
    let (redis, ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    // 4 KiB: less than the views of these events take.
    let t = Tenant::start(&redis, &ferret, &generated("m", 30, 600), 1_000_000, 4 << 10).await;
    let midnight = T0 - HOUR;
    let (status, answer) =
        t.get(&format!("/v1/funnels/checkout?from={midnight}&to={}", midnight + 2 * DAY)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["answeredFrom"], "raw", "{answer}");
    let def: FunnelDefinition = serde_json::from_value(
        json!({ "steps": [{ "event": "a" }, { "event": "b" }, { "event": "c" }], "window": "1d" }),
    )
    .expect("definition");
    let query = FunnelQuery { from: midnight, to: midnight + 2 * DAY, trend: None, session_timeout: None };
    let want = funnel::run(&def, &query, &t.events, None, &t.tz, &Limits::default()).expect("engine");
    assert!(close(&answer["result"], &serde_json::to_value(&want).expect("json")), "{}", answer["result"]);
    let body = json!({
        "start": { "event": "a" }, "return": { "event": "b" }, "period": "day", "periods": 3,
        "from": midnight, "to": midnight + 2 * DAY,
    });
    let (status, answer) = t.post("/v1/retention", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["answeredFrom"], "raw", "{answer}");
}

/// Every page of `/v1/persons/{user}/events` of `limit`, followed through `next`: the event
/// ids in the order listed, and how many pages.
async fn every_page_of(t: &Tenant, user: &str, limit: usize) -> (Vec<(i64, String)>, usize) {
    let (mut listed, mut pages, mut before) = (Vec::new(), 0, None::<String>);
    loop {
        let cursor = before.as_ref().map(|b| format!("&before={b}")).unwrap_or_default();
        let (status, page) = t.get(&format!("/v1/persons/{user}/events?limit={limit}{cursor}")).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        assert!(pages < 1_000, "the pages go on: {page}");
        let events = page["result"]["events"].as_array().expect("events");
        assert!(events.len() <= limit, "{page}");
        for e in events {
            listed
                .push((e["timestamp"].as_i64().expect("ts"), e["eventId"].as_str().expect("id").to_string()));
        }
        match page["result"]["next"].as_str() {
            Some(next) => before = Some(next.to_string()),
            None => return (listed, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_is_their_profile_and_first_and_last_event_and_their_events_newest_first() {
    let (redis, ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    let mut events = generated("p", 20, 600);
    // Profile updates of one user, in stream order; two events at the same time.
    let user = "pu3";
    let at = |i: i64| T0 + 3 * DAY + i * HOUR;
    let profile = [
        (at(1), json!({ "$set": { "plan": "pro", "seats": 3 }, "$set_once": { "source": "ad" } })),
        (at(2), json!({ "$set_once": { "source": "search", "country": "DE" } })),
        (at(2), json!({ "$set": { "seats": 5 }, "$unset": ["plan"] })),
    ];
    for (i, (ts, properties)) in profile.iter().enumerate() {
        events.push(BufferedEvent {
            event_id: format!("profile-{i}"),
            id_generated: false,
            event: "identify".into(),
            distinct_id: user.into(),
            timestamp: *ts,
            received_at: *ts,
            properties: properties.as_object().cloned().unwrap_or_default(),
        });
    }
    let t = Tenant::start(&redis, &ferret, &events, 1_000_000, VIEWS).await;
    let theirs: Vec<&BufferedEvent> = events.iter().filter(|e| e.distinct_id == user).collect();
    let updates = pulse_core::profile::profile_updates(theirs.iter().copied());
    let partition = partition_of(user, PARTITIONS);
    let position = StreamPosition { millis: jiff::Timestamp::now().as_millisecond() as u64, sequence: 0 };
    t.store.apply_profile_updates(partition, position, &updates).await.expect("profile");

    let (status, answer) = t.get(&format!("/v1/persons/{user}")).await;
    assert_eq!(status, 200, "{answer}");
    let person = &answer["result"];
    assert_eq!(person["properties"], json!({ "seats": 5, "source": "ad", "country": "DE" }), "{answer}");
    assert_eq!(person["firstSeen"], json!(theirs.iter().map(|e| e.timestamp).min()), "{answer}");
    assert_eq!(person["lastSeen"], json!(theirs.iter().map(|e| e.timestamp).max()), "{answer}");
    for path in ["/v1/persons/nobody-at-all", "/v1/persons/nobody-at-all/events"] {
        let (status, answer) = t.get(path).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("not_found")), "{path}: {answer}");
    }
    // A user with a profile and no event: the profile, and no events.
    let updates = pulse_core::profile::profile_updates([&BufferedEvent {
        event_id: "only-a-profile".into(),
        id_generated: false,
        event: "identify".into(),
        distinct_id: "profile-only".into(),
        timestamp: T0,
        received_at: T0,
        properties: json!({ "$set": { "plan": "team" } }).as_object().cloned().unwrap_or_default(),
    }]);
    let alone = partition_of("profile-only", PARTITIONS);
    t.store.apply_profile_updates(alone, position, &updates).await.expect("profile");
    let (status, answer) = t.get("/v1/persons/profile-only").await;
    assert_eq!((status, &answer["result"]["properties"]), (200, &json!({ "plan": "team" })), "{answer}");
    assert_eq!(answer["result"]["lastSeen"], Value::Null, "{answer}");
    let (status, answer) = t.get("/v1/persons/profile-only/events").await;
    assert_eq!((status, &answer["result"]["events"]), (200, &json!([])), "{answer}");

    // Users by their profile, and the properties seen on profiles.
    let search = |filters: Value| json!({ "filters": filters });
    for (filters, want) in [
        (json!([]), vec!["profile-only", user]),
        (json!([{ "property": "country", "value": "DE" }]), vec![user]),
        (
            json!([{ "property": "seats", "op": "gt", "value": "4" }, { "property": "plan", "op": "notExists" }]),
            vec![user],
        ),
        (json!([{ "property": "plan", "op": "in", "values": ["team", "pro"] }]), vec!["profile-only"]),
    ] {
        let (status, answer) = t.post("/v1/persons", &search(filters.clone())).await;
        assert_eq!(status, 200, "{answer}");
        let ids: Vec<&str> = answer["result"]["persons"]
            .as_array()
            .expect("persons")
            .iter()
            .filter_map(|p| p["distinctId"].as_str())
            .collect();
        assert_eq!(
            (ids, answer["result"]["total"].as_u64()),
            (want.clone(), Some(want.len() as u64)),
            "{filters}"
        );
    }
    let (_, page) = t.post("/v1/persons", &json!({ "limit": 1 })).await;
    assert_eq!(
        (page["result"]["total"].as_u64(), page["result"]["next"].as_str()),
        (Some(2), Some("profile-only")),
        "{page}"
    );
    let (_, page) = t.post("/v1/persons", &json!({ "limit": 1, "after": "profile-only" })).await;
    assert_eq!(page["result"]["persons"][0]["properties"]["seats"], 5, "{page}");
    let (status, answer) =
        t.post("/v1/persons", &search(json!([{ "property": "seats", "op": "gt", "value": "many" }]))).await;
    assert_eq!(
        (status, answer["error"]["fields"][0]["field"].as_str()),
        (400, Some("filters[0].value")),
        "{answer}"
    );
    let (status, answer) = t.get("/v1/person-properties").await;
    assert_eq!(status, 200, "{answer}");
    let paths: Vec<(&str, u64)> = answer["result"]["properties"]
        .as_array()
        .expect("properties")
        .iter()
        .map(|p| (p["path"].as_str().unwrap_or_default(), p["events"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(paths, [("country", 1), ("plan", 1), ("seats", 1), ("source", 1)], "{answer}");
    let (status, answer) = t.get(&format!("/v1/persons/{user}/events?before=soon")).await;
    assert_eq!((status, answer["error"]["fields"][0]["field"].as_str()), (400, Some("before")), "{answer}");
    // The document says which cursors are valid, so a client's valid request is accepted.
    let (_, doc) = t.get("/openapi.json").await;
    let before = &doc["components"]["schemas"]["PersonEventsParams"]["properties"]["before"];
    assert!(before["pattern"].is_string(), "{before}");

    // Newest first by time then id, each event once, over pages that cut the same time.
    let mut want: Vec<(i64, String)> = theirs.iter().map(|e| (e.timestamp, e.event_id.clone())).collect();
    want.sort_by(|a, b| b.cmp(a));
    let (listed, pages) = every_page_of(&t, user, 7).await;
    assert_eq!(listed, want);
    assert_eq!(pages, want.len().div_ceil(7).max(1));
    let (status, answer) = t.get(&format!("/v1/persons/{user}/events?limit=1")).await;
    assert_eq!(status, 200, "{answer}");
    let newest = &answer["result"]["events"][0];
    let stored = theirs.iter().find(|e| e.event_id == want[0].1).expect("newest");
    assert_eq!(newest["properties"], Value::Object(stored.properties.clone()), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_activity_view_a_persons_events_are_read_a_month_at_a_time() {
    let (redis, ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    let events = generated("s", 10, 300);
    // 4 KiB: less than the views of these events take.
    let t = Tenant::start(&redis, &ferret, &events, 1_000_000, 4 << 10).await;
    let user = "su4";
    let (status, answer) = t.get(&format!("/v1/persons/{user}")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((&answer["result"]["firstSeen"], &answer["result"]["properties"]), (&Value::Null, &json!({})));
    let mut want: Vec<(i64, String)> =
        events.iter().filter(|e| e.distinct_id == user).map(|e| (e.timestamp, e.event_id.clone())).collect();
    want.sort_by(|a, b| b.cmp(a));
    assert!(!want.is_empty());
    let (listed, pages) = every_page_of(&t, user, 1000).await;
    assert_eq!(listed, want);
    // From now back to T0, 31 days a page at most.
    let days = (jiff::Timestamp::now().as_millisecond() - T0) / DAY;
    assert!(pages as i64 >= days / 31, "{pages} pages for {days} days");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_properties_are_their_paths_types_and_top_values_over_the_range() {
    let (redis, ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    let t = Tenant::start(&redis, &ferret, &generated("d", 30, 600), 1_000_000, VIEWS).await;
    let (from, to) = (T0 + DAY, T0 + 3 * DAY);
    let (status, answer) = t.get(&format!("/v1/events/a/properties?from={from}&to={to}&top=3")).await;
    assert_eq!(status, 200, "{answer}");
    let read: Vec<AnalyticsEvent> =
        t.events.iter().filter(|e| e.event == "a" && (from..to).contains(&e.timestamp)).cloned().collect();
    let want = pulse_core::analytics::discovery::properties(&read, 3);
    assert_eq!(answer["result"], serde_json::to_value(&want).expect("json"), "{answer}");
    let plan =
        answer["result"]["properties"].as_array().expect("properties").iter().find(|p| p["path"] == "plan");
    assert_eq!(plan.map(|p| p["distinct"].clone()), Some(json!(2)), "{answer}");
    // Nothing of that name: no property, not an error.
    let (status, answer) = t.get(&format!("/v1/events/nothing/properties?from={from}&to={to}")).await;
    assert_eq!((status, &answer["result"]["events"]), (200, &json!(0)), "{answer}");
    let (status, answer) = t.get("/v1/events/a/properties?top=0").await;
    assert_eq!((status, answer["error"]["fields"][0]["field"].as_str()), (400, Some("top")), "{answer}");
}
