//! Small hand-made cases, each a rule of docs/semantics.md.

use jiff::tz::TimeZone;
use serde_json::{Value, json};

use super::{FunnelEngine, FunnelQuery, run};
use crate::analytics::{AnalyticsError, AnalyticsEvent, Limits, by_user};
use crate::funnel::FunnelDefinition;

const S: i64 = 1_000;

fn def(value: Value) -> FunnelDefinition {
    serde_json::from_value(value).expect("well-formed definition")
}

/// One user's events: (name, seconds, properties).
fn user(events: &[(&str, i64, Value)]) -> Vec<AnalyticsEvent> {
    events
        .iter()
        .enumerate()
        .map(|(i, (name, secs, props))| AnalyticsEvent {
            event_id: format!("e{i}"),
            event: name.to_string(),
            distinct_id: "u".into(),
            timestamp: secs * S,
            properties: props.clone(),
        })
        .collect()
}

fn level(d: &FunnelDefinition, events: &[(&str, i64, Value)], from: i64, to: i64) -> (usize, Vec<i64>) {
    let events = user(events);
    let users = by_user(&events);
    let engine = FunnelEngine::new(d, from * S, to * S).expect("valid");
    let r = engine.user(&users[0].events);
    (r.level, r.step_times)
}

fn abc(order: &str, window: &str) -> FunnelDefinition {
    def(
        json!({ "steps": [{ "event": "a" }, { "event": "b" }, { "event": "c" }], "order": order, "window": window }),
    )
}

#[test]
fn window_is_inclusive_and_counts_from_the_first_step() {
    let d = abc("ordered", "10s");
    let e = json!({});
    assert_eq!(level(&d, &[("a", 0, e.clone()), ("b", 10, e.clone()), ("c", 10, e.clone())], 0, 1).0, 3);
    assert_eq!(level(&d, &[("a", 0, e.clone()), ("b", 5, e.clone()), ("c", 11, e.clone())], 0, 1).0, 2);
    // A later first step restarts the window: a@20 b@21 c@30 converts.
    let late = [
        ("a", 0, e.clone()),
        ("b", 5, e.clone()),
        ("a", 20, e.clone()),
        ("b", 21, e.clone()),
        ("c", 30, e.clone()),
    ];
    assert_eq!(
        level(&d, &late, 0, 30),
        (3, vec![0, 5000, 10_000]),
        "each step timed on the first chain to reach it"
    );
    // ... unless that first step is outside the range.
    assert_eq!(level(&d, &late, 0, 20).0, 2);
}

#[test]
fn ties_may_be_taken_in_step_order_but_events_are_distinct() {
    let e = json!({});
    assert_eq!(
        level(&abc("ordered", "1s"), &[("c", 5, e.clone()), ("b", 5, e.clone()), ("a", 5, e.clone())], 0, 10)
            .0,
        3
    );
    let aab = def(json!({ "steps": [{ "event": "a" }, { "event": "a" }, { "event": "b" }] }));
    assert_eq!(
        level(&aab, &[("a", 0, e.clone()), ("b", 1, e.clone())], 0, 10).0,
        1,
        "one a cannot be two steps"
    );
    assert_eq!(level(&aab, &[("a", 0, e.clone()), ("a", 0, e.clone()), ("b", 0, e.clone())], 0, 10).0, 3);
}

#[test]
fn strict_funnels_break_on_another_step_event_between() {
    let e = json!({});
    let d = abc("strict", "1m");
    assert_eq!(
        level(
            &d,
            &[("a", 0, e.clone()), ("c", 1, e.clone()), ("b", 2, e.clone()), ("c", 3, e.clone())],
            0,
            10
        )
        .0,
        1
    );
    // An event of the same time is not between.
    assert_eq!(
        level(
            &d,
            &[("a", 0, e.clone()), ("b", 2, e.clone()), ("a", 2, e.clone()), ("c", 3, e.clone())],
            0,
            10
        )
        .0,
        3
    );
    assert_eq!(
        level(
            &abc("ordered", "1m"),
            &[("a", 0, e.clone()), ("c", 1, e.clone()), ("b", 2, e.clone()), ("c", 3, e.clone())],
            0,
            10
        )
        .0,
        3
    );
}

