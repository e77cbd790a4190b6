//! Retention: of the users who did a start event in a period, how many did a return event
//! k periods later, by day or week in the pipeline's time zone.

use std::collections::{BTreeSet, HashMap, HashSet};

use jiff::tz::TimeZone;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{AnalyticsError, Limits, check_events, check_periods, check_range};
use super::event::{AnalyticsEvent, EventMatcher, by_user};
pub use super::period::CellProgress;
use super::period::{self, Interval};
use crate::validation::Errors;

/// Which periods a user belongs to as a cohort.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RetentionKind {
    /// The period of the user's first-ever start event.
    #[default]
    FirstTime,
    /// Every period with a start event.
    Recurring,
}

/// A retention query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionQuery {
    /// The event that puts a user in a cohort.
    pub start: EventMatcher,
    /// The event that counts as coming back.
    #[serde(rename = "return")]
    pub return_event: EventMatcher,
    /// firstTime (default) or recurring.
    #[serde(default)]
    pub kind: RetentionKind,
    /// day or week.
    pub period: Interval,
    /// The offsets reported: 0 to periods - 1.
    pub periods: u32,
    /// Cohorts whose start event is at or after this time (epoch ms) ...
    pub from: i64,
    /// ... and before this time (exclusive).
    pub to: i64,
}

/// The retention table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionReport {
    /// One row per period overlapping [from, to), oldest first.
    pub cohorts: Vec<RetentionCohort>,
}

/// One cohort: the users who started in one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionCohort {
    /// The period's start (epoch ms).
    pub period_start: i64,
    /// Users in the cohort.
    pub users: u64,
    /// Users with a return event k periods later, at index k (offset 0 is the cohort's own
    /// period). Offsets not yet over count what happened so far.
    pub retained: Vec<u64>,
    /// Per offset, whether its period was over, under way or still to come when the answer
    /// was given ([`RetentionReport::mark_progress`]): a 0 still to come is no "nobody came
    /// back". Empty until marked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub progress: Vec<CellProgress>,
}

impl RetentionReport {
    /// Marks every cell by where its period stands at `now` (epoch ms): the periods are
    /// `period`s of the time zone `tz`, offset k starting k periods after the cohort's.
    pub fn mark_progress(&mut self, period: Interval, now: i64, tz: &TimeZone) {
        for cohort in &mut self.cohorts {
            let mut start = cohort.period_start;
            cohort.progress = (0..cohort.retained.len())
                .map(|_| {
                    let end = period::next(start, period, tz);
                    let progress = period::progress(start, end, now);
                    start = end;
                    progress
                })
                .collect();
        }
    }
}

impl RetentionQuery {
    /// Checks the query against `limits`: what [`run`] refuses, without any events.
    pub fn validate(&self, limits: &Limits) -> Result<(), AnalyticsError> {
        let mut errors = Errors::default();
        self.start.validate_into("start", &mut errors);
        self.return_event.validate_into("return", &mut errors);
        if !matches!(self.period, Interval::Day | Interval::Week) {
            errors.add("period", "retention periods are day or week");
        }
        if self.periods == 0 {
            errors.add("periods", "at least 1 period (offset 0)");
        }
        errors.into_result().map_err(AnalyticsError::Invalid)?;
        check_periods(self.periods as usize, limits)?;
        check_range(self.from, self.to)
    }
}

/// The events a retention query reads: return events (and recurring start events) with a
/// time in `[from, to)`; for firstTime, start events from the beginning of the data
/// (`start_events_from` is None) up to `to`, since only a user's first ever counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSpan {
    pub start_events_from: Option<i64>,
    pub from: i64,
    pub to: i64,
}

/// What [`run`] reads for `query`: from the start of the first cohort's period to the end
/// of the last offset of the last cohort.
pub fn event_span(query: &RetentionQuery, tz: &TimeZone) -> EventSpan {
    let from = period::start(query.from, query.period, tz);
    let mut to = period::start(query.to.saturating_sub(1), query.period, tz);
    for _ in 0..query.periods {
        to = period::next(to, query.period, tz);
    }
    let start_events_from = match query.kind {
        RetentionKind::FirstTime => None,
        RetentionKind::Recurring => Some(from),
    };
    EventSpan { start_events_from, from, to }
}

/// Computes the retention table over `events` (any order; repeated ids count once), for
/// the users in `users` when given.
pub fn run(
    query: &RetentionQuery,
    events: &[AnalyticsEvent],
    users: Option<&HashSet<String>>,
    tz: &TimeZone,
    limits: &Limits,
) -> Result<RetentionReport, AnalyticsError> {
    query.validate(limits)?;
    check_events(events.len(), limits)?;
    let starts = period::starts(query.from, query.to, query.period, tz, limits)?;
    let n = query.periods as usize;
    let mut rows: HashMap<i64, (u64, Vec<u64>)> = HashMap::new();
    for user in by_user(events) {
        if users.is_some_and(|u| !u.contains(user.distinct_id)) {
            continue;
        }
        for (cohort, returns) in user_cohorts(query, &user.events, tz) {
            let row = rows.entry(cohort).or_insert_with(|| (0, vec![0; n]));
            row.0 += 1;
            for k in 0..n {
                if returns.contains(&(cohort + k as i64)) {
                    row.1[k] += 1;
                }
            }
        }
    }
    let cohorts = starts
        .into_iter()
        .map(|s| {
            let (users, retained) =
                rows.remove(&period::period_number(s, query.period, tz)).unwrap_or((0, vec![0; n]));
            RetentionCohort { period_start: s, users, retained, progress: Vec::new() }
        })
        .collect();
    Ok(RetentionReport { cohorts })
}

