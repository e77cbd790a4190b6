//! Segment's HTTP Tracking API (the wire format of `segment-analytics-python`,
//! analytics.js, analytics-node, and the mobile SDKs) mapped to native events. Pure: the
//! request-level handling is in `mod.rs`; docs/compat.md is the user's view of this file.

use axum::http::{HeaderMap, header};
use base64::Engine;
use pulse_core::event::{ErrorCode, EventError};
use serde_json::{Map, Value};

use super::{Mapped, WireNames, clock, event_error, type_name};
use crate::error::{RequestError, RequestErrorCode};

/// The endpoints, for the message of a 404.
pub const ENDPOINTS: &str =
    "/v1/batch, /v1/b, /v1/import, /v1/track, /v1/identify, /v1/page, /v1/screen, /v1/group, /v1/alias";

/// The single-call endpoints at the root, `/v1/<name>` (and under `/compat/segment`, where
/// `/v1/{kind}` takes the same names).
pub const ROOT_ENDPOINTS: [(&str, MessageType); 12] = [
    ("track", MessageType::Track),
    ("identify", MessageType::Identify),
    ("page", MessageType::Page),
    ("screen", MessageType::Screen),
    ("group", MessageType::Group),
    ("alias", MessageType::Alias),
    ("t", MessageType::Track),
    ("i", MessageType::Identify),
    ("p", MessageType::Page),
    ("s", MessageType::Screen),
    ("g", MessageType::Group),
    ("a", MessageType::Alias),
];

/// Whether a request to the root `/v1/batch` comes from a Segment SDK by its auth: HTTP
/// Basic (every Segment server SDK), or no Authorization header at all (analytics.js puts
/// `writeKey` in the body). Pulse's own clients send `Authorization: Bearer`.
pub fn uses_segment_auth(headers: &HeaderMap) -> bool {
    match headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) {
        None => true,
        Some(value) => value.len() > 6 && value[..6].eq_ignore_ascii_case(b"basic "),
    }
}

/// Whether a batch sent with Pulse's Bearer auth is Segment's by its payload: a top-level
/// field only Segment's batch has (`unknown`, as the native parser refused it) ...
pub fn is_batch_field(unknown: &str) -> bool {
    matches!(unknown, "sentAt" | "writeKey" | "context" | "integrations" | "metadata")
}

/// ... or a first message that names a Segment call in `type` and has no `distinct_id`.
pub fn is_message(raw: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
        distinct_id: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Probe<'_>>(raw)
        .is_ok_and(|p| p.distinct_id.is_none() && p.kind.is_some_and(|k| MessageType::parse(&k).is_some()))
}

/// The kinds of Segment call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl MessageType {
    /// The kind of a message's `type`.
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "track" => MessageType::Track,
            "identify" => MessageType::Identify,
            "page" => MessageType::Page,
            "screen" => MessageType::Screen,
            "group" => MessageType::Group,
            "alias" => MessageType::Alias,
            _ => return None,
        })
    }

    /// The kind a single-message endpoint takes: `/v1/track` or its short form `/v1/t`.
    pub fn of_endpoint(path: &str) -> Option<Self> {
        match path {
            "t" => Some(MessageType::Track),
            "i" => Some(MessageType::Identify),
            "p" => Some(MessageType::Page),
            "s" => Some(MessageType::Screen),
            "g" => Some(MessageType::Group),
            "a" => Some(MessageType::Alias),
            other => Self::parse(other),
        }
    }
}

