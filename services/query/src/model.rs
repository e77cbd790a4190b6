//! The query API's requests and answers, as the handlers parse and send them; their doc
//! comments are the OpenAPI document's descriptions.

use pulse_core::analytics::cohort::CohortDefinition;
use pulse_core::analytics::funnel::FunnelQuery;
use pulse_core::analytics::lifecycle::LifecycleQuery;
use pulse_core::analytics::paths::PathQuery;
use pulse_core::analytics::period::Interval;
use pulse_core::analytics::retention::RetentionQuery;
use pulse_core::analytics::stickiness::StickinessQuery;
use pulse_core::analytics::trend::TrendQuery;
use pulse_core::funnel::FunnelDefinition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::QueryError;
use crate::request::{RequestBody, refusal_of};

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// The pre-aggregates: the rollups the processor maintains, or the declared funnels'
    /// and retention's views of the stored events.
    Preaggregated,
    /// The raw events, read for this request.
    Raw,
    /// A raw-event answer computed for the same request within the cache's time to live,
    /// or being computed when this request came (identical queries are computed once).
    Cache,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Preaggregated => "preaggregated",
            Source::Raw => "raw",
            Source::Cache => "cache",
        }
    }
}

/// An answer and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer<T> {
    pub answered_from: Source,
    pub result: T,
}

/// Users to restrict a query to: a cohort, with the time its "last days" conditions count
/// back from (default: now).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CohortFilter {
    #[serde(flatten)]
    pub definition: CohortDefinition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<i64>,
}

/// `POST /v1/trends`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrendRequest {
    #[serde(flatten)]
    pub query: TrendQuery,
    /// Only these users' events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<CohortFilter>,
}

impl RequestBody for TrendRequest {
    fn flattened_refusal(body: &serde_json::Value) -> Option<QueryError> {
        refusal_of::<TrendQuery>(body)
    }
}

/// `POST /v1/funnels`: an ad-hoc funnel.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunnelRequest {
    /// The funnel, as in a Funnel resource's spec (steps, window, order, exclusions,
    /// holdConstant, breakdown).
    pub definition: FunnelDefinition,
    #[serde(flatten)]
    pub query: FunnelQuery,
    /// Only these users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<CohortFilter>,
}

impl RequestBody for FunnelRequest {
    fn flattened_refusal(body: &serde_json::Value) -> Option<QueryError> {
        refusal_of::<FunnelQuery>(body)
    }
}

/// `GET /v1/funnels/{name}`: the range of a declared funnel.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeclaredFunnelParams {
    /// First-step events from this time (epoch ms) ...
    pub from: i64,
    /// ... to this one (exclusive).
    pub to: i64,
    /// Also the conversion per day or week.
    #[serde(default)]
    pub trend: Option<Interval>,
}

/// `POST /v1/retention`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionRequest {
    #[serde(flatten)]
    pub query: RetentionQuery,
    /// Only these users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<CohortFilter>,
}

impl RequestBody for RetentionRequest {
    fn flattened_refusal(body: &serde_json::Value) -> Option<QueryError> {
        refusal_of::<RetentionQuery>(body)
    }
}

/// `POST /v1/lifecycle`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleRequest {
    #[serde(flatten)]
    pub query: LifecycleQuery,
    /// Only these users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<CohortFilter>,
}

impl RequestBody for LifecycleRequest {
    fn flattened_refusal(body: &serde_json::Value) -> Option<QueryError> {
        refusal_of::<LifecycleQuery>(body)
    }
}

/// `POST /v1/stickiness`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StickinessRequest {
    #[serde(flatten)]
    pub query: StickinessQuery,
    /// Only these users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<CohortFilter>,
}

impl RequestBody for StickinessRequest {
    fn flattened_refusal(body: &serde_json::Value) -> Option<QueryError> {
        refusal_of::<StickinessQuery>(body)
    }
}

/// `POST /v1/paths`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathRequest {
    #[serde(flatten)]
    pub query: PathQuery,
    /// Only these users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<CohortFilter>,
}

impl RequestBody for PathRequest {
    fn flattened_refusal(body: &serde_json::Value) -> Option<QueryError> {
        refusal_of::<PathQuery>(body)
    }
}

/// `POST /v1/cohorts`: who is in a cohort.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CohortRequest {
    #[serde(flatten)]
    pub cohort: CohortFilter,
    /// How many member ids to list (default 1000); `users` always counts them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl RequestBody for CohortRequest {
    fn flattened_refusal(body: &serde_json::Value) -> Option<QueryError> {
        refusal_of::<CohortFilter>(body).or_else(|| refusal_of::<CohortDefinition>(body))
    }
}

/// A cohort's members.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CohortAnswer {
    /// How many users are in it.
    pub users: u64,
    /// Their ids, sorted, at most `limit` of them.
    pub members: Vec<String>,
    /// Whether `members` lists fewer than `users` (raise `limit` to see more).
    pub truncated: bool,
}

/// `GET /v1/events`: the range to list event names of (default: the last 30 days).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EventNamesParams {
    #[serde(default)]
    pub from: Option<i64>,
    #[serde(default)]
    pub to: Option<i64>,
}

/// One event name and how many events it had in the range.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EventName {
    pub event: String,
    pub count: u64,
}