#[test]
fn exclusions_void_the_chain_from_their_to_step() {
    let d = def(json!({
        "steps": [{ "event": "a" }, { "event": "b" }, { "event": "c" }],
        "exclusions": [{ "event": "x", "filters": [{ "property": "why", "value": "cancel" }], "fromStep": 1, "toStep": 3 }]
    }));
    let e = json!({});
    let cancel = json!({ "why": "cancel" });
    assert_eq!(
        level(
            &d,
            &[("a", 0, e.clone()), ("x", 1, cancel.clone()), ("b", 2, e.clone()), ("c", 3, e.clone())],
            0,
            10
        )
        .0,
        2
    );
    assert_eq!(
        level(
            &d,
            &[
                ("a", 0, e.clone()),
                ("x", 1, json!({ "why": "other" })),
                ("b", 2, e.clone()),
                ("c", 3, e.clone())
            ],
            0,
            10
        )
        .0,
        3
    );
    // At the same time as a chosen event it is not between; a later start escapes it.
    assert_eq!(
        level(
            &d,
            &[("a", 0, e.clone()), ("x", 0, cancel.clone()), ("b", 2, e.clone()), ("c", 3, e.clone())],
            0,
            10
        )
        .0,
        3
    );
    // An exclusion at the time of an intermediate step is between the outer ones.
    let with_b = [("a", 0, e.clone()), ("b", 2, e.clone()), ("x", 2, cancel.clone()), ("c", 3, e.clone())];
    assert_eq!(level(&d, &with_b, 0, 10).0, 2);
    let again = [
        ("a", 0, e.clone()),
        ("x", 1, cancel.clone()),
        ("a", 2, e.clone()),
        ("b", 3, e.clone()),
        ("c", 4, e.clone()),
    ];
    assert_eq!(level(&d, &again, 0, 10), (3, vec![0, 1000, 2000]));
}

#[test]
fn hold_constant_keeps_every_step_on_one_value() {
    let d = def(json!({ "steps": [{ "event": "a" }, { "event": "b" }], "holdConstant": ["device"] }));
    let (phone, laptop) = (json!({ "device": "phone" }), json!({ "device": "laptop" }));
    assert_eq!(level(&d, &[("a", 0, phone.clone()), ("b", 1, laptop.clone())], 0, 10).0, 1);
    assert_eq!(
        level(&d, &[("a", 0, phone.clone()), ("b", 1, laptop.clone()), ("b", 2, phone.clone())], 0, 10).0,
        2
    );
}

#[test]
fn unordered_needs_the_earliest_chosen_event_in_range() {
    let e = json!({});
    let d = abc("unordered", "10s");
    assert_eq!(level(&d, &[("c", 0, e.clone()), ("b", 3, e.clone()), ("a", 10, e.clone())], 0, 5).0, 3);
    assert_eq!(
        level(&d, &[("c", 0, e.clone()), ("b", 3, e.clone()), ("a", 11, e.clone())], 0, 5).0,
        2,
        "b@3 and a@11 are 8s apart"
    );
    // b@3 alone is not step 1; a@20 is after the range.
    assert_eq!(level(&d, &[("b", 3, e.clone()), ("a", 20, e.clone())], 0, 5).0, 0);
}

