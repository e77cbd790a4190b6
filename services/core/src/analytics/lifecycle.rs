//! Lifecycle: per period (day, week or month in the pipeline's time zone), the users doing
//! an event who are new to it, returning, or resurrecting, and those who stopped (dormant).

use std::collections::HashSet;

use jiff::tz::TimeZone;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{AnalyticsError, Limits, check_events, check_range};
use super::event::{AnalyticsEvent, EventMatcher, by_user};
use super::period::{self, CellProgress, Interval};
use crate::validation::Errors;

/// A lifecycle query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleQuery {
    /// The event whose users are classified.
    pub event: EventMatcher,
    /// day, week or month.
    pub period: Interval,
    /// From this time (epoch ms) ...
    pub from: i64,
    /// ... to this one (exclusive); periods overlapping the range are reported whole.
    pub to: i64,
}

/// The lifecycle of every period overlapping the range, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleReport {
    pub periods: Vec<LifecyclePeriod>,
}

/// One period's users of the event, each in exactly one of new, returning and
/// resurrecting; dormant counts the users of the period before who are not back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecyclePeriod {
    /// The period's start (epoch ms).
    pub period_start: i64,
    /// Users whose first event ever (of those Pulse holds) is in this period.
    pub new: u64,
    /// Users active in this period and the one before.
    pub returning: u64,
    /// Users active in this period, not in the one before, and in some earlier one.
    pub resurrecting: u64,
    /// Users active in the period before and not in this one, as a negative count.
    pub dormant: i64,
    /// Whether the period was over, under way or still to come when the answer was given
    /// ([`LifecycleReport::mark_progress`]); absent until marked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<CellProgress>,
}

impl LifecycleQuery {
    /// Checks the query against `limits`: what [`run`] refuses, without any events.
    pub fn validate(&self, tz: &TimeZone, limits: &Limits) -> Result<(), AnalyticsError> {
        let mut errors = Errors::default();
        self.event.validate_into("event", &mut errors);
        if !matches!(self.period, Interval::Day | Interval::Week | Interval::Month) {
            errors.add("period", "lifecycle periods are day, week or month");
        }
        errors.into_result().map_err(AnalyticsError::Invalid)?;
        check_range(self.from, self.to)?;
        period::starts(self.from, self.to, self.period, tz, limits).map(|_| ())
    }
}

impl LifecycleReport {
    /// Marks every period by where it stands at `now` (epoch ms) in the time zone `tz`.
    pub fn mark_progress(&mut self, period: Interval, now: i64, tz: &TimeZone) {
        for p in &mut self.periods {
            let end = period::next(p.period_start, period, tz);
            p.progress = Some(period::progress(p.period_start, end, now));
        }
    }
}

/// What [`run`] reads: the event from the beginning of the data (a user's first time ever
/// decides "new") to the end of the last period.
pub fn event_span(query: &LifecycleQuery, tz: &TimeZone) -> (i64, i64) {
    let last = period::start(query.to.saturating_sub(1).max(query.from), query.period, tz);
    (0, period::next(last, query.period, tz))
}

/// Computes the lifecycle over `events` (any order; repeated ids count once), for the users
/// in `users` when given.
pub fn run(
    query: &LifecycleQuery,
    events: &[AnalyticsEvent],
    users: Option<&HashSet<String>>,
    tz: &TimeZone,
    limits: &Limits,
) -> Result<LifecycleReport, AnalyticsError> {
    query.validate(tz, limits)?;
    check_events(events.len(), limits)?;
    let starts = period::starts(query.from, query.to, query.period, tz, limits)?;
    let mut tally = Tally::new(&starts, query.period, tz);
    for user in by_user(events) {
        if users.is_some_and(|u| !u.contains(user.distinct_id)) {
            continue;
        }
        tally.add_user(&active_periods(query, &user.events, tz));
    }
    Ok(tally.report(starts))
}

