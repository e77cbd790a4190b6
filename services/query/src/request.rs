//! What every request goes through before its endpoint's work: the read key, the body's
//! Content-Type and size, and its parsing into the endpoint's type, each refusal a JSON
//! error of the service's shape.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
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

/// Refuses a time outside [`EARLIEST_MS`, `LATEST_MS`], naming its field.
pub fn check_times(times: &[(&str, Option<i64>)]) -> Result<(), QueryError> {
    for (field, time) in times {
        if let Some(t) = *time
            && !(EARLIEST_MS..=LATEST_MS).contains(&t)
        {
            return Err(QueryError::invalid(
                *field,
                format!("{t} is outside the years 1 to 9999 ({EARLIEST_MS} to {LATEST_MS} epoch ms)"),
            ));
        }
    }
    Ok(())
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
pub fn json_body<T: DeserializeOwned>(
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
    as_json_schema_reads(&mut value, "").map_err(|e| invalid(&e))?;
    serde_json::from_value(value).map_err(|e| invalid(&e))
}

/// Reads numbers and tags as JSON Schema (and so the OpenAPI document) does: a float with
/// no fractional part is an integer (`10.0` for a count or a time), and the tags that pick a
/// kind of condition or measure (`type`, `kind`) are text only (serde would also take a
/// variant's position, `0`).
fn as_json_schema_reads(value: &mut serde_json::Value, path: &str) -> Result<(), String> {
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
                    return Err(format!("{at}: must be a string"));
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
