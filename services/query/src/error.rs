//! Refusals: JSON with a stable code, the fields at fault, a message, and the HTTP status
//! that says who has to act (the same shape as ingest's errors).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pulse_core::analytics::AnalyticsError;
use pulse_store::StoreError;
use schemars::JsonSchema;
use serde::Serialize;

/// Why a query was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueryErrorCode {
    /// No `Authorization: Bearer <read key>` header, or not this pipeline's read key; a
    /// write key cannot read (401).
    Unauthorized,
    /// The body is not JSON, or not an object (400).
    InvalidBody,
    /// The query is wrong: a field or query parameter missing, of the wrong type or value,
    /// an empty range; `fields` says where (400).
    InvalidQuery,
    /// A time that is epoch seconds given by mistake (10^9 to 10^11, which as milliseconds
    /// is 1970 to 1973): well-formed, but it would answer zeros; `fields` says where (422).
    EpochSeconds,
    /// No declared funnel of that name (404).
    UnknownFunnel,
    /// The query would read more events than the limit (422): narrow it.
    TooManyEvents,
    /// The answer would have more periods than the limit (422).
    TooManyPeriods,
    /// A funnel breakdown with more values than the limit (422).
    TooManyBreakdownValues,
    /// The people of a cell the report does not have (a funnel's step 5 of 3, a retention
    /// offset past its periods) (422); `fields` says where.
    NotInReport,
    /// The store is unreachable or failed; retry (503).
    StoreUnavailable,
    /// This replica is already computing its limit of ad-hoc queries and its wait queue is
    /// full, or the query waited longer than the limit for its turn; retry after
    /// `Retry-After` seconds (503).
    Overloaded,
    /// The replica is still reading its pre-aggregates, or the store does not answer
    /// (`/readyz` only, 503).
    NotReady,
    /// No such endpoint (404).
    NotFound,
    /// The endpoint exists but not with this method (405).
    MethodNotAllowed,
    /// The body is larger than the limit (413).
    BodyTooLarge,
    /// The body's Content-Type is not JSON (415).
    UnsupportedMediaType,
    /// The query failed in a way that is a defect of the service (500).
    Internal,
}

impl QueryErrorCode {
    /// The code as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            QueryErrorCode::Unauthorized => "unauthorized",
            QueryErrorCode::InvalidBody => "invalid_body",
            QueryErrorCode::EpochSeconds => "epoch_seconds",
            QueryErrorCode::InvalidQuery => "invalid_query",
            QueryErrorCode::UnknownFunnel => "unknown_funnel",
            QueryErrorCode::TooManyEvents => "too_many_events",
            QueryErrorCode::TooManyPeriods => "too_many_periods",
            QueryErrorCode::TooManyBreakdownValues => "too_many_breakdown_values",
            QueryErrorCode::NotInReport => "not_in_report",
            QueryErrorCode::StoreUnavailable => "store_unavailable",
            QueryErrorCode::Overloaded => "overloaded",
            QueryErrorCode::NotReady => "not_ready",
            QueryErrorCode::NotFound => "not_found",
            QueryErrorCode::MethodNotAllowed => "method_not_allowed",
            QueryErrorCode::BodyTooLarge => "body_too_large",
            QueryErrorCode::UnsupportedMediaType => "unsupported_media_type",
            QueryErrorCode::Internal => "internal",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            QueryErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            QueryErrorCode::InvalidBody | QueryErrorCode::InvalidQuery => StatusCode::BAD_REQUEST,
            QueryErrorCode::UnknownFunnel | QueryErrorCode::NotFound => StatusCode::NOT_FOUND,
            QueryErrorCode::EpochSeconds
            | QueryErrorCode::TooManyEvents
            | QueryErrorCode::TooManyPeriods
            | QueryErrorCode::TooManyBreakdownValues
            | QueryErrorCode::NotInReport => StatusCode::UNPROCESSABLE_ENTITY,
            QueryErrorCode::StoreUnavailable | QueryErrorCode::Overloaded | QueryErrorCode::NotReady => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            QueryErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            QueryErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            QueryErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            QueryErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The body of every refusal.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

/// What was wrong.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ErrorDetail {
    pub code: QueryErrorCode,
    pub message: String,
    /// Each field at fault and why, when the query itself is wrong; absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldProblem>,
}

/// One field at fault.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FieldProblem {
    /// The field's path in the request, e.g. `definition.steps[1].event`.
    pub field: String,
    pub reason: String,
}

/// A refused query, ready to become a response.
#[derive(Debug, Clone)]
pub struct QueryError {
    pub code: QueryErrorCode,
    pub message: String,
    pub fields: Vec<FieldProblem>,
}

impl QueryError {
    pub fn new(code: QueryErrorCode, message: impl Into<String>) -> Self {
        QueryError { code, message: message.into(), fields: Vec::new() }
    }

    /// One field at fault.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let (field, reason) = (field.into(), reason.into());
        QueryError {
            code: QueryErrorCode::InvalidQuery,
            message: format!("{field}: {reason}"),
            fields: vec![FieldProblem { field, reason }],
        }
    }

    /// A refusal because this replica has as much ad-hoc work as it takes.
    pub fn overloaded(message: impl Into<String>) -> Self {
        QueryError::new(QueryErrorCode::Overloaded, message)
    }

    /// A defect of the service (a computation that panicked, an answer that would not
    /// encode): logged, and answered without details.
    pub fn internal(what: impl std::fmt::Display) -> Self {
        tracing::error!(error = %what, "query failed");
        QueryError::new(QueryErrorCode::Internal, "the query failed; this is a defect of the service")
    }

    /// Prefixes every field with where the engine's query sits in the request.
    pub fn under(mut self, prefix: &str) -> Self {
        for f in &mut self.fields {
            f.field = format!("{prefix}.{}", f.field);
        }
        self
    }
}

impl From<AnalyticsError> for QueryError {
    fn from(e: AnalyticsError) -> Self {
        let message = e.to_string();
        match e {
            AnalyticsError::Invalid(errors) => QueryError {
                code: QueryErrorCode::InvalidQuery,
                message,
                fields: errors
                    .into_iter()
                    .map(|f| FieldProblem { field: f.field.clone(), reason: f.reason.clone() })
                    .collect(),
            },
            AnalyticsError::TooManyEvents { .. } => QueryError::new(QueryErrorCode::TooManyEvents, message),
            AnalyticsError::TooManyPeriods { .. } => QueryError::new(QueryErrorCode::TooManyPeriods, message),
            AnalyticsError::TooManyBreakdownValues { .. } => {
                QueryError::new(QueryErrorCode::TooManyBreakdownValues, message)
            }
            AnalyticsError::NotInReport { field, reason } => QueryError {
                code: QueryErrorCode::NotInReport,
                message,
                fields: vec![FieldProblem { field, reason }],
            },
        }
    }
}

impl From<StoreError> for QueryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TooManyEvents { .. } | StoreError::TooManyProfiles { .. } => {
                QueryError::new(QueryErrorCode::TooManyEvents, e.to_string())
            }
            other => {
                // The store's message may name hosts; the client gets the code only.
                tracing::warn!(error = %other, "store read failed");
                QueryError::new(QueryErrorCode::StoreUnavailable, "the store did not answer; retry")
            }
        }
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let body = ErrorResponse {
            error: ErrorDetail { code: self.code, message: self.message, fields: self.fields },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
