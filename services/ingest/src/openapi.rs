//! The OpenAPI document of ingest (`GET /openapi.json`): the request shapes, the security
//! schemes, and the list of every refusal code, generated from the code that answers.

use pulse_core::event::ErrorCode;
use serde::Deserialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as OpenApiDoc, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

/// An event as clients send it (documentation of the accepted shape; parsing is by hand so
/// each problem is reported with its field). No object in it may hold a key twice.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct EventInput {
    /// Your id for this event: the deduplication key, so retries are stored once. Without
    /// one, ingest generates an id and retries of the event are NOT deduplicated. Not blank,
    /// no NUL character.
    event_id: Option<String>,
    /// The event name, e.g. `signed_up`. Not blank, no NUL character.
    event: String,
    /// The user the event is about. Not blank, no NUL character.
    distinct_id: String,
    /// When it happened: RFC 3339 with an offset, or integer epoch milliseconds. Default:
    /// the receive time. Not further in the future than the pipeline allows
    /// (`limits.maxFutureSkew`), nor older than its retention: a window that moves with the
    /// clock, which a schema cannot state.
    #[schema(schema_with = timestamp_schema)]
    timestamp: Option<serde_json::Value>,
    /// Any JSON object within the limits, except what no store can hold: names (keys, at
    /// any depth, and the names in `$unset`) that are empty or only whitespace, a NUL
    /// character in any name or string, and an array directly inside an array.
    properties: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A batch of events: `{"batch": [...]}` (a bare JSON array is accepted too). Other
/// top-level fields, and `batch` sent twice, are refused, naming the field.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct BatchInput {
    batch: Vec<EventInput>,
}

/// Segment's batch body: `{"batch": [message, ...]}` with optional `sentAt`, `context` and
/// `writeKey`; see docs/compat.md for each message's fields.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct SegmentBatchInput {
    /// The messages (track, identify, page, screen, group, alias).
    batch: Vec<serde_json::Map<String, serde_json::Value>>,
    #[serde(rename = "sentAt")]
    sent_at: Option<String>,
    context: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(rename = "writeKey")]
    write_key: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pulse ingest",
        description = "Send events to one Pulse pipeline. 202 means durably buffered; every acknowledged event is stored exactly once, however often it is retried with the same event_id."
    ),
    paths(
        crate::api::post_event,
        crate::api::post_batch,
        crate::compat::segment_batch,
        crate::compat::segment_single,
        crate::compat::posthog_capture,
        crate::compat::posthog_flags
    ),
    components(schemas(
        EventInput,
        BatchInput,
        SegmentBatchInput,
        crate::service::Accepted,
        crate::service::IndexedEventError,
        crate::compat::CompatAccepted,
        crate::error::ErrorResponse,
        crate::error::ErrorDetail,
        crate::error::RequestErrorCode
    )),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// The schemes the paths' `security` names.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some("`Authorization: Bearer <write key>`: the pipeline's write key".into());
        components.add_security_scheme("write_key", SecurityScheme::Http(bearer));
        let mut basic = Http::new(HttpAuthScheme::Basic);
        basic.description = Some(
            "Segment's SDKs: HTTP Basic with the write key as the user name and an empty password".into(),
        );
        components.add_security_scheme("segment_basic", SecurityScheme::Http(basic));
    }
}

/// Not blank, no NUL: at least one character that is not white space, none that is NUL.
const NAME_PATTERN: &str = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$";
/// No NUL character.
const NO_NUL_PATTERN: &str = "^[^\\u0000]*$";

/// What the document says of this pipeline's limits.
pub struct DocumentedLimits {
    /// `limits.maxNameLength`, in characters.
    pub max_name_length: usize,
    /// `limits.maxEventsPerBatch`.
    pub max_events_per_batch: usize,
}

