//! Incoming events: parsing and validation of what clients send, before anything is
//! buffered. Each refusal names the field and the reason, with a stable code.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::buffer::BufferedEvent;
use crate::config::IngestLimits;
use crate::json::JsonError;
use crate::property::PropertyPath;

mod properties;

/// Why a NUL is refused, after "a ... ": no MongoDB-wire store takes it in a key, and
/// PostgreSQL (FerretDB's backend) takes it in no text at all.
const NUL_REASON: &str = "must not contain the NUL character (U+0000), which the store cannot hold";

/// Why an event (or a request) was refused: a stable machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not UTF-8.
    InvalidJson,
    /// A field has the wrong JSON type.
    InvalidType,
    /// A required field is absent.
    MissingField,
    /// A field the API does not know (likely a typo; refused rather than dropped).
    UnknownField,
    /// A string that must not be empty is empty or only whitespace.
    Empty,
    /// A name or id is longer than the limit.
    TooLong,
    /// The event is larger than the limit.
    EventTooLarge,
    /// Properties nest deeper than the limit.
    TooDeep,
    /// More properties than the limit.
    TooManyProperties,
    /// A timestamp that is neither RFC 3339 nor integer epoch milliseconds.
    InvalidTimestamp,
    /// A timestamp further in the future than allowed.
    TimestampInFuture,
    /// A timestamp older than the pipeline's retention.
    TimestampTooOld,
    /// An object holds the same key twice.
    DuplicateKey,
    /// An array directly inside an array, which the store cannot hold.
    NestedArray,
    /// A character the store cannot hold (NUL, U+0000) in a name, id, key or string.
    InvalidCharacter,
    /// A number of a summed property (`rollups.numericProperties`) beyond
    /// [`MAX_SUMMED_MAGNITUDE`].
    NumberOutOfRange,
}

impl ErrorCode {
    /// The code as it appears in responses and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidType => "invalid_type",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::Empty => "empty",
            ErrorCode::TooLong => "too_long",
            ErrorCode::EventTooLarge => "event_too_large",
            ErrorCode::TooDeep => "too_deep",
            ErrorCode::TooManyProperties => "too_many_properties",
            ErrorCode::InvalidTimestamp => "invalid_timestamp",
            ErrorCode::TimestampInFuture => "timestamp_in_future",
            ErrorCode::TimestampTooOld => "timestamp_too_old",
            ErrorCode::DuplicateKey => "duplicate_key",
            ErrorCode::NestedArray => "nested_array",
            ErrorCode::InvalidCharacter => "invalid_character",
            ErrorCode::NumberOutOfRange => "number_out_of_range",
        }
    }

    /// Every code, for documentation and its tests.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::InvalidJson,
        ErrorCode::InvalidType,
        ErrorCode::MissingField,
        ErrorCode::UnknownField,
        ErrorCode::Empty,
        ErrorCode::TooLong,
        ErrorCode::EventTooLarge,
        ErrorCode::TooDeep,
        ErrorCode::TooManyProperties,
        ErrorCode::InvalidTimestamp,
        ErrorCode::TimestampInFuture,
        ErrorCode::TimestampTooOld,
        ErrorCode::DuplicateKey,
        ErrorCode::NestedArray,
        ErrorCode::InvalidCharacter,
        ErrorCode::NumberOutOfRange,
    ];
}

/// One refused event: its code, the field (a JSON path within the event, empty for the
/// whole event) and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventError {
    pub code: ErrorCode,
    pub field: String,
    pub message: String,
}

impl EventError {
    fn new(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        EventError { code, field: field.into(), message: message.into() }
    }
}

/// What validation needs besides the event: the limits and the clock.
#[derive(Debug, Clone)]
pub struct EventRules {
    max_event_bytes: usize,
    max_properties: usize,
    max_depth: usize,
    max_name_chars: usize,
    max_future_ms: i64,
    retention_ms: i64,
    summed: Vec<PropertyPath>,
}

/// Epoch milliseconds given as a JSON number: an integer, or a float with no fractional
/// part (`1700000000000.0` is an integer to JSON Schema and to JavaScript) within ±2^53,
/// beyond which a float no longer names each millisecond.
pub fn integer_millis(n: &serde_json::Number) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= EXACT).map(|f| f as i64))
}

/// The largest magnitude of a value of a summed property. Rollups add such values with
/// `$inc` across batches, and a sum that overflows to infinity cannot be stored; below this
/// bound a period would need about 1e58 events to overflow, and no real measure is near it.
pub const MAX_SUMMED_MAGNITUDE: f64 = 1e250;

impl EventRules {
    /// Rules from the pipeline's limits and retention.
    pub fn new(limits: &IngestLimits, retention_ms: i64) -> Self {
        let positive = |n: i64| usize::try_from(n.max(1)).unwrap_or(usize::MAX);
        EventRules {
            max_event_bytes: positive(limits.max_event_bytes),
            max_properties: positive(limits.max_properties.into()),
            max_depth: positive(limits.max_property_depth.into()),
            max_name_chars: positive(limits.max_name_length.into()),
            max_future_ms: limits.max_future_skew.as_millis(),
            retention_ms,
            summed: Vec::new(),
        }
    }

    /// The longest name (event, user, event id, property key), in characters.
    pub fn max_name_chars(&self) -> usize {
        self.max_name_chars
    }

    /// The properties whose values the rollups sum (`rollups.numericProperties`): their
    /// numbers must be within ±[`MAX_SUMMED_MAGNITUDE`].
    pub fn with_summed_properties(mut self, paths: &[PropertyPath]) -> Self {
        self.summed = paths.to_vec();
        self
    }

