//! Stickiness: per week or month in the pipeline's time zone, how many users did an event
//! on exactly 1, 2, ... N of its days.

use std::collections::HashSet;

use jiff::tz::TimeZone;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{AnalyticsError, Limits, check_events, check_range};
use super::event::{AnalyticsEvent, EventMatcher, by_user};
use super::period::{self, CellProgress, Interval};
use crate::validation::Errors;

/// A stickiness query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StickinessQuery {
    /// The event counted.
    pub event: EventMatcher,
    /// week or month.
    pub period: Interval,
    /// From this time (epoch ms) ...
    pub from: i64,
    /// ... to this one (exclusive); periods overlapping the range are reported whole.
    pub to: i64,
}

/// The stickiness of every period overlapping the range, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StickinessReport {
    pub periods: Vec<StickinessPeriod>,
}

/// One period: its users by the number of its local days on which they did the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StickinessPeriod {
    /// The period's start (epoch ms).
    pub period_start: i64,
    /// Its local days (7 a week; 28 to 31 a month).
    pub days: u32,
    /// Users with the event on at least one of its days.
    pub users: u64,
    /// At index k, the users with the event on exactly k + 1 of its days (`days` entries).
    pub active_days: Vec<u64>,
    /// Whether the period was over, under way or still to come when the answer was given
    /// ([`StickinessReport::mark_progress`]); absent until marked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<CellProgress>,
}

impl StickinessQuery {
    /// Checks the query against `limits`: what [`run`] refuses, without any events.
    pub fn validate(&self, tz: &TimeZone, limits: &Limits) -> Result<(), AnalyticsError> {
        let mut errors = Errors::default();
        self.event.validate_into("event", &mut errors);
        if !matches!(self.period, Interval::Week | Interval::Month) {
            errors.add("period", "stickiness periods are week or month");
        }
        errors.into_result().map_err(AnalyticsError::Invalid)?;
        check_range(self.from, self.to)?;
        period::starts(self.from, self.to, self.period, tz, limits).map(|_| ())
    }
}

impl StickinessReport {
    /// Empty periods, one per start: what the tallies add to.
    pub fn empty(starts: &[i64], interval: Interval, tz: &TimeZone) -> Self {
        let periods = starts
            .iter()
            .map(|&period_start| {
                let end = period::next(period_start, interval, tz);
                let days = (period::day_number(end, tz) - period::day_number(period_start, tz)) as u32;
                StickinessPeriod {
                    period_start,
                    days,
                    users: 0,
                    active_days: vec![0; days as usize],
                    progress: None,
                }
            })
            .collect();
        StickinessReport { periods }
    }

    /// Counts a user active on `days` days of the period at `index`.
    pub(crate) fn count(&mut self, index: usize, days: usize) {
        if let Some(p) = self.periods.get_mut(index)
            && let Some(slot) = days.checked_sub(1).and_then(|k| p.active_days.get_mut(k))
        {
            *slot += 1;
            p.users += 1;
        }
    }

    /// Marks every period by where it stands at `now` (epoch ms) in the time zone `tz`.
    pub fn mark_progress(&mut self, period: Interval, now: i64, tz: &TimeZone) {
        for p in &mut self.periods {
            let end = period::next(p.period_start, period, tz);
            p.progress = Some(period::progress(p.period_start, end, now));
        }
    }
}

/// What [`run`] reads: the event over the whole periods overlapping the range.
pub fn event_span(query: &StickinessQuery, tz: &TimeZone) -> (i64, i64) {
    let from = period::start(query.from, query.period, tz);
    let last = period::start(query.to.saturating_sub(1).max(query.from), query.period, tz);
    (from, period::next(last, query.period, tz))
}

/// Computes the stickiness over `events` (any order; repeated ids count once), for the
/// users in `users` when given.
pub fn run(
    query: &StickinessQuery,
    events: &[AnalyticsEvent],
    users: Option<&HashSet<String>>,
    tz: &TimeZone,
    limits: &Limits,
) -> Result<StickinessReport, AnalyticsError> {
    query.validate(tz, limits)?;
    check_events(events.len(), limits)?;
    let starts = period::starts(query.from, query.to, query.period, tz, limits)?;
    let first = starts.first().map_or(0, |&s| period::period_number(s, query.period, tz));
    let mut report = StickinessReport::empty(&starts, query.period, tz);
    for user in by_user(events) {
        if users.is_some_and(|u| !u.contains(user.distinct_id)) {
            continue;
        }
        for (p, days) in days_per_period(query, &user.events, tz) {
            if let Ok(index) = usize::try_from(p - first) {
                report.count(index, days);
            }
        }
    }
    Ok(report)
}

