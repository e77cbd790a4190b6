//! Funnels computed from events: ordered, strict and unordered, with a window, exclusions,
//! held-constant properties and a breakdown, as docs/semantics.md defines them.
//!
//! [`FunnelEngine::user`] gives one user's result ([`UserFunnel`]); a [`FunnelTally`] adds
//! users up (and merges with another tally, e.g. of another partition); [`run`] does both
//! over a set of events and checks the limits.

mod compiled;
mod report;
mod sequence;
mod unordered;

use std::collections::HashSet;

use jiff::tz::TimeZone;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub(crate) use self::compiled::{Compiled, Marked};
use super::error::{AnalyticsError, Limits, check_events, check_range};
use super::event::{AnalyticsEvent, by_user, matches};
use super::materialized::earlier;
use super::period::{self, Interval};
use super::session;
use crate::duration::DurationSpec;
use crate::funnel::{FunnelDefinition, FunnelOrder};

pub use report::{BreakdownRow, ConversionPoint, FunnelReport, FunnelTally, StepReport, TimeToConvert};

/// What to compute a funnel over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunnelQuery {
    /// Users whose first step's event is at or after this time (epoch ms) count.
    pub from: i64,
    /// ... and before this time (epoch ms, exclusive). Later steps may follow up to the
    /// window after it.
    pub to: i64,
    /// Also report the conversion per period (day or week) of the first step's event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend: Option<Interval>,
    /// The inactivity that ends a session, for a same-session funnel ("30m"; at most 1d;
    /// default: the pipeline's `query.sessionTimeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_timeout: Option<DurationSpec>,
}

/// One user's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFunnel {
    /// The number of steps reached (0 = did not enter).
    pub level: usize,
    /// For each step reached, the milliseconds from the first step's event to that step's
    /// event in the first chain that reached it (see docs/semantics.md); empty for
    /// unordered funnels, which have no first step in time.
    pub step_times: Vec<i64>,
    /// The breakdown property of the user's first first-step event at or after `from`:
    /// its text (JSON text for non-strings), None when absent.
    pub breakdown: Option<String>,
}

/// A funnel definition ready to evaluate users over one range.
pub struct FunnelEngine<'d> {
    compiled: Compiled<'d>,
    from: i64,
    to: i64,
    /// For a same-session funnel: how sessions are cut (each is evaluated alone).
    sessions: Option<(DurationSpec, TimeZone)>,
}

impl<'d> FunnelEngine<'d> {
    /// Validates the definition and range.
    pub fn new(def: &'d FunnelDefinition, from: i64, to: i64) -> Result<Self, AnalyticsError> {
        def.validate().map_err(AnalyticsError::Invalid)?;
        check_range(from, to)?;
        Ok(FunnelEngine { compiled: Compiled::new(def), from, to, sessions: None })
    }

    /// The same, cutting a same-session funnel's users into sessions by `timeout` (when
    /// the query sets none, the default) in `tz`; the timeout must be at most a day.
    pub fn with_sessions(
        def: &'d FunnelDefinition,
        query: &FunnelQuery,
        tz: &TimeZone,
    ) -> Result<Self, AnalyticsError> {
        let mut engine = FunnelEngine::new(def, query.from, query.to)?;
        let timeout = query.session_timeout.unwrap_or(session::DEFAULT_TIMEOUT);
        if timeout.as_secs() > session::MAX_TIMEOUT_SECS {
            return Err(AnalyticsError::invalid("sessionTimeout", format!("at most 1d, not {timeout}")));
        }
        if def.same_session {
            engine.sessions = Some((timeout, tz.clone()));
        }
        Ok(engine)
    }

    /// The number of steps.
    pub fn steps(&self) -> usize {
        self.compiled.n
    }

    /// One user's result; `events` are the user's, sorted by time (see
    /// [`super::event::by_user`]).
    pub fn user(&self, events: &[&AnalyticsEvent]) -> UserFunnel {
        let (level, step_times) = match &self.sessions {
            None => self.evaluate(&self.compiled.mark(events), self.from, self.to),
            Some((timeout, tz)) => {
                // The best session: the highest level, each step's time from the chain that
                // reached it first (earliest arrival, then latest start) as across days.
                let mut level = 0;
                let mut first: Vec<Option<(i64, i64)>> = Vec::new();
                for s in session::sessions(events, *timeout, tz) {
                    let (l, f) =
                        progress_in(&self.compiled, &self.compiled.mark(&s.events), self.from, self.to);
                    level = level.max(l);
                    first.resize(first.len().max(f.len()), None);
                    for (kept, other) in first.iter_mut().zip(f.into_iter().take(l)) {
                        *kept = match (*kept, other) {
                            (Some(k), Some(o)) => Some(earlier(k, o)),
                            (k, o) => k.or(o),
                        };
                    }
                }
                (level, first.iter().take(level).flatten().map(|(t, start)| t - start).collect())
            }
        };
        let breakdown = if level > 0 { self.breakdown_value(events) } else { None };
        UserFunnel { level, step_times, breakdown }
    }

