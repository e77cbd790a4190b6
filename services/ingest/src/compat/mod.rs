//! Drop-in ingest for the SDKs teams already use: Segment's HTTP Tracking API and PostHog's
//! capture API at their own paths at the ingest root (`/v1/track`, `/batch/`, ...), so an
//! app moves to Pulse by giving its SDK only the ingest URL and the write key. The same
//! endpoints stay under `/compat/segment` and `/compat/posthog`. `/v1/batch` is both
//! Pulse's and Segment's: `api::post_batch` tells them apart (see docs/api.md).
//!
//! Each format is parsed and mapped to the native event (the mapping is in `segment.rs`
//! and `posthog.rs`, and in docs/compat.md); from there a message takes exactly the path of
//! a `/v1/batch` event: the same validation and limits, the same partitioning by
//! `distinct_id`, the same dedup key (`event_id` = the SDK's message id) and the same
//! durable append. Refusals use the native error body plus the top-level fields of the
//! real API's (see `error::Dialect`), with the SDK's field names and the statuses the SDKs
//! retry on (429 and 5xx) or give up on (other 4xx).

pub mod clock;
pub mod posthog;
pub mod segment;

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pulse_core::buffer::BufferedEvent;
use pulse_core::event::EventError;
use pulse_core::json::JsonError;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Dialect, RequestError, RequestErrorCode};
use crate::metrics::{Endpoint, Reason};
use crate::service::{IndexedEventError, Ingest, new_event_id, now_ms};

/// The compat routes, merged into ingest's router: Segment's and PostHog's paths at the
/// root and under their `/compat/...` prefix. The root `/v1/batch` is routed by `api`.
pub fn routes() -> Router<Arc<Ingest>> {
    let mut router = Router::new()
        .route("/compat/segment/v1/batch", post(segment_batch))
        .route("/compat/segment/v1/import", post(segment_batch))
        // analytics.js in batching mode posts its batches to `/v1/b`.
        .route("/compat/segment/v1/b", post(segment_batch))
        .route("/compat/segment/v1/{kind}", post(segment_single))
        .route("/v1/import", post(segment_batch))
        .route("/v1/b", post(segment_batch));
    for (name, kind) in segment::ROOT_ENDPOINTS {
        router = router.route(
            &format!("/v1/{name}"),
            post(move |State(ingest): State<Arc<Ingest>>, headers: HeaderMap, body: Body| async move {
                let started = Instant::now();
                let answer = segment_request(&ingest, &headers, body, Some(kind)).await;
                respond(&ingest, Dialect::Segment, started, answer)
            }),
        );
    }
    for prefix in ["", "/compat/posthog"] {
        for path in posthog::PATHS {
            router = router
                .route(&format!("{prefix}{path}"), post(posthog_capture))
                .route(&format!("{prefix}{path}/"), post(posthog_capture));
        }
        for path in posthog::FLAG_PATHS {
            router = router
                .route(&format!("{prefix}{path}"), get(posthog_flags).post(posthog_flags))
                .route(&format!("{prefix}{path}/"), get(posthog_flags).post(posthog_flags));
        }
    }
    router
}

/// One SDK message as a native event (`event_id`, `event`, `distinct_id`, `timestamp` in
/// epoch ms, `properties`), with the SDK's names of its fields for errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub event: Map<String, Value>,
    pub names: WireNames,
}

/// The SDK's names of a mapped event's fields, for errors: an error about
/// `properties.$set.email` of a Segment identify names `traits.email`. Static, so mapping
/// a message allocates nothing for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WireNames {
    /// (native field prefix, the SDK's field) within properties, most specific first.
    pub nested: &'static [(&'static str, &'static str)],
    pub distinct_id: &'static str,
    pub event_id: &'static str,
    pub timestamp: &'static str,
}

