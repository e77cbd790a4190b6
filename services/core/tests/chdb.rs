//! Pulse's funnels, retention, lifecycle and stickiness against ClickHouse (chDB), on
//! generated event sets: ties, repeated ids, late and out-of-order events, window
//! boundaries, many users. Ordered funnels are compared with `windowFunnel(window,
//! 'strict_once')`, retention, lifecycle and stickiness with plain
//! SQL; strict and unordered funnels, exclusions and holdConstant, which ClickHouse has no
//! equivalent for, with the brute-force reference. Every user's level and every cohort
//! cell must be equal.
//!
//! Both paths are compared: the ad-hoc engines over the events, and the in-memory views
//! (`materialized::{FunnelView, ActivityView}`) fed the same events in batches, over the
//! sets' ranges and over the whole days around them.
//!
//! Needs the chDB venv of `make env` (tests/env/python-chdb.sh); fails, never skips,
//! without it.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use pulse_core::analytics::funnel::{self, FunnelEngine, FunnelQuery, FunnelReport};
use pulse_core::analytics::lifecycle::{self, LifecycleQuery};
use pulse_core::analytics::materialized::{ActivityView, FunnelView};
use pulse_core::analytics::paths::{self, PathDirection, PathQuery};
use pulse_core::analytics::period;
use pulse_core::analytics::retention::{self, RetentionKind, RetentionQuery};
use pulse_core::analytics::stickiness::{self, StickinessQuery};
use pulse_core::analytics::trend::{self, TrendQuery};
use pulse_core::analytics::{AnalyticsEvent, EventMatcher, Limits, by_user, period::Interval};
use pulse_core::funnel::FunnelDefinition;
use serde_json::{Value, json};
use support::reference::funnel_user;

const SEC: i64 = 1_000;
const DAY: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// A small deterministic generator (64-bit LCG), so every run sees the same sets.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// The events in a random order (one order for every engine: of two copies of an id,
/// the first given counts).
fn shuffled(mut events: Vec<AnalyticsEvent>, seed: u64) -> Vec<AnalyticsEvent> {
    let mut rng = Rng(seed);
    for i in (1..events.len()).rev() {
        events.swap(i, rng.next(i as u64 + 1) as usize);
    }
    events
}

/// The events cut into batches of random sizes, as the query service feeds its views.
fn batches(events: &[AnalyticsEvent], seed: u64) -> Vec<Vec<AnalyticsEvent>> {
    let mut rng = Rng(seed);
    let mut rest = events;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let take = (1 + rng.next(rest.len() as u64 / 3 + 1) as usize).min(rest.len());
        out.push(rest[..take].to_vec());
        rest = &rest[take..];
    }
    out
}

fn funnel_view(def: &FunnelDefinition, events: &[AnalyticsEvent], tz: &TimeZone) -> FunnelView {
    let mut view = FunnelView::new(def.clone(), tz.clone()).expect("valid definition");
    for batch in batches(events, events.len() as u64) {
        view.add(&batch);
    }
    view
}

/// The whole UTC days around `[from, to)`: what the funnel views answer.
fn whole_days(from: i64, to: i64) -> (i64, i64) {
    (from - from.rem_euclid(DAY), to + (DAY - to.rem_euclid(DAY)) % DAY)
}

fn step_users(report: &FunnelReport) -> Vec<u64> {
    report.steps.iter().map(|s| s.users).collect()
}

fn base() -> i64 {
    "2026-03-20T00:00:00Z".parse::<Timestamp>().expect("timestamp").as_millisecond()
}

/// `users` users with 1..=`per_user` events each at `time(rng)`; with probability
/// `repeat_pct` an event repeats an earlier id of the user (at another time: the first
/// copy counts).
fn generate(
    seed: u64,
    users: usize,
    per_user: u64,
    repeat_pct: u64,
    time: &dyn Fn(&mut Rng) -> i64,
) -> Vec<AnalyticsEvent> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for u in 0..users {
        let count = 1 + rng.next(per_user);
        for i in 0..count {
            let id = if i > 0 && rng.next(100) < repeat_pct { rng.next(i) } else { i };
            let d = match rng.next(3) {
                0 => Value::Null,
                1 => json!("p"),
                _ => json!("q"),
            };
            let mut properties = json!({ "v": rng.next(3) });
            if !d.is_null() {
                properties["d"] = d;
            }
            out.push(AnalyticsEvent {
                event_id: format!("e{id}"),
                event: ["a", "b", "c", "x", "a", "b"][rng.next(6) as usize].to_string(),
                distinct_id: format!("u{u}"),
                timestamp: time(&mut rng),
                properties,
            });
        }
    }
    out
}

