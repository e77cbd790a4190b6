//! The people behind a number: the users a funnel step, a retention cell, a lifecycle or
//! stickiness bucket or a trend point counts, computed by the engine that counts them, so
//! their number is the report's.

use std::collections::HashSet;

use jiff::tz::TimeZone;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{AnalyticsError, Limits, check_events, check_range};
use super::event::{AnalyticsEvent, by_user};
use super::funnel::{FunnelEngine, FunnelQuery};
use super::lifecycle::{self, LifecycleQuery, LifecycleStatus};
use super::period;
use super::retention::{self, RetentionQuery};
use super::stickiness::{self, StickinessQuery};
use super::trend::{self, SeriesLabel, TrendQuery};
use crate::funnel::FunnelDefinition;

/// An ad-hoc funnel over `[from, to)`, as `POST /v1/funnels` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunnelSpec {
    pub definition: FunnelDefinition,
    pub from: i64,
    pub to: i64,
    /// For a same-session funnel, as `POST /v1/funnels` takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_timeout: Option<crate::duration::DurationSpec>,
}

impl FunnelSpec {
    fn engine<'d>(&'d self, tz: &TimeZone) -> Result<FunnelEngine<'d>, AnalyticsError> {
        let query =
            FunnelQuery { from: self.from, to: self.to, trend: None, session_timeout: self.session_timeout };
        FunnelEngine::with_sessions(&self.definition, &query, tz)
    }
}

/// Which users of a funnel step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StepOutcome {
    /// Users who reached the step (the step's `users`).
    Reached,
    /// Users who reached the step before and not this one (step 2 or later).
    DroppedOff,
}

/// A breakdown value; `null` for users without the property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BreakdownValue {
    pub value: Option<String>,
}

/// The number whose users are listed: a report's query, as its endpoint takes it, and the
/// cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum PeopleOf {
    /// The users of step `step` (1 is the first) of a funnel, of one breakdown value when
    /// given.
    #[serde(rename_all = "camelCase")]
    Funnel {
        query: FunnelSpec,
        step: usize,
        outcome: StepOutcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        breakdown: Option<BreakdownValue>,
    },
    /// The users of the retention cohort whose period holds `cohortStart`: all of them, or
    /// those retained at `offset`.
    #[serde(rename_all = "camelCase")]
    Retention {
        query: RetentionQuery,
        cohort_start: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u32>,
    },
    /// The users of one lifecycle status in the period holding `periodStart`.
    #[serde(rename_all = "camelCase")]
    Lifecycle { query: LifecycleQuery, period_start: i64, status: LifecycleStatus },
    /// The users active on exactly `days` days of the period holding `periodStart`.
    #[serde(rename_all = "camelCase")]
    Stickiness { query: StickinessQuery, period_start: i64, days: u32 },
    /// The users counted in the interval holding `periodStart` of one series (default: the
    /// only one, without breakdown).
    #[serde(rename_all = "camelCase")]
    Trend {
        query: TrendQuery,
        period_start: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        series: Option<SeriesLabel>,
    },
}

impl PeopleOf {
    /// Checks the query and the cell, with field paths under `query`: what [`users`]
    /// refuses, without events.
    pub fn validate(&self, tz: &TimeZone, limits: &Limits) -> Result<(), AnalyticsError> {
        let under = |e: AnalyticsError| e.under("query");
        match self {
            PeopleOf::Funnel { query, step, outcome, .. } => {
                query
                    .definition
                    .validate()
                    .map_err(|e| AnalyticsError::Invalid(e).under("query.definition"))?;
                check_range(query.from, query.to).map_err(under)?;
                let engine = query.engine(tz)?;
                let least = if *outcome == StepOutcome::DroppedOff { 2 } else { 1 };
                if !(least..=engine.steps()).contains(step) {
                    return Err(AnalyticsError::not_in_report(
                        "step",
                        format!("{least} to {} for {outcome:?}, not {step}", engine.steps()),
                    ));
                }
                Ok(())
            }
            PeopleOf::Retention { query, offset, .. } => {
                query.validate(limits).map_err(under)?;
                match offset {
                    Some(k) if *k >= query.periods => Err(AnalyticsError::not_in_report(
                        "offset",
                        format!("0 to {} (the query's periods - 1), not {k}", query.periods - 1),
                    )),
                    _ => Ok(()),
                }
            }
            PeopleOf::Lifecycle { query, .. } => query.validate(tz, limits).map_err(under),
            PeopleOf::Stickiness { query, days, .. } => {
                query.validate(tz, limits).map_err(under)?;
                if *days == 0 || *days > 31 {
                    return Err(AnalyticsError::invalid("days", format!("1 to 31, not {days}")));
                }
                Ok(())
            }
            PeopleOf::Trend { query, .. } => {
                query.validate(limits).map_err(under)?;
                check_range(query.from, query.to).map_err(under)
            }
        }
    }
}