/// Per period number (ascending), the local days on which one user's events (any order)
/// match the query.
pub(crate) fn days_per_period(
    query: &StickinessQuery,
    events: &[&AnalyticsEvent],
    tz: &TimeZone,
) -> Vec<(i64, usize)> {
    let mut days: Vec<i64> = events
        .iter()
        .filter(|e| query.event.matches(e))
        .map(|e| period::day_number(e.timestamp, tz))
        .collect();
    days.sort_unstable();
    days.dedup();
    days.chunk_by(|a, b| period::day_period(*a, query.period) == period::day_period(*b, query.period))
        .map(|run| (period::day_period(run[0], query.period), run.len()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DAY: i64 = 86_400_000;

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().expect("time").as_millisecond()
    }

    fn ev(user: &str, at: &str) -> AnalyticsEvent {
        AnalyticsEvent {
            event_id: format!("{user}-{at}"),
            event: "open".into(),
            distinct_id: user.into(),
            timestamp: ms(at),
            properties: json!({}),
        }
    }

    fn query(period: Interval, from: &str, to: &str) -> StickinessQuery {
        StickinessQuery { event: EventMatcher::named("open"), period, from: ms(from), to: ms(to) }
    }

    #[test]
    fn users_are_counted_by_their_active_days_of_each_period() {
        // The week of Monday 2026-11-30: a on 3 days (twice on one), b on 1; the next: b on 7.
        let mut events = vec![
            ev("a", "2026-11-30T01:00:00Z"),
            ev("a", "2026-11-30T23:00:00Z"),
            ev("a", "2026-12-02T10:00:00Z"),
            ev("a", "2026-12-06T23:59:59Z"),
            ev("b", "2026-12-01T00:00:00Z"),
        ];
        for d in 7..14 {
            events.push(ev("b", &format!("2026-12-{d:02}T12:00:00Z")));
        }
        let q = query(Interval::Week, "2026-12-01T00:00:00Z", "2026-12-08T00:00:00Z");
        let report = run(&q, &events, None, &TimeZone::UTC, &Limits::default()).expect("runs");
        let weeks: Vec<(u32, u64, Vec<u64>)> =
            report.periods.iter().map(|p| (p.days, p.users, p.active_days.clone())).collect();
        assert_eq!(weeks, [(7, 2, vec![1, 0, 1, 0, 0, 0, 0]), (7, 1, vec![0, 0, 0, 0, 0, 0, 1])]);
        assert_eq!(report.periods[0].period_start, ms("2026-11-30T00:00:00Z"), "whole weeks");
    }

    #[test]
    fn months_have_their_days_and_the_time_zone_decides_the_day() {
        let berlin = TimeZone::get("Europe/Berlin").expect("zone");
        // 23:30 UTC on Feb 28 is March 1 in Berlin.
        let events = [ev("a", "2026-02-28T22:30:00Z"), ev("a", "2026-02-28T23:30:00Z")];
        let q = query(Interval::Month, "2026-02-10T00:00:00Z", "2026-03-10T00:00:00Z");
        let report = run(&q, &events, None, &berlin, &Limits::default()).expect("runs");
        let days: Vec<u32> = report.periods.iter().map(|p| p.days).collect();
        assert_eq!(days, [28, 31]);
        assert_eq!(report.periods[0].active_days[0], 1);
        assert_eq!(report.periods[1].active_days[0], 1);
        let utc = run(&q, &events, None, &TimeZone::UTC, &Limits::default()).expect("runs");
        assert_eq!((utc.periods[0].active_days[0], utc.periods[1].users), (1, 0), "one day, Feb 28, in UTC");
    }

    #[test]
    fn refuses_day_periods_and_marks_progress() {
        let q = query(Interval::Day, "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z");
        let err = run(&q, &[], None, &TimeZone::UTC, &Limits::default()).expect_err("invalid");
        assert!(matches!(err, AnalyticsError::Invalid(_)), "{err:?}");
        let q = query(Interval::Week, "2026-11-30T00:00:00Z", "2026-12-14T00:00:00Z");
        let mut report = run(&q, &[], None, &TimeZone::UTC, &Limits::default()).expect("runs");
        report.mark_progress(Interval::Week, ms("2026-12-09T00:00:00Z") - DAY, &TimeZone::UTC);
        let marks: Vec<Option<CellProgress>> = report.periods.iter().map(|p| p.progress).collect();
        assert_eq!(marks, [Some(CellProgress::Complete), Some(CellProgress::Partial)]);
    }
}
