//! PostHog's capture API (the wire format of `posthog` for Python in its default `v0`
//! mode, posthog-js, posthog-node and the mobile SDKs) mapped to native events. Pure: the
//! request-level handling is in `mod.rs`; docs/compat.md is the user's view of this file.

use pulse_core::event::{ErrorCode, EventError};
use serde_json::{Map, Value};

use super::{Mapped, WireNames, clock, event_error, type_name};
use crate::error::{RequestError, RequestErrorCode};

/// The capture endpoints, at the root and under `/compat/posthog`, each also with a
/// trailing slash: `/batch/` is what the Python and Node SDKs post to; `/e/`, `/i/v0/e/`,
/// `/capture/` and `/track/` take what posthog-js and the other SDKs send (one event, an
/// array, or a batch).
pub const PATHS: [&str; 5] = ["/batch", "/capture", "/e", "/i/v0/e", "/track"];

/// The feature-flag probes the SDKs send (`/decide/?v=3`, newer ones `/flags/?v=2`).
pub const FLAG_PATHS: [&str; 2] = ["/decide", "/flags"];

/// One request: `{"api_key", "batch": [...], "sent_at"}`, a bare array of events, or one
/// event.
#[derive(Debug)]
pub struct Request {
    /// The project API key: `api_key` (or `token`) of the body, else of the first event
    /// or its `properties.token` (posthog-js).
    pub api_key: Option<String>,
    /// One event posted on its own: its error is the request's, like /v1/events.
    pub single: bool,
    events: Vec<Value>,
    sent_at: Option<Value>,
}

impl Request {
    pub fn parse(json: Value) -> Result<Self, RequestError> {
        let (mut api_key, events, single, sent_at) = match json {
            Value::Array(events) => (None, events, false, None),
            Value::Object(mut body) => {
                let key = key_of(&body);
                let sent_at = body.get("sent_at").filter(|v| !v.is_null()).cloned();
                match body.remove("batch") {
                    Some(Value::Array(events)) => (key, events, false, sent_at),
                    Some(other) => {
                        return Err(RequestError::new(
                            RequestErrorCode::InvalidBody,
                            format!("`batch` must be an array of events, not {}", type_name(&other)),
                        )
                        .field("batch"));
                    }
                    // One event; its own sent_at is read per event.
                    None => (key, vec![Value::Object(body)], true, None),
                }
            }
            other => {
                return Err(RequestError::new(
                    RequestErrorCode::InvalidBody,
                    format!(
                        "a PostHog capture body is an event, an array of events or {{\"batch\": [...]}}, not {}",
                        type_name(&other)
                    ),
                ));
            }
        };
        if api_key.is_none() {
            api_key = events.first().and_then(Value::as_object).and_then(key_of);
        }
        Ok(Request { api_key, single, events, sent_at })
    }

    /// Each event mapped to a native event, or why it cannot be.
    pub fn map(self, received_at: i64) -> Vec<Result<Mapped, EventError>> {
        let sent_at = clock::send_time("sent_at", self.sent_at.as_ref());
        self.events.into_iter().map(|e| map_event(e, sent_at.as_ref(), received_at)).collect()
    }
}

