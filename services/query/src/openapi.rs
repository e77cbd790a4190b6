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
use crate::request::{EARLIEST_MS, LATEST_MS, MAX_BODY_BYTES};

/// The document.
/// The document of a replica whose pipeline declares `funnels`: the declared-funnel path
/// lists their names, so a client (or a fuzzer) knows which exist.
pub fn document_for(funnels: &[&str]) -> Value {
    let mut doc = document();
    if !funnels.is_empty()
        && let Some(name) = doc.pointer_mut("/paths/~1v1~1funnels~1{name}/get/parameters/0/schema")
    {
        name["enum"] = json!(funnels);
    }
    doc
}

pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let refs: Vec<(&str, Value)> = vec![
        ("TrendRequest", generator.subschema_for::<TrendRequest>().to_value()),
        ("FunnelRequest", generator.subschema_for::<FunnelRequest>().to_value()),
        ("DeclaredFunnelParams", generator.subschema_for::<DeclaredFunnelParams>().to_value()),
        ("RetentionRequest", generator.subschema_for::<RetentionRequest>().to_value()),
        ("LifecycleRequest", generator.subschema_for::<crate::model::LifecycleRequest>().to_value()),
        ("StickinessRequest", generator.subschema_for::<crate::model::StickinessRequest>().to_value()),
        ("PathRequest", generator.subschema_for::<crate::model::PathRequest>().to_value()),
        ("PeopleRequest", generator.subschema_for::<crate::people::PeopleRequest>().to_value()),
        ("PeoplePage", generator.subschema_for::<crate::people::PeoplePage>().to_value()),
        ("SavedCohortParams", generator.subschema_for::<crate::people::SavedCohortParams>().to_value()),
        ("SavedCohortPage", generator.subschema_for::<crate::people::SavedCohortPage>().to_value()),
        ("CohortRequest", generator.subschema_for::<CohortRequest>().to_value()),
        ("CohortAnswer", generator.subschema_for::<CohortAnswer>().to_value()),
        ("EventNamesParams", generator.subschema_for::<EventNamesParams>().to_value()),
        ("EventName", generator.subschema_for::<EventName>().to_value()),
        ("FailedEventsParams", generator.subschema_for::<crate::failed::FailedEventsParams>().to_value()),
        ("FailedEventsPage", generator.subschema_for::<crate::failed::FailedEventsPage>().to_value()),
        ("Person", generator.subschema_for::<crate::persons::Person>().to_value()),
        ("PersonSearch", generator.subschema_for::<crate::profiles::PersonSearch>().to_value()),
        ("PersonPage", generator.subschema_for::<crate::profiles::PersonPage>().to_value()),
        (
            "PersonPropertiesParams",
            generator.subschema_for::<crate::profiles::PersonPropertiesParams>().to_value(),
        ),
        ("PersonEventsParams", generator.subschema_for::<crate::persons::PersonEventsParams>().to_value()),
        ("PersonEventsPage", generator.subschema_for::<crate::persons::PersonEventsPage>().to_value()),
        (
            "EventPropertiesParams",
            generator.subschema_for::<crate::discovery::EventPropertiesParams>().to_value(),
        ),
        (
            "PropertyReport",
            generator.subschema_for::<pulse_core::analytics::discovery::PropertyReport>().to_value(),
        ),
        ("Source", generator.subschema_for::<Source>().to_value()),
        ("ErrorResponse", generator.subschema_for::<ErrorResponse>().to_value()),
    ];
    let reference =
        |name: &str| refs.iter().find(|(n, _)| *n == name).map(|(_, r)| r.clone()).unwrap_or(Value::Null);
    let mut schemas = generator.take_definitions(true);
    constrain(&mut schemas);
    schemas.values_mut().for_each(bound_integer_formats);

    let mut unavailable = error_response(
        "`store_unavailable`: the store did not answer; or `overloaded`: this replica is computing its limit of ad-hoc queries and its queue is full, or the query waited too long for a turn. Retry after `Retry-After` seconds.",
        &reference,
    );
    merge(
        &mut unavailable,
        &json!({ "headers": { "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": { "type": "integer", "minimum": 1 }
        }}}),
    );
    let errors = json!({
        "400": error_response("The body or the query is invalid; `error.fields` names each field at fault.", &reference),
        "401": error_response("No read key, or not this pipeline's (a write key cannot read). The scheme is case-insensitive.", &reference),
        "404": error_response("`not_found`: the cohort filter names a cohort nothing is saved under.", &reference),
        "422": error_response("The query would read more events or periods than the limits allow (narrow it), gives epoch seconds for milliseconds, or names a cell its report does not have (`not_in_report`).", &reference),
        "503": unavailable,
    });
    let body_errors = json!({
        "413": error_response(&format!("The body is larger than {MAX_BODY_BYTES} bytes."), &reference),
        "415": error_response("The body's Content-Type is not JSON (send application/json, any application/*+json, or none).", &reference),
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
        merge(&mut responses, &body_errors);
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
    let mut failed_responses = answer(reference("FailedEventsPage"), "A page of failed events");
    merge(&mut failed_responses, &errors);
    let person_path = json!({ "name": "distinct_id", "in": "path", "required": true, "schema": { "type": "string" }, "description": "The user's distinct_id." });
    let unknown_person =
        json!({ "404": error_response("`not_found`: no event and no profile of that user.", &reference) });
    let mut person_responses = answer(reference("Person"), "The user");
    merge(&mut person_responses, &errors);
    merge(&mut person_responses, &unknown_person);
    let mut person_events_params = query_params("PersonEventsParams");
    if let Value::Array(list) = &mut person_events_params {
        list.insert(0, person_path.clone());
    }
    let mut person_events_responses = answer(reference("PersonEventsPage"), "A page of the user's events");
    merge(&mut person_events_responses, &errors);
    merge(&mut person_events_responses, &unknown_person);
    let mut properties_params = query_params("EventPropertiesParams");
    if let Value::Array(list) = &mut properties_params {
        list.insert(0, json!({ "name": "name", "in": "path", "required": true, "schema": { "type": "string", "minLength": 1 }, "description": "The event name." }));
    }
    let mut properties_responses = answer(reference("PropertyReport"), "The event's properties");
    merge(&mut properties_responses, &errors);
    let mut people_responses = answer(reference("PeoplePage"), "A page of the users");
    merge(
        &mut people_responses,
        &json!({ "404": error_response("`not_found`: the cohort filter names a cohort not saved.", &reference) }),
    );
    let mut saved_params = query_params("SavedCohortParams");
    if let Value::Array(list) = &mut saved_params {
        list.insert(0, json!({ "name": "name", "in": "path", "required": true, "schema": { "type": "string" }, "description": "The name it was saved as." }));
    }
    let mut saved_responses = answer(reference("SavedCohortPage"), "The saved cohort");
    merge(&mut saved_responses, &errors);
    merge(
        &mut saved_responses,
        &json!({ "404": error_response("`not_found`: no cohort is saved under that name.", &reference) }),
    );
    let mut profile_properties_responses = answer(reference("PropertyReport"), "The profiles' properties");
    merge(&mut profile_properties_responses, &errors);
    let mut names_responses =
        answer(json!({ "type": "array", "items": reference("EventName") }), "The names");
    merge(&mut names_responses, &errors);

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Pulse query API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Trends, funnels, retention, lifecycle, stickiness, paths and cohorts of one pipeline, with its read key. Answers come from the processor's rollups where they can (answeredFrom: preaggregated) and otherwise from raw events (raw), cached briefly (cache).",
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
            "/v1/lifecycle": post("Per period, the users of an event who are new, returning or resurrecting, and those gone dormant", "LifecycleRequest", answer(report("A lifecycle report: one entry per period with new, returning, resurrecting, dormant (negative) and progress"), "The lifecycle")),
            "/v1/stickiness": post("Per week or month, how many users did an event on exactly 1, 2, ... N of its days", "StickinessRequest", answer(report("A stickiness report: one entry per period with its days, its users, their count by active days and progress"), "The stickiness")),
            "/v1/paths": post("What users did after (or before) an event: the top names per step plus other as Sankey nodes and edges, and the most frequent whole paths", "PathRequest", answer(report("A paths report: users, nodes per step, edges (source and target index nodes), the top whole paths and how many distinct ones"), "The paths")),
            "/v1/people": post("The users behind a number: a funnel step (reached or dropped off, by breakdown value), a retention cell, a lifecycle or stickiness bucket, a trend point; a page at a time with the total, optionally saved as a cohort", "PeopleRequest", people_responses),
            "/v1/cohorts/saved/{name}": { "get": {
                "summary": "A cohort saved from the people behind a number, and a page of its members",
                "description": "Name it in any query's cohort filter as `{\"type\": \"inCohort\", \"name\": ...}`.",
                "security": [{ "readKey": [] }],
                "parameters": saved_params,
                "responses": saved_responses,
            }},
            "/v1/cohorts": post("The users of a cohort", "CohortRequest", answer(reference("CohortAnswer"), "The members")),
            "/v1/events": { "get": {
                "summary": "Event names seen in a range, with their counts (from day rollups)",
                "description": "Counts whole days of the pipeline's time zone whose start lies in [from, to): a day starting before `from` is left out, one starting before `to` counts whole. Default: `to` is now plus a day, `from` 31 days before `to`. For exact counts over any range use a trend.",
                "security": [{ "readKey": [] }],
                "parameters": query_params("EventNamesParams"),
                "responses": names_responses,
            }},
            "/v1/events/{name}/properties": { "get": {
                "summary": "An event's properties over a range: paths, value types and the most frequent values",
                "description": "Read from the event blocks of [from, to) (default: the 7 days before now), each event id once; nested objects become `.` paths as filters name them. A property with more than 100,000 distinct values says `exact: false`. More events than the query limit is `too_many_events`: narrow the range.",
                "security": [{ "readKey": [] }],
                "parameters": properties_params,
                "responses": properties_responses,
            }},
            "/v1/failed-events": { "get": {
                "summary": "Acknowledged events the store refused, set aside so their partition moves on",
                "description": "In id order, a page at a time: ask again with `after` set to the page's `next`. Replay them after a fix with `pulse-processor replay-failed` (docs/operations.md, \"Failed events\").",
                "security": [{ "readKey": [] }],
                "parameters": query_params("FailedEventsParams"),
                "responses": failed_responses,
            }},
            "/v1/persons": post("Users whose profile meets property filters (all must hold), a page at a time with the total", "PersonSearch", answer(reference("PersonPage"), "A page of persons")),
            "/v1/person-properties": { "get": {
                "summary": "The property paths seen on profiles, with their types and most frequent values",
                "description": "Read from every profile; here `events` counts users (one profile each). More profile documents than the query limit is `too_many_events`.",
                "security": [{ "readKey": [] }],
                "parameters": query_params("PersonPropertiesParams"),
                "responses": profile_properties_responses,
            }},
            "/v1/persons/{distinct_id}": { "get": {
                "summary": "A user: their profile, and their first and last event time",
                "description": "The profile is what `identify` traits, `$set` and `$set_once` wrote (docs/semantics.md, \"Persons\").",
                "security": [{ "readKey": [] }],
                "parameters": [person_path],
                "responses": person_responses,
            }},
            "/v1/persons/{distinct_id}/events": { "get": {
                "summary": "A user's events, newest first",
                "description": "A page at a time: ask again with `before` set to the page's `next`. Without the replica's activity view a page reads at most 31 days back and may hold fewer events than the limit while a `next` remains.",
                "security": [{ "readKey": [] }],
                "parameters": person_events_params,
                "responses": person_events_responses,
            }},
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": { "readKey": { "type": "http", "scheme": "bearer", "description": "The pipeline's read key (from its keys Secret)." } },
        },
    })
}