/// The users behind the number `of` names, over `events` (any order; repeated ids count
/// once), among `users` when given: sorted, each once.
pub fn users(
    of: &PeopleOf,
    events: &[AnalyticsEvent],
    users: Option<&HashSet<String>>,
    tz: &TimeZone,
    limits: &Limits,
) -> Result<Vec<String>, AnalyticsError> {
    of.validate(tz, limits)?;
    check_events(events.len(), limits)?;
    if let PeopleOf::Trend { query, period_start, series } = of {
        let label = series.clone().unwrap_or(SeriesLabel::All);
        return trend::users_in(query, events, users, tz, limits, (*period_start, &label));
    }
    let funnel = match of {
        PeopleOf::Funnel { query, .. } => Some(query.engine(tz)?),
        _ => None,
    };
    let counted = |events: &[&AnalyticsEvent]| -> bool {
        match of {
            PeopleOf::Funnel { step, outcome, breakdown, .. } => {
                let Some(engine) = &funnel else { return false };
                let user = engine.user(events);
                let at_step = match outcome {
                    StepOutcome::Reached => user.level >= *step,
                    StepOutcome::DroppedOff => user.level == step - 1,
                };
                at_step && breakdown.as_ref().is_none_or(|b| b.value == user.breakdown)
            }
            PeopleOf::Retention { query, cohort_start, offset } => {
                let cohort = period::period_number(*cohort_start, query.period, tz);
                retention::user_cohorts(query, events, tz).into_iter().any(|(c, returns)| {
                    c == cohort && offset.is_none_or(|k| returns.contains(&(c + i64::from(k))))
                })
            }
            PeopleOf::Lifecycle { query, period_start, status } => {
                let p = period::period_number(*period_start, query.period, tz);
                lifecycle::status(&lifecycle::active_periods(query, events, tz), p) == Some(*status)
            }
            PeopleOf::Stickiness { query, period_start, days } => {
                let p = period::period_number(*period_start, query.period, tz);
                stickiness::days_per_period(query, events, tz).contains(&(p, *days as usize))
            }
            PeopleOf::Trend { .. } => false,
        }
    };
    Ok(by_user(events)
        .into_iter()
        .filter(|u| users.is_none_or(|set| set.contains(u.distinct_id)))
        .filter(|u| counted(&u.events))
        .map(|u| u.distinct_id.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::EventMatcher;
    use crate::analytics::funnel;
    use crate::analytics::period::Interval;
    use serde_json::json;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    /// 300 users over 10 days doing a, b and c, with a plan.
    fn events() -> Vec<AnalyticsEvent> {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        (0..3000)
            .map(|i| AnalyticsEvent {
                event_id: format!("e{i}"),
                event: ["a", "b", "c"][next(3) as usize].to_string(),
                distinct_id: format!("u{}", next(300)),
                timestamp: (next(10 * DAY as u64)) as i64,
                properties: json!({ "plan": (["free", "pro"][next(2) as usize]) }),
            })
            .collect()
    }

    fn count(of: &PeopleOf, events: &[AnalyticsEvent]) -> u64 {
        users(of, events, None, &TimeZone::UTC, &Limits::default()).expect("users").len() as u64
    }

    #[test]
    fn the_people_of_a_number_are_as_many_as_it_says() {
        let (events, tz, limits) = (events(), TimeZone::UTC, Limits::default());
        let definition: FunnelDefinition = serde_json::from_value(
            json!({ "steps": [{ "event": "a" }, { "event": "b" }, { "event": "c" }], "window": "1d", "breakdown": "plan" }),
        )
        .expect("definition");
        let spec =
            FunnelSpec { definition: definition.clone(), from: DAY, to: 8 * DAY, session_timeout: None };
        let query = FunnelQuery { from: DAY, to: 8 * DAY, trend: None, session_timeout: None };
        let report = funnel::run(&definition, &query, &events, None, &tz, &limits).expect("funnel");
        for step in 1..=3 {
            let reached = PeopleOf::Funnel {
                query: spec.clone(),
                step,
                outcome: StepOutcome::Reached,
                breakdown: None,
            };
            assert_eq!(count(&reached, &events), report.steps[step - 1].users, "step {step}");
            if step > 1 {
                let dropped = PeopleOf::Funnel {
                    query: spec.clone(),
                    step,
                    outcome: StepOutcome::DroppedOff,
                    breakdown: None,
                };
                let before = report.steps[step - 2].users - report.steps[step - 1].users;
                assert_eq!(count(&dropped, &events), before, "dropped off at step {step}");
            }
            for row in &report.breakdown {
                let value = Some(BreakdownValue { value: row.value.clone() });
                let of = PeopleOf::Funnel {
                    query: spec.clone(),
                    step,
                    outcome: StepOutcome::Reached,
                    breakdown: value,
                };
                assert_eq!(count(&of, &events), row.steps[step - 1], "step {step} of {:?}", row.value);
            }
        }

        let query: RetentionQuery = serde_json::from_value(json!({
            "start": { "event": "a" }, "return": { "event": "b" }, "period": "day", "periods": 4, "from": DAY, "to": 6 * DAY
        }))
        .expect("retention");
        let table = retention::run(&query, &events, None, &tz, &limits).expect("retention");
        for c in &table.cohorts {
            let all = PeopleOf::Retention {
                query: query.clone(),
                cohort_start: c.period_start + HOUR,
                offset: None,
            };
            assert_eq!(count(&all, &events), c.users);
            for (k, &n) in c.retained.iter().enumerate() {
                let cell = PeopleOf::Retention {
                    query: query.clone(),
                    cohort_start: c.period_start,
                    offset: Some(k as u32),
                };
                assert_eq!(count(&cell, &events), n, "cohort {} offset {k}", c.period_start);
            }
        }

        let query =
            LifecycleQuery { event: EventMatcher::named("c"), period: Interval::Day, from: DAY, to: 9 * DAY };
        let life = lifecycle::run(&query, &events, None, &tz, &limits).expect("lifecycle");
        assert!(life.periods.iter().any(|p| p.resurrecting > 0 && p.dormant < 0));
        for p in &life.periods {
            for (status, n) in [
                (LifecycleStatus::New, p.new),
                (LifecycleStatus::Returning, p.returning),
                (LifecycleStatus::Resurrecting, p.resurrecting),
                (LifecycleStatus::Dormant, p.dormant.unsigned_abs()),
            ] {
                let of = PeopleOf::Lifecycle { query: query.clone(), period_start: p.period_start, status };
                assert_eq!(count(&of, &events), n, "{status:?} on {}", p.period_start);
            }
        }

        let query = StickinessQuery {
            event: EventMatcher::named("b"),
            period: Interval::Week,
            from: 0,
            to: 10 * DAY,
        };
        let sticky = stickiness::run(&query, &events, None, &tz, &limits).expect("stickiness");
        for p in &sticky.periods {
            for (k, &n) in p.active_days.iter().enumerate() {
                let days = k as u32 + 1;
                let of = PeopleOf::Stickiness { query: query.clone(), period_start: p.period_start, days };
                assert_eq!(count(&of, &events), n, "{days} days in {}", p.period_start);
            }
        }

        for measure in ["uniqueUsers", "wau"] {
            let query: TrendQuery = serde_json::from_value(json!({
                "event": { "event": "a" }, "measure": { "kind": measure }, "interval": "day", "from": 2 * DAY,
                "to": 9 * DAY, "breakdown": { "property": "plan", "top": 1 }
            }))
            .expect("trend");
            let report = trend::run(&query, &events, None, &tz, &limits).expect("trend");
            assert_eq!(report.series.len(), 2, "pro or free, and other");
            for series in &report.series {
                for point in &series.points {
                    let label = Some(series.label.clone());
                    let of =
                        PeopleOf::Trend { query: query.clone(), period_start: point.start, series: label };
                    let n = count(&of, &events) as f64;
                    assert_eq!(Some(n), point.value, "{measure} {:?} {}", series.label, point.start);
                }
            }
        }
    }

    #[test]
    fn the_cell_must_be_one_the_report_has() {
        let definition = json!({ "steps": [{ "event": "a" }, { "event": "b" }], "window": "1h" });
        let spec = FunnelSpec {
            definition: serde_json::from_value(definition).expect("definition"),
            from: 0,
            to: DAY,
            session_timeout: None,
        };
        let check = |of: PeopleOf| match of.validate(&TimeZone::UTC, &Limits::default()) {
            Err(AnalyticsError::Invalid(fields)) => fields.into_iter().map(|f| f.field).collect::<Vec<_>>(),
            Err(AnalyticsError::NotInReport { field, .. }) => vec![format!("{field} (not in report)")],
            other => panic!("expected invalid, got {other:?}"),
        };
        let of = |step, outcome| PeopleOf::Funnel { query: spec.clone(), step, outcome, breakdown: None };
        assert_eq!(check(of(3, StepOutcome::Reached)), ["step (not in report)"]);
        assert_eq!(check(of(1, StepOutcome::DroppedOff)), ["step (not in report)"]);
        assert!(of(2, StepOutcome::DroppedOff).validate(&TimeZone::UTC, &Limits::default()).is_ok());
        let mut bad = spec.clone();
        bad.to = -1;
        let of = PeopleOf::Funnel { query: bad, step: 1, outcome: StepOutcome::Reached, breakdown: None };
        assert_eq!(check(of), ["query.to"]);
    }
}