/// Where a user stands in a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LifecycleStatus {
    New,
    Returning,
    Resurrecting,
    Dormant,
}

/// The numbers of the periods in which one user's events (any order) match the query,
/// sorted, each once.
pub(crate) fn active_periods(query: &LifecycleQuery, events: &[&AnalyticsEvent], tz: &TimeZone) -> Vec<i64> {
    let mut active: Vec<i64> = events
        .iter()
        .filter(|e| query.event.matches(e))
        .map(|e| period::period_number(e.timestamp, query.period, tz))
        .collect();
    active.sort_unstable();
    active.dedup();
    active
}

/// A user's status in period `p`, from their active periods (sorted, each once): None when
/// they are neither active in it nor in the one before.
pub(crate) fn status(active: &[i64], p: i64) -> Option<LifecycleStatus> {
    let in_p = active.binary_search(&p).is_ok();
    let before = active.binary_search(&(p - 1)).is_ok();
    match (in_p, before) {
        (true, _) if active.first() == Some(&p) => Some(LifecycleStatus::New),
        (true, true) => Some(LifecycleStatus::Returning),
        (true, false) => Some(LifecycleStatus::Resurrecting),
        (false, true) => Some(LifecycleStatus::Dormant),
        (false, false) => None,
    }
}

/// The counts of the reported periods (numbered consecutively from `first`).
struct Tally {
    first: i64,
    counts: Vec<Counts>,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    new: u64,
    returning: u64,
    resurrecting: u64,
    dormant: u64,
}

impl Tally {
    fn new(starts: &[i64], interval: Interval, tz: &TimeZone) -> Self {
        let first = starts.first().map_or(0, |&s| period::period_number(s, interval, tz));
        Tally { first, counts: vec![Counts::default(); starts.len()] }
    }

    fn slot(&mut self, period: i64) -> Option<&mut Counts> {
        usize::try_from(period - self.first).ok().and_then(|i| self.counts.get_mut(i))
    }

    /// One user's active periods (sorted, each once): the first is the period of their
    /// first event ever.
    fn add_user(&mut self, active: &[i64]) {
        for (i, &p) in active.iter().enumerate() {
            let after_previous = i > 0 && active[i - 1] == p - 1;
            if let Some(c) = self.slot(p) {
                match (i, after_previous) {
                    (0, _) => c.new += 1,
                    (_, true) => c.returning += 1,
                    (_, false) => c.resurrecting += 1,
                }
            }
            let back_next = active.get(i + 1) == Some(&(p + 1));
            if !back_next && let Some(c) = self.slot(p + 1) {
                c.dormant += 1;
            }
        }
    }