    /// The user's level for each range of `ranges` (e.g. the periods of a trend). A
    /// user's level over a union of adjacent ranges is the largest of their levels over
    /// each (a chain belongs to the range of its first step), so a pre-aggregate can keep
    /// one level per user and period and answer any range of whole periods.
    pub fn levels_in(&self, events: &[&AnalyticsEvent], ranges: &[(i64, i64)]) -> Vec<usize> {
        let Some((timeout, tz)) = &self.sessions else {
            let marked = self.compiled.mark(events);
            return ranges.iter().map(|&(from, to)| self.evaluate(&marked, from, to).0).collect();
        };
        let mut levels = vec![0; ranges.len()];
        for s in session::sessions(events, *timeout, tz) {
            let marked = self.compiled.mark(&s.events);
            for (level, &(from, to)) in levels.iter_mut().zip(ranges) {
                *level = (*level).max(self.evaluate(&marked, from, to).0);
            }
        }
        levels
    }

    fn evaluate(&self, marked: &[Marked], from: i64, to: i64) -> (usize, Vec<i64>) {
        let (level, first) = progress_in(&self.compiled, marked, from, to);
        let times = first.iter().take(level).flatten().map(|(t, start)| t - start).collect();
        (level, times)
    }

    fn breakdown_value(&self, events: &[&AnalyticsEvent]) -> Option<String> {
        let path = self.compiled.def.breakdown.as_ref()?;
        let step = &self.compiled.def.steps[0];
        let first =
            events.iter().find(|e| e.timestamp >= self.from && matches(&step.event, &step.filters, e))?;
        path.lookup(&first.properties).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// One user's level over starts in `[from, to)` and, for each level reached, when the
/// first chain reached it and the latest start among those chains (none for unordered
/// funnels). `marked` is the user's marked events in time order. The pre-aggregates
/// (`analytics::materialized`) keep this per user and day and combine days: the earliest
/// arrival wins, then the latest start.
pub(crate) fn progress_in(
    c: &Compiled<'_>,
    marked: &[Marked],
    from: i64,
    to: i64,
) -> (usize, Vec<Option<(i64, i64)>>) {
    // Only events from `from` to the window after `to` can be chosen or come between.
    let lo = marked.partition_point(|m| m.ts < from);
    let hi = marked.partition_point(|m| m.ts <= to.saturating_add(c.window_ms));
    let marked = &marked[lo..hi.max(lo)];
    match c.order {
        FunnelOrder::Unordered => (unordered::level(c, marked, from, to), Vec::new()),
        order => {
            let p = sequence::progress(c, marked, from, to, order == FunnelOrder::Strict);
            (p.level, p.first)
        }
    }
}

/// The times of the events a funnel query reads, `[start, end)`: from `from` to the end
/// of the window after `to`. Any other event changes nothing, so the ad-hoc path fetches
/// only these.
pub fn event_span(def: &FunnelDefinition, query: &FunnelQuery) -> (i64, i64) {
    let window_ms = i64::try_from(def.window.as_secs()).unwrap_or(i64::MAX / 2_000) * 1_000;
    (query.from, query.to.saturating_add(window_ms).saturating_add(1))
}

/// Computes a funnel over `events` (any order, any users; repeated event ids count once).
/// `users`, when given, keeps only those users (a cohort). `tz` is the pipeline's time
/// zone, for the trend's periods.
pub fn run(
    def: &FunnelDefinition,
    query: &FunnelQuery,
    events: &[AnalyticsEvent],
    users: Option<&HashSet<String>>,
    tz: &TimeZone,
    limits: &Limits,
) -> Result<FunnelReport, AnalyticsError> {
    let engine = FunnelEngine::with_sessions(def, query, tz)?;
    check_events(events.len(), limits)?;
    let starts = match query.trend {
        None => Vec::new(),
        Some(interval @ (Interval::Day | Interval::Week)) => {
            period::starts(query.from, query.to, interval, tz, limits)?
        }
        Some(other) => {
            return Err(AnalyticsError::invalid(
                "trend",
                format!("a conversion trend is per day or week, not {other:?}"),
            ));
        }
    };
    // Each period's funnel is the funnel over the part of [from, to) in that period.
    let ranges: Vec<(i64, i64)> = match query.trend {
        Some(interval) => {
            starts.iter().map(|&s| (s.max(query.from), period::next(s, interval, tz).min(query.to))).collect()
        }
        None => Vec::new(),
    };
    let mut tally = FunnelTally::new(engine.steps());
    for user in by_user(events) {
        if users.is_some_and(|u| !u.contains(user.distinct_id)) {
            continue;
        }
        tally.add(&engine.user(&user.events));
        if !ranges.is_empty() {
            let levels = engine.levels_in(&user.events, &ranges);
            for (start, level) in starts.iter().zip(levels) {
                tally.add_to_period(*start, level);
            }
        }
    }
    tally.report(def, &starts, limits)
}

#[cfg(test)]
mod tests;
