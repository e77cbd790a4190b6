//! Trends answered from the rollups the processor maintains, without reading raw events:
//! counts, unique users and numeric stats of one event per hour, day, week or month,
//! when the query has no property filter, breakdown or cohort (the rollups cannot split
//! by those). Week and month sum day buckets; unique users need the interval itself
//! (users of two days are not a sum). The answer equals the raw-event engine's, which the
//! tests check.

use jiff::tz::TimeZone;
use pulse_core::analytics::Limits;
use pulse_core::analytics::period::{self, Interval};
use pulse_core::analytics::trend::{Measure, Series, SeriesLabel, TrendPoint, TrendQuery, TrendReport};
use pulse_core::config::RollupInterval;
use pulse_core::property::PropertyPath;
use pulse_core::rollup::{NumericStat, encode_key};
use pulse_store::Store;
use pulse_store::recount::BucketTotals;

use crate::error::QueryError;
use crate::view::RollupView;

/// What the pipeline pre-aggregates.
pub struct Rollups<'a> {
    pub intervals: &'a [RollupInterval],
    pub numeric: &'a [PropertyPath],
}

/// The rollup interval a trend is summed from, if the rollups can answer it.
fn source_interval(q: &TrendQuery, has_cohort: bool, rollups: &Rollups<'_>) -> Option<RollupInterval> {
    if has_cohort || q.breakdown.is_some() || !q.event.filters.is_empty() {
        return None;
    }
    let kept = |p: &PropertyPath| rollups.numeric.iter().any(|n| n.as_str() == p.as_str());
    let additive = match &q.measure {
        Measure::Count => true,
        Measure::UniqueUsers => false,
        Measure::Sum { property }
        | Measure::Average { property }
        | Measure::Min { property }
        | Measure::Max { property } => {
            if !kept(property) {
                return None;
            }
            true
        }
        Measure::Dau
        | Measure::Wau
        | Measure::Mau
        | Measure::Percentile { .. }
        | Measure::Sessions
        | Measure::SessionDuration { .. }
        | Measure::EventsPerSession => return None,
    };
    let wanted = match q.interval {
        Interval::Hour => RollupInterval::Hour,
        Interval::Day => RollupInterval::Day,
        // Weeks and months are sums of days; distinct users are not.
        Interval::Week | Interval::Month if additive => RollupInterval::Day,
        Interval::Week | Interval::Month => return None,
    };
    rollups.intervals.contains(&wanted).then_some(wanted)
}

/// The trend from rollups, or `None` when the rollups cannot answer it.
pub async fn trend(
    store: &Store,
    view: &RollupView,
    q: &TrendQuery,
    has_cohort: bool,
    rollups: &Rollups<'_>,
    tz: &TimeZone,
    limits: &Limits,
) -> Result<Option<TrendReport>, QueryError> {
    let Some(source) = source_interval(q, has_cohort, rollups) else {
        return Ok(None);
    };
    if q.from >= q.to {
        return Err(QueryError::invalid(
            "to",
            format!("the range [from, to) is empty: to ({}) must be after from ({})", q.to, q.from),
        ));
    }
    let starts = period::starts(q.from, q.to, q.interval, tz, limits)?;
    let (Some(&first), Some(&last)) = (starts.first(), starts.last()) else {
        return Ok(Some(TrendReport { series: Vec::new() }));
    };
    let end = period::next(last, q.interval, tz);
    let buckets = match view.is_loaded() {
        true => view.series(source, &q.event.event, first, end),
        false => store.rollup_series(source, &q.event.event, first, end).await?,
    };
    let points = starts
        .iter()
        .map(|&start| {
            let next = period::next(start, q.interval, tz);
            let mut total = BucketTotals::default();
            for (_, b) in buckets.range(start..next) {
                total.merge(b);
            }
            TrendPoint { start, value: value_of(&q.measure, &total) }
        })
        .collect();
    Ok(Some(TrendReport { series: vec![Series { label: SeriesLabel::All, points }] }))
}

/// A measure's value from a period's totals, as the raw-event engine defines it.
fn value_of(measure: &Measure, t: &BucketTotals) -> Option<f64> {
    let stat = |p: &PropertyPath| -> Option<&NumericStat> { t.numeric.get(&encode_key(p.as_str())) };
    match measure {
        Measure::Count => Some(t.events as f64),
        Measure::UniqueUsers => Some(t.users.unwrap_or(0) as f64),
        Measure::Sum { property } => Some(stat(property).map_or(0.0, |s| s.sum)),
        Measure::Average { property } => {
            stat(property).filter(|s| s.count > 0).map(|s| s.sum / s.count as f64)
        }
        Measure::Min { property } => stat(property).filter(|s| s.count > 0).map(|s| s.min),
        Measure::Max { property } => stat(property).filter(|s| s.count > 0).map(|s| s.max),
        Measure::Dau
        | Measure::Wau
        | Measure::Mau
        | Measure::Percentile { .. }
        | Measure::Sessions
        | Measure::SessionDuration { .. }
        | Measure::EventsPerSession => None,
    }
}