/// The document, with this pipeline's limits, and the rules of property names and values
/// as JSON Schema (recursive, which the derived schemas cannot say).
pub fn document(limits: &DocumentedLimits) -> serde_json::Value {
    use serde_json::json;
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let name = json!({ "type": "string", "minLength": 1, "maxLength": limits.max_name_length, "pattern": NAME_PATTERN });
    let schemas = &mut doc["components"]["schemas"];
    schemas["PropertyName"] = name.clone();
    // A value a store can hold: no NUL in text, no array directly inside an array.
    schemas["PropertyValue"] = json!({
        "oneOf": [
            { "type": "null" },
            { "type": "boolean" },
            { "type": "number" },
            { "type": "string", "pattern": NO_NUL_PATTERN },
            { "type": "array", "items": { "$ref": "#/components/schemas/PropertyValueInArray" } },
            { "$ref": "#/components/schemas/Properties" },
        ],
    });
    schemas["PropertyValueInArray"] = json!({
        "oneOf": [
            { "type": "null" },
            { "type": "boolean" },
            { "type": "number" },
            { "type": "string", "pattern": NO_NUL_PATTERN },
            { "$ref": "#/components/schemas/Properties" },
        ],
    });
    schemas["Properties"] = json!({
        "type": "object",
        "propertyNames": { "$ref": "#/components/schemas/PropertyName" },
        "additionalProperties": { "$ref": "#/components/schemas/PropertyValue" },
    });
    schemas["SegmentMessage"] = segment_message(&name);
    schemas["SegmentBatchInput"]["properties"]["batch"]["items"] =
        json!({ "$ref": "#/components/schemas/SegmentMessage" });
    schemas["SegmentBatchInput"]["properties"]["sentAt"] = time_of_sending();
    // Read only when no Authorization header names the key.
    schemas["SegmentBatchInput"]["properties"]["writeKey"] = json!({ "description": "The write key, when the request has no Authorization header; ignored otherwise" });
    schemas["SegmentBatchInput"]["properties"]["context"] = json!({
        "description": "Context shared by the messages (merged under each message's own); anything but an object is ignored",
    });
    for (schema, unknown_fields_refused) in [("EventInput", true), ("BatchInput", true)] {
        schemas[schema]["additionalProperties"] = json!(!unknown_fields_refused);
    }
    let input = &mut schemas["EventInput"]["properties"];
    for field in ["event", "distinct_id"] {
        input[field] = json!({ "description": input[field]["description"].clone(), "allOf": [name.clone()] });
    }
    input["event_id"] = json!({
        "description": input["event_id"]["description"].clone(),
        "oneOf": [{ "type": "null" }, name.clone()],
    });
    let description = input["properties"]["description"].clone();
    input["properties"] = json!({
        "description": description,
        "oneOf": [{ "type": "null" }, { "$ref": "#/components/schemas/Properties" }],
    });
    for batch in ["BatchInput", "SegmentBatchInput"] {
        let items = &mut doc["components"]["schemas"][batch]["properties"]["batch"];
        items["minItems"] = json!(1);
        items["maxItems"] = json!(limits.max_events_per_batch);
    }
    doc
}

/// A Segment message: a call of one of the six types, with the fields that type needs.
fn segment_message(name: &serde_json::Value) -> serde_json::Value {
    use serde_json::json;
    let properties = json!({ "oneOf": [{ "type": "null" }, { "$ref": "#/components/schemas/Properties" }] });
    let time = time_of_sending();
    // `read`: the fields this call reads into the event; the others are ignored, whatever
    // they hold.
    let call = |kind: &str, required: &[&str], read: &[&str]| {
        // An empty or null id is no id. anonymousId is the user only without a userId; beside
        // one it is kept as a property value.
        let user = json!({ "oneOf": [{ "type": "null" }, { "const": "" }, name] });
        let anonymous =
            json!({ "oneOf": [{ "type": "null" }, { "type": "string", "pattern": NO_NUL_PATTERN }] });
        let mut fields = json!({
            "type": { "type": "string", "enum": [kind] },
            "userId": user, "anonymousId": anonymous,
            "messageId": { "oneOf": [{ "type": "null" }, name] },
            "timestamp": time, "originalTimestamp": time, "sentAt": time,
            "context": properties,
        });
        for field in read {
            fields[*field] = match *field {
                "properties" | "traits" => properties.clone(),
                // Read when text (into a property value), ignored otherwise.
                _ => json!({ "pattern": NO_NUL_PATTERN }),
            };
        }
        for field in required {
            // `event` becomes the event name; groupId and previousId become property values.
            fields[*field] = if *field == "event" {
                name.clone()
            } else {
                json!({ "type": "string", "minLength": 1, "pattern": NO_NUL_PATTERN })
            };
        }
        let required: Vec<&str> = std::iter::once("type").chain(required.iter().copied()).collect();
        json!({
            "type": "object",
            "properties": fields,
            "required": required,
            // A message names its user by userId or anonymousId.
            "anyOf": [
                { "required": ["userId"], "properties": { "userId": name } },
                { "required": ["anonymousId"], "properties": { "anonymousId": name } },
            ],
        })
    };
    json!({
        "description": "A Segment call (docs/compat.md): track needs `event`, group `groupId`, alias `previousId`; every call `userId` or `anonymousId`",
        "oneOf": [
            call("track", &["event"], &["properties"]),
            call("identify", &[], &["traits"]),
            call("page", &[], &["properties", "name", "category"]),
            call("screen", &[], &["properties", "name", "category"]),
            call("group", &["groupId"], &["traits"]),
            call("alias", &["previousId"], &[]),
        ],
    })
}