/// The event sets, each with the funnel range to use.
fn event_sets() -> Vec<(&'static str, Vec<AnalyticsEvent>, i64, i64)> {
    let b = base();
    // Ties: six possible seconds.
    let ties = generate(1, 400, 9, 0, &|r| b + r.next(6) as i64 * SEC);
    // Repeated ids with other times.
    let repeats = generate(2, 400, 9, 35, &|r| b + r.next(20) as i64 * SEC);
    // Late: given out of time order, some before the range and after range + window.
    let mut late = generate(3, 400, 9, 10, &|r| b - 30 * SEC + r.next(120) as i64 * SEC);
    let mut rng = Rng(4);
    for i in (1..late.len()).rev() {
        late.swap(i, rng.next(i as u64 + 1) as usize);
    }
    // Window boundaries: steps 10 s apart give or take a millisecond (window 10s).
    let boundary =
        generate(5, 400, 8, 5, &|r| b + r.next(4) as i64 * 10 * SEC + [-1, 0, 0, 1][r.next(4) as usize]);
    // Many users over three weeks (retention crosses Berlin's DST change on 2026-03-29).
    let many = generate(6, 20_000, 10, 3, &|r| b + r.next(21 * DAY as u64) as i64);
    vec![
        ("ties", ties, b, b + 3 * SEC),
        ("repeats", repeats, b + 2 * SEC, b + 12 * SEC),
        ("late", late, b, b + 40 * SEC),
        ("boundary", boundary, b, b + 20 * SEC),
        ("many", many, b + 2 * DAY, b + 14 * DAY),
    ]
}

/// A step as (event, minimum of property v).
type Step = (&'static str, Option<u8>);

/// Ordered funnels with a ClickHouse equivalent: (name, steps, window).
fn ordered_funnels() -> Vec<(&'static str, Vec<Step>, &'static str)> {
    vec![
        ("abc-10s", vec![("a", None), ("b", None), ("c", None)], "10s"),
        ("aab-5s", vec![("a", None), ("a", None), ("b", None)], "5s"),
        ("filters-1m", vec![("a", Some(1)), ("b", None), ("c", Some(2)), ("b", None)], "1m"),
        ("ab-1d", vec![("a", None), ("b", None)], "1d"),
    ]
}

fn definition(steps: &[(&str, Option<u8>)], window: &str, extra: Value) -> FunnelDefinition {
    let steps: Vec<Value> = steps
        .iter()
        .map(|(event, v)| {
            let filters: Vec<Value> = v
                .map(|v| json!({ "property": "v", "op": "gte", "value": v.to_string() }))
                .into_iter()
                .collect();
            json!({ "event": event, "filters": filters })
        })
        .collect();
    let mut def = json!({ "steps": steps, "window": window });
    if let (Some(def), Some(extra)) = (def.as_object_mut(), extra.as_object()) {
        def.extend(extra.clone());
    }
    serde_json::from_value(def).expect("valid definition")
}

/// Definitions ClickHouse cannot express, checked against the brute-force reference.
fn other_modes() -> Vec<(&'static str, FunnelDefinition)> {
    let abc = [("a", None), ("b", None), ("c", None)];
    let filt = [("a", Some(1)), ("b", None), ("c", Some(2)), ("b", None)];
    vec![
        ("strict-abc", definition(&abc, "10s", json!({ "order": "strict" }))),
        ("strict-filters", definition(&filt, "1m", json!({ "order": "strict", "holdConstant": ["d"] }))),
        ("unordered-abc", definition(&abc, "10s", json!({ "order": "unordered" }))),
        ("unordered-filters", definition(&filt, "1m", json!({ "order": "unordered", "breakdown": "d" }))),
        (
            "exclusions",
            definition(
                &abc,
                "10s",
                json!({ "exclusions": [
                    { "event": "x", "fromStep": 1, "toStep": 3 },
                    { "event": "a", "filters": [{ "property": "v", "value": "2" }], "fromStep": 2, "toStep": 3 }
                ] }),
            ),
        ),
        ("hold-breakdown", definition(&filt, "1m", json!({ "holdConstant": ["d"], "breakdown": "d" }))),
    ]
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("PULSE_CHDB_PYTHON") {
        return p.into();
    }
    let cache = std::env::var_os("PULSE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/pulse"));
    let p = cache.join("venv-chdb-4.4.0/bin/python");
    assert!(p.exists(), "{} is missing: run `make env` (tests/env/python-chdb.sh)", p.display());
    p
}

