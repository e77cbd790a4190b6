//! Which raw events a query reads (event names and a time range), and reading them.
//!
//! Each engine reads only what can change its answer: a funnel its steps' and exclusions'
//! events from `from` to `to` plus the window; a retention its start events (all history
//! for first-time cohorts) and its return events up to the last offset; a cohort its
//! conditions' events (every event for a property condition, which looks at a user's
//! latest value).

use std::collections::BTreeSet;

use jiff::tz::TimeZone;
use pulse_core::analytics::AnalyticsEvent;
use pulse_core::analytics::cohort::{CohortCondition, CohortDefinition};
use pulse_core::analytics::people::PeopleOf;
use pulse_core::analytics::period::{self, Interval};
use pulse_core::analytics::retention::{RetentionKind, RetentionQuery};
use pulse_core::analytics::trend::{Measure, TrendQuery};
use pulse_core::analytics::{lifecycle, stickiness};
use pulse_core::funnel::FunnelDefinition;
use pulse_store::Store;

use crate::error::QueryError;

const DAY_MS: i64 = 86_400_000;

/// Events to read: named so (any name when `None`), with a time in `[from, to)`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventNeed {
    pub names: Option<BTreeSet<String>>,
    pub from: i64,
    pub to: i64,
}

impl EventNeed {
    pub fn named(names: impl IntoIterator<Item = String>, from: i64, to: i64) -> Self {
        EventNeed { names: Some(names.into_iter().collect()), from, to }
    }
}

/// A trend reads its event over the whole intervals its range overlaps, and the 6 or 29
/// days before for WAU and MAU; a session measure reads every event of the whole local
/// days of those intervals.
pub fn of_trend(q: &TrendQuery, tz: &TimeZone) -> EventNeed {
    let from = period::start(q.from, q.interval, tz);
    let to = period::next(period::start(q.to.saturating_sub(1).max(q.from), q.interval, tz), q.interval, tz);
    if q.measure.of_sessions() {
        // Every event of the users (a session's duration is all its events'), over whole
        // local days: no session crosses midnight.
        let (from, to) = (
            period::start(from, Interval::Day, tz),
            period::next(period::start(to - 1, Interval::Day, tz), Interval::Day, tz),
        );
        return EventNeed { names: None, from, to };
    }
    let lookback = match q.measure {
        Measure::Wau => 7,
        Measure::Mau => 30,
        _ => 0,
    };
    // A day longer than the lookback covers a DST shift.
    let from = if lookback > 0 { from - (lookback + 1) * DAY_MS } else { from };
    EventNeed::named([q.event.event.clone()], from, to)
}

/// A funnel reads its steps' and exclusions' events (every event for a same-session
/// funnel) from `from` to `to` plus the window.
pub fn of_funnel(def: &FunnelDefinition, from: i64, to: i64) -> EventNeed {
    let names = def.event_names().map(|n| n.into_iter().collect());
    EventNeed { names, from, to: to.saturating_add(def.window.as_millis()).saturating_add(1) }
}

/// A retention reads its start events (from the beginning for first-time cohorts, whose
/// cohort is the first-ever start) and its return events up to the last offset's end.
pub fn of_retention(q: &RetentionQuery, tz: &TimeZone) -> Vec<EventNeed> {
    let period_ms = match q.period {
        Interval::Week => 7 * DAY_MS,
        _ => DAY_MS,
    };
    // One period more than the offsets, and a day for DST.
    let end = q.to.saturating_add((i64::from(q.periods) + 1) * period_ms + DAY_MS);
    let first_from = match q.kind {
        RetentionKind::FirstTime => 0,
        RetentionKind::Recurring => period::start(q.from, q.period, tz),
    };
    vec![
        EventNeed::named([q.start.event.clone()], first_from, q.to),
        EventNeed::named([q.return_event.event.clone()], period::start(q.from, q.period, tz), end),
    ]
}

/// A cohort reads its conditions' events up to `now`; a property condition reads every
/// event (a user's latest value of the property may be on any).
pub fn of_cohort(def: &CohortDefinition, now: i64) -> Vec<EventNeed> {
    let mut needs = Vec::new();
    for c in &def.conditions {
        match c {
            CohortCondition::Performed { event, from, to, last_days, .. } => {
                let (f, t) = match last_days {
                    Some(d) => (now - i64::from(*d) * DAY_MS, now),
                    None => (from.unwrap_or(0), to.unwrap_or(now)),
                };
                needs.push(EventNeed::named([event.event.clone()], f, t));
            }
            CohortCondition::Property { .. } => needs.push(EventNeed { names: None, from: 0, to: now + 1 }),
            // Its members are read from the saved list.
            CohortCondition::InCohort { .. } => {}
        }
    }
    needs
}

/// The events behind a number read as its report reads them.
pub fn of_people(of: &PeopleOf, tz: &TimeZone) -> Vec<EventNeed> {
    match of {
        PeopleOf::Funnel { query, .. } => vec![of_funnel(&query.definition, query.from, query.to)],
        PeopleOf::Retention { query, .. } => of_retention(query, tz),
        PeopleOf::Lifecycle { query, .. } => {
            let (from, to) = lifecycle::event_span(query, tz);
            vec![EventNeed::named([query.event.event.clone()], from, to)]
        }
        PeopleOf::Stickiness { query, .. } => {
            let (from, to) = stickiness::event_span(query, tz);
            vec![EventNeed::named([query.event.event.clone()], from, to)]
        }
        PeopleOf::Trend { query, .. } => vec![of_trend(query, tz)],
    }
}

/// Reads the events of `needs`, at most `max` in all (more is an error, never a shorter
/// answer).
pub async fn read(store: &Store, needs: &[EventNeed], max: usize) -> Result<Vec<AnalyticsEvent>, QueryError> {
    let mut events = Vec::new();
    for need in needs {
        let names: Option<Vec<String>> = need.names.as_ref().map(|n| n.iter().cloned().collect());
        let left = max.saturating_sub(events.len());
        let read = store.events_between(names.as_deref(), need.from, need.to, left).await?;
        events.extend(read.into_iter().map(AnalyticsEvent::from));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_core::rollup::time_zone;

    #[test]
    fn a_funnel_reads_its_steps_and_exclusions_until_the_window_ends() {
        let def: FunnelDefinition = serde_json::from_value(serde_json::json!({
            "steps": [{ "event": "a" }, { "event": "b" }],
            "window": "1h",
            "exclusions": [{ "event": "x", "fromStep": 1, "toStep": 2 }]
        }))
        .expect("definition");
        let need = of_funnel(&def, 1_000, 2_000);
        assert_eq!(need.names, Some(["a", "b", "x"].map(String::from).into_iter().collect()));
        assert_eq!((need.from, need.to), (1_000, 2_000 + 3_600_000 + 1));
    }

    #[test]
    fn a_trend_covers_whole_intervals_and_the_weeks_before_for_wau() {
        let tz = time_zone("UTC").expect("tz");
        let q: TrendQuery = serde_json::from_value(serde_json::json!({
            "event": { "event": "a" }, "measure": { "kind": "wau" }, "interval": "day",
            "from": DAY_MS * 10 + 5, "to": DAY_MS * 12 + 7
        }))
        .expect("query");
        let need = of_trend(&q, &tz);
        assert_eq!((need.from, need.to), (DAY_MS * 10 - 8 * DAY_MS, DAY_MS * 13));
    }
}