#[test]
fn breakdown_compares_variants_and_refuses_too_many() {
    let mut events = Vec::new();
    for (u, variant, converts) in
        [(0, "A", true), (1, "A", false), (2, "B", true), (3, "B", true), (4, "A", false)]
    {
        let props = json!({ "variant": variant });
        events.push(AnalyticsEvent {
            event_id: format!("{u}a"),
            event: "a".into(),
            distinct_id: format!("u{u}"),
            timestamp: 0,
            properties: props.clone(),
        });
        if converts {
            events.push(AnalyticsEvent {
                event_id: format!("{u}b"),
                event: "b".into(),
                distinct_id: format!("u{u}"),
                timestamp: S,
                properties: json!({}),
            });
        }
    }
    let d = def(json!({ "steps": [{ "event": "a" }, { "event": "b" }], "breakdown": "variant" }));
    let q = FunnelQuery { from: 0, to: S, trend: None, session_timeout: None };
    let r = run(&d, &q, &events, None, &TimeZone::UTC, &Limits::default()).expect("runs");
    assert_eq!(r.steps.iter().map(|s| s.users).collect::<Vec<_>>(), [5, 3]);
    assert_eq!(r.steps[0].dropped_off, 2);
    let rows: Vec<(Option<&str>, &[u64])> =
        r.breakdown.iter().map(|b| (b.value.as_deref(), b.steps.as_slice())).collect();
    assert_eq!(rows, [(Some("A"), &[3u64, 1][..]), (Some("B"), &[2, 2][..])]);
    let c = r.breakdown[1].comparison.expect("B is compared with A");
    assert!((c.difference - (1.0 - 1.0 / 3.0)).abs() < 1e-12);
    // Reports and tallies survive a round trip through JSON (a cache, a pre-aggregate).
    let text = serde_json::to_string(&r).expect("serializes");
    assert_eq!(serde_json::from_str::<super::FunnelReport>(&text).expect("parses"), r);
    let engine = FunnelEngine::new(&d, 0, S).expect("valid");
    let mut tally = super::FunnelTally::new(2);
    for user in by_user(&events) {
        tally.add(&engine.user(&user.events));
    }
    // A user without the property is keyed null.
    tally.add(&super::UserFunnel { level: 1, step_times: vec![0], breakdown: None });
    let text = serde_json::to_string(&tally).expect("serializes");
    assert_eq!(serde_json::from_str::<super::FunnelTally>(&text).expect("parses"), tally);
    let limits = Limits { max_breakdown_values: 1, ..Limits::default() };
    let err = run(&d, &q, &events, None, &TimeZone::UTC, &limits).expect_err("two values, limit one");
    assert_eq!(err, AnalyticsError::TooManyBreakdownValues { count: 2, limit: 1 });
}

#[test]
fn invalid_definitions_and_ranges_are_refused() {
    let bad = def(
        json!({ "steps": [{ "event": "a" }, { "event": "b" }], "exclusions": [{ "event": "x", "fromStep": 2, "toStep": 3 }] }),
    );
    assert!(matches!(FunnelEngine::new(&bad, 0, 1), Err(AnalyticsError::Invalid(_))));
    let ok = abc("ordered", "1d");
    assert!(matches!(FunnelEngine::new(&ok, 5, 5), Err(AnalyticsError::Invalid(f)) if f[0].field == "to"));
    let many = vec![user(&[("a", 0, json!({}))]).remove(0); 3];
    let limits = Limits { max_events: 2, ..Limits::default() };
    let q = FunnelQuery { from: 0, to: 1, trend: None, session_timeout: None };
    assert_eq!(
        run(&ok, &q, &many, None, &TimeZone::UTC, &limits),
        Err(AnalyticsError::TooManyEvents { count: 3, limit: 2 })
    );
}

#[test]
fn conversion_trend_per_day_and_thirty_two_steps() {
    const DAY: i64 = 86_400_000;
    let d = def(json!({ "steps": [{ "event": "a" }, { "event": "b" }], "window": "2d" }));
    let mut events = user(&[("a", 0, json!({})), ("b", 1, json!({})), ("a", DAY / S + 5, json!({}))]);
    events.extend(user(&[("a", DAY / S + 10, json!({})), ("b", 3 * DAY / S, json!({}))]).into_iter().map(
        |mut e| {
            e.distinct_id = "v".into();
            e
        },
    ));
    let q = FunnelQuery {
        from: 0,
        to: 2 * DAY,
        trend: Some(crate::analytics::period::Interval::Day),
        session_timeout: None,
    };
    let r = run(&d, &q, &events, None, &TimeZone::UTC, &Limits::default()).expect("runs");
    let points: Vec<(i64, u64, u64)> =
        r.trend.iter().map(|p| (p.period_start, p.entered, p.converted)).collect();
    // Day 0: u enters and converts. Day 1: u enters again (no b after), v converts on day 3.
    assert_eq!(points, [(0, 1, 1), (DAY, 2, 1)]);
    let steps: Vec<Value> = (0..32).map(|i| json!({ "event": format!("s{i}") })).collect();
    let long = def(json!({ "steps": steps, "window": "1h" }));
    let path: Vec<(String, i64, Value)> =
        (0..32).map(|i| (format!("s{i}"), i64::from(i), json!({}))).collect();
    let path: Vec<(&str, i64, Value)> = path.iter().map(|(n, t, p)| (n.as_str(), *t, p.clone())).collect();
    assert_eq!(level(&long, &path, 0, 1).0, 32);
}
