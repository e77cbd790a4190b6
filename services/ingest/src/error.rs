//! Request-level refusals: every one is JSON with a stable code, the field when there is
//! one, and a message, plus the HTTP status that says who has to act.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Why a whole request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestErrorCode {
    /// No `Authorization: Bearer <write key>` header, or not this pipeline's write key (401).
    Unauthorized,
    /// The body (after gzip decompression) is larger than the pipeline's limit (413).
    BodyTooLarge,
    /// Content-Type is not application/json (or text/plain) (415).
    UnsupportedMediaType,
    /// Content-Encoding is not gzip or identity (415).
    UnsupportedEncoding,
    /// The gzip stream is corrupt or truncated (400).
    InvalidGzip,
    /// The body is not UTF-8 JSON (400).
    InvalidJson,
    /// The JSON is not an event (for /v1/events) or `{"batch": [...]}` (for /v1/batch) (400).
    InvalidBody,
    /// The body's JSON holds an object with the same key twice; `field` is its path (400).
    DuplicateKey,
    /// A batch with no events (400).
    EmptyBatch,
    /// More events in one batch than the pipeline's limit (413).
    TooManyEvents,
    /// Every event of the batch was refused; see `errors` (400).
    NoValidEvents,
    /// A batch larger than the rate limit's burst can never be accepted; split it (413).
    BatchExceedsBurst,
    /// Over the tenant's rate limit; retry after `Retry-After` seconds (429).
    RateLimited,
    /// The unprocessed backlog is at its high-water mark; retry after `Retry-After` (429).
    BacklogFull,
    /// The buffer (Redis) is unreachable or too slow; nothing was acknowledged (503).
    BufferUnavailable,
    /// No such endpoint (404).
    NotFound,
    /// The endpoint does not take this method (405).
    MethodNotAllowed,
}

impl RequestErrorCode {
    /// The code as a metric label and in responses.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestErrorCode::Unauthorized => "unauthorized",
            RequestErrorCode::BodyTooLarge => "body_too_large",
            RequestErrorCode::UnsupportedMediaType => "unsupported_media_type",
            RequestErrorCode::UnsupportedEncoding => "unsupported_encoding",
            RequestErrorCode::InvalidGzip => "invalid_gzip",
            RequestErrorCode::InvalidJson => "invalid_json",
            RequestErrorCode::InvalidBody => "invalid_body",
            RequestErrorCode::DuplicateKey => "duplicate_key",
            RequestErrorCode::EmptyBatch => "empty_batch",
            RequestErrorCode::TooManyEvents => "too_many_events",
            RequestErrorCode::NoValidEvents => "no_valid_events",
            RequestErrorCode::BatchExceedsBurst => "batch_exceeds_burst",
            RequestErrorCode::RateLimited => "rate_limited",
            RequestErrorCode::BacklogFull => "backlog_full",
            RequestErrorCode::BufferUnavailable => "buffer_unavailable",
            RequestErrorCode::NotFound => "not_found",
            RequestErrorCode::MethodNotAllowed => "method_not_allowed",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            RequestErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            RequestErrorCode::BodyTooLarge
            | RequestErrorCode::TooManyEvents
            | RequestErrorCode::BatchExceedsBurst => StatusCode::PAYLOAD_TOO_LARGE,
            RequestErrorCode::UnsupportedMediaType | RequestErrorCode::UnsupportedEncoding => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            RequestErrorCode::InvalidGzip
            | RequestErrorCode::InvalidJson
            | RequestErrorCode::InvalidBody
            | RequestErrorCode::DuplicateKey
            | RequestErrorCode::EmptyBatch
            | RequestErrorCode::NoValidEvents => StatusCode::BAD_REQUEST,
            RequestErrorCode::RateLimited | RequestErrorCode::BacklogFull => StatusCode::TOO_MANY_REQUESTS,
            RequestErrorCode::BufferUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            RequestErrorCode::NotFound => StatusCode::NOT_FOUND,
            RequestErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

/// The body of every refused request. The compat endpoints add, beside `error`, the
/// top-level fields the real Segment and PostHog APIs answer with, which their SDKs read
/// to report the error (an SDK that finds none may take a refusal for a network fault and
/// retry it).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorResponse {
    /// Compat endpoints only: `error.code` again, at the top level as Segment's and
    /// PostHog's APIs put it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, required = false)]
    pub code: Option<RequestErrorCode>,
    /// Compat endpoints only: `error.message` again, at the top level as Segment's API
    /// puts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, required = false)]
    pub message: Option<String>,
    /// PostHog endpoints only: PostHog's error class (`authentication_error`,
    /// `validation_error`, `throttled_error` or `server_error`).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, required = false)]
    pub kind: Option<&'static str>,
    /// PostHog endpoints only: the message, where PostHog's SDKs read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, required = false)]
    pub detail: Option<String>,
    /// PostHog endpoints only: the offending field (PostHog's `attr`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, required = false)]
    pub attr: Option<String>,
    pub error: ErrorDetail,
    /// Per-event errors, when the refusal is about the events of a request; absent when
    /// there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub errors: Vec<crate::service::IndexedEventError>,
}

/// What was wrong.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code: why the request was refused.
    pub code: RequestErrorCode,
    /// The offending field, e.g. `timestamp` or `batch`; absent when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
    /// Why, for people.
    pub message: String,
}

/// Whose error body a refusal takes: Pulse's own, or that of the API an SDK was written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    #[default]
    Native,
    /// `code` and `message` at the top level too, as Segment's tracking API answers.
    Segment,
    /// `type`, `code`, `detail` and `attr` at the top level too, as PostHog's capture answers
    /// (and `message`, for clients written against Segment's shape).
    PostHog,
}

/// A refused request, ready to become a response.
#[derive(Debug, Clone)]
pub struct RequestError {
    pub code: RequestErrorCode,
    pub field: Option<String>,
    pub message: String,
    pub retry_after_secs: Option<u64>,
    pub event_errors: Vec<crate::service::IndexedEventError>,
    pub dialect: Dialect,
}

impl RequestError {
    pub fn new(code: RequestErrorCode, message: impl Into<String>) -> Self {
        RequestError {
            code,
            field: None,
            message: message.into(),
            retry_after_secs: None,
            event_errors: Vec::new(),
            dialect: Dialect::Native,
        }
    }

    /// The body shape of the API the client was written for.
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let compat = self.dialect != Dialect::Native;
        let posthog = self.dialect == Dialect::PostHog;
        let body = ErrorResponse {
            code: compat.then_some(self.code),
            message: compat.then(|| self.message.clone()),
            kind: posthog.then(|| posthog_type(status)),
            detail: posthog.then(|| self.message.clone()),
            attr: if posthog { self.field.clone() } else { None },
            error: ErrorDetail { code: self.code, field: self.field, message: self.message },
            errors: self.event_errors,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            let scheme = if self.dialect == Dialect::Segment { "Basic" } else { "Bearer" };
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(scheme));
        }
        response
    }
}

/// PostHog's class of an error with `status`.
fn posthog_type(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "authentication_error",
        StatusCode::TOO_MANY_REQUESTS => "throttled_error",
        s if s.is_server_error() => "server_error",
        _ => "validation_error",
    }
}
