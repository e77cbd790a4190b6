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
    /// the receive time.
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
        crate::compat::posthog_capture
    ),
    components(schemas(
        EventInput,
        BatchInput,
        crate::api::Accepted,
        crate::api::IndexedEventError,
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
