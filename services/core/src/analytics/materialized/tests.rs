//! The views against the ad-hoc engines: random definitions and events (ties, repeated
//! ids with other names and times, events days apart, a DST change), fed in shuffled
//! batches; every answer the views give must equal `funnel::run` / `retention::run` over
//! the same events in the same order.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use proptest::prelude::*;
use serde_json::json;

use super::{ActivityView, FunnelView, UserDay};
use crate::analytics::funnel::{self, FunnelQuery};
use crate::analytics::lifecycle::{self, LifecycleQuery};
use crate::analytics::period::{self, Interval};
use crate::analytics::retention::{self, RetentionKind, RetentionQuery};
use crate::analytics::stickiness::{self, StickinessQuery};
use crate::analytics::{AnalyticsError, AnalyticsEvent, EventMatcher, Limits};
use crate::funnel::{FunnelDefinition, FunnelOrder};

const SEC: i64 = 1_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// The data's days: Berlin leaves winter time on the night of 2026-03-29.
const DAYS: i64 = 8;

fn base() -> i64 {
    "2026-03-25T00:00:00Z".parse::<Timestamp>().map_or(0, |t| t.as_millisecond())
}

fn zone(berlin: bool) -> TimeZone {
    if berlin { TimeZone::get("Europe/Berlin").unwrap_or(TimeZone::UTC) } else { TimeZone::UTC }
}

/// Local midnight of the `day`-th day from the data's first, in `tz`.
fn midnight(day: i64, tz: &TimeZone) -> i64 {
    period::start(base() + day * DAY + 12 * HOUR, Interval::Day, tz)
}

/// Within a day: a coarse grid around midnights in both zones (ties, day edges).
const OFFSETS: [i64; 9] =
    [0, 1, SEC, 10 * SEC, HOUR, 12 * HOUR, 22 * HOUR + 59 * 60 * SEC, 23 * HOUR, DAY - 1];

fn events(max_users: usize, per_user: usize) -> impl Strategy<Value = Vec<AnalyticsEvent>> {
    let event = (0usize..5, 0..DAYS, 0..OFFSETS.len(), 0u8..3, prop::option::of(0usize..2), 0u8..4);
    prop::collection::vec(prop::collection::vec(event, 0..=per_user), 1..=max_users).prop_map(|users| {
        let mut out = Vec::new();
        for (u, list) in users.into_iter().enumerate() {
            for (i, (name, day, offset, v, d, repeat)) in list.into_iter().enumerate() {
                let mut properties = json!({ "v": v });
                if let Some(d) = d {
                    properties["d"] = json!(["p", "q"][d]);
                }
                // One event in four repeats an earlier id, with its own name and time.
                let id = if repeat == 0 && i > 0 { i / 2 } else { i };
                out.push(AnalyticsEvent {
                    event_id: format!("u{u}-e{id}"),
                    event: ["a", "b", "c", "x", "y"][name].to_string(),
                    distinct_id: format!("u{u}"),
                    timestamp: base() + day * DAY + OFFSETS[offset],
                    properties,
                });
            }
        }
        out
    })
}

fn definitions() -> impl Strategy<Value = FunnelDefinition> {
    let step = (0usize..3, prop::option::of(0u8..3));
    (
        prop::collection::vec(step, 2..=6),
        prop::sample::select(vec!["1s", "10s", "1h", "1d", "2d"]),
        prop::sample::select(vec![FunnelOrder::Ordered, FunnelOrder::Strict, FunnelOrder::Unordered]),
        prop::collection::vec((any::<bool>(), prop::option::of(0u8..3), 0u32..5, 1u32..5), 0..=2),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(steps, window, order, exclusions, hold, breakdown)| {
            let n = steps.len() as u32;
            let steps: Vec<_> = steps
                .into_iter()
                .map(|(name, v)| {
                    let filters: Vec<_> =
                        v.map(|v| json!({ "property": "v", "op": "gte", "value": v.to_string() })).into_iter().collect();
                    let event = ["a", "b", "c"][name];
                    json!({ "event": event, "filters": filters })
                })
                .collect();
            let exclusions: Vec<_> = if order == FunnelOrder::Unordered {
                Vec::new()
            } else {
                exclusions
                    .into_iter()
                    .map(|(x, v, from, len)| {
                        let from = 1 + from.min(n - 2);
                        let to = (from + len).min(n);
                        let filters: Vec<_> =
                            v.map(|v| json!({ "property": "v", "value": v.to_string() })).into_iter().collect();
                        json!({ "event": if x { "x" } else { "b" }, "filters": filters, "fromStep": from, "toStep": to })
                    })
                    .collect()
            };
            let mut def = json!({ "steps": steps, "window": window, "order": order, "exclusions": exclusions });
            if hold {
                def["holdConstant"] = json!(["d"]);
            }
            if breakdown {
                def["breakdown"] = json!("d");
            }
            serde_json::from_value(def).unwrap_or_else(|e| panic!("generated definition: {e}"))
        })
}

