//! Prints what the in-memory pre-aggregates cost over 1,000,000 generated events (about
//! 60,000 users, 10 event names, 30 days): load time and memory of a `FunnelView` (3 steps,
//! 7-day window, breakdown by a 2-value property) and an `ActivityView`; `report` latency
//! for 7- and 30-day ranges and `retention` latency for 14 day periods, over whole local
//! days and from a time of day; the cost of adding a 500-event batch (late events
//! included). Checks one answer of each against the ad-hoc engine. Run with
//! `cargo run --release -p pulse-core --example views_speed [events] [users]`.

use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use pulse_core::analytics::funnel::{self, FunnelQuery};
use pulse_core::analytics::materialized::{ActivityView, FunnelView};
use pulse_core::analytics::period::{self, Interval};
use pulse_core::analytics::retention::{self, RetentionKind, RetentionQuery};
use pulse_core::analytics::{AnalyticsEvent, EventMatcher, Limits};
use pulse_core::funnel::FunnelDefinition;
use serde_json::json;

const DAY: i64 = 86_400_000;
const START: i64 = 1_769_904_000_000; // 2026-02-01T00:00:00Z

struct Generator {
    state: u64,
    users: u64,
    next_id: u64,
}

impl Generator {
    fn next(&mut self, n: u64) -> u64 {
        self.state =
            self.state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.state >> 33) % n
    }

    /// An event of a random user at a random time in `[from, from + span)`.
    fn event(&mut self, from: i64, span: i64) -> AnalyticsEvent {
        let names =
            ["view", "signup", "activate", "purchase", "search", "share", "invite", "logout", "login", "pay"];
        self.next_id += 1;
        let variant = ["A", "B"][self.next(2) as usize];
        AnalyticsEvent {
            event_id: format!("e{}", self.next_id),
            event: names[self.next(10) as usize].to_string(),
            distinct_id: format!("user-{}", self.next(self.users)),
            timestamp: from + self.next(span as u64) as i64,
            properties: json!({ "variant": variant, "amount": self.next(100) }),
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let users: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60_000);
    let tz = TimeZone::get("Europe/Berlin").unwrap_or(TimeZone::UTC);
    let mut g = Generator { state: 7, users, next_id: 0 };
    let events: Vec<AnalyticsEvent> = (0..count).map(|_| g.event(START, 30 * DAY)).collect();
    let def: FunnelDefinition = serde_json::from_value(json!({
        "steps": [{ "event": "view" }, { "event": "signup" }, { "event": "purchase" }],
        "window": "7d",
        "breakdown": "variant",
    }))
    .unwrap_or_else(|e| panic!("definition: {e}"));
    println!("{count} events, {users} users, 10 event names, 30 days, time zone Europe/Berlin");

    let started = Instant::now();
    let mut funnel_view = FunnelView::new(def.clone(), tz.clone()).unwrap_or_else(|e| panic!("{e}"));
    funnel_view.add(&events);
    let load = started.elapsed();
    let bytes = funnel_view.heap_bytes();
    println!(
        "FunnelView (3 steps, 7d window, breakdown by variant): load {}, {} users, {} events kept, ~{:.1} MB ({} bytes per kept event, {} per event fed)",
        ms(load),
        funnel_view.users(),
        funnel_view.events(),
        bytes as f64 / 1e6,
        bytes / funnel_view.events().max(1),
        bytes / count
    );
    let started = Instant::now();
    let mut activity = ActivityView::new(tz.clone());
    activity.add(&events);
    let load = started.elapsed();
    let bytes = activity.heap_bytes();
    println!(
        "ActivityView: load {}, {} users, {} events, ~{:.1} MB ({} bytes per event)",
        ms(load),
        activity.users(),
        activity.events(),
        bytes as f64 / 1e6,
        bytes / activity.events().max(1)
    );

    let limits = Limits::default();
    let midnight = |day: i64| period::start(START + day * DAY + 12 * 3_600_000, Interval::Day, &tz);
    // Whole local days, and ranges from a time of day (e.g. "the last 7 days" asked at
    // 13:27), whose first and last days are recomputed for their users.
    for (days, trend, offset) in [
        (7, None, 0),
        (7, Some(Interval::Day), 0),
        (30, None, 0),
        (30, Some(Interval::Week), 0),
        (7, None, 48_420_000),
        (7, Some(Interval::Day), 48_420_000),
    ] {
        let mut times = Vec::new();
        for i in 0..300 {
            let first = if days == 30 { 0 } else { i % (30 - days + 1) };
            let query = FunnelQuery {
                from: midnight(first) + offset,
                to: midnight(first + days) + offset,
                trend,
                session_timeout: None,
            };
            let started = Instant::now();
            let report = funnel_view.report(&query, &limits);
            times.push(started.elapsed());
            assert!(matches!(report, Ok(Some(_))), "answered: {report:?}");
        }
        let range = if offset == 0 { "whole days" } else { "from 13:27" };
        println!("report, {days}-day range ({range}), trend {trend:?}: {}", percentiles(&mut times));
    }
    let query = FunnelQuery {
        from: midnight(10) + 48_420_000,
        to: midnight(17) + 48_420_000,
        trend: Some(Interval::Day),
        session_timeout: None,
    };
    let started = Instant::now();
    let ad_hoc = funnel::run(&def, &query, &events, None, &tz, &limits);
    let ad_hoc_time = started.elapsed();
    assert_eq!(funnel_view.report(&query, &limits), ad_hoc.map(Some), "the view equals the ad-hoc engine");
    println!("  (the same 7-day funnel ad hoc over every event: {}; equal answers)", ms(ad_hoc_time));

    for (kind, offset) in [
        (RetentionKind::FirstTime, 0),
        (RetentionKind::Recurring, 0),
        (RetentionKind::FirstTime, 48_420_000),
        (RetentionKind::Recurring, 48_420_000),
    ] {
        let mut times = Vec::new();
        let query = |first: i64| RetentionQuery {
            start: EventMatcher::named("signup"),
            return_event: EventMatcher::named("login"),
            kind,
            period: Interval::Day,
            periods: 14,
            from: midnight(first) + offset,
            to: midnight(first + 14) + offset,
        };
        for i in 0..300 {
            let started = Instant::now();
            let report = activity.retention(&query(i % 16), &limits);
            times.push(started.elapsed());
            assert!(matches!(report, Ok(Some(_))), "answered: {report:?}");
        }
        let range = if offset == 0 { "whole days" } else { "from 13:27" };
        println!(
            "retention {kind:?} ({range}), 14 day cohorts x 14 day offsets: {}",
            percentiles(&mut times)
        );
        let q = query(3);
        assert_eq!(
            activity.retention(&q, &limits),
            retention::run(&q, &events, None, &tz, &limits).map(Some),
            "the view equals the ad-hoc engine"
        );
    }

    skewed_retention(count, &tz, &limits);

    // New events as the query service feeds them: mostly now, one in ten days late.
    let mut funnel_times = Vec::new();
    let mut activity_times = Vec::new();
    let mut fed = events.clone();
    for _ in 0..200 {
        let batch: Vec<AnalyticsEvent> = (0..500)
            .map(|_| {
                if g.next(10) == 0 {
                    g.event(START + 20 * DAY, 10 * DAY)
                } else {
                    g.event(START + 30 * DAY, DAY)
                }
            })
            .collect();
        let started = Instant::now();
        funnel_view.add(&batch);
        funnel_times.push(started.elapsed());
        let started = Instant::now();
        activity.add(&batch);
        activity_times.push(started.elapsed());
        fed.extend(batch);
    }
    println!("add 500 events to the FunnelView: {}", percentiles(&mut funnel_times));
    println!("add 500 events to the ActivityView: {}", percentiles(&mut activity_times));
    // The first-time counts kept since the queries above, after the batches.
    let q = RetentionQuery {
        start: EventMatcher::named("signup"),
        return_event: EventMatcher::named("login"),
        kind: RetentionKind::FirstTime,
        period: Interval::Day,
        periods: 14,
        from: midnight(0),
        to: midnight(31),
    };
    assert_eq!(
        activity.retention(&q, &limits),
        retention::run(&q, &fed, None, &tz, &limits).map(Some),
        "the view equals the ad-hoc engine after the batches"
    );
}