/// Writes the events (in the order given) and runs the chDB script.
fn clickhouse(events: &[AnalyticsEvent], spec: Value) -> Value {
    let dir = std::env::temp_dir().join(format!("pulse-chdb-{}-{}", std::process::id(), events.len()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("events.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("events file"));
    for (row, e) in events.iter().enumerate() {
        let line = json!({
            "row": row, "id": e.event_id, "event": e.event, "user": e.distinct_id, "ts": e.timestamp,
            "v": e.properties["v"], "d": e.properties.get("d"),
            "sid": e.properties.get("$session_id").and_then(Value::as_str).unwrap_or_default(),
        });
        writeln!(file, "{line}").expect("write");
    }
    file.flush().expect("flush");
    drop(file);
    let mut spec = spec;
    spec["events"] = json!(path.to_string_lossy());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/chdb/reference.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child.stdin.take().expect("stdin").write_all(spec.to_string().as_bytes()).expect("send spec");
    let out = child.wait_with_output().expect("chdb script");
    std::fs::remove_dir_all(&dir).ok();
    assert!(out.status.success(), "chDB script failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("chDB script prints JSON")
}

fn describe(events: &[&AnalyticsEvent], from: i64) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{}@{}ms v={} d={}",
                e.event,
                e.timestamp - from,
                e.properties["v"],
                e.properties.get("d").unwrap_or(&Value::Null)
            )
        })
        .collect()
}

#[test]
fn ordered_funnels_equal_clickhouse_window_funnel_and_other_modes_the_reference() {
    let limits = Limits::default();
    for (set, events, from, to) in event_sets() {
        let events = shuffled(events, 8);
        let (day_from, day_to) = whole_days(from, to);
        let funnels: Vec<Value> = ordered_funnels()
            .iter()
            .flat_map(|(name, steps, window)| {
                let def = definition(steps, window, json!({}));
                let steps: Vec<Value> = steps.iter().map(|(e, v)| json!({ "event": e, "min_v": v })).collect();
                let window_ms = def.window.as_secs() * 1000;
                [
                    json!({ "name": name, "steps": steps, "window_ms": window_ms, "from": from, "to": to }),
                    json!({ "name": format!("{name}/days"), "steps": steps, "window_ms": window_ms, "from": day_from, "to": day_to }),
                ]
            })
            .collect();
        let ch = clickhouse(&events, json!({ "funnels": funnels }));
        let users = by_user(&events);
        for (name, steps, window) in ordered_funnels() {
            let def = definition(&steps, window, json!({}));
            let engine = FunnelEngine::new(&def, from, to).expect("valid");
            let levels = &ch["funnels"][name];
            let mut reached = vec![0u64; def.steps.len()];
            let mut mismatches = Vec::new();
            for user in &users {
                let want = levels.get(user.distinct_id).and_then(Value::as_u64).unwrap_or(0) as usize;
                let got = engine.user(&user.events).level;
                if got != want {
                    mismatches.push(format!(
                        "{}: pulse {got}, chDB {want}: {:?}",
                        user.distinct_id,
                        describe(&user.events, from)
                    ));
                }
                reached.iter_mut().take(want).for_each(|r| *r += 1);
            }
            assert!(
                mismatches.is_empty(),
                "{set}/{name}: {} users differ, e.g. {:?}",
                mismatches.len(),
                &mismatches[..mismatches.len().min(3)]
            );
            let report = funnel::run(
                &def,
                &FunnelQuery { from, to, trend: None, session_timeout: None },
                &events,
                None,
                &TimeZone::UTC,
                &limits,
            )
            .expect("runs");
            assert_eq!(
                report.steps.iter().map(|s| s.users).collect::<Vec<_>>(),
                reached,
                "{set}/{name} step counts"
            );
            assert!(reached[0] > 0, "{set}/{name}: the set must exercise the funnel");
            // The view over the set's range (days cut at both ends) ...
            let view = funnel_view(&def, &events, &TimeZone::UTC);
            let query = FunnelQuery { from, to, trend: None, session_timeout: None };
            let got = view.report(&query, &limits).expect("runs").expect("answered");
            assert_eq!(step_users(&got), reached, "{set}/{name}: the view's step counts");
            // ... and over the whole days around it, against chDB's levels there.
            let levels = &ch["funnels"][format!("{name}/days")];
            let mut reached = vec![0u64; def.steps.len()];
            for user in &users {
                let level = levels.get(user.distinct_id).and_then(Value::as_u64).unwrap_or(0) as usize;
                reached.iter_mut().take(level).for_each(|r| *r += 1);
            }
            for trend in [None, Some(Interval::Day)] {
                let query = FunnelQuery { from: day_from, to: day_to, trend, session_timeout: None };
                let got = view.report(&query, &limits).expect("runs").expect("whole days are answered");
                assert_eq!(step_users(&got), reached, "{set}/{name}: the view's step counts over whole days");
                let ad_hoc = funnel::run(&def, &query, &events, None, &TimeZone::UTC, &limits).expect("runs");
                assert_eq!(got, ad_hoc, "{set}/{name}: the view's report equals the ad-hoc report");
            }
        }
        for (name, def) in other_modes() {
            let engine = FunnelEngine::new(&def, from, to).expect("valid");
            let mut entered = 0;
            for user in &users {
                let got = engine.user(&user.events);
                let want = funnel_user(&def, &user.events, from, to);
                assert_eq!(
                    (got.level, &got.step_times, &got.breakdown),
                    (want.level, &want.step_times, &want.breakdown),
                    "{set}/{name} user {}: {:?}",
                    user.distinct_id,
                    describe(&user.events, from)
                );
                entered += usize::from(got.level > 0);
            }
            assert!(entered > 0, "{set}/{name}: the set must exercise the funnel");
            // The view over whole days against the reference's users there.
            let (day_from, day_to) = whole_days(from, to);
            let mut reached = vec![0u64; def.steps.len()];
            let mut by_value: BTreeMap<Option<String>, Vec<u64>> = BTreeMap::new();
            for user in &users {
                let want = funnel_user(&def, &user.events, day_from, day_to);
                reached.iter_mut().take(want.level).for_each(|r| *r += 1);
                if want.level > 0 && def.breakdown.is_some() {
                    let row = by_value.entry(want.breakdown).or_insert_with(|| vec![0; def.steps.len()]);
                    row.iter_mut().take(want.level).for_each(|r| *r += 1);
                }
            }
            let view = funnel_view(&def, &events, &TimeZone::UTC);
            let query = FunnelQuery { from, to, trend: None, session_timeout: None };
            let got = view.report(&query, &limits).expect("runs").expect("answered");
            let ad_hoc = funnel::run(&def, &query, &events, None, &TimeZone::UTC, &limits).expect("runs");
            assert_eq!(got, ad_hoc, "{set}/{name}: the view's report over the set's range");
            let query =
                FunnelQuery { from: day_from, to: day_to, trend: Some(Interval::Day), session_timeout: None };
            let got = view.report(&query, &limits).expect("runs").expect("whole days are answered");
            assert_eq!(step_users(&got), reached, "{set}/{name}: the view's step counts over whole days");
            let rows: BTreeMap<Option<String>, Vec<u64>> =
                got.breakdown.iter().map(|r| (r.value.clone(), r.steps.clone())).collect();
            assert_eq!(rows, by_value, "{set}/{name}: the view's breakdown over whole days");
            let ad_hoc = funnel::run(&def, &query, &events, None, &TimeZone::UTC, &limits).expect("runs");
            assert_eq!(got, ad_hoc, "{set}/{name}: the view's report equals the ad-hoc report");
        }
    }
}

