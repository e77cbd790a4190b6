//! What every request goes through before its endpoint's work: the read key, the body's
//! Content-Type and size, and its parsing (a JSON body or a query string) into the
//! endpoint's type, each refusal a JSON error of the service's shape that names the field.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use pulse_keys::KeyRing;
use serde::de::DeserializeOwned;

use crate::error::{FieldProblem, QueryError, QueryErrorCode};

/// The largest body accepted (axum's default limit, stated here so the docs can name it).
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// The earliest and latest time a query may name (epoch ms): years 1 to 9999, the range
/// calendar arithmetic (periods, windows, time zones) is defined on. Beyond it the engines'
/// sums would overflow.
pub const EARLIEST_MS: i64 = -62_135_596_800_000;
pub const LATEST_MS: i64 = 253_402_300_799_999;

/// Times from 10^9 to 10^11 epoch ms (1970-01-12 to 1973-03-03) are epoch seconds (2001 to
/// 5138) given by mistake: no pipeline holds events of 1970 (ingest refuses events older
/// than the retention), and read as milliseconds they would answer zeros.
const SECONDS_LOOK: std::ops::Range<i64> = 1_000_000_000..100_000_000_000;

/// Refuses a time outside [`EARLIEST_MS`, `LATEST_MS`], or one that is epoch seconds,
/// naming its field.
pub fn check_times(times: &[(&str, Option<i64>)]) -> Result<(), QueryError> {
    for (field, time) in times {
        let Some(t) = *time else { continue };
        if !(EARLIEST_MS..=LATEST_MS).contains(&t) {
            return Err(QueryError::invalid(
                *field,
                format!("{t} is outside the years 1 to 9999 ({EARLIEST_MS} to {LATEST_MS} epoch ms)"),
            ));
        }
        if SECONDS_LOOK.contains(&t) {
            let mut refusal = QueryError::invalid(
                *field,
                format!("{t} looks like epoch seconds; times are epoch milliseconds (e.g. {}000)", t),
            );
            // Well-formed (the document allows any time of years 1 to 9999), so not a 400.
            refusal.code = QueryErrorCode::EpochSeconds;
            return Err(refusal);
        }
    }
    Ok(())
}

/// A request body type. serde names no field for an error inside a `#[serde(flatten)]`
/// part (it reads that part from a buffer, past the path tracking), so a body with one
/// reads its flattened part again on its own to find the field.
pub trait RequestBody: DeserializeOwned {
    /// The refusal of the flattened part of `body`, naming its field, if it has one.
    fn flattened_refusal(_body: &serde_json::Value) -> Option<QueryError> {
        None
    }
}

/// `body` read as `Part` alone: its refusal, if it names a field.
pub fn refusal_of<Part: DeserializeOwned>(body: &serde_json::Value) -> Option<QueryError> {
    let error = parse_value::<Part>(body.clone()).err()?;
    (!error.fields.is_empty()).then_some(error)
}

/// A POST body as `T`, or why not: the refusal is the handler's to answer, after the read
/// key is checked (a request without the key learns nothing of the endpoint's shape).
pub struct JsonBody<T>(pub Result<T, QueryError>);

impl<T: RequestBody, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Infallible;

    async fn from_request(req: Request, state: &S) -> Result<Self, Infallible> {
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, state).await;
        Ok(JsonBody(json_body(&headers, body)))
    }
}

/// A query string as `T`, or why not, naming the parameter (see [`JsonBody`]).
pub struct QueryParams<T>(pub Result<T, QueryError>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(QueryParams(query_params(parts.uri.query().unwrap_or_default())))
    }
}

/// A query string (`from=1&to=2`) as `T`; a missing, repeated or malformed parameter is
/// refused by name.
pub fn query_params<T: DeserializeOwned>(query: &str) -> Result<T, QueryError> {
    let pairs = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(pairs).map_err(|e| {
        let path = e.path().to_string();
        let problem = e.into_inner().to_string();
        field_problem(&path, &problem, "query parameter")
    })
}