/// The HTTP benchmark's retention shape: 75,470 users over 30 days, the return event
/// ("page_viewed") on ~40% of events and most users' days; first-time day retention, 30
/// day cohorts x 14 offsets over whole days.
fn skewed_retention(count: usize, tz: &TimeZone, limits: &Limits) {
    let mut g = Generator { state: 11, users: 75_470, next_id: 0 };
    let names = ["signup", "search", "share", "invite", "logout", "login", "pay", "purchase", "activate"];
    let events: Vec<AnalyticsEvent> = (0..count)
        .map(|_| {
            let mut e = g.event(START, 30 * DAY);
            e.event = if g.next(10) < 4 { "page_viewed" } else { names[g.next(9) as usize] }.to_string();
            e
        })
        .collect();
    let mut activity = ActivityView::new(tz.clone());
    activity.add(&events);
    let midnight = |day: i64| period::start(START + day * DAY + 12 * 3_600_000, Interval::Day, tz);
    let query = RetentionQuery {
        start: EventMatcher::named("signup"),
        return_event: EventMatcher::named("page_viewed"),
        kind: RetentionKind::FirstTime,
        period: Interval::Day,
        periods: 14,
        from: midnight(0),
        to: midnight(30),
    };
    let mut times = Vec::new();
    for _ in 0..300 {
        let started = Instant::now();
        let report = activity.retention(&query, limits);
        times.push(started.elapsed());
        assert!(matches!(report, Ok(Some(_))), "answered: {report:?}");
    }
    println!(
        "retention FirstTime (whole days), 30 day cohorts x 14 day offsets, return event on 40% of events: {}",
        percentiles(&mut times)
    );
    assert_eq!(
        activity.retention(&query, limits),
        retention::run(&query, &events, None, tz, limits).map(Some),
        "the view equals the ad-hoc engine"
    );
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn percentiles(times: &mut [Duration]) -> String {
    times.sort();
    let at = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    format!("p50 {} p99 {} max {} ({} runs)", ms(at(50)), ms(at(99)), ms(times[times.len() - 1]), times.len())
}
