//! Each declared funnel's conversion per day, for the sink. There is no funnel
//! pre-aggregate yet, so it is computed by the core funnel engine over the raw events of a
//! bounded recent window (the last [`DAYS`] days, whose points a late conversion can still
//! change), and written as `pulse_funnel`: tags `tenant`, `funnel`; fields `entered`,
//! `converted` (integers) and `conversion` (float, absent when nobody entered); time =
//! the day's start in the pipeline's time zone.

use pulse_core::analytics::funnel::{self, FunnelQuery};
use pulse_core::analytics::period::{self, Interval};
use pulse_core::analytics::{AnalyticsEvent, Limits};
use pulse_core::config::NamedFunnel;
use pulse_store::Store;

use super::line::{FieldValue, Point};

pub const FUNNEL: &str = "pulse_funnel";
/// Days of conversion recomputed each time.
pub const DAYS: i64 = 7;
/// The most raw events one funnel's window may read (more is an error, never a partial
/// answer).
pub const MAX_EVENTS: usize = 2_000_000;

/// Why a funnel's conversion could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum FunnelError {
    #[error("funnel {funnel}: reading events: {source}")]
    Store { funnel: String, source: pulse_store::StoreError },
    #[error("funnel {funnel}: {source}")]
    Engine { funnel: String, source: pulse_core::analytics::AnalyticsError },
}

/// The conversion per day of `funnel` over the last [`DAYS`] days up to `now`.
pub async fn conversion_points(
    store: &Store,
    tenant: &str,
    funnel: &NamedFunnel,
    (tz, session_timeout): (&jiff::tz::TimeZone, pulse_core::duration::DurationSpec),
    now: i64,
) -> Result<Vec<Point>, FunnelError> {
    let def = &funnel.definition;
    let from = period::start(now - (DAYS - 1) * 86_400_000, Interval::Day, tz);
    let query =
        FunnelQuery { from, to: now + 1, trend: Some(Interval::Day), session_timeout: Some(session_timeout) };
    let (start, end) = funnel::event_span(def, &query);
    let names = def.event_names();
    let events: Vec<AnalyticsEvent> = store
        .events_between(names.as_deref(), start, end, MAX_EVENTS)
        .await
        .map_err(|source| FunnelError::Store { funnel: funnel.name.clone(), source })?
        .into_iter()
        .map(AnalyticsEvent::from)
        .collect();
    let limits = Limits { max_events: MAX_EVENTS, ..Limits::default() };
    let report = funnel::run(def, &query, &events, None, tz, &limits)
        .map_err(|source| FunnelError::Engine { funnel: funnel.name.clone(), source })?;
    Ok(report
        .trend
        .iter()
        .map(|p| {
            let mut fields = vec![
                ("entered", FieldValue::Int(p.entered as i64)),
                ("converted", FieldValue::Int(p.converted as i64)),
            ];
            if let Some(c) = p.conversion {
                fields.push(("conversion", FieldValue::Float(c)));
            }
            Point {
                measurement: FUNNEL,
                tags: vec![("tenant", tenant.to_string()), ("funnel", funnel.name.clone())],
                fields,
                time_ms: p.period_start,
            }
        })
        .collect())
}
