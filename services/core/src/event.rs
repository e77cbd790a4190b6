//! Incoming events: parsing and validation of what clients send, before anything is
//! buffered. Each refusal names the field and the reason, with a stable code.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::buffer::BufferedEvent;
use crate::config::IngestLimits;

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
    /// A string that must not be empty is.
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
        }
    }
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
}

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
        }
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
        let value: Value = serde_json::from_str(json).map_err(|e| {
            // The parser's own nesting guard trips long before the size limit does.
            if e.to_string().contains("recursion limit") {
                EventError::new(
                    ErrorCode::TooDeep,
                    "properties",
                    format!("properties nest deeper than {} levels", self.max_depth),
                )
            } else {
                EventError::new(ErrorCode::InvalidJson, "", format!("not valid JSON: {e}"))
            }
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
            Some(Value::String(s)) if s.is_empty() => {
                Err(EventError::new(ErrorCode::Empty, field, "must not be empty"))
            }
            Some(Value::String(s)) => {
                let chars = s.chars().count();
                if chars > self.max_name_chars {
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
            Value::Number(n) => n.as_i64().ok_or_else(|| {
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

    fn check_properties(&self, properties: &Map<String, Value>) -> Result<(), EventError> {
        let mut count = 0usize;
        self.walk(properties, "properties", 1, &mut count)
    }

    /// Counts keys (nested ones too) and checks depth and key names.
    fn walk(
        &self,
        map: &Map<String, Value>,
        path: &str,
        depth: usize,
        count: &mut usize,
    ) -> Result<(), EventError> {
        if depth > self.max_depth {
            return Err(EventError::new(
                ErrorCode::TooDeep,
                path,
                format!("properties nest deeper than {} levels", self.max_depth),
            ));
        }
        for (key, value) in map {
            *count += 1;
            if *count > self.max_properties {
                return Err(EventError::new(
                    ErrorCode::TooManyProperties,
                    "properties",
                    format!("more than {} properties (nested keys count too)", self.max_properties),
                ));
            }
            if key.is_empty() {
                return Err(EventError::new(ErrorCode::Empty, path, "a property name must not be empty"));
            }
            if key.chars().count() > self.max_name_chars {
                return Err(EventError::new(
                    ErrorCode::TooLong,
                    format!("{path}.{key}"),
                    format!("a property name is at most {} characters", self.max_name_chars),
                ));
            }
            self.walk_value(value, &format!("{path}.{key}"), depth, count)?;
        }
        Ok(())
    }

    fn walk_value(
        &self,
        value: &Value,
        path: &str,
        depth: usize,
        count: &mut usize,
    ) -> Result<(), EventError> {
        match value {
            Value::Object(map) => self.walk(map, path, depth + 1, count),
            Value::Array(items) => {
                if depth + 1 > self.max_depth {
                    return Err(EventError::new(
                        ErrorCode::TooDeep,
                        path,
                        format!("properties nest deeper than {} levels", self.max_depth),
                    ));
                }
                items
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, v)| self.walk_value(v, &format!("{path}[{i}]"), depth + 1, count))
            }
            _ => Ok(()),
        }
    }
}

fn type_name(value: &Value) -> &'static str {
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
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_790_000_000_000;

    fn rules() -> EventRules {
        EventRules::new(&IngestLimits::default(), 365 * 86_400_000)
    }

    fn check(event: Value) -> Result<BufferedEvent, EventError> {
        rules().validate(&event.to_string(), NOW, &mut || "generated".to_string())
    }

    fn code(event: Value) -> (ErrorCode, String) {
        let e = check(event).expect_err("must be refused");
        (e.code, e.field)
    }

    #[test]
    fn a_full_event_is_accepted_as_sent() {
        let e = check(json!({
            "event_id": "e-1", "event": "signup", "distinct_id": "u-1",
            "timestamp": "2026-09-21T10:00:00Z", "properties": { "plan": "pro", "seats": 3 }
        }))
        .expect("valid");
        assert_eq!((e.event_id.as_str(), e.id_generated), ("e-1", false));
        assert_eq!(e.timestamp, 1_789_984_800_000, "2026-09-21T10:00:00Z");
        assert_eq!(e.properties["seats"], json!(3));
        assert_eq!(e.received_at, NOW);
    }

    #[test]
    fn defaults_fill_id_and_timestamp() {
        let e = check(json!({ "event": "signup", "distinct_id": "u-1" })).expect("valid");
        assert_eq!((e.event_id.as_str(), e.id_generated), ("generated", true));
        assert_eq!(e.timestamp, NOW);
        assert!(e.properties.is_empty());
    }

    #[test]
    fn epoch_milliseconds_are_accepted() {
        let e = check(json!({ "event": "a", "distinct_id": "u", "timestamp": NOW - 5_000 })).expect("valid");
        assert_eq!(e.timestamp, NOW - 5_000);
    }

    #[test]
    fn each_problem_gets_its_code_and_field() {
        let base = || json!({ "event": "a", "distinct_id": "u" });
        let with = |k: &str, v: Value| {
            let mut e = base();
            e[k] = v;
            e
        };
        assert_eq!(code(json!([1])), (ErrorCode::InvalidType, String::new()));
        assert_eq!(code(json!({ "distinct_id": "u" })), (ErrorCode::MissingField, "event".into()));
        assert_eq!(code(json!({ "event": "a" })), (ErrorCode::MissingField, "distinct_id".into()));
        assert_eq!(code(with("event", json!(""))), (ErrorCode::Empty, "event".into()));
        assert_eq!(code(with("event", json!(7))), (ErrorCode::InvalidType, "event".into()));
        assert_eq!(code(with("distinct_id", json!(42))), (ErrorCode::InvalidType, "distinct_id".into()));
        assert_eq!(code(with("event", json!("x".repeat(201)))), (ErrorCode::TooLong, "event".into()));
        assert_eq!(code(with("event_id", json!(["x"]))), (ErrorCode::InvalidType, "event_id".into()));
        assert_eq!(
            code(with("timestamp", json!("yesterday"))),
            (ErrorCode::InvalidTimestamp, "timestamp".into())
        );
        assert_eq!(code(with("timestamp", json!(1.5))), (ErrorCode::InvalidTimestamp, "timestamp".into()));
        assert_eq!(code(with("timestamp", json!(true))), (ErrorCode::InvalidType, "timestamp".into()));
        assert_eq!(
            code(with("timestamp", json!(NOW + 2 * 3_600_000))),
            (ErrorCode::TimestampInFuture, "timestamp".into())
        );
        assert_eq!(
            code(with("timestamp", json!(1_700_000_000))),
            (ErrorCode::TimestampTooOld, "timestamp".into())
        );
        assert_eq!(
            code(with("properties", json!("plan=pro"))),
            (ErrorCode::InvalidType, "properties".into())
        );
        assert_eq!(code(with("propertes", json!({}))), (ErrorCode::UnknownField, "propertes".into()));
        assert_eq!(code(with("properties", json!({ "": 1 }))), (ErrorCode::Empty, "properties".into()));
    }

    #[test]
    fn size_depth_and_count_limits_hold() {
        let deep = json!({ "event": "a", "distinct_id": "u", "properties": { "a": { "b": { "c": { "d": { "e": { "f": 1 } } } } } } });
        assert_eq!(code(deep).0, ErrorCode::TooDeep);
        let ok_depth = json!({ "event": "a", "distinct_id": "u", "properties": { "a": { "b": { "c": { "d": { "e": 1 } } } } } });
        assert!(check(ok_depth).is_ok(), "five levels are allowed");
        let many: Map<String, Value> = (0..257).map(|i| (format!("p{i}"), json!(i))).collect();
        assert_eq!(
            code(json!({ "event": "a", "distinct_id": "u", "properties": many })).0,
            ErrorCode::TooManyProperties
        );
        let big = json!({ "event": "a", "distinct_id": "u", "properties": { "blob": "x".repeat(40_000) } });
        assert_eq!(code(big).0, ErrorCode::EventTooLarge);
    }
}