/// The write key of `Authorization`: Basic auth with the key as the user name (what the
/// SDKs send), or a Bearer token. `None` without the header (the key may be in the body).
pub fn write_key_of(headers: &HeaderMap) -> Result<Option<String>, RequestError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let refused = |message: &str| {
        RequestError::new(RequestErrorCode::Unauthorized, message.to_string()).field("Authorization")
    };
    let text = value.to_str().map_err(|_| refused("the Authorization header is not ASCII"))?;
    let (scheme, credentials) =
        text.split_once(' ').ok_or_else(|| refused("send `Authorization: Basic base64(<write key>:)`"))?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Some(credentials.trim().to_string()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(refused("send `Authorization: Basic base64(<write key>:)`"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| refused("the Basic credentials are not base64 of `<write key>:`"))?;
    // The user name is the key; Segment ignores the password.
    Ok(Some(decoded.split_once(':').map_or(decoded.as_str(), |(user, _)| user).to_string()))
}

/// One request: a batch (`{"batch": [...], "sentAt", "context", "writeKey"}`) or a single
/// message posted to its kind's endpoint.
#[derive(Debug)]
pub struct Request {
    /// `writeKey` of the body, used when there is no Authorization header.
    pub write_key: Option<String>,
    messages: Vec<Value>,
    single: Option<MessageType>,
    sent_at: Option<Value>,
    context: Map<String, Value>,
}

impl Request {
    /// Parses the body of a batch (`single` is `None`) or of a single-message endpoint.
    pub fn parse(json: Value, single: Option<MessageType>) -> Result<Self, RequestError> {
        let Value::Object(mut body) = json else {
            let what = if single.is_some() {
                "a Segment message is a JSON object"
            } else {
                "a Segment batch is {\"batch\": [message, ...]}"
            };
            return Err(RequestError::new(RequestErrorCode::InvalidBody, what).field(if single.is_some() {
                ""
            } else {
                "batch"
            }));
        };
        let write_key = body.get("writeKey").and_then(Value::as_str).map(str::to_string);
        if single.is_some() {
            return Ok(Request {
                write_key,
                messages: vec![Value::Object(body)],
                single,
                sent_at: None,
                context: Map::new(),
            });
        }
        let messages = match body.remove("batch") {
            Some(Value::Array(messages)) => messages,
            None | Some(Value::Null) => {
                return Err(RequestError::new(
                    RequestErrorCode::InvalidBody,
                    "a Segment batch is {\"batch\": [message, ...]}: `batch` is required",
                )
                .field("batch"));
            }
            Some(other) => {
                return Err(RequestError::new(
                    RequestErrorCode::InvalidBody,
                    format!("`batch` must be an array of messages, not {}", type_name(&other)),
                )
                .field("batch"));
            }
        };
        let context = match body.remove("context") {
            Some(Value::Object(context)) => context,
            _ => Map::new(),
        };
        Ok(Request { write_key, messages, single: None, sent_at: body.remove("sentAt"), context })
    }

    /// Each message mapped to a native event, or why it cannot be.
    pub fn map(self, received_at: i64) -> Vec<Result<Mapped, EventError>> {
        let Request { messages, single, sent_at, context, .. } = self;
        let sent_at = clock::send_time("sentAt", sent_at.as_ref());
        messages
            .into_iter()
            .map(|m| map_message(m, single, sent_at.as_ref(), &context, received_at))
            .collect()
    }
}

/// One message as a native event; see docs/compat.md for the table.
pub fn map_message(
    message: Value,
    endpoint_type: Option<MessageType>,
    batch_sent_at: Option<&Result<i64, EventError>>,
    batch_context: &Map<String, Value>,
    received_at: i64,
) -> Result<Mapped, EventError> {
    let Value::Object(mut m) = message else {
        return Err(event_error(ErrorCode::InvalidType, "", "a Segment message is a JSON object"));
    };
    let kind = match endpoint_type {
        Some(kind) => kind,
        None => match m.get("type") {
            Some(Value::String(t)) => MessageType::parse(t).ok_or_else(|| {
                event_error(
                    ErrorCode::InvalidType,
                    "type",
                    format!(
                        "{t:?} is not a Segment call; one of track, identify, page, screen, group, alias"
                    ),
                )
            })?,
            None | Some(Value::Null) => {
                return Err(event_error(ErrorCode::MissingField, "type", "is required in a batch"));
            }
            Some(other) => {
                return Err(event_error(
                    ErrorCode::InvalidType,
                    "type",
                    format!("must be a string, not {}", type_name(other)),
                ));
            }
        },
    };

    let user_id = id(&m, "userId")?;
    let anonymous_id = id(&m, "anonymousId")?;
    let (distinct_id, id_field) = match (&user_id, &anonymous_id) {
        (Some(user), _) => (user.clone(), "userId"),
        (None, Some(anonymous)) => (anonymous.clone(), "anonymousId"),
        (None, None) => {
            return Err(event_error(
                ErrorCode::MissingField,
                "userId",
                "a message needs userId or anonymousId",
            ));
        }
    };

    let own_context = object(&mut m, "context")?;
    let context = if batch_context.is_empty() {
        own_context
    } else {
        let mut context = batch_context.clone();
        context.extend(own_context);
        context
    };
    let mut traits_in_context = false;

    let (event, mut properties) = match kind {
        MessageType::Track => (m.remove("event").unwrap_or(Value::Null), object(&mut m, "properties")?),
        MessageType::Page | MessageType::Screen => {
            let (name, prefix) =
                if kind == MessageType::Page { ("$pageview", "$page") } else { ("$screen", "$screen") };
            let mut properties = object(&mut m, "properties")?;
            for field in ["name", "category"] {
                if let Some(value @ Value::String(_)) = m.remove(field) {
                    properties.insert(format!("{prefix}_{field}"), value);
                }
            }
            (Value::from(name), properties)
        }
        MessageType::Identify => {
            let (traits, in_context) = traits_of(&mut m, &context)?;
            traits_in_context = in_context;
            let mut properties = Map::new();
            if !traits.is_empty() {
                properties.insert("$set".into(), Value::Object(traits));
            }
            (Value::from("$identify"), properties)
        }
        MessageType::Group => {
            let group = id(&m, "groupId")?.ok_or_else(|| {
                event_error(ErrorCode::MissingField, "groupId", "a group call needs groupId")
            })?;
            let (traits, in_context) = traits_of(&mut m, &context)?;
            traits_in_context = in_context;
            let mut properties = Map::new();
            properties.insert("$group_id".into(), Value::from(group));
            if !traits.is_empty() {
                properties.insert("$group_traits".into(), Value::Object(traits));
            }
            (Value::from("$group"), properties)
        }
        MessageType::Alias => {
            let previous = id(&m, "previousId")?.ok_or_else(|| {
                event_error(ErrorCode::MissingField, "previousId", "an alias call needs previousId")
            })?;
            let mut properties = Map::new();
            properties.insert("$previous_id".into(), Value::from(previous));
            (Value::from("$create_alias"), properties)
        }
    };
    if let (Some(_), Some(anonymous)) = (&user_id, &anonymous_id) {
        properties.insert("$anonymous_id".into(), Value::from(anonymous.clone()));
    }
    if !context.is_empty() {
        properties.insert("$context".into(), Value::Object(context));
    }

    // The client's event time: `originalTimestamp` when the SDK sends it, else `timestamp`.
    let time_field = if m.get("originalTimestamp").is_some_and(|v| !v.is_null()) {
        "originalTimestamp"
    } else {
        "timestamp"
    };
    let sent_at = clock::send_time("sentAt", m.get("sentAt")).or_else(|| batch_sent_at.cloned());
    // Every time a message carries must be readable, used or not: a client that sends an
    // unreadable one has a bug worth hearing about.
    for time in [sent_at.as_ref(), batch_sent_at] {
        if let Some(Err(e)) = time {
            return Err(e.clone());
        }
    }
    for field in ["timestamp", "originalTimestamp"] {
        if let Some(Err(e)) = clock::send_time(field, m.get(field)) {
            return Err(e);
        }
    }
    let timestamp = clock::corrected(m.get(time_field).map(|v| (time_field, v)), sent_at, received_at)?;

    let mut event_obj = Map::new();
    if let Some(message_id) = m.remove("messageId").filter(|v| !v.is_null()) {
        event_obj.insert("event_id".into(), message_id);
    }
    event_obj.insert("event".into(), event);
    event_obj.insert("distinct_id".into(), Value::from(distinct_id));
    if let Some(ms) = timestamp {
        event_obj.insert("timestamp".into(), Value::from(ms));
    }
    event_obj.insert("properties".into(), Value::Object(properties));
    let nested: &'static [(&'static str, &'static str)] = match kind {
        MessageType::Track | MessageType::Page | MessageType::Screen => &[("properties.$context", "context")],
        MessageType::Identify if traits_in_context => {
            &[("properties.$set", "context.traits"), ("properties.$context", "context")]
        }
        MessageType::Identify => &[("properties.$set", "traits"), ("properties.$context", "context")],
        MessageType::Group if traits_in_context => &[
            ("properties.$group_traits", "context.traits"),
            ("properties.$group_id", "groupId"),
            ("properties.$context", "context"),
        ],
        MessageType::Group => &[
            ("properties.$group_traits", "traits"),
            ("properties.$group_id", "groupId"),
            ("properties.$context", "context"),
        ],
        MessageType::Alias => {
            &[("properties.$previous_id", "previousId"), ("properties.$context", "context")]
        }
    };
    let names = WireNames { nested, distinct_id: id_field, event_id: "messageId", timestamp: time_field };
    Ok(Mapped { event: event_obj, names })
}

