//! Trends: a measure of the matching events per interval, optionally broken down by a
//! property (the top N values plus "other").

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::tz::TimeZone;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{AnalyticsError, Limits, check_events, check_range};
use super::event::{AnalyticsEvent, EventMatcher, by_user};
use super::period::{self, Interval};
use super::session;
use super::stats::percentile;
use crate::duration::DurationSpec;
use crate::property::PropertyPath;
use crate::rollup::saturating_sum;
use crate::validation::Errors;

/// What is measured in each interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Measure {
    /// Matching events.
    Count,
    /// Distinct users with a matching event in the interval.
    UniqueUsers,
    /// Daily active users: distinct users with a matching event that day (interval day).
    Dau,
    /// Weekly active users: distinct users in the 7 days ending that day (interval day).
    Wau,
    /// Monthly active users: distinct users in the 30 days ending that day (interval day).
    Mau,
    /// The sum of a numeric property (events where it is a number; 0 when none).
    Sum { property: PropertyPath },
    /// The mean of a numeric property (null when no event has it).
    Average { property: PropertyPath },
    /// The smallest value of a numeric property.
    Min { property: PropertyPath },
    /// The largest value of a numeric property.
    Max { property: PropertyPath },
    /// The nearest-rank percentile `p` (0 to 100) of a numeric property.
    Percentile { property: PropertyPath, p: f64 },
    /// Sessions with a matching event, in the interval of their start.
    Sessions,
    /// Those sessions' duration in seconds (first to last event, any event): the mean, or
    /// with `p` the nearest-rank percentile (0 to 100); null without a session.
    SessionDuration {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        p: Option<f64>,
    },
    /// Matching events per such session (mean); null without a session.
    EventsPerSession,
}

/// Splits a trend by a property of the events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrendBreakdown {
    /// The property.
    pub property: PropertyPath,
    /// How many values get their own series (by matching events in the range); the rest
    /// form one series "other".
    pub top: usize,
}

/// A trend query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrendQuery {
    /// Which events.
    pub event: EventMatcher,
    /// What to compute.
    pub measure: Measure,
    /// hour, day, week or month (DAU, WAU and MAU need day).
    pub interval: Interval,
    /// From this time (epoch ms) ...
    pub from: i64,
    /// ... to this one (exclusive); intervals overlapping the range are reported whole.
    pub to: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<TrendBreakdown>,
    /// The inactivity that ends a session, for the session measures ("30m"; at most 1d;
    /// default: the pipeline's `query.sessionTimeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_timeout: Option<DurationSpec>,
}

/// Which events a series covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "value", rename_all = "camelCase")]
pub enum SeriesLabel {
    /// Every matching event (no breakdown).
    All,
    /// Events with this breakdown value (null: property absent).
    Value(Option<String>),
    /// Events with any value outside the top N.
    Other,
}

/// A trend's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendReport {
    pub series: Vec<Series>,
}

/// One series: a value per interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub label: SeriesLabel,
    pub points: Vec<TrendPoint>,
}

/// One interval's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrendPoint {
    /// The interval's start (epoch ms).
    pub start: i64,
    /// Null when the measure has no value (e.g. an average of no events).
    pub value: Option<f64>,
}

impl Measure {
    /// Whether it measures sessions (built from every event of the users, not only the
    /// matching ones).
    pub fn of_sessions(&self) -> bool {
        matches!(self, Measure::Sessions | Measure::SessionDuration { .. } | Measure::EventsPerSession)
    }

    fn active_days(&self) -> Option<i64> {
        match self {
            Measure::Dau => Some(1),
            Measure::Wau => Some(7),
            Measure::Mau => Some(30),
            _ => None,
        }
    }
}