fn key_of(object: &Map<String, Value>) -> Option<String> {
    object
        .get("api_key")
        .or_else(|| object.get("token"))
        .or_else(|| object.get("properties").and_then(|p| p.get("token")))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// One event as a native event; see docs/compat.md for the table.
pub fn map_event(
    event: Value,
    batch_sent_at: Option<&Result<i64, EventError>>,
    received_at: i64,
) -> Result<Mapped, EventError> {
    let Value::Object(mut e) = event else {
        return Err(event_error(ErrorCode::InvalidType, "", "a PostHog event is a JSON object"));
    };
    let mut properties = match e.remove("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(other) => {
            return Err(event_error(
                ErrorCode::InvalidType,
                "properties",
                format!("must be a JSON object, not {}", type_name(&other)),
            ));
        }
    };
    // posthog-js carries the project API key here: it is a credential, not a property.
    properties.remove("token");
    let distinct_id =
        match e.remove("distinct_id").filter(|v| !v.is_null()).or_else(|| properties.remove("distinct_id")) {
            // PostHog takes numeric ids and stores them as text.
            Some(Value::Number(n)) => Value::from(n.to_string()),
            Some(other) => other,
            None => Value::Null,
        };
    // Person updates may come at the top level (`posthog.set`) or in properties; the top
    // level wins per key, as in PostHog.
    for field in ["$set", "$set_once"] {
        match e.remove(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(top)) => match properties.entry(field) {
                serde_json::map::Entry::Occupied(mut inner) => match inner.get_mut() {
                    Value::Object(inner) => inner.extend(top),
                    other => {
                        return Err(event_error(
                            ErrorCode::InvalidType,
                            format!("properties.{field}"),
                            format!("must be a JSON object, not {}", type_name(other)),
                        ));
                    }
                },
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(Value::Object(top));
                }
            },
            Some(other) => {
                return Err(event_error(
                    ErrorCode::InvalidType,
                    field,
                    format!("must be a JSON object, not {}", type_name(&other)),
                ));
            }
        }
    }

    let timestamp = event_time(&e, &properties, batch_sent_at, received_at)?;
    let mut native = Map::new();
    if let Some(uuid) = e.remove("uuid").filter(|v| !v.is_null()) {
        native.insert("event_id".into(), uuid);
    }
    native.insert("event".into(), e.remove("event").unwrap_or(Value::Null));
    native.insert("distinct_id".into(), distinct_id);
    if let Some(ms) = timestamp {
        native.insert("timestamp".into(), Value::from(ms));
    }
    native.insert("properties".into(), Value::Object(properties));
    let names =
        WireNames { nested: &[], distinct_id: "distinct_id", event_id: "uuid", timestamp: "timestamp" };
    Ok(Mapped { event: native, names })
}

