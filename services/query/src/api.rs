//! The HTTP API: trends, funnels (ad hoc, or declared by name), retention, cohorts and event
//! discovery, each with the pipeline's read key. Bodies and answers are JSON; every
//! refusal is a JSON error with a code, a message and the fields at fault.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::tz::TimeZone;
use pulse_core::analytics::Limits;
use pulse_core::analytics::cohort;
use pulse_core::analytics::funnel::{self, FunnelQuery, FunnelReport};
use pulse_core::analytics::retention;
use pulse_core::analytics::trend;
use pulse_core::config::{NamedFunnel, RollupInterval};
use pulse_core::funnel::FunnelDefinition;
use pulse_core::property::PropertyPath;
use pulse_keys::KeyRing;
use pulse_store::Store;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::admission::RawQueryLimit;
use crate::cache::QueryCache;
use crate::error::{QueryError, QueryErrorCode};
use crate::event_views::EventViews;
use crate::inflight::{InFlight, Role};
use crate::metrics::{Answered, Endpoint, Metrics, Refused};
pub use crate::model::{
    Answer, CohortAnswer, CohortFilter, CohortRequest, DeclaredFunnelParams, EventName, EventNamesParams,
    FunnelRequest, RetentionRequest, Source, TrendRequest,
};
use crate::preaggregated::{self, Rollups};
use crate::request::{JsonBody, MAX_BODY_BYTES, QueryParams, authorize, check_times};
use crate::source;
use crate::view::RollupView;

const DAY_MS: i64 = 86_400_000;
/// Members listed by a cohort query when the request sets no limit.
const DEFAULT_MEMBER_LIMIT: usize = 1_000;
/// The longest `/readyz` waits for the store: a probe must answer, even "no".
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What a computation of an ad-hoc query gives everyone waiting for it: the answer's JSON
/// text and where it came from.
pub type Computed = Result<(Arc<str>, Source), QueryError>;

/// Everything a request needs.
pub struct Api {
    pub tenant: String,
    pub store: Store,
    pub cache: QueryCache,
    pub keys: KeyRing,
    pub tz: TimeZone,
    /// The buffer's partitions (`buffer.partitions`): a user's events are in the blocks of
    /// their partition.
    pub partitions: u32,
    /// How far back events are kept (`storage.retention`) and how far ahead they may lie
    /// (`limits.maxFutureSkew`), in ms.
    pub retention_ms: i64,
    pub max_future_ms: i64,
    /// The inactivity that ends a session when a query sets none (`query.sessionTimeout`).
    pub session_timeout: pulse_core::duration::DurationSpec,
    pub limits: Limits,
    pub intervals: Vec<RollupInterval>,
    pub numeric: Vec<PropertyPath>,
    pub funnels: Vec<NamedFunnel>,
    pub metrics: Metrics,
    /// The rollups in memory.
    pub view: Arc<RollupView>,
    /// The declared funnels' and retention's views, in memory.
    pub views: Arc<EventViews>,
    /// Turns for raw-event work.
    pub raw_queries: RawQueryLimit,
    /// Ad-hoc queries being computed, by cache key.
    pub in_flight: InFlight<Computed>,
}

