//! The HTTP API of ingest: `POST /v1/events` and `POST /v1/batch`, plus health, metrics
//! and the OpenAPI document.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pulse_core::buffer::{BufferedEvent, partition_of};
use pulse_core::event::{EventError, EventRules};
use pulse_core::json::ObjectFields;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::buffer::{Buffer, BufferError, PartitionEntry};
use crate::error::{RequestError, RequestErrorCode};
use crate::keys::KeyRing;
use crate::metrics::{Endpoint, Metrics, Reason};
use crate::rate_limit::{Decision, RateLimiter};

/// Everything a request needs, shared.
pub struct Ingest {
    pub tenant: String,
    pub partitions: u32,
    pub rules: EventRules,
    pub max_body_bytes: usize,
    pub max_events_per_batch: usize,
    pub high_water_mark: u64,
    pub keys: KeyRing,
    pub buffer: Arc<Buffer>,
    pub rate_limiter: Option<RateLimiter>,
    pub metrics: Arc<Metrics>,
}

/// The routes of ingest.
pub fn router(ingest: Arc<Ingest>) -> Router {
    let spans = pulse_serve::request_spans(&ingest.tenant);
    Router::new()
        .route("/v1/events", post(post_event))
        .route("/v1/batch", post(post_batch))
        .merge(crate::compat::routes())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|State(ingest): State<Arc<Ingest>>| async move {
                Json(crate::openapi::document(&crate::openapi::DocumentedLimits {
                    max_name_length: ingest.rules.max_name_chars(),
                    max_events_per_batch: ingest.max_events_per_batch,
                }))
            }),
        )
        .fallback(|| async {
            RequestError::new(RequestErrorCode::NotFound, "no such endpoint; see /openapi.json")
        })
        .method_not_allowed_fallback(|| async {
            RequestError::new(RequestErrorCode::MethodNotAllowed, "this endpoint does not take that method")
        })
        .layer(spans)
        .with_state(ingest)
}

/// The answer to an accepted request: events are durably in the buffer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Events acknowledged.
    pub accepted: usize,
    /// Events refused; see `errors`.
    pub rejected: usize,
    /// One entry per refused event.
    pub errors: Vec<IndexedEventError>,
}

/// A refused event of a batch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IndexedEventError {
    /// The event's position in the batch, from 0.
    pub index: usize,
    /// A stable code: why the event was refused.
    #[schema(schema_with = crate::openapi::event_error_code_schema)]
    pub code: String,
    /// The field within the event, e.g. `timestamp` or `properties.plan`; empty for the
    /// whole event.
    pub field: String,
    /// Why, for people.
    pub message: String,
}

impl IndexedEventError {
    pub(crate) fn new(index: usize, e: EventError) -> Self {
        IndexedEventError { index, code: e.code.as_str().to_string(), field: e.field, message: e.message }
    }
}