/// PostHog's rule: `timestamp` corrected by `sent_at` (the event's, else the batch's)
/// unless `properties.$ignore_sent_at` is true; without a timestamp, `offset` ms before
/// the receive time; else none (the receive time).
fn event_time(
    e: &Map<String, Value>,
    properties: &Map<String, Value>,
    batch_sent_at: Option<&Result<i64, EventError>>,
    received_at: i64,
) -> Result<Option<i64>, EventError> {
    let timestamp = e.get("timestamp").filter(|v| !v.is_null());
    if timestamp.is_some() {
        let sent_at = if properties.get("$ignore_sent_at") == Some(&Value::Bool(true)) {
            None
        } else {
            clock::send_time("sent_at", e.get("sent_at")).or_else(|| batch_sent_at.cloned())
        };
        return clock::corrected(timestamp.map(|v| ("timestamp", v)), sent_at, received_at);
    }
    match e.get("offset") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(offset) => Ok(Some(received_at.saturating_sub(offset))),
            None => {
                Err(event_error(ErrorCode::InvalidTimestamp, "offset", "must be an integer of milliseconds"))
            }
        },
        Some(other) => Err(event_error(
            ErrorCode::InvalidType,
            "offset",
            format!("must be an integer, not {}", type_name(other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_790_000_000_000;

    fn at(ms: i64) -> Value {
        json!(jiff::Timestamp::from_millisecond(ms).expect("ts").to_string())
    }

    fn map(event: Value) -> Result<Map<String, Value>, EventError> {
        map_event(event, None, NOW).map(|m| m.event)
    }

    #[test]
    fn capture_keeps_name_id_and_properties_without_the_key() {
        let e = map(json!({
            "event": "clicked", "distinct_id": "u1", "uuid": "0190-1",
            "properties": { "x": 1, "token": "phc_secret", "$lib": "posthog-python" }, "api_key": "phc_secret"
        }))
        .expect("mapped");
        assert_eq!(
            Value::Object(e),
            json!({ "event_id": "0190-1", "event": "clicked", "distinct_id": "u1", "properties": { "x": 1, "$lib": "posthog-python" } })
        );
    }

    #[test]
    fn set_and_set_once_move_into_properties_top_level_first() {
        let e = map(json!({
            "event": "$set", "distinct_id": 42, "$set": { "email": "new", "plan": "pro" }, "$set_once": { "first": "x" },
            "properties": { "$set": { "email": "old", "seats": 3 } }
        }))
        .expect("mapped");
        assert_eq!(e["distinct_id"], "42", "numeric ids become text");
        assert_eq!(e["properties"]["$set"], json!({ "email": "new", "plan": "pro", "seats": 3 }));
        assert_eq!(e["properties"]["$set_once"], json!({ "first": "x" }));
    }

    #[test]
    fn distinct_id_may_come_from_properties() {
        let e = map(json!({ "event": "e", "properties": { "distinct_id": "u9" } })).expect("mapped");
        assert_eq!(e["distinct_id"], "u9");
        assert!(!e["properties"].as_object().expect("object").contains_key("distinct_id"));
    }

    #[test]
    fn time_follows_timestamp_sent_at_and_offset() {
        let event = json!({ "event": "e", "distinct_id": "u", "timestamp": at(NOW + 59_000) });
        let e = map_event(event.clone(), Some(&Ok(NOW + 60_000)), NOW).expect("mapped").event;
        assert_eq!(e["timestamp"], NOW - 1_000, "corrected by the batch's sent_at");
        let mut own = event.clone();
        own["sent_at"] = at(NOW + 69_000);
        assert_eq!(
            map_event(own, Some(&Ok(NOW + 60_000)), NOW).expect("mapped").event["timestamp"],
            NOW - 10_000
        );
        let mut ignore = event.clone();
        ignore["properties"] = json!({ "$ignore_sent_at": true });
        assert_eq!(
            map_event(ignore, Some(&Ok(NOW + 60_000)), NOW).expect("mapped").event["timestamp"],
            NOW + 59_000
        );
        let offset = json!({ "event": "e", "distinct_id": "u", "offset": 2_500 });
        assert_eq!(map(offset).expect("mapped")["timestamp"], NOW - 2_500);
        assert!(!map(json!({ "event": "e", "distinct_id": "u" })).expect("mapped").contains_key("timestamp"));
    }

    #[test]
    fn bad_events_name_their_field() {
        let code = |e: Value| {
            let e = map(e).expect_err("refused");
            (e.code, e.field)
        };
        assert_eq!(
            code(json!({ "event": "e", "distinct_id": "u", "properties": "x" })),
            (ErrorCode::InvalidType, "properties".into())
        );
        assert_eq!(
            code(json!({ "event": "e", "distinct_id": "u", "$set": [1] })),
            (ErrorCode::InvalidType, "$set".into())
        );
        assert_eq!(
            code(json!({ "event": "e", "distinct_id": "u", "timestamp": "soon" })),
            (ErrorCode::InvalidTimestamp, "timestamp".into())
        );
        assert_eq!(
            code(json!({ "event": "e", "distinct_id": "u", "offset": "1" })),
            (ErrorCode::InvalidType, "offset".into())
        );
        assert_eq!(code(json!(["e"])), (ErrorCode::InvalidType, String::new()));
    }

    #[test]
    fn requests_take_every_shape_and_find_the_key() {
        let batch =
            Request::parse(json!({ "api_key": "k1", "batch": [{ "event": "a" }], "sent_at": at(NOW) }))
                .expect("parsed");
        assert_eq!((batch.api_key.as_deref(), batch.single, batch.events.len()), (Some("k1"), false, 1));
        let single =
            Request::parse(json!({ "event": "a", "distinct_id": "u", "properties": { "token": "k2" } }))
                .expect("parsed");
        assert_eq!((single.api_key.as_deref(), single.single), (Some("k2"), true));
        let array =
            Request::parse(json!([{ "event": "a", "api_key": "k3" }, { "event": "b" }])).expect("parsed");
        assert_eq!((array.api_key.as_deref(), array.single, array.events.len()), (Some("k3"), false, 2));
        assert_eq!(
            Request::parse(json!({ "batch": {} })).expect_err("refused").field.as_deref(),
            Some("batch")
        );
        assert_eq!(Request::parse(json!("x")).expect_err("refused").code, RequestErrorCode::InvalidBody);
    }
}