/// RFC 3339 with an offset, as ingest reads timestamps.
const RFC3339_PATTERN: &str = "^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])[Tt]([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(\\.\\d+)?([Zz]|[+-]([01]\\d|2[0-3]):[0-5]\\d)$";

/// A time as the SDKs send it: RFC 3339 text or integer epoch milliseconds.
fn time_of_sending() -> serde_json::Value {
    serde_json::json!({
        "oneOf": [
            { "type": "null" },
            { "type": "string", "format": "date-time", "pattern": RFC3339_PATTERN },
            { "type": "integer", "format": "int64" },
        ],
    })
}

/// A timestamp: RFC 3339 text or integer epoch milliseconds.
fn timestamp_schema() -> impl Into<RefOr<Schema>> {
    utoipa::openapi::schema::OneOfBuilder::new()
        .item(
            ObjectBuilder::new().schema_type(Type::String).format(Some(
                utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime),
            )),
        )
        .item(
            ObjectBuilder::new().schema_type(Type::Integer).format(Some(
                utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64),
            )),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
}

/// The schema of a per-event error code: a string, one of [`ErrorCode::ALL`].
pub(crate) fn event_error_code_schema() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "A stable code: why the event was refused (invalid_json, invalid_type, missing_field, unknown_field, empty (empty or only whitespace), too_long, event_too_large, too_deep, too_many_properties, invalid_timestamp, timestamp_in_future, timestamp_too_old, duplicate_key, nested_array, invalid_character (NUL), number_out_of_range (a value of a summed property beyond ±1e250))",
        ))
        .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_error_code_is_listed_and_described() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("serializes");
        let code = &doc["components"]["schemas"]["IndexedEventError"]["properties"]["code"];
        let listed: Vec<&str> =
            code["enum"].as_array().expect("an enum").iter().filter_map(|v| v.as_str()).collect();
        let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, all);
        let description = code["description"].as_str().expect("described");
        for name in all {
            assert!(description.contains(name), "{name} in {description}");
        }
    }

    #[test]
    fn every_security_scheme_named_is_defined_and_omitted_fields_are_optional() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("serializes");
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["write_key"]["scheme"], "bearer", "{schemes}");
        assert_eq!(schemes["segment_basic"]["scheme"], "basic", "{schemes}");
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for requirement in item["post"]["security"].as_array().into_iter().flatten() {
                for name in requirement.as_object().expect("a requirement").keys() {
                    assert!(schemes.get(name).is_some(), "{path} names {name}, which is not defined");
                }
            }
        }
        let required = |schema: &str| doc["components"]["schemas"][schema]["required"].clone();
        assert_eq!(required("ErrorResponse"), serde_json::json!(["error"]), "errors is omitted when empty");
        assert_eq!(
            required("ErrorDetail"),
            serde_json::json!(["code", "message"]),
            "field is omitted when none"
        );
        let field = &doc["components"]["schemas"]["ErrorDetail"]["properties"]["field"];
        assert_eq!(field["type"], "string", "omitted, never null: {field}");
    }
}