/// The routes.
pub fn router(api: Arc<Api>) -> axum::Router {
    let spans = pulse_serve::request_spans(&api.tenant);
    axum::Router::new()
        .route("/v1/trends", post(trends))
        .route("/v1/funnels", post(funnels))
        .route("/v1/funnels/{name}", get(declared_funnel))
        .route("/v1/retention", post(retention))
        .route("/v1/lifecycle", post(crate::engagement::lifecycle))
        .route("/v1/stickiness", post(crate::engagement::stickiness))
        .route("/v1/paths", post(crate::paths::paths))
        .route("/v1/people", post(crate::people::people))
        .route("/v1/cohorts/saved/{name}", get(crate::people::saved_cohort))
        .route("/v1/cohorts", post(cohorts))
        .route("/v1/events", get(event_names))
        .route("/v1/events/{name}/properties", get(crate::discovery::event_properties))
        .route("/v1/failed-events", get(crate::failed::failed_events))
        .route("/v1/persons", post(crate::profiles::search))
        .route("/v1/person-properties", get(crate::profiles::properties))
        .route("/v1/persons/{distinct_id}", get(crate::persons::person))
        .route("/v1/persons/{distinct_id}/events", get(crate::persons::person_events))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|State(api): State<Arc<Api>>| async move {
                let names: Vec<&str> = api.funnels.iter().map(|f| f.name.as_str()).collect();
                Json(crate::openapi::document_for(&names))
            }),
        )
        .fallback(|| async {
            QueryError::new(QueryErrorCode::NotFound, "no such endpoint; see /openapi.json")
        })
        .method_not_allowed_fallback(|| async {
            QueryError::new(
                QueryErrorCode::MethodNotAllowed,
                "this endpoint does not take that method; see /openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(spans)
        .with_state(api)
}

async fn trends(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<TrendRequest>,
) -> Response {
    respond(&api, "trends", &headers, async {
        let mut req = body?;
        // The pipeline's session timeout, unless the query sets one (and so in the cache key).
        if req.query.measure.of_sessions() {
            req.query.session_timeout.get_or_insert(api.session_timeout);
        }
        check_times(&[("from", Some(req.query.from)), ("to", Some(req.query.to))])?;
        req.query.validate(&api.limits)?;
        check_cohort(req.cohort.as_ref())?;
        let rollups = Rollups { intervals: &api.intervals, numeric: &api.numeric };
        let has_cohort = req.cohort.is_some();
        let preaggregated = {
            // Before the rollups are in memory, answering from them reads the store.
            let _turn = match api.view.is_loaded() {
                true => None,
                false => Some(api.raw_queries.admit().await?),
            };
            preaggregated::trend(
                &api.store,
                &api.view,
                &req.query,
                has_cohort,
                &rollups,
                &api.tz,
                &api.limits,
            )
            .await?
        };
        if let Some(report) = preaggregated {
            return Ok(Answer { answered_from: Source::Preaggregated, result: report });
        }
        let (a, r) = (Arc::clone(&api), req.clone());
        api.cached("trends", &req, async move {
            let users = a.cohort_users(r.cohort.as_ref()).await?;
            let events =
                source::read(&a.store, &[source::of_trend(&r.query, &a.tz)], a.limits.max_events).await?;
            off_the_runtime(move || Ok(trend::run(&r.query, &events, users.as_ref(), &a.tz, &a.limits)?))
                .await
        })
        .await
    })
    .await
}

async fn funnels(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<FunnelRequest>,
) -> Response {
    respond(&api, "funnels", &headers, async {
        let req = body?;
        api.funnel(req.definition, req.query, req.cohort, "definition").await
    })
    .await
}

async fn declared_funnel(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    QueryParams(params): QueryParams<DeclaredFunnelParams>,
) -> Response {
    respond(&api, "declared_funnel", &headers, async {
        let Path(name) = name.map_err(|e| QueryError::invalid("name", e.body_text()))?;
        let params = params?;
        let Some(declared) = api.funnels.iter().find(|f| f.name == name) else {
            return Err(QueryError::new(
                QueryErrorCode::UnknownFunnel,
                format!("no funnel {name:?} is declared in this pipeline"),
            ));
        };
        check_times(&[("from", Some(params.from)), ("to", Some(params.to))])?;
        let query =
            FunnelQuery { from: params.from, to: params.to, trend: params.trend, session_timeout: None };
        if let Some(result) = api.views.funnel(&name, &query, &api.limits).map_err(QueryError::from)? {
            return Ok(Answer { answered_from: Source::Preaggregated, result });
        }
        api.funnel(declared.definition.clone(), query, None, "definition").await
    })
    .await
}

async fn retention(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RetentionRequest>,
) -> Response {
    respond(&api, "retention", &headers, async {
        let req = body?;
        check_times(&[("from", Some(req.query.from)), ("to", Some(req.query.to))])?;
        req.query.validate(&api.limits)?;
        check_cohort(req.cohort.as_ref())?;
        let from_view = match req.cohort {
            None => api.views.retention(&req.query, &api.limits).map_err(QueryError::from)?,
            Some(_) => None,
        };
        let mut answer = match from_view {
            Some(result) => Answer { answered_from: Source::Preaggregated, result },
            None => {
                let (a, r) = (Arc::clone(&api), req.clone());
                api.cached("retention", &req, async move {
                    let users = a.cohort_users(r.cohort.as_ref()).await?;
                    let needs = source::of_retention(&r.query, &a.tz);
                    let events = source::read(&a.store, &needs, a.limits.max_events).await?;
                    off_the_runtime(move || {
                        Ok(retention::run(&r.query, &events, users.as_ref(), &a.tz, &a.limits)?)
                    })
                    .await
                })
                .await?
            }
        };
        // Marked at answer time, after any cache: where each cell's period stands now.
        answer.result.mark_progress(req.query.period, jiff::Timestamp::now().as_millisecond(), &api.tz);
        Ok(answer)
    })
    .await
}

async fn cohorts(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CohortRequest>,
) -> Response {
    respond(&api, "cohorts", &headers, async {
        let req = body?;
        check_cohort(Some(&req.cohort))?;
        let (a, r) = (Arc::clone(&api), req.clone());
        api.cached("cohorts", &req, async move {
            let limit = r.limit.unwrap_or(DEFAULT_MEMBER_LIMIT);
            let users = a.cohort_users(Some(&r.cohort)).await?.unwrap_or_default();
            let mut members: Vec<String> = users.into_iter().collect();
            members.sort_unstable();
            let total = members.len();
            members.truncate(limit);
            Ok(CohortAnswer { users: total as u64, truncated: members.len() < total, members })
        })
        .await
    })
    .await
}

/// Event names and counts over `[from, to)`, from the coarsest rollups the pipeline keeps:
/// the day or, without days, the hour periods (in the pipeline's time zone) that start
/// inside the range; from the raw events when it keeps only minute rollups or none (minute
/// periods expire after days, raw events only with the pipeline's retention).
async fn event_names(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<EventNamesParams>,
) -> Response {
    respond(&api, "events", &headers, async {
        let params = params?;
        check_times(&[("from", params.from), ("to", params.to)])?;
        let to = params.to.unwrap_or_else(|| jiff::Timestamp::now().as_millisecond() + DAY_MS);
        let from = params.from.unwrap_or_else(|| to.saturating_sub(31 * DAY_MS));
        if from >= to {
            return Err(QueryError::invalid("to", "the range [from, to) is empty"));
        }
        let (counts, answered_from) = api.event_counts(from, to).await?;
        let result: Vec<EventName> =
            counts.into_iter().map(|(event, count)| EventName { event, count }).collect();
        Ok(Answer { answered_from, result })
    })
    .await
}

/// Ready when the store answers (within 2 s: a probe never hangs) and the rollups and the
/// funnel and retention views are in memory (until then pre-aggregated answers would be
/// store reads, a thousand times slower). Busy raw reads do not make a replica unready.
async fn ready(State(api): State<Arc<Api>>) -> Response {
    let not_ready = |message: &str| QueryError::new(QueryErrorCode::NotReady, message).into_response();
    match tokio::time::timeout(READY_TIMEOUT, api.store.ping()).await {
        Ok(Ok(())) if api.view.is_loaded() && api.views.is_loaded() => {
            (StatusCode::OK, "ready").into_response()
        }
        Ok(Ok(())) => not_ready("reading the rollups and event blocks"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the store does not answer");
            not_ready("the store does not answer")
        }
        Err(_) => not_ready("the store did not answer within 2 s"),
    }
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    api.metrics.raw_queries_running.set(api.raw_queries.running() as i64);
    api.metrics.raw_queries_waiting.set(api.raw_queries.waiting() as i64);
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
        self: &Arc<Self>,
        definition: FunnelDefinition,
        query: FunnelQuery,
        cohort: Option<CohortFilter>,
        field: &str,
    ) -> Result<Answer<FunnelReport>, QueryError> {
        definition.validate().map_err(|errors| {
            QueryError::from(pulse_core::analytics::AnalyticsError::Invalid(errors)).under(field)
        })?;
        // Refusals a computation would give are given before it takes a turn.
        check_times(&[("from", Some(query.from)), ("to", Some(query.to))])?;
        let mut query = query;
        // The pipeline's session timeout, unless the query sets one (and so in the cache key).
        if definition.same_session {
            query.session_timeout.get_or_insert(self.session_timeout);
        }
        funnel::FunnelEngine::with_sessions(&definition, &query, &self.tz)?;
        check_cohort(cohort.as_ref())?;
        let key = serde_json::to_value((&definition, &query, &cohort)).map_err(QueryError::internal)?;
        let api = Arc::clone(self);
        self.cached("funnels", &key, async move {
            let users = api.cohort_users(cohort.as_ref()).await?;
            let need = source::of_funnel(&definition, query.from, query.to);
            let events = source::read(&api.store, &[need], api.limits.max_events).await?;
            off_the_runtime(move || {
                Ok(funnel::run(&definition, &query, &events, users.as_ref(), &api.tz, &api.limits)?)
            })
            .await
        })
        .await
    }

    /// Every event name's count over `[from, to)` (see [`event_names`]), and where it came
    /// from.
    async fn event_counts(&self, from: i64, to: i64) -> Result<(BTreeMap<String, u64>, Source), QueryError> {
        let rollups =
            [RollupInterval::Day, RollupInterval::Hour].into_iter().find(|i| self.intervals.contains(i));
        if let Some(interval) = rollups
            && self.view.is_loaded()
        {
            return Ok((self.view.event_counts(interval, from, to), Source::Preaggregated));
        }
        // A pass over the rollups or the events in the store: a raw read's turn.
        let _turn = self.raw_queries.admit().await?;
        match rollups {
            Some(RollupInterval::Day) => Ok((self.store.event_names(from, to).await?, Source::Preaggregated)),
            Some(interval) => {
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                for (bucket, totals) in self.store.buckets_since(interval, from).await? {
                    if bucket.start < to {
                        *counts.entry(bucket.event).or_default() += totals.events;
                    }
                }
                Ok((counts, Source::Preaggregated))
            }
            None => {
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                for event in self.store.events_between(None, from, to, self.limits.max_events).await? {
                    *counts.entry(event.event).or_default() += 1;
                }
                Ok((counts, Source::Raw))
            }
        }
    }

    /// The users of `cohort`, or `None` (everyone) without one.
    pub(crate) async fn cohort_users(
        self: &Arc<Self>,
        cohort: Option<&CohortFilter>,
    ) -> Result<Option<HashSet<String>>, QueryError> {
        let Some(cohort) = cohort else { return Ok(None) };
        cohort.definition.validate().map_err(|e| QueryError::from(e).under("cohort"))?;
        let now = cohort.now.unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
        let mut saved = cohort::SavedMembers::new();
        for name in cohort.definition.saved_cohorts() {
            let Some((_, members)) = self.store.saved_cohort(name).await? else {
                return Err(QueryError::new(
                    QueryErrorCode::NotFound,
                    format!("no cohort is saved as {name:?}"),
                ));
            };
            saved.insert(name.to_string(), members.into_iter().collect());
        }
        let events =
            source::read(&self.store, &source::of_cohort(&cohort.definition, now), self.limits.max_events)
                .await?;
        let (definition, limits) = (cohort.definition.clone(), self.limits);
        off_the_runtime(move || Ok(Some(cohort::members(&definition, &events, now, &limits, &saved)?))).await
    }

    /// The cached answer to `request`, or the one being computed for the same request, or
    /// `compute`'s: computed in a task of its own when this replica has a turn for it
    /// (see [`crate::admission`]), then cached.
    pub(crate) async fn cached<T, Fut>(
        self: &Arc<Self>,
        endpoint: &str,
        request: &impl Serialize,
        compute: Fut,
    ) -> Result<Answer<T>, QueryError>
    where
        T: Serialize + DeserializeOwned,
        Fut: Future<Output = Result<T, QueryError>> + Send + 'static,
    {
        let key = self.cache.key(endpoint, request);
        let (api, cache_key) = (Arc::clone(self), key.clone());
        let work = async move {
            if let Some(text) = api.cache.get(&cache_key).await {
                return Ok((Arc::from(text), Source::Cache));
            }
            let _turn = api.raw_queries.admit().await?;
            let text = serde_json::to_string(&compute.await?).map_err(QueryError::internal)?;
            api.cache.put(&cache_key, &text).await;
            Ok((Arc::from(text), Source::Raw))
        };
        let (computed, role) = self.in_flight.run(key, work, |panic| Err(QueryError::internal(panic))).await;
        let (text, source) = computed?;
        if role == Role::Joined {
            self.metrics.coalesced.inc();
        }
        let result = serde_json::from_str(&text).map_err(QueryError::internal)?;
        let answered_from = if role == Role::Joined { Source::Cache } else { source };
        Ok(Answer { answered_from, result })
    }
}

/// A cohort filter's refusal, before any work.
pub(crate) fn check_cohort(cohort: Option<&CohortFilter>) -> Result<(), QueryError> {
    match cohort {
        Some(c) => {
            check_times(&[("cohort.now", c.now)])?;
            for (i, condition) in c.definition.conditions.iter().enumerate() {
                if let cohort::CohortCondition::Performed { from, to, .. } = condition {
                    let (f, t) =
                        (format!("cohort.conditions[{i}].from"), format!("cohort.conditions[{i}].to"));
                    check_times(&[(f.as_str(), *from), (t.as_str(), *to)])?;
                }
            }
            c.definition.validate().map_err(|e| QueryError::from(e).under("cohort"))
        }
        None => Ok(()),
    }
}

/// Runs an engine (CPU work, up to seconds over millions of events) on a blocking thread,
/// so it never stalls the async threads that serve pre-aggregated answers and probes.
pub(crate) async fn off_the_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, QueryError> + Send + 'static,
) -> Result<T, QueryError> {
    tokio::task::spawn_blocking(work).await.map_err(QueryError::internal)?
}

/// Checks the read key, runs `answer`, and turns the outcome into a response with metrics.
pub(crate) async fn respond<T: Serialize>(
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
