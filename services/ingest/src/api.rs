//! The HTTP API of ingest: `POST /v1/events` and `POST /v1/batch`, plus health, metrics
//! and the OpenAPI document.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::error::{RequestError, RequestErrorCode};
use crate::metrics::Endpoint;
use crate::service::Batch;
pub use crate::service::{Accepted, IndexedEventError, Ingest};

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