/// The traits of an identify or group call: top-level `traits` when the message has it
/// (not null), else `context.traits`, which some Segment-protocol SDKs send instead. The
/// two are never merged: a message with `traits` says what it sets. Returns whether they
/// came from the context.
fn traits_of(
    m: &mut Map<String, Value>,
    context: &Map<String, Value>,
) -> Result<(Map<String, Value>, bool), EventError> {
    if m.get("traits").is_some_and(|t| !t.is_null()) {
        return Ok((object(m, "traits")?, false));
    }
    match context.get("traits") {
        None | Some(Value::Null) => Ok((Map::new(), false)),
        Some(Value::Object(traits)) => Ok((traits.clone(), true)),
        Some(other) => Err(event_error(
            ErrorCode::InvalidType,
            "context.traits",
            format!("must be a JSON object, not {}", type_name(other)),
        )),
    }
}

/// A string id field: `None` when absent, null or empty.
fn id(m: &Map<String, Value>, field: &str) -> Result<Option<String>, EventError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(event_error(
            ErrorCode::InvalidType,
            field,
            format!("must be a string, not {}", type_name(other)),
        )),
    }
}

/// An object field, removed from the message; empty when absent or null.
fn object(m: &mut Map<String, Value>, field: &str) -> Result<Map<String, Value>, EventError> {
    match m.remove(field) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o),
        Some(other) => Err(event_error(
            ErrorCode::InvalidType,
            field,
            format!("must be a JSON object, not {}", type_name(&other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_790_000_000_000;

    fn map(message: Value) -> Result<Map<String, Value>, EventError> {
        map_message(message, None, None, &Map::new(), NOW).map(|m| m.event)
    }

    fn refused(message: Value) -> (ErrorCode, String) {
        let e = map(message).expect_err("refused");
        (e.code, e.field)
    }

    #[test]
    fn track_keeps_name_properties_and_ids() {
        let e = map(json!({
            "type": "track", "event": "Signed Up", "userId": "u1", "anonymousId": "a1",
            "messageId": "m-1", "properties": { "plan": "pro" }, "integrations": { "All": false },
            "context": { "library": { "name": "analytics-python" } }
        }))
        .expect("mapped");
        assert_eq!(
            Value::Object(e),
            json!({
                "event_id": "m-1", "event": "Signed Up", "distinct_id": "u1",
                "properties": { "plan": "pro", "$anonymous_id": "a1", "$context": { "library": { "name": "analytics-python" } } }
            })
        );
    }

    #[test]
    fn anonymous_id_is_the_user_without_a_user_id() {
        let e = map(json!({ "type": "page", "anonymousId": "a1", "userId": null, "name": "Pricing", "category": "Docs" })).expect("mapped");
        assert_eq!(e["distinct_id"], "a1");
        assert_eq!(e["event"], "$pageview");
        assert_eq!(e["properties"], json!({ "$page_name": "Pricing", "$page_category": "Docs" }));
        assert!(!e.contains_key("event_id"), "no messageId: ingest generates one");
    }

    #[test]
    fn identify_group_alias_and_screen_have_their_names() {
        let identify = map(json!({ "type": "identify", "userId": "u", "traits": { "email": "a@b.c" } }))
            .expect("mapped");
        assert_eq!(
            (identify["event"].clone(), identify["properties"].clone()),
            (json!("$identify"), json!({ "$set": { "email": "a@b.c" } }))
        );
        let group = map(json!({ "type": "group", "userId": "u", "groupId": "g1", "traits": { "seats": 3 } }))
            .expect("mapped");
        assert_eq!(group["properties"], json!({ "$group_id": "g1", "$group_traits": { "seats": 3 } }));
        let alias = map(json!({ "type": "alias", "userId": "u", "previousId": "a" })).expect("mapped");
        assert_eq!(
            (alias["event"].clone(), alias["properties"].clone()),
            (json!("$create_alias"), json!({ "$previous_id": "a" }))
        );
        let screen = map(json!({ "type": "screen", "userId": "u", "name": "Home" })).expect("mapped");
        assert_eq!(
            (screen["event"].clone(), screen["properties"].clone()),
            (json!("$screen"), json!({ "$screen_name": "Home" }))
        );
    }

    #[test]
    fn timestamps_are_corrected_by_sent_at_from_the_message_or_the_batch() {
        let at = |ms: i64| jiff::Timestamp::from_millisecond(ms).expect("ts").to_string();
        let batch_sent = Ok(NOW + 60_000);
        let m = json!({ "type": "track", "event": "e", "userId": "u", "timestamp": at(NOW + 59_000) });
        let e = map_message(m.clone(), None, Some(&batch_sent), &Map::new(), NOW).expect("mapped").event;
        assert_eq!(e["timestamp"], NOW - 1_000, "client clock a minute fast, event a second before sending");
        let mut with_original = m.clone();
        with_original["originalTimestamp"] = json!(at(NOW + 50_000));
        with_original["sentAt"] = json!(at(NOW + 55_000));
        let e = map_message(with_original, None, Some(&batch_sent), &Map::new(), NOW).expect("mapped").event;
        assert_eq!(e["timestamp"], NOW - 5_000, "originalTimestamp and the message's own sentAt win");
        assert_eq!(map(m).expect("mapped")["timestamp"], NOW + 59_000, "no sentAt: as sent");
    }

    #[test]
    fn the_batch_context_is_merged_under_the_message_context() {
        let batch =
            json!({ "library": { "name": "batch" }, "ip": "10.0.0.1" }).as_object().cloned().expect("object");
        let m = json!({ "type": "track", "event": "e", "userId": "u", "context": { "library": { "name": "own" } } });
        let e = map_message(m, None, None, &batch, NOW).expect("mapped").event;
        assert_eq!(e["properties"]["$context"], json!({ "library": { "name": "own" }, "ip": "10.0.0.1" }));
        let bare = json!({ "type": "track", "event": "e", "userId": "u" });
        let e = map_message(bare, None, None, &batch, NOW).expect("mapped").event;
        assert_eq!(e["properties"]["$context"], Value::Object(batch));
    }

    #[test]
    fn bad_messages_name_the_segment_field() {
        assert_eq!(
            refused(json!({ "type": "track", "event": "e" })),
            (ErrorCode::MissingField, "userId".into())
        );
        assert_eq!(
            refused(json!({ "type": "track", "event": "e", "userId": 7 })),
            (ErrorCode::InvalidType, "userId".into())
        );
        assert_eq!(
            refused(json!({ "type": "rack", "userId": "u" })),
            (ErrorCode::InvalidType, "type".into())
        );
        assert_eq!(refused(json!({ "event": "e", "userId": "u" })), (ErrorCode::MissingField, "type".into()));
        assert_eq!(
            refused(json!({ "type": "track", "userId": "u", "properties": [1] })),
            (ErrorCode::InvalidType, "properties".into())
        );
        assert_eq!(
            refused(json!({ "type": "identify", "userId": "u", "traits": "x" })),
            (ErrorCode::InvalidType, "traits".into())
        );
        assert_eq!(
            refused(json!({ "type": "group", "userId": "u" })),
            (ErrorCode::MissingField, "groupId".into())
        );
        assert_eq!(
            refused(json!({ "type": "alias", "userId": "u" })),
            (ErrorCode::MissingField, "previousId".into())
        );
        assert_eq!(
            refused(json!({ "type": "track", "userId": "u", "timestamp": "now" })),
            (ErrorCode::InvalidTimestamp, "timestamp".into())
        );
        assert_eq!(refused(json!("track")), (ErrorCode::InvalidType, String::new()));
    }

    #[test]
    fn basic_auth_carries_the_write_key_as_user_name() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().expect("header"));
            write_key_of(&headers)
        };
        let encoded = base64::engine::general_purpose::STANDARD.encode("wk-1:");
        assert_eq!(with(&format!("Basic {encoded}")).expect("ok").as_deref(), Some("wk-1"));
        assert_eq!(with("Bearer wk-2").expect("ok").as_deref(), Some("wk-2"));
        assert_eq!(with("Basic !!!").expect_err("refused").code, RequestErrorCode::Unauthorized);
        assert_eq!(with("Digest x").expect_err("refused").code, RequestErrorCode::Unauthorized);
        assert_eq!(write_key_of(&HeaderMap::new()).expect("ok"), None);
    }
    #[test]
    fn identify_and_group_take_context_traits_when_traits_is_absent() {
        let identify = map(json!({
            "type": "identify", "userId": "u1", "context": { "traits": { "email": "a@x", "plan": "pro" } }
        }))
        .expect("mapped");
        assert_eq!(identify["properties"]["$set"], json!({ "email": "a@x", "plan": "pro" }));
        let group = map(json!({
            "type": "group", "userId": "u1", "groupId": "g1", "traits": null, "context": { "traits": { "seats": 3 } }
        }))
        .expect("mapped");
        assert_eq!(group["properties"]["$group_traits"], json!({ "seats": 3 }));
        // Top-level traits win whole: the two are not merged.
        let both = map(json!({
            "type": "identify", "userId": "u1", "traits": { "plan": "team" },
            "context": { "traits": { "email": "a@x", "plan": "pro" } }
        }))
        .expect("mapped");
        assert_eq!(both["properties"]["$set"], json!({ "plan": "team" }));
        // The batch's context counts too.
        let batch_context = json!({ "traits": { "email": "b@x" } });
        let from_batch = map_message(
            json!({ "type": "identify", "userId": "u1" }),
            None,
            None,
            batch_context.as_object().expect("object"),
            NOW,
        )
        .expect("mapped");
        assert_eq!(from_batch.event["properties"]["$set"], json!({ "email": "b@x" }));
        assert_eq!(from_batch.names.wire("properties.$set.email"), "context.traits.email");
        assert_eq!(
            refused(json!({ "type": "identify", "userId": "u1", "context": { "traits": [1] } })),
            (ErrorCode::InvalidType, "context.traits".into())
        );
        // A track call's context.traits stay in the context only.
        let track = map(
            json!({ "type": "track", "event": "e", "userId": "u1", "context": { "traits": { "a": 1 } } }),
        )
        .expect("mapped");
        assert!(track["properties"].get("$set").is_none());
    }

    #[test]
    fn segment_batches_are_told_from_native_ones_by_auth_and_payload() {
        use axum::http::HeaderValue;
        let mut headers = HeaderMap::new();
        assert!(uses_segment_auth(&headers), "no Authorization: the key is in the body");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic d2s6"));
        assert!(uses_segment_auth(&headers));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer wk"));
        assert!(!uses_segment_auth(&headers));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("wk"));
        assert!(!uses_segment_auth(&headers), "a malformed header gets Pulse's own refusal");
        assert!(is_message(r#"{"type":"track","event":"e","userId":"u"}"#));
        assert!(!is_message(r#"{"type":"track","event":"e","distinct_id":"u"}"#));
        assert!(!is_message(r#"{"event":"e","distinct_id":"u"}"#));
        assert!(!is_message(r#"{"type":"purchase","event":"e","userId":"u"}"#));
        assert!(is_batch_field("sentAt") && !is_batch_field("events"));
    }
}