    fn report(self, starts: Vec<i64>) -> LifecycleReport {
        let periods = starts
            .into_iter()
            .zip(self.counts)
            .map(|(period_start, c)| LifecyclePeriod {
                period_start,
                new: c.new,
                returning: c.returning,
                resurrecting: c.resurrecting,
                dormant: -(c.dormant as i64),
                progress: None,
            })
            .collect();
        LifecycleReport { periods }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DAY: i64 = 86_400_000;

    fn ev(user: &str, ts: i64) -> AnalyticsEvent {
        AnalyticsEvent {
            event_id: format!("{user}-{ts}"),
            event: "open".into(),
            distinct_id: user.into(),
            timestamp: ts,
            properties: json!({}),
        }
    }

    fn query(from: i64, to: i64) -> LifecycleQuery {
        LifecycleQuery { event: EventMatcher::named("open"), period: Interval::Day, from, to }
    }

    fn counts(report: &LifecycleReport) -> Vec<(u64, u64, u64, i64)> {
        report.periods.iter().map(|p| (p.new, p.returning, p.resurrecting, p.dormant)).collect()
    }

    #[test]
    fn users_are_new_returning_resurrecting_or_dormant() {
        // a: days 0, 1, 3; b: days 1, 2; c: day 3 twice.
        let events = [
            ev("a", 5),
            ev("a", DAY + 5),
            ev("a", 3 * DAY),
            ev("b", DAY),
            ev("b", 2 * DAY + 1),
            ev("c", 3 * DAY),
        ];
        let mut events = events.to_vec();
        events.push(AnalyticsEvent { event_id: "c-again".into(), ..ev("c", 3 * DAY + 9) });
        let report =
            run(&query(DAY, 4 * DAY + 1), &events, None, &TimeZone::UTC, &Limits::default()).expect("runs");
        // day 1: a returning, b new; day 2: b returning, a dormant; day 3: a resurrecting,
        // c new, b dormant; day 4: a and c dormant.
        assert_eq!(counts(&report), [(1, 1, 0, 0), (0, 1, 0, -1), (1, 0, 1, -1), (0, 0, 0, -2)]);
    }

    #[test]
    fn a_user_is_new_once_ever_and_a_cohort_narrows_the_users() {
        let events = [ev("a", 5), ev("a", 2 * DAY), ev("b", 2 * DAY)];
        let from_day_2 = run(&query(2 * DAY, 3 * DAY), &events, None, &TimeZone::UTC, &Limits::default());
        assert_eq!(counts(&from_day_2.expect("runs")), [(1, 0, 1, 0)], "a came back; b is new");
        let only_a: HashSet<String> = ["a".to_string()].into();
        let report =
            run(&query(2 * DAY, 3 * DAY), &events, Some(&only_a), &TimeZone::UTC, &Limits::default());
        assert_eq!(counts(&report.expect("runs")), [(0, 0, 1, 0)]);
    }

    #[test]
    fn weeks_and_months_are_calendar_periods() {
        let utc = TimeZone::UTC;
        let ms = |s: &str| s.parse::<jiff::Timestamp>().expect("time").as_millisecond();
        let events = [ev("a", ms("2026-01-31T23:00:00Z")), ev("a", ms("2026-02-01T00:00:00Z"))];
        let mut q = query(ms("2026-01-01T00:00:00Z"), ms("2026-03-01T00:00:00Z"));
        q.period = Interval::Month;
        let report = run(&q, &events, None, &utc, &Limits::default()).expect("runs");
        assert_eq!(counts(&report), [(1, 0, 0, 0), (0, 1, 0, 0)]);
        q.period = Interval::Week;
        q.from = ms("2026-02-02T00:00:00Z");
        let report = run(&q, &events, None, &utc, &Limits::default()).expect("runs");
        assert_eq!(counts(&report)[0], (0, 0, 0, -1), "the week of Jan 26 to Feb 1 was the last");
    }

    #[test]
    fn periods_are_marked_by_the_time_of_the_answer() {
        let mut report =
            run(&query(0, 3 * DAY), &[ev("a", 5)], None, &TimeZone::UTC, &Limits::default()).expect("runs");
        assert!(report.periods.iter().all(|p| p.progress.is_none()));
        report.mark_progress(Interval::Day, DAY + 1, &TimeZone::UTC);
        let marks: Vec<Option<CellProgress>> = report.periods.iter().map(|p| p.progress).collect();
        use CellProgress::{Complete, Partial, Pending};
        assert_eq!(marks, [Some(Complete), Some(Partial), Some(Pending)]);
    }

    #[test]
    fn refuses_bad_queries() {
        let mut q = query(0, DAY);
        q.period = Interval::Hour;
        q.event.event = String::new();
        let err = run(&q, &[], None, &TimeZone::UTC, &Limits::default()).expect_err("invalid");
        let AnalyticsError::Invalid(fields) = err else { panic!("expected invalid, got {err:?}") };
        let fields: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert!(fields.contains(&"period"), "{fields:?}");
        let limits = Limits { max_periods: 10, ..Limits::default() };
        assert!(matches!(
            run(&query(0, 11 * DAY), &[], None, &TimeZone::UTC, &limits),
            Err(AnalyticsError::TooManyPeriods { count: 11, .. })
        ));
    }
}