impl TrendQuery {
    pub fn validate(&self, limits: &Limits) -> Result<(), AnalyticsError> {
        let mut errors = Errors::default();
        self.event.validate_into("event", &mut errors);
        if self.measure.active_days().is_some() && self.interval != Interval::Day {
            errors.add("interval", "DAU, WAU and MAU are daily series: use interval day");
        }
        if let Measure::Percentile { p, .. } = self.measure
            && !(0.0..=100.0).contains(&p)
        {
            errors.add("measure.p", format!("a percentile is 0 to 100, not {p}"));
        }
        if let Some(b) = &self.breakdown
            && !(1..=limits.max_breakdown_values).contains(&b.top)
        {
            errors.add("breakdown.top", format!("1 to {} values", limits.max_breakdown_values));
        }
        if let Measure::SessionDuration { p: Some(p) } = self.measure
            && !(0.0..=100.0).contains(&p)
        {
            errors.add("measure.p", format!("a percentile is 0 to 100, not {p}"));
        }
        if self.measure.of_sessions() && self.breakdown.is_some() {
            errors
                .add("breakdown", "session measures have no breakdown (a session's events may differ in it)");
        }
        if let Some(t) = self.session_timeout
            && t.as_secs() > session::MAX_TIMEOUT_SECS
        {
            errors.add("sessionTimeout", format!("at most 1d, not {t}"));
        }
        errors.into_result().map_err(AnalyticsError::Invalid)?;
        check_range(self.from, self.to)
    }
}

/// The times of the events a trend reads, `[start, end)`: the whole intervals that overlap
/// the range, and for WAU and MAU the 6 or 29 local days before the first.
pub fn event_span(query: &TrendQuery, tz: &TimeZone, limits: &Limits) -> Result<(i64, i64), AnalyticsError> {
    query.validate(limits)?;
    let starts = period::starts(query.from, query.to, query.interval, tz, limits)?;
    let mut start = starts.first().copied().unwrap_or(query.from);
    let end = starts.last().map_or(query.to, |&s| period::next(s, query.interval, tz));
    for _ in 1..query.measure.active_days().unwrap_or(1) {
        start = period::start(start - 1, Interval::Day, tz);
    }
    Ok((start, end))
}

/// Computes a trend over `events` (any order; repeated ids count once). Events before
/// `from` count only for WAU and MAU (the days before the first day).
pub fn run(
    query: &TrendQuery,
    events: &[AnalyticsEvent],
    users: Option<&HashSet<String>>,
    tz: &TimeZone,
    limits: &Limits,
) -> Result<TrendReport, AnalyticsError> {
    if query.measure.of_sessions() {
        return session_trend(query, events, users, tz, limits);
    }
    let (starts, series) = series_events(query, events, users, tz, limits)?;
    let series = series
        .into_iter()
        .map(|(label, events)| Series { label, points: points(query, &events, &starts, tz) })
        .collect();
    Ok(TrendReport { series })
}

/// One session a session measure counts: its user, duration and matching events.
struct CountedSession<'e> {
    user: &'e str,
    duration_ms: i64,
    matching: usize,
}

/// Per reported interval, the sessions that start in it and have a matching event.
fn counted_sessions<'e>(
    query: &TrendQuery,
    events: &'e [AnalyticsEvent],
    users: Option<&HashSet<String>>,
    tz: &TimeZone,
    limits: &Limits,
) -> Result<(Vec<i64>, Vec<Vec<CountedSession<'e>>>), AnalyticsError> {
    query.validate(limits)?;
    check_events(events.len(), limits)?;
    let starts = period::starts(query.from, query.to, query.interval, tz, limits)?;
    let index: HashMap<i64, usize> = starts.iter().enumerate().map(|(i, &s)| (s, i)).collect();
    let timeout = query.session_timeout.unwrap_or(session::DEFAULT_TIMEOUT);
    let mut per: Vec<Vec<CountedSession<'e>>> = (0..starts.len()).map(|_| Vec::new()).collect();
    for user in by_user(events) {
        if users.is_some_and(|u| !u.contains(user.distinct_id)) {
            continue;
        }
        for s in session::sessions(&user.events, timeout, tz) {
            let matching = s.events.iter().filter(|e| query.event.matches(e)).count();
            if matching == 0 {
                continue;
            }
            if let Some(&i) = index.get(&period::start(s.start(), query.interval, tz)) {
                per[i].push(CountedSession {
                    user: user.distinct_id,
                    duration_ms: s.duration_ms(),
                    matching,
                });
            }
        }
    }
    Ok((starts, per))
}