/// A serde refusal at `path` as the field at fault and why: a missing or unknown field is
/// named itself, not its parent.
fn field_problem(path: &str, problem: &str, what: &str) -> QueryError {
    let parent = if path == "." { "" } else { path };
    let join = |name: &str| if parent.is_empty() { name.to_string() } else { format!("{parent}.{name}") };
    let named = |prefix: &str| {
        problem.strip_prefix(prefix).and_then(|rest| rest.split('`').next()).map(|name| name.to_string())
    };
    let (field, reason) = if let Some(name) = named("missing field `") {
        (join(&name), format!("this {what} is required"))
    } else if let Some(name) = named("unknown field `") {
        let expected = problem.split_once(", expected ").map(|(_, e)| format!("; expected {e}"));
        (join(&name), format!("no such {what}{}", expected.unwrap_or_default()))
    } else if parent.is_empty() {
        return QueryError::new(
            QueryErrorCode::InvalidBody,
            format!("the body is not a valid query: {problem}"),
        );
    } else {
        (parent.to_string(), problem.to_string())
    };
    QueryError {
        code: QueryErrorCode::InvalidQuery,
        message: format!("{field}: {reason}"),
        fields: vec![FieldProblem { field, reason }],
    }
}

/// `Authorization: Bearer <read key>` (the scheme in any case, RFC 9110); write keys are
/// not read keys.
pub fn authorize(keys: &KeyRing, headers: &HeaderMap) -> Result<(), QueryError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    match presented {
        Some(key) if keys.accepts(key.as_bytes()) => Ok(()),
        Some(_) => Err(QueryError::new(
            QueryErrorCode::Unauthorized,
            "not this pipeline's read key (a write key cannot read)",
        )),
        None => Err(QueryError::new(QueryErrorCode::Unauthorized, "send Authorization: Bearer <read key>")),
    }
}

/// The body of a POST as `T`: JSON (`application/json`, any `+json` type, or no
/// Content-Type at all), at most [`MAX_BODY_BYTES`], of the endpoint's shape.
pub fn json_body<T: RequestBody>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, QueryError> {
    check_media_type(headers)?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => QueryError::new(
            QueryErrorCode::BodyTooLarge,
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        ),
        _ => QueryError::new(QueryErrorCode::InvalidBody, format!("the body could not be read: {rejection}")),
    })?;
    let invalid = |e: &dyn std::fmt::Display| {
        QueryError::new(QueryErrorCode::InvalidBody, format!("the body is not a valid query: {e}"))
    };
    let mut value = pulse_core::json::parse_slice(&body).map_err(|e| invalid(&e))?;
    as_json_schema_reads(&mut value, "")?;
    parse_value(value.clone()).map_err(|refused| match refused.fields.is_empty() {
        true => T::flattened_refusal(&value).unwrap_or(refused),
        false => refused,
    })
}

/// `value` as `T`, a refusal naming the field where serde can tell it.
fn parse_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, QueryError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let problem = e.into_inner().to_string();
        field_problem(&path, &problem, "field")
    })
}

