//! Users by their profile: `POST /v1/persons` finds the users whose profile meets property
//! filters (a page at a time, with the total), and `GET /v1/person-properties` lists the
//! property paths seen on profiles, with their types and most frequent values. Both read
//! every profile (`Store::profiles`), at most `--max-events` documents: more is a 422.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use pulse_core::analytics::AnalyticsEvent;
use pulse_core::analytics::discovery::{self, PropertyReport};
use pulse_core::property::{PropertyFilter, check_filters};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::{Api, off_the_runtime, respond};
use crate::error::QueryError;
use crate::model::{Answer, Source};
use crate::request::{JsonBody, QueryParams, RequestBody};

/// Persons listed when the request sets no limit.
const DEFAULT_LIMIT: usize = 100;
/// The most listed at once.
const MAX_LIMIT: usize = 1000;
/// The most filters a search takes.
const MAX_FILTERS: usize = 16;
/// Values listed per property when the request sets no `top`.
const DEFAULT_TOP: u32 = 10;

/// `POST /v1/persons`: which users, which page.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonSearch {
    /// Conditions on the profile, all of which must hold (none: every user with a
    /// profile); as an event's filters, on the profile's properties.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub filters: Vec<PropertyFilter>,
    /// Persons per page, 1 to 1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<usize>,
    /// List the persons after this one (the previous page's `next`), in id order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl RequestBody for PersonSearch {}

/// A page of the users whose profile meets the filters.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonPage {
    /// How many users meet them (all pages).
    pub total: u64,
    pub persons: Vec<ProfileOf>,
    /// The `after` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A user and their profile.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileOf {
    pub distinct_id: String,
    pub properties: Map<String, Value>,
}

/// `GET /v1/person-properties`: how many values to list per property.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PersonPropertiesParams {
    /// Values listed per property, 1 to 100 (default 10).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    pub top: Option<u32>,
}

pub(crate) async fn search(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PersonSearch>,
) -> Response {
    respond(&api, "persons", &headers, async {
        let search = body?;
        if search.filters.len() > MAX_FILTERS {
            let many = search.filters.len();
            return Err(QueryError::invalid("filters", format!("at most {MAX_FILTERS}, not {many}")));
        }
        check_filters("filters", &search.filters)
            .map_err(|e| QueryError::from(pulse_core::analytics::AnalyticsError::Invalid(e)))?;
        let limit = search.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(QueryError::invalid("limit", format!("1 to {MAX_LIMIT}, not {limit}")));
        }
        let _turn = api.raw_queries.admit().await?;
        let profiles = api.store.profiles(api.limits.max_events).await?;
        let page = off_the_runtime(move || {
            let matching = profiles.into_iter().filter(|(_, properties)| {
                let properties = Value::Object(properties.clone());
                search.filters.iter().all(|f| f.matches(&properties))
            });
            let (mut total, mut persons, mut next) = (0u64, Vec::new(), None);
            for (distinct_id, properties) in matching {
                total += 1;
                if search.after.as_ref().is_some_and(|a| distinct_id.as_str() <= a.as_str()) {
                    continue;
                }
                if persons.len() < limit {
                    persons.push(ProfileOf { distinct_id, properties });
                } else if next.is_none() {
                    next = persons.last().map(|p: &ProfileOf| p.distinct_id.clone());
                }
            }
            Ok(PersonPage { total, persons, next })
        })
        .await?;
        Ok(Answer { answered_from: Source::Raw, result: page })
    })
    .await
}

pub(crate) async fn properties(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<PersonPropertiesParams>,
) -> Response {
    respond(&api, "person-properties", &headers, async {
        let params = params?;
        let top = params.top.unwrap_or(DEFAULT_TOP);
        if !(1..=100).contains(&top) {
            return Err(QueryError::invalid("top", format!("1 to 100, not {top}")));
        }
        let _turn = api.raw_queries.admit().await?;
        let profiles = api.store.profiles(api.limits.max_events).await?;
        let report = off_the_runtime(move || {
            // Each profile as one "event": the counts are users.
            let as_events: Vec<AnalyticsEvent> = profiles
                .into_iter()
                .map(|(distinct_id, properties)| AnalyticsEvent {
                    event_id: distinct_id.clone(),
                    event: "$profile".into(),
                    distinct_id,
                    timestamp: 0,
                    properties: Value::Object(properties),
                })
                .collect();
            Ok::<PropertyReport, QueryError>(discovery::properties(&as_events, top as usize))
        })
        .await?;
        Ok(Answer { answered_from: Source::Raw, result: report })
    })
    .await
}