/// A trend of a session measure: one series (session measures have no breakdown).
fn session_trend(
    query: &TrendQuery,
    events: &[AnalyticsEvent],
    users: Option<&HashSet<String>>,
    tz: &TimeZone,
    limits: &Limits,
) -> Result<TrendReport, AnalyticsError> {
    let (starts, per) = counted_sessions(query, events, users, tz, limits)?;
    let points = starts
        .into_iter()
        .zip(per)
        .map(|(start, sessions)| {
            let n = sessions.len();
            let value = match &query.measure {
                Measure::Sessions => Some(n as f64),
                Measure::SessionDuration { p } => {
                    let mut secs: Vec<f64> = sessions.iter().map(|s| s.duration_ms as f64 / 1000.0).collect();
                    secs.sort_by(f64::total_cmp);
                    match p {
                        Some(p) => percentile(&secs, *p),
                        None => (n > 0).then(|| secs.iter().sum::<f64>() / n as f64),
                    }
                }
                _ => (n > 0).then(|| sessions.iter().map(|s| s.matching).sum::<usize>() as f64 / n as f64),
            };
            TrendPoint { start, value }
        })
        .collect();
    Ok(TrendReport { series: vec![Series { label: SeriesLabel::All, points }] })
}

/// The users counted in one interval of one series: with a matching event in it (for DAU,
/// WAU and MAU, in the 1, 7 or 30 days ending that day), sorted. `period_start` is any
/// time in the interval; a series the report does not have has no users.
pub fn users_in(
    query: &TrendQuery,
    events: &[AnalyticsEvent],
    users: Option<&HashSet<String>>,
    tz: &TimeZone,
    limits: &Limits,
    (period_start, label): (i64, &SeriesLabel),
) -> Result<Vec<String>, AnalyticsError> {
    let interval = period::start(period_start, query.interval, tz);
    if query.measure.of_sessions() {
        let (starts, per) = counted_sessions(query, events, users, tz, limits)?;
        let at = starts.iter().position(|&s| s == interval);
        let mut out: Vec<String> = match (at, label) {
            (Some(i), SeriesLabel::All) => per[i].iter().map(|s| s.user.to_string()).collect(),
            _ => Vec::new(),
        };
        out.sort_unstable();
        out.dedup();
        return Ok(out);
    }
    let (_, series) = series_events(query, events, users, tz, limits)?;
    let counted = |ts: i64| match query.measure.active_days() {
        Some(days) => {
            let day = period::day_number(interval, tz);
            (day - days + 1..=day).contains(&period::day_number(ts, tz))
        }
        None => period::start(ts, query.interval, tz) == interval,
    };
    let mut out: Vec<String> = series
        .into_iter()
        .filter(|(l, _)| l == label)
        .flat_map(|(_, events)| {
            events.into_iter().filter(|e| counted(e.timestamp)).map(|e| e.distinct_id.clone())
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Each series' label and events.
type SeriesEvents<'e> = Vec<(SeriesLabel, Vec<&'e AnalyticsEvent>)>;

/// The reported intervals' starts, and each series' events (each id once, the cohort's
/// users only).
fn series_events<'e>(
    query: &TrendQuery,
    events: &'e [AnalyticsEvent],
    users: Option<&HashSet<String>>,
    tz: &TimeZone,
    limits: &Limits,
) -> Result<(Vec<i64>, SeriesEvents<'e>), AnalyticsError> {
    query.validate(limits)?;
    check_events(events.len(), limits)?;
    let starts = period::starts(query.from, query.to, query.interval, tz, limits)?;
    let range_start = starts.first().copied().unwrap_or(query.from);
    let range_end = starts.last().map_or(query.to, |&s| period::next(s, query.interval, tz));
    // WAU and MAU also read the days before the first: by local day, whatever DST does.
    let first_day = query.measure.active_days().map(|d| period::day_number(range_start, tz) - (d - 1));
    let mut seen = HashSet::new();
    let selected: Vec<&AnalyticsEvent> = events
        .iter()
        .filter(|e| e.timestamp < range_end)
        .filter(|e| match first_day {
            Some(day) => period::day_number(e.timestamp, tz) >= day,
            None => e.timestamp >= range_start,
        })
        .filter(|e| users.is_none_or(|u| u.contains(&e.distinct_id)))
        .filter(|e| query.event.matches(e))
        .filter(|e| seen.insert((e.distinct_id.as_str(), e.event_id.as_str())))
        .collect();
    let series = match &query.breakdown {
        None => vec![(SeriesLabel::All, selected)],
        Some(b) => split(selected, b, range_start),
    };
    Ok((starts, series))
}

fn breakdown_value(path: &PropertyPath, e: &AnalyticsEvent) -> Option<String> {
    path.lookup(&e.properties).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// The top values by events in the range (ties by value), then "other" if any is left.
fn split<'a>(
    events: Vec<&'a AnalyticsEvent>,
    b: &TrendBreakdown,
    range_start: i64,
) -> Vec<(SeriesLabel, Vec<&'a AnalyticsEvent>)> {
    let mut by_value: BTreeMap<Option<String>, Vec<&AnalyticsEvent>> = BTreeMap::new();
    for e in events {
        by_value.entry(breakdown_value(&b.property, e)).or_default().push(e);
    }
    // (events in the reported intervals, value, events): WAU/MAU's earlier days do not rank.
    let mut ranked: Vec<(usize, Option<String>, Vec<&AnalyticsEvent>)> = by_value
        .into_iter()
        .map(|(v, e)| (e.iter().filter(|e| e.timestamp >= range_start).count(), v, e))
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let rest: Vec<&AnalyticsEvent> =
        ranked.iter().skip(b.top).flat_map(|(_, _, e)| e.iter().copied()).collect();
    let mut out: Vec<(SeriesLabel, Vec<&AnalyticsEvent>)> =
        ranked.into_iter().take(b.top).map(|(_, v, e)| (SeriesLabel::Value(v), e)).collect();
    if !rest.is_empty() {
        out.push((SeriesLabel::Other, rest));
    }
    out
}

fn points(query: &TrendQuery, events: &[&AnalyticsEvent], starts: &[i64], tz: &TimeZone) -> Vec<TrendPoint> {
    let index: HashMap<i64, usize> = starts.iter().enumerate().map(|(i, &s)| (s, i)).collect();
    let bucket = |ts: i64| index.get(&period::start(ts, query.interval, tz)).copied();
    let values: Vec<Option<f64>> = if let Some(days) = query.measure.active_days() {
        // A user counts on day d when active on any of the days d - days + 1 ..= d.
        let day_of: HashMap<i64, usize> =
            starts.iter().enumerate().map(|(i, &s)| (period::day_number(s, tz), i)).collect();
        let mut active: HashSet<(&str, usize)> = HashSet::new();
        for e in events {
            let day = period::day_number(e.timestamp, tz);
            for d in day..day + days {
                if let Some(&i) = day_of.get(&d) {
                    active.insert((e.distinct_id.as_str(), i));
                }
            }
        }
        let mut counts = vec![0u64; starts.len()];
        active.iter().for_each(|&(_, i)| counts[i] += 1);
        counts.into_iter().map(|c| Some(c as f64)).collect()
    } else {
        let mut per: Vec<Vec<&AnalyticsEvent>> = vec![Vec::new(); starts.len()];
        for e in events {
            if let Some(i) = bucket(e.timestamp) {
                per[i].push(e);
            }
        }
        per.iter().map(|events| measure(&query.measure, events)).collect()
    };
    starts.iter().zip(values).map(|(&start, value)| TrendPoint { start, value }).collect()
}

fn measure(m: &Measure, events: &[&AnalyticsEvent]) -> Option<f64> {
    let numbers = |p: &PropertyPath| -> Vec<f64> {
        let mut v: Vec<f64> = events
            .iter()
            .filter_map(|e| p.lookup(&e.properties).and_then(Value::as_f64))
            .filter(|n| n.is_finite())
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    match m {
        Measure::Count => Some(events.len() as f64),
        Measure::UniqueUsers | Measure::Dau | Measure::Wau | Measure::Mau => {
            Some(events.iter().map(|e| e.distinct_id.as_str()).collect::<HashSet<_>>().len() as f64)
        }
        // Saturating, as the rollups sum (see rollup::saturating_sum), so both agree.
        Measure::Sum { property } => Some(numbers(property).iter().fold(0.0, |a, &b| saturating_sum(a, b))),
        Measure::Average { property } => {
            let v = numbers(property);
            (!v.is_empty()).then(|| v.iter().fold(0.0, |a, &b| saturating_sum(a, b)) / v.len() as f64)
        }
        Measure::Min { property } => numbers(property).first().copied(),
        Measure::Max { property } => numbers(property).last().copied(),
        Measure::Percentile { property, p } => percentile(&numbers(property), *p),
        // Computed from sessions (`session_trend`), never from events alone.
        Measure::Sessions | Measure::SessionDuration { .. } | Measure::EventsPerSession => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DAY: i64 = 86_400_000;

    fn ev(i: usize, user: &str, ts: i64, props: Value) -> AnalyticsEvent {
        AnalyticsEvent {
            event_id: format!("e{i}"),
            event: "buy".into(),
            distinct_id: user.into(),
            timestamp: ts,
            properties: props,
        }
    }

    fn query(measure: Measure, interval: Interval, breakdown: Option<TrendBreakdown>) -> TrendQuery {
        TrendQuery {
            event: EventMatcher::named("buy"),
            measure,
            interval,
            from: 0,
            to: 2 * DAY,
            breakdown,
            session_timeout: None,
        }
    }

    #[test]
    fn top_values_then_other() {
        let events = vec![
            ev(0, "a", 10, json!({ "plan": "pro", "amount": 5 })),
            ev(1, "b", 20, json!({ "plan": "pro", "amount": 7 })),
            ev(2, "a", DAY + 1, json!({ "plan": "free", "amount": 1 })),
            ev(3, "c", DAY + 2, json!({ "amount": 2 })),
        ];
        let b = TrendBreakdown { property: "plan".parse().expect("path"), top: 1 };
        let sum = Measure::Sum { property: "amount".parse().expect("path") };
        let r = run(&query(sum, Interval::Day, Some(b)), &events, None, &TimeZone::UTC, &Limits::default())
            .expect("runs");
        let got: Vec<(SeriesLabel, Vec<Option<f64>>)> =
            r.series.iter().map(|s| (s.label.clone(), s.points.iter().map(|p| p.value).collect())).collect();
        assert_eq!(
            got,
            [
                (SeriesLabel::Value(Some("pro".into())), vec![Some(12.0), Some(0.0)]),
                (SeriesLabel::Other, vec![Some(0.0), Some(3.0)]),
            ]
        );
        let r = run(
            &query(Measure::UniqueUsers, Interval::Month, None),
            &events,
            None,
            &TimeZone::UTC,
            &Limits::default(),
        )
        .expect("runs");
        assert_eq!(r.series[0].points.len(), 1, "both days are in January 1970");
        assert_eq!(r.series[0].points[0].value, Some(3.0));
    }

    #[test]
    fn sums_saturate_as_the_rollups_do() {
        let events =
            vec![ev(0, "a", 10, json!({ "amount": 1.5e308 })), ev(1, "b", 20, json!({ "amount": 1.5e308 }))];
        let sum = Measure::Sum { property: "amount".parse().expect("path") };
        let r = run(&query(sum, Interval::Day, None), &events, None, &TimeZone::UTC, &Limits::default())
            .expect("runs");
        assert_eq!(r.series[0].points[0].value, Some(f64::MAX), "not infinity");
    }

    #[test]
    fn invalid_trends_are_refused_with_their_field() {
        let fields = |q: &TrendQuery| match run(q, &[], None, &TimeZone::UTC, &Limits::default()) {
            Err(AnalyticsError::Invalid(f)) => f.into_iter().map(|f| f.field).collect::<Vec<_>>(),
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(fields(&query(Measure::Wau, Interval::Hour, None)), ["interval"]);
        let p = Measure::Percentile { property: "amount".parse().expect("path"), p: 101.0 };
        assert_eq!(fields(&query(p, Interval::Day, None)), ["measure.p"]);
        let b = TrendBreakdown { property: "plan".parse().expect("path"), top: 0 };
        assert_eq!(fields(&query(Measure::Count, Interval::Day, Some(b))), ["breakdown.top"]);
    }
}