/// Send one event.
#[utoipa::path(
    post, path = "/v1/events",
    request_body(content = crate::openapi::EventInput, content_type = "application/json", description = "One event; gzip with Content-Encoding: gzip"),
    responses(
        (status = 202, description = "Durably buffered", body = Accepted),
        (status = 400, description = "Invalid JSON or event; `error.field` names the field and `errors[0].code` the event error", body = crate::error::ErrorResponse),
        (status = 401, description = "Missing or wrong write key", body = crate::error::ErrorResponse),
        (status = 413, description = "Body larger than the limit", body = crate::error::ErrorResponse),
        (status = 415, description = "Unsupported Content-Type or Content-Encoding", body = crate::error::ErrorResponse),
        (status = 429, description = "Rate limited or backlog full; retry after Retry-After seconds", body = crate::error::ErrorResponse),
        (status = 503, description = "Buffer unavailable; nothing was acknowledged; retry after Retry-After", body = crate::error::ErrorResponse),
    ),
    security(("write_key" = []))
)]
pub(crate) async fn post_event(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let response = match ingest.accept_one(&headers, body).await {
        Ok(accepted) => (StatusCode::ACCEPTED, Json(accepted)).into_response(),
        Err(e) => ingest.refuse(e),
    };
    ingest
        .metrics
        .request_seconds
        .get_or_create(&Endpoint { endpoint: "events" })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Send many events. Valid events are accepted even when others are refused; the answer
/// lists each refused event by its index. This is also Segment's batch path: a request
/// with HTTP Basic auth or no Authorization header, or with a Bearer key and a Segment
/// batch (a top-level `sentAt`, `writeKey`, `context`, `integrations` or `metadata`, or a
/// first message with a Segment `type` and no `distinct_id`), is answered as
/// `/compat/segment/v1/batch` answers it (200).
#[utoipa::path(
    post, path = "/v1/batch",
    request_body(content = crate::openapi::BatchInput, content_type = "application/json", description = "`{\"batch\": [event, ...]}`; gzip with Content-Encoding: gzip"),
    responses(
        (status = 202, description = "Valid events durably buffered; refused ones listed in `errors`", body = Accepted),
        (status = 200, description = "A Segment batch (see above): valid messages durably buffered (`success: true`)", body = crate::compat::CompatAccepted),
        (status = 400, description = "Invalid JSON, not a batch, empty, or no valid event (then `errors` lists each)", body = crate::error::ErrorResponse),
        (status = 401, description = "Missing or wrong write key", body = crate::error::ErrorResponse),
        (status = 413, description = "Body, batch or burst too large", body = crate::error::ErrorResponse),
        (status = 415, description = "Unsupported Content-Type or Content-Encoding", body = crate::error::ErrorResponse),
        (status = 429, description = "Rate limited or backlog full; retry after Retry-After seconds", body = crate::error::ErrorResponse),
        (status = 503, description = "Buffer unavailable; nothing was acknowledged; retry after Retry-After", body = crate::error::ErrorResponse),
    ),
    security(("write_key" = []))
)]
pub(crate) async fn post_batch(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    // `/v1/batch` is Segment's path too: its SDKs send Basic auth or none (the key in the
    // body), and a Segment batch sent with a Bearer key is told by its payload.
    if crate::compat::segment::uses_segment_auth(&headers) {
        return crate::compat::segment_batch(State(ingest), headers, body).await;
    }
    let response = match ingest.accept_batch(&headers, body).await {
        Ok(Batch::Native(accepted)) => (StatusCode::ACCEPTED, Json(accepted)).into_response(),
        Ok(Batch::Segment(bytes)) => {
            return crate::compat::segment_batch_read(&ingest, &headers, bytes, started).await;
        }
        Err(e) => ingest.refuse(e),
    };
    ingest
        .metrics
        .request_seconds
        .get_or_create(&Endpoint { endpoint: "batch" })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// What a request to `/v1/batch` with a Bearer key turned out to be.
enum Batch {
    /// Pulse's batch, accepted.
    Native(Accepted),
    /// Segment's batch (its body, read and inflated), for the Segment handler.
    Segment(axum::body::Bytes),
}

async fn readyz(State(ingest): State<Arc<Ingest>>) -> Response {
    if ingest.buffer.is_ready() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}", ingest.buffer.not_ready_reason()))
            .into_response()
    }
}

async fn metrics(State(ingest): State<Arc<Ingest>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        ingest.metrics.encode(),
    )
        .into_response()
}

impl Ingest {
    async fn accept_one(&self, headers: &HeaderMap, body: Body) -> Result<Accepted, RequestError> {
        self.authorize(headers)?;
        let bytes = crate::body::read(headers, body, self.max_body_bytes).await?;
        let text = crate::body::utf8(&bytes)?;
        let received_at = now_ms();
        let event = self.rules.validate(text.trim(), received_at, &mut new_event_id).map_err(|e| {
            self.metrics.events_rejected.get_or_create(&Reason { reason: e.code.as_str() }).inc();
            let code = match e.code {
                pulse_core::event::ErrorCode::InvalidJson => RequestErrorCode::InvalidJson,
                _ => RequestErrorCode::InvalidBody,
            };
            let mut refused = RequestError::new(code, e.message.clone());
            refused.field = (!e.field.is_empty()).then(|| e.field.clone());
            refused.event_errors = vec![IndexedEventError::new(0, e)];
            refused
        })?;
        self.store(vec![event]).await?;
        Ok(Accepted { accepted: 1, rejected: 0, errors: Vec::new() })
    }

