//! The HTTP API: trends, funnels (ad hoc, or declared by name), retention, cohorts and event
//! discovery, each with the pipeline's read key. Bodies and answers are JSON; every
//! refusal is a JSON error with a code, a message and the fields at fault.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::tz::TimeZone;
use pulse_core::analytics::Limits;
use pulse_core::analytics::cohort::{self, CohortDefinition};
use pulse_core::analytics::funnel::{self, FunnelQuery, FunnelReport};
use pulse_core::analytics::period::Interval;
use pulse_core::analytics::retention::{self, RetentionQuery, RetentionReport};
use pulse_core::analytics::trend::{self, TrendQuery, TrendReport};
use pulse_core::config::{NamedFunnel, RollupInterval};
use pulse_core::funnel::FunnelDefinition;
use pulse_core::property::PropertyPath;
use pulse_keys::KeyRing;
use pulse_store::Store;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cache::QueryCache;
use crate::error::{QueryError, QueryErrorCode};
use crate::event_views::EventViews;
use crate::metrics::{Answered, Endpoint, Metrics, Refused};
use crate::preaggregated::{self, Rollups};
use crate::source;
use crate::view::RollupView;

const DAY_MS: i64 = 86_400_000;
/// Members listed by a cohort query when the request sets no limit.
const DEFAULT_MEMBER_LIMIT: usize = 1_000;

/// Everything a request needs.
pub struct Api {
    pub tenant: String,
    pub store: Store,
    pub cache: QueryCache,
    pub keys: KeyRing,
    pub tz: TimeZone,
    pub limits: Limits,
    pub intervals: Vec<RollupInterval>,
    pub numeric: Vec<PropertyPath>,
    pub funnels: Vec<NamedFunnel>,
    pub metrics: Metrics,
    /// The rollups in memory.
    pub view: Arc<RollupView>,
    /// The declared funnels' and retention's views, in memory.
    pub views: Arc<EventViews>,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// The pre-aggregates: the rollups the processor maintains, or the declared funnels'
    /// and retention's views of the stored events.
    Preaggregated,
    /// The raw events, read for this request.
    Raw,
    /// A raw-event answer computed for the same request within the cache's time to live.
    Cache,
}