fn date_of(ms: i64, tz: &TimeZone) -> String {
    Timestamp::from_millisecond(ms).expect("in range").to_zoned_datetime(tz.clone()).date().to_string()
}

#[test]
fn retention_equals_clickhouse_sql_in_each_time_zone() {
    let b = base();
    let events = shuffled(generate(7, 5_000, 12, 3, &|r| b + r.next(30 * DAY as u64) as i64), 9);
    let mut specs = Vec::new();
    let mut queries = Vec::new();
    for tz in ["UTC", "Europe/Berlin", "Asia/Kolkata"] {
        let zone = TimeZone::get(tz).expect("zone");
        let midnight = |ts| period::start(ts, Interval::Day, &zone);
        for (kind, kind_name) in
            [(RetentionKind::FirstTime, "firstTime"), (RetentionKind::Recurring, "recurring")]
        {
            for (period, period_name, periods, (from, to), range) in [
                (Interval::Day, "day", 8u32, (b + 3 * DAY + 5 * 3_600_000, b + 17 * DAY), "times"),
                (Interval::Week, "week", 3, (b + 3 * DAY + 5 * 3_600_000, b + 17 * DAY), "times"),
                (Interval::Day, "day", 8, (midnight(b + 3 * DAY), midnight(b + 17 * DAY)), "days"),
                (Interval::Week, "week", 3, (midnight(b + 3 * DAY), midnight(b + 17 * DAY)), "days"),
            ] {
                let name = format!("{tz}-{kind_name}-{period_name}-{range}");
                specs.push(json!({
                    "name": name, "start": "a", "return": "b", "kind": kind_name, "period": period_name,
                    "periods": periods, "from": from, "to": to, "tz": tz,
                }));
                let query = RetentionQuery {
                    start: EventMatcher::named("a"),
                    return_event: EventMatcher::named("b"),
                    kind,
                    period,
                    periods,
                    from,
                    to,
                };
                queries.push((name, tz, query));
            }
        }
    }
    let ch = clickhouse(&events, json!({ "retention": specs }));
    let mut views: BTreeMap<&str, ActivityView> = BTreeMap::new();
    for (name, tz_name, query) in queries {
        let tz = TimeZone::get(tz_name).expect("zone");
        let view = views.entry(tz_name).or_insert_with(|| {
            let mut view = ActivityView::new(tz.clone());
            for batch in batches(&events, 11) {
                view.add(&batch);
            }
            view
        });
        let report = retention::run(&query, &events, None, &tz, &Limits::default()).expect("runs");
        let got = view.retention(&query, &Limits::default()).expect("runs").expect("answered");
        assert_eq!(got, report, "{name}: the view equals the ad-hoc table");
        let mut sizes = BTreeMap::new();
        let mut cells = BTreeMap::new();
        for c in &report.cohorts {
            let date = date_of(c.period_start, &tz);
            if c.users > 0 {
                sizes.insert(date.clone(), c.users);
            }
            for (k, &n) in c.retained.iter().enumerate() {
                if n > 0 {
                    cells.insert((date.clone(), k as u64), n);
                }
            }
        }
        let want_sizes: BTreeMap<String, u64> =
            serde_json::from_value(ch["retention"][&name]["sizes"].clone()).expect("sizes");
        let want_cells: BTreeMap<(String, u64), u64> = ch["retention"][&name]["cells"]
            .as_array()
            .expect("cells")
            .iter()
            .map(|c| {
                (
                    (c[0].as_str().unwrap_or_default().to_string(), c[1].as_u64().unwrap_or(0)),
                    c[2].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert!(!want_sizes.is_empty(), "{name}: the set must have cohorts");
        assert_eq!(sizes, want_sizes, "{name}: cohort sizes");
        assert_eq!(cells, want_cells, "{name}: retained users per cohort and offset");
    }
}

/// A matcher of `event`, with `v >= min_v` when given.
fn matcher(event: &str, min_v: Option<u8>) -> EventMatcher {
    let filters: Vec<Value> =
        min_v.map(|v| json!({ "property": "v", "op": "gte", "value": v.to_string() })).into_iter().collect();
    serde_json::from_value(json!({ "event": event, "filters": filters })).expect("matcher")
}

#[test]
fn lifecycle_and_stickiness_equal_clickhouse_sql_in_each_time_zone() {
    let b = base();
    // Five weeks around Berlin's DST change and two month ends, users active on a few days.
    let events = shuffled(generate(8, 5_000, 12, 3, &|r| b + r.next(45 * DAY as u64) as i64), 10);
    let (from, to) = (b + 9 * DAY + 5 * 3_600_000, b + 40 * DAY);
    let mut lifecycle_specs = Vec::new();
    let mut stickiness_specs = Vec::new();
    let mut queries = Vec::new();
    for tz in ["UTC", "Europe/Berlin", "Asia/Kolkata"] {
        for (event, min_v) in [("a", None), ("b", Some(1u8))] {
            for (period, period_name) in
                [(Interval::Day, "day"), (Interval::Week, "week"), (Interval::Month, "month")]
            {
                let name = format!("{tz}-{event}-{period_name}");
                let spec =
                    json!({ "name": name, "event": event, "min_v": min_v, "period": period_name, "tz": tz });
                lifecycle_specs.push(spec.clone());
                if period != Interval::Day {
                    stickiness_specs.push(spec);
                }
                queries.push((name, tz, matcher(event, min_v), period));
            }
        }
    }
    let ch = clickhouse(&events, json!({ "lifecycle": lifecycle_specs, "stickiness": stickiness_specs }));
    let mut views: BTreeMap<&str, ActivityView> = BTreeMap::new();
    let limits = Limits::default();
    for (name, tz_name, event, period) in queries {
        let tz = TimeZone::get(tz_name).expect("zone");
        let view = views.entry(tz_name).or_insert_with(|| {
            let mut view = ActivityView::new(tz.clone());
            for batch in batches(&events, 12) {
                view.add(&batch);
            }
            view
        });
        let filtered = !event.filters.is_empty();

        let query = LifecycleQuery { event: event.clone(), period, from, to };
        let report = lifecycle::run(&query, &events, None, &tz, &limits).expect("runs");
        let from_view = view.lifecycle(&query, &limits).expect("runs");
        if filtered {
            assert_eq!(from_view, None, "{name}: a filtered event is left to the ad-hoc path");
        } else {
            assert_eq!(from_view.as_ref(), Some(&report), "{name}: the view equals the ad-hoc lifecycle");
        }
        let dates: Vec<String> = report.periods.iter().map(|p| date_of(p.period_start, &tz)).collect();
        let mut want: BTreeMap<String, [i64; 4]> = dates.iter().map(|d| (d.clone(), [0; 4])).collect();
        for row in ch["lifecycle"][&name].as_array().expect("rows") {
            let (date, kind, n) = (
                row[0].as_str().unwrap_or_default(),
                row[1].as_str().unwrap_or_default(),
                row[2].as_i64().unwrap_or(0),
            );
            let Some(counts) = want.get_mut(date) else { continue };
            match kind {
                "new" => counts[0] = n,
                "returning" => counts[1] = n,
                "resurrecting" => counts[2] = n,
                _ => counts[3] = -n,
            }
        }
        let got: BTreeMap<String, [i64; 4]> = report
            .periods
            .iter()
            .map(|p| {
                let counts = [p.new as i64, p.returning as i64, p.resurrecting as i64, p.dormant];
                (date_of(p.period_start, &tz), counts)
            })
            .collect();
        // Every kind occurs (resurrecting needs a period between two others: not in two months).
        let occurs = |kind: usize| got.values().any(|c| c[kind] != 0);
        assert!(occurs(0) && occurs(1) && occurs(3), "{name}: new, returning and dormant occur");
        assert!(period == Interval::Month || occurs(2), "{name}: resurrecting occurs");
        assert_eq!(got, want, "{name}: new, returning, resurrecting and dormant per period");

        if period == Interval::Day {
            continue;
        }
        let query = StickinessQuery { event, period, from, to };
        let report = stickiness::run(&query, &events, None, &tz, &limits).expect("runs");
        let from_view = view.stickiness(&query, &limits).expect("runs");
        if filtered {
            assert_eq!(from_view, None, "{name}: a filtered event is left to the ad-hoc path");
        } else {
            assert_eq!(from_view.as_ref(), Some(&report), "{name}: the view equals the ad-hoc stickiness");
        }
        let mut got = BTreeMap::new();
        for p in &report.periods {
            for (k, &n) in p.active_days.iter().enumerate() {
                if n > 0 {
                    got.insert((date_of(p.period_start, &tz), k as u64 + 1), n);
                }
            }
        }
        let reported: Vec<String> = report.periods.iter().map(|p| date_of(p.period_start, &tz)).collect();
        let want: BTreeMap<(String, u64), u64> = ch["stickiness"][&name]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                (
                    (r[0].as_str().unwrap_or_default().to_string(), r[1].as_u64().unwrap_or(0)),
                    r[2].as_u64().unwrap_or(0),
                )
            })
            .filter(|((date, _), _)| reported.contains(date))
            .collect();
        assert!(got.keys().any(|(_, days)| *days > 1), "{name}: users active on several days");
        assert_eq!(got, want, "{name}: users per period by active days");
    }
}

#[test]
fn paths_equal_clickhouse_array_functions() {
    let b = base();
    // Six hours of events per user, on whole minutes (ties), some ids repeated.
    let events = shuffled(generate(9, 4_000, 14, 4, &|r| b + r.next(360) as i64 * 60 * SEC), 11);
    let (from, to) = (b + HOUR_MS, b + 4 * HOUR_MS);
    let cases = [
        json!({ "start": { "event": "a" }, "steps": 4, "window": "2h" }),
        json!({ "start": { "event": "a" }, "direction": "before", "steps": 3, "window": "1h" }),
        json!({ "start": { "event": "b" }, "steps": 5, "window": "3h", "collapseRepeats": true, "exclude": ["x"] }),
        json!({ "start": { "event": "a" }, "steps": 6, "window": "6h", "include": ["b"], "endAt": "c" }),
        json!({ "start": { "event": "c" }, "direction": "before", "steps": 4, "window": "2h", "collapseRepeats": true, "endAt": "a" }),
        json!({ "start": { "event": "a", "filters": [{ "property": "v", "op": "gte", "value": "1" }] }, "steps": 2, "window": "30m", "top": 3 }),
    ];
    let mut specs = Vec::new();
    let mut queries = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let mut body = case.clone();
        body["from"] = json!(from);
        body["to"] = json!(to);
        let query: PathQuery = serde_json::from_value(body).expect("query");
        let name = format!("paths-{i}");
        specs.push(json!({
            "name": name, "start": query.start.event,
            "min_v": query.start.filters.first().map(|_| 1),
            "direction": if query.direction == PathDirection::After { "after" } else { "before" },
            "steps": query.steps, "window_ms": query.window.as_millis(), "from": from, "to": to,
            "collapse": query.collapse_repeats, "exclude": query.exclude, "include": query.include,
            "end_at": query.end_at,
        }));
        queries.push((name, query));
    }
    let ch = clickhouse(&events, json!({ "paths": specs }));
    let users = by_user(&events);
    for (name, query) in queries {
        let mut want: BTreeMap<Vec<String>, u64> = BTreeMap::new();
        for row in ch["paths"][&name].as_array().expect("rows") {
            let path: Vec<String> = serde_json::from_value(row[0].clone()).expect("path");
            want.insert(path, row[1].as_u64().unwrap_or(0));
        }
        let mut got: BTreeMap<Vec<String>, u64> = BTreeMap::new();
        for user in &users {
            if let Some(path) = paths::user_path(&query, &user.events) {
                *got.entry(path.into_iter().map(String::from).collect()).or_default() += 1;
            }
        }
        assert!(want.len() > 5 && want.keys().any(|p| p.len() > 2), "{name}: varied paths: {want:?}");
        assert_eq!(got, want, "{name}: every whole path and its users");

        // The report, from the whole paths: users, the top names per step plus "other",
        // the top whole paths.
        let report = paths::run(&query, &events, None, &Limits::default()).expect("runs");
        let top = query.top.unwrap_or(5);
        assert_eq!(report.users, want.values().sum::<u64>(), "{name}: users");
        assert_eq!(report.distinct_paths, want.len() as u64, "{name}: distinct paths");
        let mut ranked: Vec<(&Vec<String>, u64)> = want.iter().map(|(p, n)| (p, *n)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let top_paths: Vec<(Vec<String>, u64)> =
            ranked.iter().take(top).map(|(p, n)| ((*p).clone(), *n)).collect();
        let got_paths: Vec<(Vec<String>, u64)> =
            report.paths.iter().map(|p| (p.events.clone(), p.users)).collect();
        assert_eq!(got_paths, top_paths, "{name}: the top paths");
        let mut per_step: BTreeMap<i32, BTreeMap<&str, u64>> = BTreeMap::new();
        for (path, n) in &want {
            let shift = if query.direction == PathDirection::After { 0 } else { 1 - path.len() as i32 };
            for (k, event) in path.iter().enumerate() {
                *per_step.entry(k as i32 + shift).or_default().entry(event.as_str()).or_default() += n;
            }
        }
        let mut want_nodes = Vec::new();
        for (step, names) in per_step {
            let mut ranked: Vec<(&str, u64)> = names.into_iter().collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let rest: u64 = ranked.iter().skip(top).map(|r| r.1).sum();
            want_nodes.extend(ranked.into_iter().take(top).map(|(e, n)| (step, Some(e.to_string()), n)));
            if rest > 0 {
                want_nodes.push((step, None, rest));
            }
        }
        let got_nodes: Vec<(i32, Option<String>, u64)> =
            report.nodes.iter().map(|n| (n.step, n.event.clone(), n.users)).collect();
        assert_eq!(got_nodes, want_nodes, "{name}: nodes");
        // Every user leaves each node but the last one of their path: edges out of a node
        // plus the users ending there are its users.
        for (i, node) in report.nodes.iter().enumerate() {
            let toward_end: u64 = report
                .edges
                .iter()
                .filter(
                    |e| if query.direction == PathDirection::After { e.source == i } else { e.target == i },
                )
                .map(|e| e.users)
                .sum();
            assert_eq!(toward_end + node.ended, node.users, "{name}: node {i} {node:?}");
        }
    }
}

#[test]
fn session_trends_equal_clickhouse_gaps_and_session_ids_in_each_time_zone() {
    let b = base();
    // Events over four days around Berlin's DST change, on whole minutes, a third of them
    // with one of a few session ids: gaps around the timeout, sessions across midnight.
    let mut events = generate(12, 2_000, 30, 3, &|r| b + 6 * DAY + r.next(4 * 24 * 60) as i64 * 60 * SEC);
    let mut rng = Rng(13);
    for e in &mut events {
        if rng.next(3) == 0 {
            e.properties["$session_id"] = json!(format!("s{}", rng.next(4)));
        }
    }
    let events = shuffled(events, 14);
    let mut specs = Vec::new();
    let mut cases = Vec::new();
    for tz in ["UTC", "Europe/Berlin", "Asia/Kolkata"] {
        for (timeout, timeout_ms) in [("30m", 30 * 60 * SEC), ("2h", 2 * HOUR_MS)] {
            let name = format!("{tz}-{timeout}");
            specs.push(json!({ "name": name, "event": "a", "timeout_ms": timeout_ms, "tz": tz }));
            cases.push((name, tz, timeout));
        }
    }
    let ch = clickhouse(&events, json!({ "sessions": specs }));
    for (name, tz_name, timeout) in cases {
        let tz = TimeZone::get(tz_name).expect("zone");
        let midnight = |ts| period::start(ts, Interval::Day, &tz);
        let (from, to) = (midnight(b + 7 * DAY), midnight(b + 9 * DAY + DAY / 2) + DAY / 2);
        let want: BTreeMap<String, (u64, Vec<i64>, u64)> = ch["sessions"][&name]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                let durs: Vec<i64> = serde_json::from_value(r[2].clone()).expect("durations");
                (
                    r[0].as_str().unwrap_or_default().to_string(),
                    (r[1].as_u64().unwrap_or(0), durs, r[3].as_u64().unwrap_or(0)),
                )
            })
            .collect();
        let trend = |measure: Value| -> Vec<(String, Option<f64>)> {
            let query: TrendQuery = serde_json::from_value(json!({
                "event": { "event": "a" }, "measure": measure, "interval": "day", "from": from, "to": to,
                "sessionTimeout": timeout,
            }))
            .expect("query");
            let report = trend::run(&query, &events, None, &tz, &Limits::default()).expect("runs");
            report.series[0].points.iter().map(|p| (date_of(p.start, &tz), p.value)).collect()
        };
        let sessions = trend(json!({ "kind": "sessions" }));
        assert_eq!(sessions.len(), 3, "{name}: three days");
        for (date, value) in sessions {
            let (n, _, _) = want.get(&date).cloned().unwrap_or_default();
            assert!(n > 100, "{name} {date}: many sessions");
            assert_eq!(value, Some(n as f64), "{name} {date}: sessions");
        }
        for (date, value) in trend(json!({ "kind": "sessionDuration" })) {
            let (n, durs, _) = want.get(&date).cloned().unwrap_or_default();
            let mean = durs.iter().sum::<i64>() as f64 / 1000.0 / n as f64;
            assert!(
                value.is_some_and(|v| (v - mean).abs() < 1e-9),
                "{name} {date}: mean duration {value:?} vs {mean}"
            );
        }
        for (date, value) in trend(json!({ "kind": "sessionDuration", "p": 90 })) {
            let (n, durs, _) = want.get(&date).cloned().unwrap_or_default();
            // Nearest rank: the ceil(0.9 n)-th shortest.
            let p90 = durs[((0.9 * n as f64).ceil() as usize).max(1) - 1] as f64 / 1000.0;
            assert_eq!(value, Some(p90), "{name} {date}: p90 duration");
        }
        for (date, value) in trend(json!({ "kind": "eventsPerSession" })) {
            let (n, _, matching) = want.get(&date).cloned().unwrap_or_default();
            let mean = matching as f64 / n as f64;
            assert!(value.is_some_and(|v| (v - mean).abs() < 1e-9), "{name} {date}: events per session");
        }
    }
}