    /// The largest event, in bytes of JSON, that [`Self::validate`] accepts.
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// Validates one event given as its JSON text (so its size is what the client sent)
    /// and turns it into what the buffer holds. `received_at` is the receive time in epoch
    /// ms; `new_id` makes an id for events that bring none.
    pub fn validate(
        &self,
        json: &str,
        received_at: i64,
        new_id: &mut dyn FnMut() -> String,
    ) -> Result<BufferedEvent, EventError> {
        if json.len() > self.max_event_bytes {
            return Err(EventError::new(
                ErrorCode::EventTooLarge,
                "",
                format!("the event is {} bytes; the limit is {}", json.len(), self.max_event_bytes),
            ));
        }
        let value = crate::json::parse(json).map_err(|e| match e {
            JsonError::DuplicateKey { path } => duplicate_key(path),
            // The parser's own nesting guard trips long before the size limit does.
            e if e.is_too_deep() => EventError::new(
                ErrorCode::TooDeep,
                "properties",
                format!("properties nest deeper than {} levels", self.max_depth),
            ),
            e => EventError::new(ErrorCode::InvalidJson, "", e.to_string()),
        })?;
        self.validate_value(value, received_at, new_id)
    }

    /// Validates an already parsed event (its size was checked by the caller).
    pub fn validate_value(
        &self,
        value: Value,
        received_at: i64,
        new_id: &mut dyn FnMut() -> String,
    ) -> Result<BufferedEvent, EventError> {
        let Value::Object(mut fields) = value else {
            return Err(EventError::new(ErrorCode::InvalidType, "", "an event is a JSON object"));
        };
        let event = self.name(fields.remove("event"), "event")?;
        let distinct_id = self.name(fields.remove("distinct_id"), "distinct_id")?;
        let (event_id, id_generated) = match fields.remove("event_id") {
            None | Some(Value::Null) => (new_id(), true),
            some => (self.name(some, "event_id")?, false),
        };
        let timestamp = match fields.remove("timestamp") {
            None | Some(Value::Null) => received_at,
            Some(t) => self.timestamp(&t, received_at)?,
        };
        let properties = match fields.remove("properties") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => {
                self.check_properties(&p)?;
                p
            }
            Some(_) => {
                return Err(EventError::new(ErrorCode::InvalidType, "properties", "must be a JSON object"));
            }
        };
        if let Some(unknown) = fields.keys().next() {
            return Err(EventError::new(
                ErrorCode::UnknownField,
                unknown.as_str(),
                "unknown field; an event has event_id, event, distinct_id, timestamp and properties",
            ));
        }
        Ok(BufferedEvent { event_id, id_generated, event, distinct_id, timestamp, received_at, properties })
    }

    fn name(&self, value: Option<Value>, field: &str) -> Result<String, EventError> {
        match value {
            None | Some(Value::Null) => Err(EventError::new(ErrorCode::MissingField, field, "is required")),
            // Blank names are as useless as empty ones, and stores refuse some of them.
            Some(Value::String(s)) if s.trim().is_empty() => {
                Err(EventError::new(ErrorCode::Empty, field, "must not be empty or only whitespace"))
            }
            Some(Value::String(s)) => {
                let chars = s.chars().count();
                if s.contains('\0') {
                    Err(EventError::new(ErrorCode::InvalidCharacter, field, NUL_REASON))
                } else if chars > self.max_name_chars {
                    Err(EventError::new(
                        ErrorCode::TooLong,
                        field,
                        format!("is {chars} characters; the limit is {}", self.max_name_chars),
                    ))
                } else {
                    Ok(s)
                }
            }
            Some(other) => Err(EventError::new(
                ErrorCode::InvalidType,
                field,
                format!("must be a string, not {}", type_name(&other)),
            )),
        }
    }

    fn timestamp(&self, value: &Value, received_at: i64) -> Result<i64, EventError> {
        let ms = match value {
            Value::String(s) => s
                .parse::<jiff::Timestamp>()
                .map(|t| t.as_millisecond())
                .map_err(|_| {
                    EventError::new(
                        ErrorCode::InvalidTimestamp,
                        "timestamp",
                        "must be RFC 3339 with an offset (e.g. 2026-11-24T10:00:00Z) or integer epoch milliseconds",
                    )
                })?,
            Value::Number(n) => integer_millis(n).ok_or_else(|| {
                let message = if n.is_f64() {
                    "epoch milliseconds must be an integer"
                } else {
                    "epoch milliseconds out of range"
                };
                EventError::new(ErrorCode::InvalidTimestamp, "timestamp", message)
            })?,
            other => {
                return Err(EventError::new(
                    ErrorCode::InvalidType,
                    "timestamp",
                    format!("must be a string or an integer, not {}", type_name(other)),
                ));
            }
        };
        if ms > received_at.saturating_add(self.max_future_ms) {
            return Err(EventError::new(
                ErrorCode::TimestampInFuture,
                "timestamp",
                format!("is more than {} s after the receive time", self.max_future_ms / 1000),
            ));
        }
        if ms < received_at.saturating_sub(self.retention_ms) {
            return Err(EventError::new(
                ErrorCode::TimestampTooOld,
                "timestamp",
                format!(
                    "is older than the pipeline's retention of {} days (epoch milliseconds expected, not seconds)",
                    self.retention_ms / 86_400_000
                ),
            ));
        }
        Ok(ms)
    }
}

/// The refusal of a key sent twice at `path` (a path within the event).
fn duplicate_key(path: String) -> EventError {
    EventError::new(ErrorCode::DuplicateKey, path, "this key is sent twice in one object; send each key once")
}

/// How a JSON value's type reads in an error message ("a string", "an array", ...).
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