impl WireNames {
    /// The SDK's name of a native field path.
    pub fn wire(&self, native: &str) -> String {
        let top =
            [("distinct_id", self.distinct_id), ("event_id", self.event_id), ("timestamp", self.timestamp)];
        wire_field(self.nested.iter().chain(&top), native)
    }
}

/// The SDK's name of a native field path, by (native prefix, SDK field) pairs.
fn wire_field<'a>(
    fields: impl IntoIterator<Item = &'a (&'static str, &'static str)>,
    native: &str,
) -> String {
    for (prefix, wire) in fields {
        if let Some(rest) = native.strip_prefix(prefix)
            && (rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
        {
            return format!("{wire}{rest}");
        }
    }
    native.to_string()
}

/// A refusal of one message, before or after mapping.
pub(crate) fn event_error(
    code: pulse_core::event::ErrorCode,
    field: impl Into<String>,
    message: impl Into<String>,
) -> EventError {
    EventError { code, field: field.into(), message: message.into() }
}

pub(crate) use pulse_core::event::type_name;

/// What the SDK is told on success: the native counts, plus the field its SDK expects
/// (`success` for Segment, `status` for PostHog).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CompatAccepted {
    /// Segment's answer is `{"success": true}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    success: Option<bool>,
    /// PostHog's answer is `{"status": 1}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    status: Option<u8>,
    #[serde(flatten)]
    accepted: crate::service::Accepted,
}

/// The length of `map` as compact JSON.
fn json_len(map: &Map<String, Value>) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing to the counter cannot fail and a map of JSON values always serializes.
    let _ = serde_json::to_writer(&mut counter, map);
    counter.0
}

/// Maps, validates and durably buffers the messages of one request, like /v1/batch.
/// `single` requests (one message by its endpoint) refuse like /v1/events: the event's
/// error becomes the request's.
async fn accept(
    ingest: &Ingest,
    messages: Vec<Result<Mapped, EventError>>,
    received_at: i64,
    single: bool,
) -> Result<crate::service::Accepted, RequestError> {
    ingest.check_batch_size(messages.len())?;
    let mut valid: Vec<BufferedEvent> = Vec::with_capacity(messages.len());
    let mut errors = Vec::new();
    for (index, message) in messages.into_iter().enumerate() {
        let checked = message.and_then(|Mapped { event, names }| {
            // The size limit applies to the event as it will be stored; counted without
            // building the text, and validated without parsing it again.
            let bytes = json_len(&event);
            if bytes > ingest.rules.max_event_bytes() {
                return Err(event_error(
                    pulse_core::event::ErrorCode::EventTooLarge,
                    "",
                    format!("the event is {bytes} bytes; the limit is {}", ingest.rules.max_event_bytes()),
                ));
            }
            ingest.rules.validate_value(Value::Object(event), received_at, &mut new_event_id).map_err(
                |mut e| {
                    e.field = names.wire(&e.field);
                    e
                },
            )
        });
        match checked {
            Ok(event) => valid.push(event),
            Err(e) => {
                ingest.metrics.events_rejected.get_or_create(&Reason { reason: e.code.as_str() }).inc();
                errors.push(IndexedEventError::new(index, e));
            }
        }
    }
    if valid.is_empty() {
        let mut refused = if single {
            let first = &errors[0];
            let code = if first.code == "invalid_json" {
                RequestErrorCode::InvalidJson
            } else {
                RequestErrorCode::InvalidBody
            };
            let mut refused = RequestError::new(code, first.message.clone());
            refused.field = (!first.field.is_empty()).then(|| first.field.clone());
            refused
        } else {
            RequestError::new(RequestErrorCode::NoValidEvents, "every event was refused; see errors")
        };
        refused.event_errors = errors;
        return Err(refused);
    }
    let accepted = valid.len();
    ingest.store(valid).await?;
    Ok(crate::service::Accepted { accepted, rejected: errors.len(), errors })
}

