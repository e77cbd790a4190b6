//! Retention, trends and cohort filters against references written the plainest way, on
//! generated events spread over days (fixed-offset time zone, so a day is arithmetic).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use jiff::tz::TimeZone;
use proptest::prelude::*;
use pulse_core::analytics::funnel::{self, FunnelQuery};
use pulse_core::analytics::period::Interval;
use pulse_core::analytics::retention::{self, RetentionKind, RetentionQuery};
use pulse_core::analytics::trend::{self, Measure, SeriesLabel, TrendBreakdown, TrendQuery};
use pulse_core::analytics::{AnalyticsEvent, EventMatcher, Limits};
use pulse_core::funnel::FunnelDefinition;
use serde_json::json;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2026-03-02, a Monday, 00:00 UTC.
const BASE: i64 = 1_772_409_600_000;
/// The zone of the tests: UTC+5 all year.
const OFFSET: i64 = 5 * HOUR;

fn zone() -> TimeZone {
    TimeZone::get("Etc/GMT-5").expect("fixed-offset zone")
}

fn events() -> impl Strategy<Value = Vec<AnalyticsEvent>> {
    prop::collection::vec((0usize..5, 0usize..3, 0i64..(20 * 24), 0i64..3_600, 0u8..4), 0..60).prop_map(
        |raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, (user, name, hour, sec, v))| {
                    let plan = ["free", "team", "pro", "pro"][v as usize];
                    // v == 3: a "pro" event without an amount.
                    let properties =
                        if v == 3 { json!({ "plan": plan }) } else { json!({ "amount": v, "plan": plan }) };
                    AnalyticsEvent {
                        event_id: format!("e{i}"),
                        event: ["start", "back", "other"][name].to_string(),
                        distinct_id: format!("u{user}"),
                        timestamp: BASE + hour * HOUR + sec * 1000,
                        properties,
                    }
                })
                .collect()
        },
    )
}

fn local_day(ts: i64) -> i64 {
    (ts + OFFSET).div_euclid(DAY)
}