#[test]
fn same_session_funnels_equal_clickhouse_window_funnel_per_session() {
    let b = base();
    // Two days around Berlin's DST change on whole minutes (gaps at the timeout), busy
    // users, a quarter of the events with one of two session ids.
    let mut events = generate(15, 3_000, 60, 3, &|r| b + 7 * DAY + r.next(2 * 24 * 60) as i64 * 60 * SEC);
    let mut rng = Rng(16);
    for e in &mut events {
        if rng.next(4) == 0 {
            e.properties["$session_id"] = json!(format!("s{}", rng.next(2)));
        }
    }
    let events = shuffled(events, 17);
    let (from, to) = (b + 7 * DAY + 6 * HOUR_MS, b + 9 * DAY);
    let funnels = [
        ("abc-1h", vec![("a", None), ("b", None), ("c", None)], "1h"),
        ("ab-1d", vec![("a", None), ("b", Some(1))], "1d"),
    ];
    let mut specs = Vec::new();
    let mut cases = Vec::new();
    for tz in ["UTC", "Europe/Berlin"] {
        for (timeout, timeout_ms) in [("30m", 30 * 60 * SEC), ("2h", 2 * HOUR_MS)] {
            for (name, steps, window) in &funnels {
                let def = definition(steps, window, json!({ "sameSession": true }));
                let case = format!("{tz}-{timeout}-{name}");
                let steps: Vec<Value> =
                    steps.iter().map(|(e, v)| json!({ "event": e, "min_v": v })).collect();
                specs.push(json!({
                    "name": case, "steps": steps, "window_ms": def.window.as_millis(), "from": from, "to": to,
                    "session_timeout_ms": timeout_ms, "tz": tz,
                }));
                cases.push((case, tz, timeout, def));
            }
        }
    }
    let ch = clickhouse(&events, json!({ "funnels": specs }));
    let users = by_user(&events);
    for (case, tz_name, timeout, def) in cases {
        let tz = TimeZone::get(tz_name).expect("zone");
        let query: FunnelQuery =
            serde_json::from_value(json!({ "from": from, "to": to, "sessionTimeout": timeout }))
                .expect("query");
        let engine = FunnelEngine::with_sessions(&def, &query, &tz).expect("engine");
        let mut anywhere = def.clone();
        anywhere.same_session = false;
        let plain = FunnelEngine::new(&anywhere, from, to).expect("engine");
        let (mut narrower, mut converted) = (0, 0);
        for user in &users {
            let level = engine.user(&user.events).level;
            let want = ch["funnels"][&case][user.distinct_id].as_u64().unwrap_or(0) as usize;
            assert_eq!(level, want, "{case}: {}", user.distinct_id);
            let without = plain.user(&user.events).level;
            assert!(level <= without, "{case}: one session cannot reach further than the whole range");
            narrower += usize::from(level < without);
            converted += usize::from(level == def.steps.len());
        }
        assert!(
            narrower > 10 && converted > 10,
            "{case}: {narrower} users reach less within a session, {converted} convert"
        );
        // The report counts the same levels.
        let report = funnel::run(&def, &query, &events, None, &tz, &Limits::default()).expect("runs");
        let last = report.steps.last().map_or(0, |s| s.users);
        assert_eq!(last as usize, converted, "{case}: converted users");
    }
}
