//! `GET /v1/failed-events`: the acknowledged events the processor set aside because the
//! store refused them (docs/operations.md, "Failed events"), a page at a time, with the read
//! key. Each lists what the store said and the event as sent, so it can be fixed and replayed
//! (`pulse-processor replay-failed`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{Api, respond};
use crate::error::QueryError;
use crate::model::{Answer, Source};
use crate::request::QueryParams;

/// Failed events listed when the request sets no limit.
const DEFAULT_LIMIT: u32 = 100;
/// The most listed at once.
const MAX_LIMIT: u32 = 1000;

/// `GET /v1/failed-events`: which page.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FailedEventsParams {
    /// How many to list, 1 to 1000 (default 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
    /// List those after this id (the previous page's `next`).
    #[serde(default)]
    pub after: Option<String>,
}

/// A page of failed events, in id order (partition, stream entry, index).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedEventsPage {
    pub failed_events: Vec<FailedEventItem>,
    /// The id to ask `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One failed event.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedEventItem {
    /// `<partition>|<stream entry>|<index in the entry>`: what `replay-failed --id` takes.
    pub id: String,
    pub partition: u32,
    /// The buffer's stream entry it came from.
    pub entry: String,
    /// `store_refused` (the store refused the event on every try), `undecodable_entry` (a
    /// buffer entry that is not events) or `profile_refused` (the event is stored; the
    /// profile change it made was refused).
    pub reason: String,
    /// What the store (or the decoder) said.
    pub detail: String,
    /// The event's id, when it is an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// When it was set aside, epoch milliseconds.
    pub failed_at: i64,
    /// The event as JSON text (or the entry's text, or the profile change).
    pub payload: String,
}

pub(crate) async fn failed_events(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<FailedEventsParams>,
) -> Response {
    respond(&api, "failed-events", &headers, async {
        let params = params?;
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(QueryError::invalid("limit", format!("1 to {MAX_LIMIT}, not {limit}")));
        }
        // A store read: it takes a turn like the other raw reads.
        let _turn = api.raw_queries.admit().await?;
        // One more than the page tells whether another page follows.
        let mut listed = api.store.list_failed_events(params.after.as_deref(), limit as usize + 1).await?;
        let next = (listed.len() > limit as usize).then(|| {
            listed.truncate(limit as usize);
            listed.last().map(|f| f.id.clone())
        });
        let failed_events = listed
            .into_iter()
            .map(|f| FailedEventItem {
                id: f.id,
                partition: f.partition,
                entry: f.entry,
                reason: f.reason.as_str().to_string(),
                detail: f.detail,
                event_id: f.event_id,
                failed_at: f.failed_at,
                payload: f.payload,
            })
            .collect();
        Ok(Answer {
            answered_from: Source::Raw,
            result: FailedEventsPage { failed_events, next: next.flatten() },
        })
    })
    .await
}