/// Reads numbers and tags as JSON Schema (and so the OpenAPI document) does: a float with
/// no fractional part is an integer (`10.0` for a count or a time), and the tags that pick a
/// kind of condition or measure (`type`, `kind`) are text only (serde would also take a
/// variant's position, `0`).
fn as_json_schema_reads(value: &mut serde_json::Value, path: &str) -> Result<(), QueryError> {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            if let Some(i) =
                n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0)
            {
                *value = Value::from(i as i64);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                as_json_schema_reads(item, &format!("{path}[{i}]"))?;
            }
        }
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                let at = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                if (key == "type" || key == "kind") && !field.is_string() {
                    return Err(QueryError::invalid(at, "must be a string"));
                }
                as_json_schema_reads(field, &at)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn check_media_type(headers: &HeaderMap) -> Result<(), QueryError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let media = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media == "application/json" || (media.starts_with("application/") && media.ends_with("+json")) {
        return Ok(());
    }
    Err(QueryError {
        code: QueryErrorCode::UnsupportedMediaType,
        message: format!("Content-Type {media:?} is not supported; send application/json"),
        fields: vec![FieldProblem {
            field: "Content-Type".into(),
            reason: "the body must be JSON (application/json)".into(),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_content_type(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).expect("header"));
        headers
    }

    /// The one field a refusal names, and why.
    fn refusal(e: QueryError) -> (QueryErrorCode, String, String) {
        assert_eq!(e.fields.len(), 1, "{e:?}");
        (e.code, e.fields[0].field.clone(), e.fields[0].reason.clone())
    }

    fn body<T: RequestBody + std::fmt::Debug>(json: serde_json::Value) -> QueryError {
        json_body::<T>(&HeaderMap::new(), Ok(Bytes::from(json.to_string()))).expect_err("refused")
    }

    #[test]
    fn a_body_of_the_wrong_shape_is_refused_by_field() {
        use crate::model::{FunnelRequest, RetentionRequest, TrendRequest};
        use serde_json::json;
        let steps = json!([{ "event": "a" }, { "event": "b" }]);
        let (code, field, reason) = refusal(body::<FunnelRequest>(
            json!({ "definition": { "steps": steps, "window": 60000 }, "from": 0, "to": 1 }),
        ));
        assert_eq!((code, field.as_str()), (QueryErrorCode::InvalidQuery, "definition.window"));
        assert!(reason.contains(r#"a duration string such as "1m""#), "{reason}");

        let trend = json!({ "event": { "event": "a" }, "measure": { "kind": "count" }, "interval": "day" });
        let mut missing = trend.clone();
        missing["from"] = json!(0);
        let (code, field, reason) = refusal(body::<TrendRequest>(missing));
        assert_eq!(
            (code, field.as_str(), reason.as_str()),
            (QueryErrorCode::InvalidQuery, "to", "this field is required")
        );
        let mut wrong = trend.clone();
        wrong["from"] = json!("yesterday");
        wrong["to"] = json!(1);
        let (_, field, reason) = refusal(body::<TrendRequest>(wrong));
        assert_eq!(field, "from", "{reason}");
        let mut wrong = trend;
        wrong["interval"] = json!("fortnight");
        wrong["from"] = json!(0);
        wrong["to"] = json!(1);
        assert_eq!(refusal(body::<TrendRequest>(wrong)).1, "interval");
        let retention = json!({
            "start": { "event": "a" }, "return": { "event": 7 }, "period": "day", "periods": 3, "from": 0, "to": 1,
        });
        assert_eq!(refusal(body::<RetentionRequest>(retention)).1, "return.event");
        let not_an_object = body::<TrendRequest>(json!("not an object"));
        assert_eq!(not_an_object.code, QueryErrorCode::InvalidBody);
    }

    #[test]
    fn a_query_string_of_the_wrong_shape_is_refused_by_parameter() {
        use crate::model::DeclaredFunnelParams;
        let refused = |q: &str| refusal(query_params::<DeclaredFunnelParams>(q).expect_err(q));
        let (code, field, reason) = refused("to=5");
        assert_eq!(
            (code, field.as_str(), reason.as_str()),
            (QueryErrorCode::InvalidQuery, "from", "this query parameter is required")
        );
        assert_eq!(refused("from=yesterday&to=5").1, "from");
        assert_eq!(refused("from=1&to=5&trend=fortnight").1, "trend");
        let params = query_params::<DeclaredFunnelParams>("from=1&to=5&trend=week").expect("valid");
        assert_eq!((params.from, params.to), (1, 5));
    }

    #[test]
    fn epoch_seconds_are_refused_by_field() {
        let (code, field, reason) =
            refusal(check_times(&[("from", Some(0)), ("to", Some(1_774_569_600))]).expect_err("seconds"));
        assert_eq!((code, field.as_str()), (QueryErrorCode::EpochSeconds, "to"));
        assert!(reason.contains("epoch seconds") && reason.contains("1774569600000"), "{reason}");
        assert!(check_times(&[("from", Some(0)), ("to", Some(1_774_569_600_000))]).is_ok());
    }

    #[test]
    fn json_media_types_are_accepted_and_others_refused() {
        for ok in ["application/json", "Application/JSON; charset=utf-8", "application/vnd.api+json"] {
            assert!(check_media_type(&with_content_type(ok)).is_ok(), "{ok}");
        }
        assert!(check_media_type(&HeaderMap::new()).is_ok(), "no Content-Type is taken as JSON");
        for bad in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
            let refused = check_media_type(&with_content_type(bad)).expect_err(bad);
            assert_eq!(refused.code, QueryErrorCode::UnsupportedMediaType);
        }
    }
}