/// The body as JSON: read within the limits (Content-Encoding gzip included), then
/// inflated when it is gzip without saying so, as posthog-js sends it
/// (`?compression=gzip-js`).
async fn read_json(ingest: &Ingest, headers: &HeaderMap, body: Body) -> Result<Value, RequestError> {
    let bytes = crate::body::read(headers, body, ingest.max_body_bytes).await?;
    parse_json(ingest, bytes)
}

/// A body read by `body::read` as JSON.
fn parse_json(ingest: &Ingest, bytes: Bytes) -> Result<Value, RequestError> {
    let bytes = crate::body::inflate_unlabelled(bytes, ingest.max_body_bytes)?;
    let text = crate::body::utf8(&bytes)?;
    pulse_core::json::parse(text).map_err(|e| match e {
        // The path is the SDK's own: the body is parsed before any mapping.
        JsonError::DuplicateKey { path } => crate::service::duplicate_key(&path),
        JsonError::Syntax(e) => {
            RequestError::new(RequestErrorCode::InvalidJson, format!("the body is not valid JSON: {e}"))
        }
    })
}

/// The answer to a compat request: 200 (what the SDKs take as success) or the refusal in
/// the body shape of `dialect`'s API.
fn respond(
    ingest: &Ingest,
    dialect: Dialect,
    started: Instant,
    answer: Result<CompatAccepted, RequestError>,
) -> Response {
    let endpoint = if dialect == Dialect::PostHog { "posthog" } else { "segment" };
    let response = match answer {
        Ok(accepted) => (StatusCode::OK, Json(accepted)).into_response(),
        Err(e) => ingest.refuse(e.dialect(dialect)),
    };
    ingest
        .metrics
        .request_seconds
        .get_or_create(&Endpoint { endpoint })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Segment's batch endpoint (what every Segment SDK posts to): `{"batch": [message, ...],
/// "sentAt", "context", "writeKey"}`. The write key comes by HTTP Basic (as the SDKs send
/// it), Bearer, or `writeKey` in the body. See docs/compat.md for the mapping to native
/// events. Also at the ingest root, where Segment's SDKs post given only the ingest URL:
/// `/v1/batch` (shared with Pulse's own batch, see there), `/v1/b` and `/v1/import`.
#[utoipa::path(
    post, path = "/compat/segment/v1/batch",
    request_body(content = crate::openapi::SegmentBatchInput, content_type = "application/json", description = "Segment's batch; gzip with Content-Encoding: gzip"),
    responses(
        (status = 200, description = "Valid messages durably buffered (`success: true`); refused ones listed in `errors`", body = CompatAccepted),
        (status = 400, description = "Invalid JSON, body or messages; `error.field` and `errors[].field` name the SDK's field", body = crate::error::ErrorResponse),
        (status = 401, description = "Missing or wrong write key", body = crate::error::ErrorResponse),
        (status = 413, description = "Body, batch or an event too large", body = crate::error::ErrorResponse),
        (status = 415, description = "Unsupported Content-Type or Content-Encoding", body = crate::error::ErrorResponse),
        (status = 429, description = "Rate limited or backlog full; the SDKs retry after Retry-After", body = crate::error::ErrorResponse),
        (status = 503, description = "Buffer unavailable; nothing was acknowledged; the SDKs retry", body = crate::error::ErrorResponse),
    ),
    security((), ("write_key" = []), ("segment_basic" = []))
)]
pub async fn segment_batch(State(ingest): State<Arc<Ingest>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let answer = segment_request(&ingest, &headers, body, None).await;
    respond(&ingest, Dialect::Segment, started, answer)
}

/// A Segment batch posted to the root `/v1/batch` that `api` read as Pulse's own first and
/// found to be Segment's.
pub(crate) async fn segment_batch_read(
    ingest: &Ingest,
    headers: &HeaderMap,
    bytes: Bytes,
    started: Instant,
) -> Response {
    let answer = async {
        // The native handler has checked the Bearer key already.
        let keyed = segment::write_key_of(headers)?.is_some();
        segment_json(ingest, keyed, parse_json(ingest, bytes)?, None).await
    }
    .await;
    respond(ingest, Dialect::Segment, started, answer)
}

