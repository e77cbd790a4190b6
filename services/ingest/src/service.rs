//! The ingest service apart from HTTP: what a request needs (the pipeline's rules, keys,
//! limits and buffer), and what accepting events means: the write key checked, the body
//! read within the limits, events validated, rate limit and backpressure applied, and the
//! events buffered by partition. The native API (`api`) and the SDK dialects (`compat`)
//! are its callers.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use pulse_core::buffer::{BufferedEvent, partition_of};
use pulse_core::event::{EventError, EventRules};
use pulse_core::json::ObjectFields;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::buffer::{Buffer, BufferError, PartitionEntry};
use crate::error::{RequestError, RequestErrorCode};
use crate::keys::KeyRing;
use crate::metrics::{Metrics, Reason};
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

/// What a request to `/v1/batch` with a Bearer key turned out to be.
pub(crate) enum Batch {
    /// Pulse's batch, accepted.
    Native(Accepted),
    /// Segment's batch (its body, read and inflated), for the Segment handler.
    Segment(axum::body::Bytes),
}

impl Ingest {
    pub(crate) async fn accept_one(&self, headers: &HeaderMap, body: Body) -> Result<Accepted, RequestError> {
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

    pub(crate) async fn accept_batch(&self, headers: &HeaderMap, body: Body) -> Result<Batch, RequestError> {
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
        self.check_batch_size(raw_events.len())?;
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

    /// Refuses an empty batch or one over the pipeline's limit, and counts the others'
    /// sizes (every dialect's batch goes through here).
    pub(crate) fn check_batch_size(&self, events: usize) -> Result<(), RequestError> {
        if events == 0 {
            return Err(
                RequestError::new(RequestErrorCode::EmptyBatch, "the batch holds no events").field("batch")
            );
        }
        if events > self.max_events_per_batch {
            return Err(RequestError::new(
                RequestErrorCode::TooManyEvents,
                format!("{events} events; a batch holds at most {}", self.max_events_per_batch),
            )
            .field("batch"));
        }
        self.metrics.batch_events.observe(events as f64);
        Ok(())
    }

    /// Checks the write key of a native request: `Authorization: Bearer <write key>` (the
    /// scheme is case-insensitive, RFC 9110).
    fn authorize(&self, headers: &HeaderMap) -> Result<(), RequestError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key);
        self.check_key(presented, "Authorization", "as `Authorization: Bearer <write key>`")
    }

    /// Checks a write key presented in `field` (a header, or a field of an SDK's body);
    /// `how` tells a client that sent none how to send it.
    pub(crate) fn check_key(&self, key: Option<&str>, field: &str, how: &str) -> Result<(), RequestError> {
        match key.map(str::trim).filter(|k| !k.is_empty()) {
            None => Err(RequestError::new(
                RequestErrorCode::Unauthorized,
                format!("send the pipeline's write key {how}"),
            )
            .field(field)),
            Some(key) if self.keys.accepts(key.as_bytes()) => Ok(()),
            Some(_) => Err(RequestError::new(
                RequestErrorCode::Unauthorized,
                "this is not a write key of this pipeline",
            )
            .field(field)),
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
