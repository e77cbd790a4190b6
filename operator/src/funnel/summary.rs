//! A Funnel's live conversion summary over the last 7 days, from the tenant's raw events
//! through `pulse_core`'s funnel engine (the one the query API runs; the operator adds no
//! analytics of its own). Computed at most once a minute per funnel and written only when
//! the numbers change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use pulse_core::analytics::funnel::{FunnelQuery, run};
use pulse_core::analytics::{AnalyticsEvent, Limits};
use pulse_core::funnel::FunnelDefinition;
use pulse_crds::FunnelSummary;

use crate::error::Error;

/// The range the summary counts.
pub const RANGE_DAYS: i64 = 7;
/// The most events one summary reads; a funnel over more is not summarized (and says so)
/// rather than have the operator hold them all.
pub const MAX_EVENTS: usize = 1_000_000;

/// `converted` of `entered` as the printer column shows it.
pub fn conversion_text(entered: i64, converted: i64) -> String {
    if entered == 0 {
        "-".to_string()
    } else {
        let percent = converted as f64 * 100.0 / entered as f64;
        format!("{percent:.1}%")
    }
}

/// Whether two summaries say the same (ignoring when they were computed).
pub fn same_numbers(a: &FunnelSummary, b: &FunnelSummary) -> bool {
    a.range == b.range && a.entered == b.entered && a.converted == b.converted && a.conversion == b.conversion
}

/// How the pipeline cuts sessions, for a same-session funnel: its time zone (sessions end
/// at local midnight) and timeout.
pub struct Sessions<'a> {
    pub timezone: &'a str,
    pub timeout: pulse_core::duration::DurationSpec,
}

/// The summary of `definition` at `now_ms` (epoch ms) from the raw events of `database`.
pub async fn compute(
    uri: &str,
    database: &str,
    definition: &FunnelDefinition,
    sessions: Sessions<'_>,
    now_ms: i64,
) -> Result<FunnelSummary, Error> {
    let from = now_ms - RANGE_DAYS * 86_400_000;
    let to = now_ms;
    let names = definition.event_names();
    let tz = pulse_core::rollup::time_zone(sessions.timezone)
        .map_err(|e| Error::storage("the pipeline's time zone", e))?;
    let store =
        pulse_store::Store::connect(uri, database).await.map_err(|e| Error::storage("connecting", e))?;
    // The event blocks: a few large documents instead of one per event.
    let read: Vec<AnalyticsEvent> = match store
        .events_between(names.as_deref(), from, to + definition.window.as_millis() + 1, MAX_EVENTS)
        .await
    {
        Ok(events) => events.into_iter().map(AnalyticsEvent::from).collect(),
        Err(pulse_store::StoreError::TooManyEvents { .. }) => {
            return Err(Error::storage(
                "summarizing",
                format!(
                    "more than {MAX_EVENTS} events in the last {RANGE_DAYS}d; use the query API for this funnel"
                ),
            ));
        }
        Err(e) => return Err(Error::storage("reading events", e)),
    };
    let limits = Limits { max_events: MAX_EVENTS, ..Limits::default() };
    let query = FunnelQuery { from, to, trend: None, session_timeout: Some(sessions.timeout) };
    let report = run(definition, &query, &read, None, &tz, &limits)
        .map_err(|e| Error::storage("computing the funnel", e))?;
    let count = |i: usize| report.steps.get(i).map_or(0, |s| i64::try_from(s.users).unwrap_or(i64::MAX));
    let entered = count(0);
    let converted = count(report.steps.len().saturating_sub(1));
    Ok(FunnelSummary {
        range: format!("last {RANGE_DAYS}d"),
        entered,
        converted,
        conversion: conversion_text(entered, converted),
        updated_at: Time(k8s_openapi::jiff::Timestamp::now()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_is_a_percentage_or_a_dash() {
        assert_eq!(conversion_text(0, 0), "-");
        assert_eq!(conversion_text(8, 1), "12.5%");
        assert_eq!(conversion_text(3, 3), "100.0%");
    }
}