/// The events in a random order, cut into batches at random places.
fn feeding(events: Vec<AnalyticsEvent>) -> impl Strategy<Value = Vec<Vec<AnalyticsEvent>>> {
    let len = events.len();
    (Just(events).prop_shuffle(), prop::collection::vec(0..=len, 0..4)).prop_map(|(shuffled, mut cuts)| {
        cuts.sort_unstable();
        let mut batches = Vec::new();
        let mut at = 0;
        for cut in cuts.into_iter().chain([shuffled.len()]) {
            batches.push(shuffled[at..cut.max(at)].to_vec());
            at = cut.max(at);
        }
        batches
    })
}

/// A range of days `[a, b)` of the data (and a day before and after it).
fn days() -> impl Strategy<Value = (i64, i64)> {
    (-1..DAYS, 1..=DAYS + 1).prop_map(|(a, len)| (a, (a + len).min(DAYS + 1)))
}

fn trends() -> impl Strategy<Value = Option<Interval>> {
    prop::sample::select(vec![None, Some(Interval::Day), Some(Interval::Week)])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn funnel_view_equals_run(
        def in definitions(),
        batches in events(5, 12).prop_flat_map(feeding),
        berlin in any::<bool>(),
        ranges in prop::collection::vec((days(), trends()), 1..4),
        odd in (0..DAYS * DAY, prop::sample::select(vec![1, SEC, HOUR, DAY - 1, DAY, DAY + HOUR, 3 * DAY + 5])),
    ) {
        let tz = zone(berlin);
        let limits = Limits::default();
        let mut view = FunnelView::new(def.clone(), tz.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut all = Vec::new();
        for batch in &batches {
            view.add(batch);
            all.extend(batch.iter().cloned());
            // Between batches too: the days a batch touches are recomputed, not others.
            let (a, b) = ranges[0].0;
            let query = FunnelQuery { from: midnight(a, &tz), to: midnight(b, &tz), trend: ranges[0].1 , session_timeout: None};
            let want = funnel::run(&def, &query, &all, None, &tz, &limits);
            prop_assert_eq!(view.report(&query, &limits), want.map(Some), "after a batch, {:?}", query);
        }
        for ((a, b), trend) in ranges {
            let query = FunnelQuery { from: midnight(a, &tz), to: midnight(b, &tz), trend, session_timeout: None };
            let want = funnel::run(&def, &query, &all, None, &tz, &limits);
            prop_assert_eq!(view.report(&query, &limits), want.map(Some), "{:?}", query);
        }
        // Not whole days: the days cut are recomputed for their users.
        for trend in [None, Some(Interval::Day), Some(Interval::Week)] {
            let query = FunnelQuery { from: base() + odd.0, to: base() + odd.0 + odd.1, trend, session_timeout: None };
            let want = funnel::run(&def, &query, &all, None, &tz, &limits);
            prop_assert_eq!(view.report(&query, &limits), want.map(Some), "{:?}", query);
        }
    }

    #[test]
    fn activity_view_equals_run(
        batches in events(6, 14).prop_flat_map(feeding),
        berlin in any::<bool>(),
        queries in prop::collection::vec(
            (0usize..3, 0usize..3, any::<bool>(), any::<bool>(), 1u32..6, days(), prop::option::of((0..DAY, 0..DAY))),
            1..5,
        ),
    ) {
        let tz = zone(berlin);
        let limits = Limits::default();
        let mut view = ActivityView::new(tz.clone());
        let mut all = Vec::new();
        // The queries after every batch: the counts a query of a pair keeps are brought up
        // to date by the batches after it.
        for batch in &batches {
            view.add(batch);
            all.extend(batch.iter().cloned());
            for &(start, ret, recurring, week, periods, (a, b), shift) in &queries {
                let (from, to) = (midnight(a, &tz), midnight(b, &tz));
                // Some ranges start and end off midnight.
                let (from, to) = match shift { Some((x, y)) => (from + x, (to - y).max(from + x + 1)), None => (from, to) };
                let query = RetentionQuery {
                    start: EventMatcher::named(["a", "b", "c"][start]),
                    return_event: EventMatcher::named(["a", "b", "x"][ret]),
                    kind: if recurring { RetentionKind::Recurring } else { RetentionKind::FirstTime },
                    period: if week { Interval::Week } else { Interval::Day },
                    periods,
                    from,
                    to,
                };
                let want = retention::run(&query, &all, None, &tz, &limits);
                let got = view.retention(&query, &limits);
                // Only a recurring range inside one day, cut at both ends, may go unanswered.
                let one_day = period::day_number(from, &tz) == period::day_number(to - 1, &tz);
                if !recurring || !one_day || shift.is_none() {
                    prop_assert_eq!(got, want.map(Some), "{:?}", query);
                } else if let Ok(Some(got)) = got {
                    prop_assert_eq!(Ok(got), want, "{:?}", query);
                }
            }
        }
    }

    #[test]
    fn lifecycle_and_stickiness_from_the_activity_view_equal_run(
        batches in events(6, 14).prop_flat_map(feeding),
        berlin in any::<bool>(),
        queries in prop::collection::vec((0usize..3, 0usize..3, days(), (0..DAY, 0..DAY)), 1..4),
    ) {
        let tz = zone(berlin);
        let limits = Limits::default();
        let mut view = ActivityView::new(tz.clone());
        let mut all = Vec::new();
        for batch in &batches {
            view.add(batch);
            all.extend(batch.iter().cloned());
            for &(name, interval, (a, b), (x, y)) in &queries {
                // Ranges off midnight: periods are reported whole either way.
                let (from, to) = (midnight(a, &tz) + x, (midnight(b, &tz) - y).max(midnight(a, &tz) + x + 1));
                let event = EventMatcher::named(["a", "b", "x"][name]);
                let period = [Interval::Day, Interval::Week, Interval::Month][interval];
                let query = LifecycleQuery { event: event.clone(), period, from, to };
                let want = lifecycle::run(&query, &all, None, &tz, &limits);
                prop_assert_eq!(view.lifecycle(&query, &limits), want.map(Some), "{:?}", query);
                let period = if interval == 2 { Interval::Month } else { Interval::Week };
                let query = StickinessQuery { event, period, from, to };
                let want = stickiness::run(&query, &all, None, &tz, &limits);
                prop_assert_eq!(view.stickiness(&query, &limits), want.map(Some), "{:?}", query);
            }
        }
        // Retention after them: the scratch marks they leave must not count a user twice.
        let query = RetentionQuery {
            start: EventMatcher::named("a"),
            return_event: EventMatcher::named("b"),
            kind: RetentionKind::Recurring,
            period: Interval::Day,
            periods: 4,
            from: midnight(0, &tz),
            to: midnight(DAYS, &tz),
        };
        prop_assert_eq!(view.retention(&query, &limits), retention::run(&query, &all, None, &tz, &limits).map(Some));
    }

    #[test]
    fn a_users_days_are_the_local_days_of_their_events_with_the_first_and_last_time(
        batches in events(6, 14).prop_flat_map(feeding),
        berlin in any::<bool>(),
    ) {
        let tz = zone(berlin);
        let mut view = ActivityView::new(tz.clone());
        for batch in &batches {
            view.add(batch);
        }
        // A user's repeated id counts once: its first copy in the order added.
        let mut seen = std::collections::HashSet::new();
        let mut want: BTreeMap<&str, BTreeMap<i64, (i64, i64)>> = BTreeMap::new();
        for e in batches.iter().flatten() {
            if !seen.insert((e.distinct_id.as_str(), e.event_id.as_str())) {
                continue;
            }
            let start = period::start(e.timestamp, Interval::Day, &tz);
            let span = want.entry(&e.distinct_id).or_default().entry(start).or_insert((e.timestamp, e.timestamp));
            *span = (span.0.min(e.timestamp), span.1.max(e.timestamp));
        }
        for (user, days) in &want {
            let expected: Vec<UserDay> = days
                .iter()
                .rev()
                .map(|(&start, &(first, last))| UserDay { start, end: period::next(start, Interval::Day, &tz), first, last })
                .collect();
            prop_assert_eq!(view.user_days(user), Some(expected), "{}", user);
        }
        prop_assert_eq!(view.user_days("nobody"), None);
    }
}

fn ev(user: &str, id: &str, name: &str, ts: i64) -> AnalyticsEvent {
    AnalyticsEvent {
        event_id: id.into(),
        event: name.into(),
        distinct_id: user.into(),
        timestamp: ts,
        properties: json!({}),
    }
}

fn abc() -> FunnelDefinition {
    serde_json::from_value(
        json!({ "steps": [{ "event": "a" }, { "event": "b" }, { "event": "c" }], "window": "2d" }),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_late_step_reaches_back_to_a_day_already_counted() {
    let tz = TimeZone::UTC;
    let b = base();
    let mut view = FunnelView::new(abc(), tz.clone()).unwrap_or_else(|e| panic!("{e}"));
    view.add(&[ev("u", "1", "a", b + HOUR), ev("u", "2", "b", b + DAY)]);
    let query = FunnelQuery { from: b, to: b + DAY, trend: None, session_timeout: None };
    let users = |view: &FunnelView| {
        view.report(&query, &Limits::default())
            .ok()
            .flatten()
            .map(|r| r.steps.iter().map(|s| s.users).collect::<Vec<_>>())
    };
    assert_eq!(users(&view), Some(vec![1, 1, 0]));
    // Two days later, still within the window of day 0's first step: day 0 converts.
    view.add(&[ev("u", "3", "c", b + 2 * DAY), ev("u", "1", "c", b + 2 * DAY)]);
    assert_eq!(users(&view), Some(vec![1, 1, 1]));
    assert_eq!((view.users(), view.events()), (1, 3), "the repeated id 1 is not kept");
}

#[test]
fn refuses_as_run_does() {
    let tz = TimeZone::get("Europe/Berlin").unwrap_or(TimeZone::UTC);
    let view = FunnelView::new(abc(), tz.clone()).unwrap_or_else(|e| panic!("{e}"));
    let limits = Limits::default();
    let day = midnight(2, &tz);
    let reversed = FunnelQuery { from: day, to: day, trend: None, session_timeout: None };
    assert_eq!(
        view.report(&reversed, &limits),
        funnel::run(&abc(), &reversed, &[], None, &tz, &limits).map(Some)
    );
    let hourly =
        FunnelQuery { from: day, to: midnight(3, &tz), trend: Some(Interval::Hour), session_timeout: None };
    assert!(matches!(view.report(&hourly, &limits), Err(AnalyticsError::Invalid(_))));
    let filtered = RetentionQuery {
        start: EventMatcher {
            event: "a".into(),
            filters: vec![
                serde_json::from_value(json!({ "property": "v", "value": "1" }))
                    .unwrap_or_else(|e| panic!("{e}")),
            ],
        },
        return_event: EventMatcher::named("b"),
        kind: RetentionKind::FirstTime,
        period: Interval::Day,
        periods: 3,
        from: day,
        to: day + DAY,
    };
    assert_eq!(ActivityView::new(tz.clone()).retention(&filtered, &limits), Ok(None));
}

#[test]
fn a_view_holding_more_events_than_the_limit_leaves_the_query_to_the_ad_hoc_path() {
    let tz = TimeZone::UTC;
    let b = base();
    let events = [ev("u", "1", "a", b + HOUR), ev("u", "2", "b", b + DAY)];
    let mut funnel = FunnelView::new(abc(), tz.clone()).unwrap_or_else(|e| panic!("{e}"));
    funnel.add(&events);
    let mut activity = ActivityView::new(tz);
    activity.add(&events);
    let limits = Limits { max_events: 1, ..Limits::default() };
    let query = FunnelQuery { from: b, to: b + DAY, trend: None, session_timeout: None };
    assert_eq!(funnel.report(&query, &limits), Ok(None));
    let retention = RetentionQuery {
        start: EventMatcher::named("a"),
        return_event: EventMatcher::named("b"),
        kind: RetentionKind::FirstTime,
        period: Interval::Day,
        periods: 3,
        from: b,
        to: b + DAY,
    };
    assert_eq!(activity.retention(&retention, &limits), Ok(None));
    assert!(matches!(activity.retention(&retention, &Limits::default()), Ok(Some(_))));
}