/// One Segment call, its type given by the path: track, identify, page, screen, group or
/// alias (or t, i, p, s, g, a). Also at the ingest root: `/v1/track`, `/v1/identify`, ...
#[utoipa::path(
    post, path = "/compat/segment/v1/{kind}",
    params(("kind" = String, Path, description = "track, identify, page, screen, group or alias")),
    request_body(content = Object, content_type = "application/json", description = "One Segment message"),
    responses(
        (status = 200, description = "Durably buffered (`success: true`)", body = CompatAccepted),
        (status = 404, description = "No such call type", body = crate::error::ErrorResponse),
        (status = 400, description = "Invalid JSON, body or messages; `error.field` and `errors[].field` name the SDK's field", body = crate::error::ErrorResponse),
        (status = 401, description = "Missing or wrong write key", body = crate::error::ErrorResponse),
        (status = 413, description = "Body, batch or an event too large", body = crate::error::ErrorResponse),
        (status = 415, description = "Unsupported Content-Type or Content-Encoding", body = crate::error::ErrorResponse),
        (status = 429, description = "Rate limited or backlog full; the SDKs retry after Retry-After", body = crate::error::ErrorResponse),
        (status = 503, description = "Buffer unavailable; nothing was acknowledged; the SDKs retry", body = crate::error::ErrorResponse),
    ),
    security((), ("write_key" = []), ("segment_basic" = []))
)]
pub async fn segment_single(
    State(ingest): State<Arc<Ingest>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let answer = match segment::MessageType::of_endpoint(&kind) {
        Some(kind) => segment_request(&ingest, &headers, body, Some(kind)).await,
        None => Err(RequestError::new(
            RequestErrorCode::NotFound,
            format!("no Segment endpoint /v1/{kind}; the endpoints are {}", segment::ENDPOINTS),
        )),
    };
    respond(&ingest, Dialect::Segment, started, answer)
}

async fn segment_request(
    ingest: &Ingest,
    headers: &HeaderMap,
    body: Body,
    single: Option<segment::MessageType>,
) -> Result<CompatAccepted, RequestError> {
    let header_key = segment::write_key_of(headers)?;
    if header_key.is_some() {
        ingest.check_key(header_key.as_deref(), "Authorization", "")?;
    }
    let json = read_json(ingest, headers, body).await?;
    segment_json(ingest, header_key.is_some(), json, single).await
}

/// A Segment request's JSON, its key checked already when it came in a header (`keyed`),
/// else read from the body.
async fn segment_json(
    ingest: &Ingest,
    keyed: bool,
    json: Value,
    single: Option<segment::MessageType>,
) -> Result<CompatAccepted, RequestError> {
    let received_at = now_ms();
    let request = segment::Request::parse(json, single)?;
    if !keyed {
        ingest.check_key(
            request.write_key.as_deref(),
            "Authorization",
            "as the user name of HTTP Basic auth (`Authorization: Basic base64(<write key>:)`), as Segment's SDKs do, or as `writeKey` in the body; Pulse's own /v1/batch takes `Authorization: Bearer <write key>`",
        )?;
    }
    let messages = request.map(received_at);
    let accepted = accept(ingest, messages, received_at, single.is_some()).await?;
    Ok(CompatAccepted { success: Some(true), status: None, accepted })
}