    async fn accept_batch(&self, headers: &HeaderMap, body: Body) -> Result<Batch, RequestError> {
        use crate::compat::segment::{is_batch_field, is_message};
        self.authorize(headers)?;
        let bytes = crate::body::read(headers, body, self.max_body_bytes).await?;
        let text = crate::body::utf8(&bytes)?;
        let raw_events = match parse_batch(text) {
            Ok(events) if !events.first().is_some_and(|e| is_message(e.get())) => events,
            Err(e)
                if !(e.code == RequestErrorCode::InvalidBody
                    && e.field.as_deref().is_some_and(is_batch_field)) =>
            {
                return Err(e);
            }
            _ => return Ok(Batch::Segment(bytes.clone())),
        };
        if raw_events.is_empty() {
            return Err(
                RequestError::new(RequestErrorCode::EmptyBatch, "the batch holds no events").field("batch")
            );
        }
        if raw_events.len() > self.max_events_per_batch {
            return Err(RequestError::new(
                RequestErrorCode::TooManyEvents,
                format!("{} events; a batch holds at most {}", raw_events.len(), self.max_events_per_batch),
            )
            .field("batch"));
        }
        self.metrics.batch_events.observe(raw_events.len() as f64);
        let received_at = now_ms();
        let mut valid = Vec::with_capacity(raw_events.len());
        let mut errors = Vec::new();
        for (index, raw) in raw_events.iter().enumerate() {
            match self.rules.validate(raw.get(), received_at, &mut new_event_id) {
                Ok(event) => valid.push(event),
                Err(e) => {
                    self.metrics.events_rejected.get_or_create(&Reason { reason: e.code.as_str() }).inc();
                    errors.push(IndexedEventError::new(index, e));
                }
            }
        }
        if valid.is_empty() {
            let mut refused =
                RequestError::new(RequestErrorCode::NoValidEvents, "every event was refused; see errors");
            refused.event_errors = errors;
            return Err(refused);
        }
        let accepted = valid.len();
        self.store(valid).await?;
        Ok(Batch::Native(Accepted { accepted, rejected: errors.len(), errors }))
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), RequestError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            // The scheme is case-insensitive (RFC 9110).
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim());
        match presented {
            None => Err(RequestError::new(
                RequestErrorCode::Unauthorized,
                "send the pipeline's write key as `Authorization: Bearer <write key>`",
            )
            .field("Authorization")),
            Some(key) if self.keys.accepts(key.as_bytes()) => Ok(()),
            Some(_) => Err(RequestError::new(
                RequestErrorCode::Unauthorized,
                "this is not a write key of this pipeline",
            )
            .field("Authorization")),
        }
    }

    /// Applies the rate limit and backpressure, then buffers the events grouped by
    /// partition. Returns only when Redis confirmed every partition's entry.
    pub(crate) async fn store(&self, events: Vec<BufferedEvent>) -> Result<(), RequestError> {
        let count = events.len() as u64;
        if !self.buffer.is_ready() {
            return Err(unavailable(&self.buffer.not_ready_reason()));
        }
        if let Some(limiter) = &self.rate_limiter {
            match self.buffer.take_tokens(limiter, count).await.map_err(|e| buffer_error(&e))? {
                Decision::Allowed => {}
                Decision::Wait(wait) => {
                    return Err(RequestError::new(
                        RequestErrorCode::RateLimited,
                        "over the pipeline's rate limit; retry after Retry-After seconds",
                    )
                    .retry_after(wait.as_secs().max(1)));
                }
                Decision::TooLarge { burst } => {
                    return Err(RequestError::new(
                        RequestErrorCode::BatchExceedsBurst,
                        format!(
                            "{count} events exceed the rate limit's burst of {burst}; send smaller batches"
                        ),
                    )
                    .field("batch"));
                }
            }
        }
        let entries = self.entries(&events).map_err(|e| {
            RequestError::new(RequestErrorCode::InvalidBody, format!("cannot encode the events: {e}"))
        })?;
        // The mark is checked by the append itself, atomically (see Buffer::append).
        self.buffer.append(entries, self.high_water_mark).await.map_err(|e| buffer_error(&e))?;
        self.metrics.events_accepted.inc_by(count);
        Ok(())
    }

    /// One stream entry per partition: its events as a JSON array.
    fn entries(&self, events: &[BufferedEvent]) -> Result<Vec<PartitionEntry>, serde_json::Error> {
        let mut by_partition: Vec<Option<PartitionEntry>> = (0..self.partitions).map(|_| None).collect();
        for event in events {
            let partition = partition_of(&event.distinct_id, self.partitions);
            let slot = &mut by_partition[partition as usize];
            let entry =
                slot.get_or_insert_with(|| PartitionEntry { partition, payload: vec![b'['], events: 0 });
            if entry.events > 0 {
                entry.payload.push(b',');
            }
            serde_json::to_writer(&mut entry.payload, event)?;
            entry.events += 1;
        }
        Ok(by_partition
            .into_iter()
            .flatten()
            .map(|mut entry| {
                entry.payload.push(b']');
                entry
            })
            .collect())
    }

    pub(crate) fn refuse(&self, e: RequestError) -> Response {
        self.metrics.requests_rejected.get_or_create(&Reason { reason: e.code.as_str() }).inc();
        e.into_response()
    }
}

