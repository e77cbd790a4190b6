//! Prints how long the funnel engine takes over 1,000,000 generated events (4 steps, 7-day
//! window, 30 days): grouping per user alone (repeated-id removal and sorting included),
//! then whole funnels (grouping included): ordered over events in random order, and
//! ordered, strict and unordered over events grouped by user as the store's index returns
//! them; then a retention table and a trend over the same events. Run with
//! `cargo run --release -p pulse-core --example funnel_speed [events] [users]`.

use std::time::Instant;

use jiff::tz::TimeZone;
use pulse_core::analytics::funnel::{self, FunnelQuery};
use pulse_core::analytics::period::Interval;
use pulse_core::analytics::retention::{self, RetentionKind, RetentionQuery};
use pulse_core::analytics::trend::{self, Measure, TrendBreakdown, TrendQuery};
use pulse_core::analytics::{AnalyticsEvent, EventMatcher, Limits};
use pulse_core::funnel::FunnelDefinition;
use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let users: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let day = 86_400_000i64;
    let mut state = 42u64;
    let mut next = |n: u64| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    let names = ["view", "signup", "activate", "purchase", "other"];
    let generated: Vec<AnalyticsEvent> = (0..events)
        .map(|i| {
            let plan = ["free", "pro"][next(2) as usize];
            AnalyticsEvent {
                event_id: format!("e{i}"),
                event: names[next(5) as usize].to_string(),
                distinct_id: format!("user-{}", next(users as u64)),
                timestamp: 1_770_000_000_000 + next(30 * day as u64) as i64,
                properties: json!({ "plan": plan, "amount": next(100) }),
            }
        })
        .collect();
    println!("{events} events, {users} users, 30 days");
    let (started, cpu) = (Instant::now(), cpu_ms());
    let grouped = pulse_core::analytics::by_user(&generated).len();
    println!("grouping per user ({grouped} users): {}", elapsed(started, cpu));
    // As an index-backed find by (user, time) returns them: each user's events together.
    let mut sorted = generated.clone();
    sorted.sort_by(|a, b| (&a.distinct_id, a.timestamp).cmp(&(&b.distinct_id, b.timestamp)));
    let query = FunnelQuery {
        from: 1_770_000_000_000,
        to: 1_770_000_000_000 + 30 * day,
        trend: None,
        session_timeout: None,
    };
    for (order, input, events) in [
        ("ordered", "random order", &generated),
        ("ordered", "by user", &sorted),
        ("strict", "by user", &sorted),
        ("unordered", "by user", &sorted),
    ] {
        let def: FunnelDefinition = serde_json::from_value(json!({
            "steps": [{ "event": "view" }, { "event": "signup" }, { "event": "activate" }, { "event": "purchase" }],
            "window": "7d",
            "order": order,
        }))
        .expect("valid definition");
        let (started, cpu) = (Instant::now(), cpu_ms());
        let report =
            funnel::run(&def, &query, events, None, &TimeZone::UTC, &Limits::default()).expect("runs");
        let counts: Vec<u64> = report.steps.iter().map(|s| s.users).collect();
        println!("{order:>9} funnel, events {input:>12}: {}  steps {counts:?}", elapsed(started, cpu));
    }
    others(&sorted, query.from, query.to);
}

/// Retention (first time, daily, 14 offsets) and a daily unique-users trend broken down
/// by plan, over the same events.
fn others(events: &[AnalyticsEvent], from: i64, to: i64) {
    let query = RetentionQuery {
        start: EventMatcher::named("signup"),
        return_event: EventMatcher::named("view"),
        kind: RetentionKind::FirstTime,
        period: Interval::Day,
        periods: 14,
        from,
        to,
    };
    let (started, cpu) = (Instant::now(), cpu_ms());
    let r = retention::run(&query, events, None, &TimeZone::UTC, &Limits::default()).expect("runs");
    println!("retention, daily, 14 offsets:        {}  {} cohorts", elapsed(started, cpu), r.cohorts.len());
    let query = TrendQuery {
        event: EventMatcher::named("view"),
        measure: Measure::UniqueUsers,
        interval: Interval::Day,
        from,
        to,
        breakdown: Some(TrendBreakdown { property: "plan".parse().expect("path"), top: 5 }),
        session_timeout: None,
    };
    let (started, cpu) = (Instant::now(), cpu_ms());
    let t = trend::run(&query, events, None, &TimeZone::UTC, &Limits::default()).expect("runs");
    println!("trend, daily unique users by plan:   {}  {} series", elapsed(started, cpu), t.series.len());
}

/// Wall time, and the CPU time of this thread (from /proc on Linux): on a shared machine
/// the wall time also counts the time other processes had the CPU.
fn elapsed(started: Instant, cpu_before: Option<f64>) -> String {
    let wall = started.elapsed().as_secs_f64() * 1e3;
    match (cpu_before, cpu_ms()) {
        (Some(a), Some(b)) => format!("{wall:>7.1} ms wall, {:>7.1} ms CPU", b - a),
        _ => format!("{wall:>7.1} ms wall"),
    }
}

fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(stat.split_whitespace().next()?.parse::<f64>().ok()? / 1e6)
}