/// Monday of the local week, as a day number (1970-01-01 was a Thursday).
fn local_monday(ts: i64) -> i64 {
    let d = local_day(ts);
    d - (d + 3).rem_euclid(7)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn retention_matches_counting_by_hand(
        events in events(),
        recurring in any::<bool>(),
        weekly in any::<bool>(),
        from_day in 0i64..6,
        days in 1i64..10,
    ) {
        let (from, to) = (BASE + from_day * DAY + 7 * HOUR, BASE + (from_day + days) * DAY);
        let query = RetentionQuery {
            start: EventMatcher::named("start"),
            return_event: EventMatcher::named("back"),
            kind: if recurring { RetentionKind::Recurring } else { RetentionKind::FirstTime },
            period: if weekly { Interval::Week } else { Interval::Day },
            periods: 4,
            from,
            to,
        };
        let report = retention::run(&query, &events, None, &zone(), &Limits::default()).expect("runs");
        let span = retention::event_span(&query, &zone());
        let read: Vec<AnalyticsEvent> = events
            .iter()
            .filter(|e| e.timestamp < span.to)
            .filter(|e| e.timestamp >= span.from || (e.event == "start" && span.start_events_from.is_none_or(|f| e.timestamp >= f)))
            .cloned()
            .collect();
        prop_assert_eq!(&retention::run(&query, &read, None, &zone(), &Limits::default()).expect("runs"), &report);
        let (unit, period_of): (i64, fn(i64) -> i64) = if weekly { (7, local_monday) } else { (1, local_day) };
        // Reference: cohort (period's first day) -> (users, retained per offset).
        let mut want: BTreeMap<i64, (u64, Vec<u64>)> = BTreeMap::new();
        let users: BTreeSet<&str> = events.iter().map(|e| e.distinct_id.as_str()).collect();
        for user in users {
            let mine: Vec<&AnalyticsEvent> = events.iter().filter(|e| e.distinct_id == user).collect();
            let mut starts: Vec<i64> = mine.iter().filter(|e| e.event == "start").map(|e| e.timestamp).collect();
            starts.sort();
            if !recurring {
                starts.truncate(1);
            }
            let cohorts: BTreeSet<i64> =
                starts.into_iter().filter(|t| (from..to).contains(t)).map(period_of).collect();
            let returns: BTreeSet<i64> = mine.iter().filter(|e| e.event == "back").map(|e| period_of(e.timestamp)).collect();
            for c in cohorts {
                let row = want.entry(c).or_insert((0, vec![0; 4]));
                row.0 += 1;
                for k in 0..4 {
                    if returns.contains(&(c + k as i64 * unit)) {
                        row.1[k] += 1;
                    }
                }
            }
        }
        let got: BTreeMap<i64, (u64, Vec<u64>)> = report
            .cohorts
            .iter()
            .filter(|c| c.users > 0)
            .map(|c| (period_of(c.period_start), (c.users, c.retained.clone())))
            .collect();
        prop_assert_eq!(got, want);
        // Every period of the range has a row, empty or not, oldest first.
        let first = period_of(from);
        let starts: Vec<i64> = report.cohorts.iter().map(|c| period_of(c.period_start)).collect();
        let expected: Vec<i64> = (0..starts.len() as i64).map(|i| first + i * unit).collect();
        prop_assert_eq!(starts, expected);
    }

    #[test]
    fn daily_trends_match_counting_by_hand(
        events in events(),
        measure in 0usize..10,
        top in 1usize..3,
        breakdown in any::<bool>(),
        from_day in 0i64..8,
        days in 1i64..8,
    ) {
        let amount = "amount".parse().expect("path");
        let measure = match measure {
            0 => Measure::Count,
            1 => Measure::UniqueUsers,
            2 => Measure::Dau,
            3 => Measure::Wau,
            4 => Measure::Mau,
            5 => Measure::Sum { property: amount },
            6 => Measure::Average { property: amount },
            7 => Measure::Min { property: amount },
            8 => Measure::Max { property: amount },
            _ => Measure::Percentile { property: amount, p: 75.0 },
        };
        let (from, to) = (BASE + from_day * DAY - OFFSET + 3 * HOUR, BASE + (from_day + days) * DAY - OFFSET);
        let query = TrendQuery {
            event: EventMatcher { event: "start".into(), filters: Vec::new() },
            measure: measure.clone(),
            interval: Interval::Day,
            from,
            to,
            breakdown: breakdown.then(|| TrendBreakdown { property: "plan".parse().expect("path"), top }),
            session_timeout: None,
        };
        let report = trend::run(&query, &events, None, &zone(), &Limits::default()).expect("runs");
        let (start, end) = trend::event_span(&query, &zone(), &Limits::default()).expect("valid");
        let read: Vec<AnalyticsEvent> = events.iter().filter(|e| (start..end).contains(&e.timestamp)).cloned().collect();
        prop_assert_eq!(&trend::run(&query, &read, None, &zone(), &Limits::default()).expect("runs"), &report);
        let first_day = local_day(from);
        let last_day = local_day(to - 1);
        let lookback = match measure { Measure::Wau => 6, Measure::Mau => 29, _ => 0 };
        let matching: Vec<&AnalyticsEvent> = events
            .iter()
            .filter(|e| e.event == "start" && (first_day - lookback..=last_day).contains(&local_day(e.timestamp)))
            .collect();
        let plan = |e: &AnalyticsEvent| e.properties["plan"].as_str().map(str::to_string);
        // Series: by plan (top N by events in range, ties by value) then "other", or one.
        let in_range = |e: &&AnalyticsEvent| (first_day..=last_day).contains(&local_day(e.timestamp));
        let series: Vec<(SeriesLabel, Vec<&AnalyticsEvent>)> = if breakdown {
            let mut counts: BTreeMap<Option<String>, usize> = BTreeMap::new();
            for e in &matching {
                *counts.entry(plan(e)).or_default() += usize::from(in_range(e));
            }
            let mut ranked: Vec<(Option<String>, usize)> = counts.into_iter().collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let top_values: Vec<Option<String>> = ranked.iter().take(top).map(|r| r.0.clone()).collect();
            let mut s: Vec<(SeriesLabel, Vec<&AnalyticsEvent>)> = top_values
                .iter()
                .map(|v| (SeriesLabel::Value(v.clone()), matching.iter().copied().filter(|e| plan(e) == *v).collect()))
                .collect();
            let rest: Vec<&AnalyticsEvent> = matching.iter().copied().filter(|e| !top_values.contains(&plan(e))).collect();
            if !rest.is_empty() {
                s.push((SeriesLabel::Other, rest));
            }
            s
        } else {
            vec![(SeriesLabel::All, matching.clone())]
        };
        prop_assert_eq!(report.series.len(), series.len());
        for (got, (label, evs)) in report.series.iter().zip(series) {
            prop_assert_eq!(&got.label, &label);
            let days: Vec<i64> = (first_day..=last_day).collect();
            prop_assert_eq!(got.points.iter().map(|p| local_day(p.start)).collect::<Vec<_>>(), days.clone());
            for (point, day) in got.points.iter().zip(days) {
                let that_day: Vec<&AnalyticsEvent> = evs.iter().copied().filter(|e| local_day(e.timestamp) == day).collect();
                let mut amounts: Vec<f64> = that_day.iter().filter_map(|e| e.properties["amount"].as_f64()).collect();
                amounts.sort_by(f64::total_cmp);
                let users_within = |n: i64| -> f64 {
                    evs.iter().filter(|e| (day - n + 1..=day).contains(&local_day(e.timestamp))).map(|e| &e.distinct_id).collect::<HashSet<_>>().len() as f64
                };
                let want = match &measure {
                    Measure::Count => Some(that_day.len() as f64),
                    Measure::UniqueUsers => Some(that_day.iter().map(|e| &e.distinct_id).collect::<HashSet<_>>().len() as f64),
                    Measure::Dau => Some(users_within(1)),
                    Measure::Wau => Some(users_within(7)),
                    Measure::Mau => Some(users_within(30)),
                    Measure::Sum { .. } => Some(amounts.iter().sum()),
                    Measure::Average { .. } => (!amounts.is_empty()).then(|| amounts.iter().sum::<f64>() / amounts.len() as f64),
                    Measure::Min { .. } => amounts.first().copied(),
                    Measure::Max { .. } => amounts.last().copied(),
                    // Nearest rank: the ceil(0.75 n)-th smallest.
                    Measure::Percentile { .. } => {
                        (!amounts.is_empty()).then(|| amounts[((0.75 * amounts.len() as f64).ceil() as usize).max(1) - 1])
                    }
                    // Checked against ClickHouse in tests/chdb.rs.
                    Measure::Sessions | Measure::SessionDuration { .. } | Measure::EventsPerSession => {
                        unreachable!("session measures are not generated here")
                    }
                };
                prop_assert_eq!(point.value, want, "day {} label {:?}", day, &label);
            }
        }
    }

    #[test]
    fn a_cohort_filter_equals_running_on_the_members_events_only(
        events in events(),
        members in prop::collection::hash_set(0usize..5, 0..5),
    ) {
        let members: HashSet<String> = members.into_iter().map(|u| format!("u{u}")).collect();
        let only: Vec<AnalyticsEvent> = events.iter().filter(|e| members.contains(&e.distinct_id)).cloned().collect();
        let def: FunnelDefinition = serde_json::from_value(json!({
            "steps": [{ "event": "start" }, { "event": "back" }], "window": "2d"
        })).expect("valid");
        let q = FunnelQuery { from: BASE, to: BASE + 10 * DAY, trend: Some(Interval::Day) , session_timeout: None};
        let limits = Limits::default();
        let tz = zone();
        prop_assert_eq!(
            funnel::run(&def, &q, &events, Some(&members), &tz, &limits).expect("runs"),
            funnel::run(&def, &q, &only, None, &tz, &limits).expect("runs")
        );
        let r = RetentionQuery {
            start: EventMatcher::named("start"), return_event: EventMatcher::named("back"),
            kind: RetentionKind::Recurring, period: Interval::Day, periods: 3, from: BASE, to: BASE + 10 * DAY,
        };
        prop_assert_eq!(
            retention::run(&r, &events, Some(&members), &tz, &limits).expect("runs"),
            retention::run(&r, &only, None, &tz, &limits).expect("runs")
        );
    }
}