/// One user's cohorts (period numbers) and the set of periods with a return event: what
/// the pre-aggregated path keeps per user.
pub fn user_cohorts(
    query: &RetentionQuery,
    events: &[&AnalyticsEvent],
    tz: &TimeZone,
) -> Vec<(i64, BTreeSet<i64>)> {
    let in_range = |ts: i64| (query.from..query.to).contains(&ts);
    let mut starts = events.iter().filter(|e| query.start.matches(e)).map(|e| e.timestamp);
    let start_times: Vec<i64> = match query.kind {
        RetentionKind::FirstTime => starts.next().filter(|&ts| in_range(ts)).into_iter().collect(),
        RetentionKind::Recurring => starts.filter(|&ts| in_range(ts)).collect(),
    };
    let cohorts: BTreeSet<i64> =
        start_times.into_iter().map(|ts| period::period_number(ts, query.period, tz)).collect();
    if cohorts.is_empty() {
        return Vec::new();
    }
    let returns: BTreeSet<i64> = events
        .iter()
        .filter(|e| query.return_event.matches(e))
        .map(|e| period::period_number(e.timestamp, query.period, tz))
        .collect();
    cohorts.into_iter().map(|c| (c, returns.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DAY: i64 = 86_400_000;

    fn ev(user: &str, name: &str, ts: i64) -> AnalyticsEvent {
        AnalyticsEvent {
            event_id: format!("{user}-{name}-{ts}"),
            event: name.into(),
            distinct_id: user.into(),
            timestamp: ts,
            properties: json!({}),
        }
    }

    fn query(kind: RetentionKind) -> RetentionQuery {
        RetentionQuery {
            start: EventMatcher::named("signup"),
            return_event: EventMatcher::named("open"),
            kind,
            period: Interval::Day,
            periods: 3,
            from: 0,
            to: 2 * DAY,
        }
    }

    #[test]
    fn first_time_and_recurring_cohorts() {
        let events = vec![
            ev("a", "signup", 10),
            ev("a", "open", DAY + 5),
            ev("a", "signup", DAY + 7),
            ev("a", "open", 2 * DAY + 1),
            ev("b", "signup", DAY + 1),
            ev("b", "open", DAY + 2),
        ];
        let tz = TimeZone::UTC;
        let first =
            run(&query(RetentionKind::FirstTime), &events, None, &tz, &Limits::default()).expect("runs");
        let cells: Vec<(u64, Vec<u64>)> =
            first.cohorts.iter().map(|c| (c.users, c.retained.clone())).collect();
        assert_eq!(cells, [(1, vec![0, 1, 1]), (1, vec![1, 0, 0])]);
        let recurring =
            run(&query(RetentionKind::Recurring), &events, None, &tz, &Limits::default()).expect("runs");
        let cells: Vec<(u64, Vec<u64>)> =
            recurring.cohorts.iter().map(|c| (c.users, c.retained.clone())).collect();
        assert_eq!(cells, [(1, vec![0, 1, 1]), (2, vec![2, 1, 0])]);
    }

    #[test]
    fn cells_are_complete_under_way_or_still_to_come_by_the_time_of_the_answer() {
        let events = vec![ev("a", "signup", 10), ev("b", "signup", DAY + 1)];
        let tz = TimeZone::UTC;
        let mut report =
            run(&query(RetentionKind::FirstTime), &events, None, &tz, &Limits::default()).expect("runs");
        assert!(report.cohorts.iter().all(|c| c.progress.is_empty()), "unmarked until answered");
        // Noon of day 1: day 0 is over, day 1 under way, day 2 and later to come.
        report.mark_progress(Interval::Day, DAY + DAY / 2, &tz);
        use CellProgress::{Complete, Partial, Pending};
        let marks: Vec<Vec<CellProgress>> = report.cohorts.iter().map(|c| c.progress.clone()).collect();
        assert_eq!(marks, [vec![Complete, Partial, Pending], vec![Partial, Pending, Pending]]);
        // At the very end of a period it is over.
        report.mark_progress(Interval::Day, 2 * DAY, &tz);
        assert_eq!(report.cohorts[1].progress, [Complete, Partial, Pending]);
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["cohorts"][1]["progress"], serde_json::json!(["complete", "partial", "pending"]));
    }

    #[test]
    fn the_span_read_reaches_the_last_offset_of_the_last_cohort() {
        let mut q = query(RetentionKind::Recurring);
        q.from = DAY + 5;
        let span = event_span(&q, &TimeZone::UTC);
        // Cohorts: day 1 (from its midnight); last offset: day 1 + 2 = day 3, read to its end.
        assert_eq!(span, EventSpan { start_events_from: Some(DAY), from: DAY, to: 4 * DAY });
        let first = event_span(&query(RetentionKind::FirstTime), &TimeZone::UTC);
        assert_eq!(first.start_events_from, None, "a first-time cohort needs every earlier start");
    }

    #[test]
    fn refuses_bad_queries() {
        let mut q = query(RetentionKind::FirstTime);
        q.period = Interval::Hour;
        q.periods = 0;
        let err = run(&q, &[], None, &TimeZone::UTC, &Limits::default()).expect_err("invalid");
        let AnalyticsError::Invalid(fields) = err else { panic!("expected invalid, got {err:?}") };
        assert_eq!(fields.iter().map(|f| f.field.as_str()).collect::<Vec<_>>(), ["period", "periods"]);
        let mut q = query(RetentionKind::FirstTime);
        q.periods = 5000;
        assert!(matches!(
            run(&q, &[], None, &TimeZone::UTC, &Limits::default()),
            Err(AnalyticsError::TooManyPeriods { count: 5000, .. })
        ));
    }
}