/// PostHog's capture API: the same handler serves `/batch`, `/capture`, `/e`, `/i/v0/e` and
/// `/track` (each also with a trailing slash), at the ingest root and under `/compat/posthog`. The body is `{"api_key", "batch": [...],
/// "sent_at"}`, an array of events, or one event; gzip with or without Content-Encoding.
#[utoipa::path(
    post, path = "/compat/posthog/batch/",
    request_body(content = Object, content_type = "application/json", description = "PostHog's batch, an array of events or one event, with `api_key`"),
    responses(
        (status = 200, description = "Valid events durably buffered (`status: 1`); refused ones listed in `errors`", body = CompatAccepted),
        (status = 400, description = "Invalid JSON, body or messages; `error.field` and `errors[].field` name the SDK's field", body = crate::error::ErrorResponse),
        (status = 401, description = "Missing or wrong write key", body = crate::error::ErrorResponse),
        (status = 413, description = "Body, batch or an event too large", body = crate::error::ErrorResponse),
        (status = 415, description = "Unsupported Content-Type or Content-Encoding", body = crate::error::ErrorResponse),
        (status = 429, description = "Rate limited or backlog full; the SDKs retry after Retry-After", body = crate::error::ErrorResponse),
        (status = 503, description = "Buffer unavailable; nothing was acknowledged; the SDKs retry", body = crate::error::ErrorResponse),
    )
)]
pub async fn posthog_capture(State(ingest): State<Arc<Ingest>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let answer = async {
        let json = read_json(&ingest, &headers, body).await?;
        let received_at = now_ms();
        let request = posthog::Request::parse(json)?;
        ingest.check_key(
            request.api_key.as_deref(),
            "api_key",
            "as `api_key` in the body (the project API key of the SDK's configuration)",
        )?;
        let single = request.single;
        let messages = request.map(received_at);
        let accepted = accept(&ingest, messages, received_at, single).await?;
        Ok(CompatAccepted { success: None, status: Some(1), accepted })
    }
    .await;
    // PostHog's SDKs take only 200 as success.
    respond(&ingest, Dialect::PostHog, started, answer)
}

/// PostHog's feature-flag probes (`/decide/`, `/flags/`, GET or POST, at the root and under
/// `/compat/posthog`), which posthog-js sends on load and the server SDKs when asked for a
/// flag: Pulse has no feature flags, so every flag is off. The answer says so rather than
/// failing, so the SDK keeps capturing.
#[utoipa::path(
    method(get, post), path = "/decide/",
    responses(
        (status = 200, description = "No feature flags: `featureFlags` is empty and `pulse` says why", body = Object),
    )
)]
pub async fn posthog_flags() -> Response {
    Json(serde_json::json!({
        "featureFlags": {},
        "featureFlagPayloads": {},
        "flags": {},
        "errorsWhileComputingFlags": false,
        "quotaLimited": [],
        "sessionRecording": false,
        "supportedCompression": ["gzip", "gzip-js"],
        "autocapture_opt_out": true,
        "capturePerformance": false,
        "siteApps": [],
        "pulse": "Pulse ingests events only: it has no feature flags, session recording or surveys, so every flag is off",
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_fields_rename_the_most_specific_prefix() {
        let names = WireNames {
            nested: &[("properties.$set", "traits"), ("properties.$context", "context")],
            distinct_id: "userId",
            event_id: "messageId",
            timestamp: "originalTimestamp",
        };
        assert_eq!(names.wire("properties.$set.email"), "traits.email");
        assert_eq!(names.wire("properties.$settings"), "properties.$settings");
        assert_eq!(names.wire("properties.$context.page[2]"), "context.page[2]");
        assert_eq!(names.wire("properties.plan"), "properties.plan");
        assert_eq!(names.wire("distinct_id"), "userId");
        assert_eq!(names.wire("event_id"), "messageId");
        assert_eq!(names.wire("timestamp"), "originalTimestamp");
        assert_eq!(names.wire("event"), "event");
        assert_eq!(names.wire(""), "");
    }

    #[test]
    fn json_len_is_the_length_of_the_text() {
        let event = serde_json::json!({ "event": "a\"b", "properties": { "é": [1, 2.5, null], "n": {} } });
        let map = event.as_object().expect("object");
        assert_eq!(json_len(map), event.to_string().len());
    }
}
