//! `GET /v1/events/{name}/properties`: an event's property paths over a range, with their
//! value types and most frequent values, to build filters and breakdowns from
//! (`pulse_core::analytics::discovery`). Read from the event blocks, like an ad-hoc query:
//! it takes a turn, is cached, and more events than the query limit is an error.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use pulse_core::analytics::AnalyticsEvent;
use pulse_core::analytics::discovery::{self, PropertyReport};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{Api, off_the_runtime, respond};
use crate::error::QueryError;
use crate::request::{QueryParams, check_times};

const DAY_MS: i64 = 86_400_000;
/// Values listed per property when the request sets no `top`.
const DEFAULT_TOP: u32 = 10;
/// The most values listed per property.
const MAX_TOP: u32 = 100;

/// `GET /v1/events/{name}/properties`: the range (default: the 7 days before now) and how
/// many values to list per property.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EventPropertiesParams {
    #[serde(default)]
    pub from: Option<i64>,
    #[serde(default)]
    pub to: Option<i64>,
    /// Values listed per property, 1 to 100 (default 10).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    pub top: Option<u32>,
}

/// What is computed and cached: the event, its range and `top`.
#[derive(Serialize)]
struct Request<'a> {
    event: &'a str,
    from: i64,
    to: i64,
    top: u32,
}

pub(crate) async fn event_properties(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    QueryParams(params): QueryParams<EventPropertiesParams>,
) -> Response {
    respond(&api, "event-properties", &headers, async {
        let Path(event) = name.map_err(|e| QueryError::invalid("name", e.body_text()))?;
        if event.is_empty() {
            return Err(QueryError::invalid("name", "an event name, not empty"));
        }
        let params = params?;
        check_times(&[("from", params.from), ("to", params.to)])?;
        let to = params.to.unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
        let from = params.from.unwrap_or_else(|| to.saturating_sub(7 * DAY_MS));
        if from >= to {
            return Err(QueryError::invalid("to", "the range [from, to) is empty"));
        }
        let top = params.top.unwrap_or(DEFAULT_TOP);
        if !(1..=MAX_TOP).contains(&top) {
            return Err(QueryError::invalid("top", format!("1 to {MAX_TOP}, not {top}")));
        }
        let key = Request { event: &event, from, to, top };
        let (a, names) = (Arc::clone(&api), [event.clone()]);
        api.cached("event-properties", &key, async move {
            let read = a.store.events_between(Some(&names), from, to, a.limits.max_events).await?;
            off_the_runtime(move || {
                let events: Vec<AnalyticsEvent> = read.into_iter().map(AnalyticsEvent::from).collect();
                Ok::<PropertyReport, QueryError>(discovery::properties(&events, top as usize))
            })
            .await
        })
        .await
    })
    .await
}