impl Source {
    fn as_str(self) -> &'static str {
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

/// The routes.
pub fn router(api: Arc<Api>) -> axum::Router {
    axum::Router::new()
        .route("/v1/trends", post(trends))
        .route("/v1/funnels", post(funnels))
        .route("/v1/funnels/{name}", get(declared_funnel))
        .route("/v1/retention", post(retention))
        .route("/v1/cohorts", post(cohorts))
        .route("/v1/events", get(event_names))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .fallback(|| async {
            QueryError::new(QueryErrorCode::NotFound, "no such endpoint; see /openapi.json")
        })
        .with_state(api)
}

async fn trends(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(&api, "trends", &headers, async {
        let req: TrendRequest = parse(&body)?;
        req.query.validate(&api.limits)?;
        let rollups = Rollups { intervals: &api.intervals, numeric: &api.numeric };
        let has_cohort = req.cohort.is_some();
        if let Some(report) = preaggregated::trend(
            &api.store,
            &api.view,
            &req.query,
            has_cohort,
            &rollups,
            &api.tz,
            &api.limits,
        )
        .await?
        {
            return Ok(Answer { answered_from: Source::Preaggregated, result: report });
        }
        api.cached("trends", &req, || async {
            let users = api.cohort_users(req.cohort.as_ref()).await?;
            let events =
                source::read(&api.store, &[source::of_trend(&req.query, &api.tz)], api.limits.max_events)
                    .await?;
            Ok::<TrendReport, QueryError>(trend::run(
                &req.query,
                &events,
                users.as_ref(),
                &api.tz,
                &api.limits,
            )?)
        })
        .await
    })
    .await
}

async fn funnels(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(&api, "funnels", &headers, async {
        let req: FunnelRequest = parse(&body)?;
        api.funnel(&req.definition, &req.query, req.cohort.as_ref(), "definition").await
    })
    .await
}

async fn declared_funnel(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    params: Result<Query<DeclaredFunnelParams>, QueryRejection>,
) -> Response {
    respond(&api, "declared_funnel", &headers, async {
        let Query(params) =
            params.map_err(|e| QueryError::new(QueryErrorCode::InvalidBody, e.body_text()))?;
        let Some(declared) = api.funnels.iter().find(|f| f.name == name) else {
            return Err(QueryError::new(
                QueryErrorCode::UnknownFunnel,
                format!("no funnel {name:?} is declared in this pipeline"),
            ));
        };
        let query = FunnelQuery { from: params.from, to: params.to, trend: params.trend };
        if let Some(result) = api.views.funnel(&name, &query, &api.limits).map_err(QueryError::from)? {
            return Ok(Answer { answered_from: Source::Preaggregated, result });
        }
        api.funnel(&declared.definition, &query, None, "definition").await
    })
    .await
}

async fn retention(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(&api, "retention", &headers, async {
        let req: RetentionRequest = parse(&body)?;
        if req.cohort.is_none()
            && let Some(result) = api.views.retention(&req.query, &api.limits).map_err(QueryError::from)?
        {
            return Ok(Answer { answered_from: Source::Preaggregated, result });
        }
        api.cached("retention", &req, || async {
            let users = api.cohort_users(req.cohort.as_ref()).await?;
            let needs = source::of_retention(&req.query, &api.tz);
            let events = source::read(&api.store, &needs, api.limits.max_events).await?;
            Ok::<RetentionReport, QueryError>(retention::run(
                &req.query,
                &events,
                users.as_ref(),
                &api.tz,
                &api.limits,
            )?)
        })
        .await
    })
    .await
}

async fn cohorts(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(&api, "cohorts", &headers, async {
        let req: CohortRequest = parse(&body)?;
        let limit = req.limit.unwrap_or(DEFAULT_MEMBER_LIMIT);
        let users = api.cohort_users(Some(&req.cohort)).await?.unwrap_or_default();
        let mut members: Vec<String> = users.into_iter().collect();
        members.sort_unstable();
        let total = members.len();
        members.truncate(limit);
        let answer = CohortAnswer { users: total as u64, truncated: members.len() < total, members };
        Ok(Answer { answered_from: Source::Raw, result: answer })
    })
    .await
}

async fn event_names(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    params: Result<Query<EventNamesParams>, QueryRejection>,
) -> Response {
    respond(&api, "events", &headers, async {
        let Query(params) =
            params.map_err(|e| QueryError::new(QueryErrorCode::InvalidBody, e.body_text()))?;
        let to = params.to.unwrap_or_else(|| jiff::Timestamp::now().as_millisecond() + DAY_MS);
        let from = params.from.unwrap_or(to - 31 * DAY_MS);
        if from >= to {
            return Err(QueryError::invalid("to", "the range [from, to) is empty"));
        }
        let names = api.store.event_names(from, to).await?;
        let result: Vec<EventName> =
            names.into_iter().map(|(event, count)| EventName { event, count }).collect();
        Ok(Answer { answered_from: Source::Preaggregated, result })
    })
    .await
}

/// Ready when the store answers and the rollups and the funnel and retention views are in
/// memory (until then pre-aggregated answers would be store reads, a thousand times slower).
async fn ready(State(api): State<Arc<Api>>) -> Response {
    match api.store.ping().await {
        Ok(()) if api.view.is_loaded() && api.views.is_loaded() => (StatusCode::OK, "ready").into_response(),
        Ok(()) => (StatusCode::SERVICE_UNAVAILABLE, "reading the rollups and event blocks").into_response(),
        Err(_) => {
            QueryError::new(QueryErrorCode::StoreUnavailable, "the store does not answer").into_response()
        }
    }
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        api.metrics.encode(),
    )
        .into_response()
}