/// The ranges of the integer formats, which JSON Schema does not assert by themselves
/// (`format` is a note to it), written as bounds at every place they occur.
fn bound_integer_formats(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            let bounds: Option<(i64, u64)> = match fields.get("format").and_then(Value::as_str) {
                Some("uint32") => Some((0, u64::from(u32::MAX))),
                Some("uint" | "uint64") => Some((0, u64::MAX)),
                Some("int32") => Some((i64::from(i32::MIN), i32::MAX as u64)),
                Some("int64") => Some((i64::MIN, i64::MAX as u64)),
                _ => None,
            };
            if let Some((low, high)) = bounds {
                fields.entry("minimum").or_insert(json!(low));
                fields.entry("maximum").or_insert(json!(high));
            }
            fields.values_mut().for_each(bound_integer_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integer_formats),
        _ => {}
    }
}

/// What the engines refuse that the Rust types do not say, written into the schemas, so a
/// request valid by the document is accepted (except `from` before `to` and the other
/// rules between fields, which the descriptions state).
fn constrain(schemas: &mut serde_json::Map<String, Value>) {
    let limits = pulse_core::analytics::Limits::default();
    let mut set = |schema: &str, pointer: &str, extra: Value| {
        if let Some(at) = schemas.get_mut(schema).and_then(|s| s.pointer_mut(pointer)) {
            merge(at, &extra);
        }
    };
    set("EventMatcher", "/properties/event", json!({ "minLength": 1 }));
    // A page's `next`: epoch ms (within i64), then optionally `.` and an event id.
    set("PersonEventsParams", "/properties/before", json!({ "pattern": "^-?[0-9]{1,18}([.].*)?$" }));
    // A request's schema and the query's (nested in a people request) say the same.
    for schema in ["RetentionRequest", "RetentionQuery"] {
        set(schema, "/properties/periods", json!({ "minimum": 1, "maximum": limits.max_periods }));
        set(schema, "/properties/period", json!({ "enum": ["day", "week"], "description": "day or week." }));
    }
    for schema in ["LifecycleRequest", "LifecycleQuery"] {
        set(
            schema,
            "/properties/period",
            json!({ "enum": ["day", "week", "month"], "description": "day, week or month." }),
        );
    }
    for schema in ["StickinessRequest", "StickinessQuery"] {
        set(
            schema,
            "/properties/period",
            json!({ "enum": ["week", "month"], "description": "week or month." }),
        );
    }
    // The cells of a people request (PeopleOf's variants: funnel, retention, lifecycle,
    // stickiness, trend).
    let time = json!({ "minimum": EARLIEST_MS, "maximum": LATEST_MS });
    set("PeopleOf", "/oneOf/0/properties/step", json!({ "minimum": 1 }));
    set("PeopleOf", "/oneOf/1/properties/cohortStart", time.clone());
    set("PeopleOf", "/oneOf/1/properties/offset", json!({ "maximum": limits.max_periods }));
    for variant in [2, 3, 4] {
        set("PeopleOf", &format!("/oneOf/{variant}/properties/periodStart"), time.clone());
    }
    set("PeopleOf", "/oneOf/3/properties/days", json!({ "minimum": 1, "maximum": 31 }));
    set(
        "PathRequest",
        "/properties/steps",
        json!({ "minimum": 1, "maximum": pulse_core::analytics::paths::MAX_STEPS }),
    );
    set("PathRequest", "/properties/top", json!({ "minimum": 1, "maximum": limits.max_breakdown_values }));
    for names in ["/properties/exclude/items", "/properties/include/items"] {
        set("PathRequest", names, json!({ "minLength": 1 }));
    }
    set("PathRequest", "/properties/endAt", json!({ "minLength": 1 }));
    set("PeopleRequest", "/properties/saveAs", json!({ "pattern": "^[A-Za-z0-9_.-]{1,100}$" }));
    for schema in ["CohortRequest", "CohortFilter"] {
        set(schema, "/properties/conditions", json!({ "minItems": 1, "maxItems": 16 }));
    }
    set("TrendBreakdown", "/properties/top", json!({ "minimum": 1, "maximum": limits.max_breakdown_values }));
    set("CohortCondition", "/oneOf/0/properties/atLeast", json!({ "minimum": 1 }));
    set("CohortCondition", "/oneOf/2/properties/name", json!({ "pattern": "^[A-Za-z0-9_.-]{1,100}$" }));
    // A series of the value null may leave `value` out (a missing value reads as null).
    set("SeriesLabel", "/oneOf/1", json!({ "required": ["kind"] }));
    set("CohortCondition", "/oneOf/0/properties/lastDays", json!({ "minimum": 1 }));
    for schema in [
        "TrendRequest",
        "TrendQuery",
        "FunnelSpec",
        "RetentionQuery",
        "LifecycleQuery",
        "StickinessQuery",
        "FunnelRequest",
        "RetentionRequest",
        "LifecycleRequest",
        "StickinessRequest",
        "PathRequest",
        "DeclaredFunnelParams",
        "EventNamesParams",
        "EventPropertiesParams",
    ] {
        set(schema, "/properties/from", time.clone());
        set(schema, "/properties/to", time.clone());
    }
    for schema in ["CohortRequest", "CohortFilter"] {
        set(schema, "/properties/now", time.clone());
    }
    set("CohortCondition", "/oneOf/0/properties/from", time.clone());
    set("CohortCondition", "/oneOf/0/properties/to", time.clone());
    // What the CRD states as a set (`x-kubernetes-list-type`), JSON Schema states this way.
    set("FunnelDefinition", "/properties/holdConstant", json!({ "uniqueItems": true }));
    // Exclusions void chains between ordered steps: an unordered funnel has none.
    set(
        "FunnelDefinition",
        "",
        json!({ "if": { "required": ["order"], "properties": { "order": { "const": "unordered" } } },
                "then": { "properties": { "exclusions": { "maxItems": 0 } } } }),
    );
    // A conversion trend is per day or week; DAU, WAU and MAU are daily series (below).
    for schema in ["FunnelRequest", "DeclaredFunnelParams"] {
        set(schema, "/properties/trend", json!({ "enum": ["day", "week", null] }));
    }
    // Session measures have no breakdown.
    for schema in ["TrendRequest", "TrendQuery"] {
        let measure_is = |kinds: Value| {
            json!({ "required": ["measure"], "properties": { "measure": {
                "required": ["kind"], "properties": { "kind": { "enum": kinds } } } } })
        };
        set(
            schema,
            "",
            json!({ "allOf": [
                { "if": measure_is(json!(["dau", "wau", "mau"])),
                  "then": { "properties": { "interval": { "enum": ["day"] } } } },
                { "if": measure_is(json!(["sessions", "sessionDuration", "eventsPerSession"])),
                  "then": { "properties": { "breakdown": { "type": "null" } } } },
            ]}),
        );
    }
    // A performed condition names its time by [from, to) or by lastDays, not both or neither
    // (a null is no value).
    set(
        "CohortCondition",
        "/oneOf/0",
        json!({ "oneOf": [
            { "required": ["from", "to"],
              "properties": { "from": { "type": "integer" }, "to": { "type": "integer" }, "lastDays": { "type": "null" } } },
            { "required": ["lastDays"],
              "properties": { "lastDays": { "type": "integer" }, "from": { "type": "null" }, "to": { "type": "null" } } },
        ]}),
    );
    // What the filter's CEL rules say (the CRDs' validation), in JSON Schema: which ops take
    // `value`, which `values`, which neither.
    let neither = json!({ "anyOf": [{ "required": ["value"] }, { "required": ["values"] }] });
    set(
        "PropertyFilter",
        "",
        json!({ "oneOf": [
            { "properties": { "op": { "enum": ["in", "notIn"] }, "values": { "type": "array" } },
              "required": ["op", "values"], "not": { "required": ["value"] } },
            { "properties": { "op": { "enum": ["eq", "neq", "contains"] }, "value": { "type": "string" } },
              "required": ["value"], "not": { "required": ["values"] } },
            { "properties": { "op": { "enum": ["gt", "gte", "lt", "lte"] },
                              "value": { "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$" } },
              "required": ["op", "value"], "not": { "required": ["values"] } },
            { "properties": { "op": { "enum": ["exists", "notExists"] } },
              "required": ["op"], "not": neither },
        ]}),
    );
    for schema in [
        "TrendRequest",
        "FunnelRequest",
        "RetentionRequest",
        "LifecycleRequest",
        "StickinessRequest",
        "PathRequest",
        "DeclaredFunnelParams",
    ] {
        if let Some(Value::String(text)) =
            schemas.get_mut(schema).and_then(|s| s.pointer_mut("/properties/from/description"))
        {
            text.push_str(" Must be before `to`: the range [from, to) may not be empty.");
        }
    }
    if let Some(Value::Array(measures)) = schemas.get_mut("Measure").and_then(|m| m.get_mut("oneOf")) {
        for measure in measures {
            if let Some(p) = measure.pointer_mut("/properties/p") {
                merge(p, &json!({ "minimum": 0, "maximum": 100 }));
            }
        }
    }
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