fn unavailable(reason: &str) -> RequestError {
    RequestError::new(RequestErrorCode::BufferUnavailable, format!("{reason}; nothing was acknowledged"))
        .retry_after(1)
}

fn buffer_error(e: &BufferError) -> RequestError {
    match e {
        BufferError::Full { .. } => {
            RequestError::new(RequestErrorCode::BacklogFull, format!("{e}; retry after Retry-After seconds"))
                .retry_after(1)
        }
        _ => unavailable(&e.to_string()),
    }
}

/// `{"batch": [...]}` or a bare array, each event kept as its raw JSON text.
fn parse_batch(text: &str) -> Result<Vec<&RawValue>, RequestError> {
    let not_json = |e: serde_json::Error| {
        RequestError::new(RequestErrorCode::InvalidJson, format!("the body is not valid JSON: {e}"))
    };
    let not_a_batch = |message: &str| {
        RequestError::new(
            RequestErrorCode::InvalidBody,
            format!("a batch is {{\"batch\": [event, ...]}}: {message}"),
        )
    };
    let value: &RawValue = serde_json::from_str(text).map_err(not_json)?;
    match value.get().trim_start().as_bytes().first() {
        Some(b'[') => events_array(value),
        Some(b'{') => {
            let fields: ObjectFields<&RawValue> = serde_json::from_str(value.get()).map_err(not_json)?;
            if let Some(twice) = fields.first_duplicate() {
                return Err(duplicate_key(twice));
            }
            if let Some((unknown, _)) = fields.0.iter().find(|(k, _)| k != "batch") {
                return Err(not_a_batch("unknown field").field(unknown.clone()));
            }
            let batch =
                fields.get("batch").ok_or_else(|| not_a_batch("`batch` is required").field("batch"))?;
            events_array(batch)
        }
        _ => Err(not_a_batch("the body is neither").field("batch")),
    }
}

/// The refusal of a body whose JSON holds a key twice at `path`.
pub(crate) fn duplicate_key(path: &str) -> RequestError {
    RequestError::new(
        RequestErrorCode::DuplicateKey,
        format!("the key {path:?} is sent twice in one object; send each key once"),
    )
    .field(path)
}

fn events_array(raw: &RawValue) -> Result<Vec<&RawValue>, RequestError> {
    serde_json::from_str::<Vec<&RawValue>>(raw.get()).map_err(|_| {
        RequestError::new(RequestErrorCode::InvalidBody, "`batch` must be an array of events").field("batch")
    })
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub(crate) fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