impl Api {
    /// A funnel from raw events (cached). `field` is where the definition sits in the
    /// request, for error paths.
    async fn funnel(
        &self,
        definition: &FunnelDefinition,
        query: &FunnelQuery,
        cohort: Option<&CohortFilter>,
        field: &str,
    ) -> Result<Answer<FunnelReport>, QueryError> {
        definition.validate().map_err(|errors| {
            QueryError::from(pulse_core::analytics::AnalyticsError::Invalid(errors)).under(field)
        })?;
        let key = (definition, query, cohort);
        self.cached("funnels", &key, || async {
            let users = self.cohort_users(cohort).await?;
            let need = source::of_funnel(definition, query.from, query.to);
            let events = source::read(&self.store, &[need], self.limits.max_events).await?;
            Ok::<FunnelReport, QueryError>(funnel::run(
                definition,
                query,
                &events,
                users.as_ref(),
                &self.tz,
                &self.limits,
            )?)
        })
        .await
    }

    /// The users of `cohort`, or `None` (everyone) without one.
    async fn cohort_users(
        &self,
        cohort: Option<&CohortFilter>,
    ) -> Result<Option<HashSet<String>>, QueryError> {
        let Some(cohort) = cohort else { return Ok(None) };
        cohort.definition.validate().map_err(|e| QueryError::from(e).under("cohort"))?;
        let now = cohort.now.unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
        let events =
            source::read(&self.store, &source::of_cohort(&cohort.definition, now), self.limits.max_events)
                .await?;
        Ok(Some(cohort::members(&cohort.definition, &events, now, &self.limits)?))
    }

    /// The cached answer to `request`, or `compute`'s (then cached).
    async fn cached<T, F, Fut>(
        &self,
        endpoint: &str,
        request: &impl Serialize,
        compute: F,
    ) -> Result<Answer<T>, QueryError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, QueryError>>,
    {
        if let Some(result) = self.cache.get(endpoint, request).await {
            return Ok(Answer { answered_from: Source::Cache, result });
        }
        let result = compute().await?;
        self.cache.put(endpoint, request, &result).await;
        Ok(Answer { answered_from: Source::Raw, result })
    }
}

/// Checks the read key, runs `answer`, and turns the outcome into a response with metrics.
async fn respond<T: Serialize>(
    api: &Api,
    endpoint: &'static str,
    headers: &HeaderMap,
    answer: impl Future<Output = Result<Answer<T>, QueryError>>,
) -> Response {
    let started = Instant::now();
    let outcome = match authorize(&api.keys, headers) {
        Ok(()) => answer.await,
        Err(e) => Err(e),
    };
    api.metrics.seconds.get_or_create(&Endpoint { endpoint }).observe(started.elapsed().as_secs_f64());
    match outcome {
        Ok(answer) => {
            api.metrics
                .answered
                .get_or_create(&Answered { endpoint, source: answer.answered_from.as_str() })
                .inc();
            Json(answer).into_response()
        }
        Err(e) => {
            api.metrics.refused.get_or_create(&Refused { endpoint, reason: e.code.as_str() }).inc();
            e.into_response()
        }
    }
}

/// `Authorization: Bearer <read key>`; write keys are not read keys.
fn authorize(keys: &KeyRing, headers: &HeaderMap) -> Result<(), QueryError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(key) if keys.accepts(key.as_bytes()) => Ok(()),
        Some(_) => Err(QueryError::new(
            QueryErrorCode::Unauthorized,
            "not this pipeline's read key (a write key cannot read)",
        )),
        None => Err(QueryError::new(QueryErrorCode::Unauthorized, "send Authorization: Bearer <read key>")),
    }
}

/// The body as `T`, or a clear error naming what is wrong.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, QueryError> {
    serde_json::from_slice(body).map_err(|e| {
        QueryError::new(QueryErrorCode::InvalidBody, format!("the body is not a valid query: {e}"))
    })
}
