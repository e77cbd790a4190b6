//! The OpenAPI 3.1 document of the query API, served at `/openapi.json`. Every request and
//! error schema is generated from the Rust types the API parses (their doc comments become
//! the descriptions); the paths are listed here, next to the router's.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::api::{
    CohortAnswer, CohortRequest, DeclaredFunnelParams, EventName, EventNamesParams, FunnelRequest,
    RetentionRequest, Source, TrendRequest,
};
use crate::error::ErrorResponse;

/// The document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let refs: Vec<(&str, Value)> = vec![
        ("TrendRequest", generator.subschema_for::<TrendRequest>().to_value()),
        ("FunnelRequest", generator.subschema_for::<FunnelRequest>().to_value()),
        ("DeclaredFunnelParams", generator.subschema_for::<DeclaredFunnelParams>().to_value()),
        ("RetentionRequest", generator.subschema_for::<RetentionRequest>().to_value()),
        ("CohortRequest", generator.subschema_for::<CohortRequest>().to_value()),
        ("CohortAnswer", generator.subschema_for::<CohortAnswer>().to_value()),
        ("EventNamesParams", generator.subschema_for::<EventNamesParams>().to_value()),
        ("EventName", generator.subschema_for::<EventName>().to_value()),
        ("Source", generator.subschema_for::<Source>().to_value()),
        ("ErrorResponse", generator.subschema_for::<ErrorResponse>().to_value()),
    ];
    let reference =
        |name: &str| refs.iter().find(|(n, _)| *n == name).map(|(_, r)| r.clone()).unwrap_or(Value::Null);
    let schemas = generator.take_definitions(true);

    let errors = json!({
        "400": error_response("The body or the query is invalid; `error.fields` names each field at fault.", &reference),
        "401": error_response("No read key, or not this pipeline's (a write key cannot read).", &reference),
        "422": error_response("The query would read more events or periods than the limits allow: narrow it.", &reference),
        "503": error_response("The store did not answer; retry.", &reference),
    });
    let answer = |result: Value, what: &str| {
        json!({
            "200": {
                "description": what,
                "content": { "application/json": { "schema": {
                    "type": "object",
                    "required": ["answeredFrom", "result"],
                    "properties": { "answeredFrom": reference("Source"), "result": result }
                }}}
            }
        })
    };
    let report = |what: &str| json!({ "type": "object", "description": format!("{what}; every number is defined in docs/semantics.md") });
    let post = |summary: &str, body: &str, responses: Value| {
        let mut responses = responses;
        merge(&mut responses, &errors);
        json!({ "post": {
            "summary": summary,
            "security": [{ "readKey": [] }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": reference(body) } } },
            "responses": responses,
        }})
    };
    let query_params = |params: &str| -> Value {
        let Some(Value::Object(props)) = schemas.get(params).and_then(|s| s.get("properties")).cloned()
        else {
            return json!([]);
        };
        let required: Vec<Value> = schemas
            .get(params)
            .and_then(|s| s.get("required"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Value::Array(
            props
                .into_iter()
                .map(|(name, schema)| json!({ "name": name, "in": "query", "required": required.contains(&Value::String(name.clone())), "schema": schema }))
                .collect(),
        )
    };
    let mut declared_params = query_params("DeclaredFunnelParams");
    if let Value::Array(list) = &mut declared_params {
        list.insert(0, json!({ "name": "name", "in": "path", "required": true, "schema": { "type": "string" }, "description": "The Funnel resource's name." }));
    }
    let mut declared_responses = answer(report("A funnel report"), "The funnel");
    merge(&mut declared_responses, &errors);
    merge(
        &mut declared_responses,
        &json!({ "404": error_response("No declared funnel of that name.", &reference) }),
    );
    let mut names_responses =
        answer(json!({ "type": "array", "items": reference("EventName") }), "The names");
    merge(&mut names_responses, &errors);

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Pulse query API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Trends, funnels, retention and cohorts of one pipeline, with its read key. Answers come from the processor's rollups where they can (answeredFrom: preaggregated) and otherwise from raw events (raw), cached briefly (cache).",
        },
        "paths": {
            "/v1/trends": post("A trend: a measure per interval, optionally broken down or for a cohort", "TrendRequest", answer(report("A trend report: series of points"), "The trend")),
            "/v1/funnels": post("An ad-hoc funnel over raw events", "FunnelRequest", answer(report("A funnel report: steps, breakdown with variant statistics, trend"), "The funnel")),
            "/v1/funnels/{name}": { "get": {
                "summary": "A funnel declared as a Funnel resource of this pipeline",
                "security": [{ "readKey": [] }],
                "parameters": declared_params,
                "responses": declared_responses,
            }},
            "/v1/retention": post("A retention table", "RetentionRequest", answer(report("A retention report: cohorts and their returns per offset"), "The retention")),
            "/v1/cohorts": post("The users of a cohort", "CohortRequest", answer(reference("CohortAnswer"), "The members")),
            "/v1/events": { "get": {
                "summary": "Event names seen in a range, with their counts (from day rollups)",
                "security": [{ "readKey": [] }],
                "parameters": query_params("EventNamesParams"),
                "responses": names_responses,
            }},
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": { "readKey": { "type": "http", "scheme": "bearer", "description": "The pipeline's read key (from its keys Secret)." } },
        },
    })
}

fn error_response(description: &str, reference: &impl Fn(&str) -> Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": reference("ErrorResponse") } } })
}

/// Adds `extra`'s entries to the object `into`.
fn merge(into: &mut Value, extra: &Value) {
    if let (Value::Object(into), Value::Object(extra)) = (into, extra) {
        for (k, v) in extra {
            into.insert(k.clone(), v.clone());
        }
    }
}

/// Whether a type's schema is in the document (for tests).
pub fn has_schema<T: JsonSchema>(document: &Value) -> bool {
    document["components"]["schemas"].get(T::schema_name().as_ref()).is_some()
}
