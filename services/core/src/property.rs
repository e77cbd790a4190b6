//! Event properties: paths into an event's `properties` object, and filters on them.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The pattern of a property path: up to 8 keys joined by `.`, each of letters, digits and
/// `_ $ @ : / -` (so `plan`, `$browser` and `utm/source` all work).
pub const PROPERTY_PATH_PATTERN: &str = r"^[A-Za-z0-9_$@:/-]{1,64}(\.[A-Za-z0-9_$@:/-]{1,64}){0,7}$";
const MAX_DEPTH: usize = 8;
const MAX_KEY_LEN: usize = 64;

/// A path into an event's `properties`, nested keys joined by `.`: `plan` is
/// `properties.plan`, `device.os` is `properties.device.os`. A key that itself contains
/// `.` is named as written: where an object has no key for the next part of the path,
/// that part joined with the following ones by `.` is tried as one key, so `utm.source`
/// also finds `{"utm.source": ..}` (a nested `{"utm": {"source": ..}}` comes first).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PropertyPath(String);

/// Why a property path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid property path {0:?}: write up to 8 keys joined by '.', each 1-64 characters of letters, digits and _ $ @ : / -"
)]
pub struct InvalidPropertyPath(pub String);

impl PropertyPath {
    /// The keys from the outermost in.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value at this path in `properties`, if there is one (see the type's docs for
    /// keys containing `.`).
    pub fn lookup<'a>(&self, properties: &'a Value) -> Option<&'a Value> {
        // The common case, nested keys without `.`, walks the path without allocating.
        if let Some(found) = self.keys().try_fold(properties, |value, key| value.get(key)) {
            return Some(found);
        }
        if !self.0.contains('.') {
            return None;
        }
        let keys: Vec<&str> = self.keys().collect();
        lookup_dotted(properties, &keys)
    }
}

/// The value at `keys` in `value`, where consecutive keys may also be one key holding `.`
/// (nested keys first, then ever longer joined ones). At most 8 keys: 128 ways at worst.
fn lookup_dotted<'a>(value: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    let Some((first, rest)) = keys.split_first() else { return Some(value) };
    let object = value.as_object()?;
    let mut key = (*first).to_string();
    for taken in 0..=rest.len() {
        if taken > 0 {
            key.push('.');
            key.push_str(rest[taken - 1]);
        }
        if let Some(found) = object.get(&key).and_then(|inner| lookup_dotted(inner, &rest[taken..])) {
            return Some(found);
        }
    }
    None
}

impl TryFrom<String> for PropertyPath {
    type Error = InvalidPropertyPath;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let key_ok = |k: &str| {
            (1..=MAX_KEY_LEN).contains(&k.len())
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"_$@:/-".contains(&b))
        };
        let keys: Vec<&str> = s.split('.').collect();
        if keys.len() <= MAX_DEPTH && keys.iter().all(|k| key_ok(k)) {
            Ok(PropertyPath(s))
        } else {
            Err(InvalidPropertyPath(s))
        }
    }
}

impl std::str::FromStr for PropertyPath {
    type Err = InvalidPropertyPath;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PropertyPath::try_from(s.to_string())
    }
}

impl From<PropertyPath> for String {
    fn from(p: PropertyPath) -> Self {
        p.0
    }
}

impl fmt::Display for PropertyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for PropertyPath {
    fn schema_name() -> Cow<'static, str> {
        "PropertyPath".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 520,
            "pattern": PROPERTY_PATH_PATTERN,
            "description": "A path into the event's properties, nested keys joined by '.': `plan` is properties.plan, `device.os` is properties.device.os."
        })
    }
}

/// How a filter compares a property with its value(s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FilterOp {
    /// Equal to `value` (numbers and booleans compare by their JSON text, e.g. "42", "true").
    #[default]
    Eq,
    /// Not equal to `value`; also true when the property is absent.
    Neq,
    /// Equal to one of `values`.
    In,
    /// Equal to none of `values`; also true when the property is absent.
    NotIn,
    /// Numerically greater than `value`.
    Gt,
    /// Numerically greater than or equal to `value`.
    Gte,
    /// Numerically less than `value`.
    Lt,
    /// Numerically less than or equal to `value`.
    Lte,
    /// A string property containing `value`.
    Contains,
    /// The property is present (any value, including null).
    Exists,
    /// The property is absent.
    NotExists,
}

impl FilterOp {
    fn takes_value(self) -> bool {
        matches!(self, FilterOp::Eq | FilterOp::Neq | FilterOp::Contains) || self.is_numeric()
    }

    fn takes_values(self) -> bool {
        matches!(self, FilterOp::In | FilterOp::NotIn)
    }

    fn is_numeric(self) -> bool {
        matches!(self, FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte)
    }
}

/// A condition on one property of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.op in ['in', 'notIn'] ? has(self.values) && !has(self.value) : true",
        "message": "ops in and notIn compare with `values` (a list), not `value`"
    },
    {
        "rule": "self.op in ['eq', 'neq', 'contains', 'gt', 'gte', 'lt', 'lte'] ? has(self.value) && !has(self.values) : true",
        "message": "ops eq, neq, contains, gt, gte, lt and lte compare with `value`, not `values`"
    },
    {
        "rule": "self.op in ['exists', 'notExists'] ? !has(self.value) && !has(self.values) : true",
        "message": "ops exists and notExists take neither `value` nor `values`"
    },
    {
        "rule": "self.op in ['gt', 'gte', 'lt', 'lte'] ? self.value.matches('^-?[0-9]+(\\\\.[0-9]+)?$') : true",
        "message": "ops gt, gte, lt and lte need a number in `value`, e.g. \"10\" or \"2.5\""
    }
]))]
pub struct PropertyFilter {
    /// The property to test.
    pub property: PropertyPath,
    /// The comparison: eq (default), neq, in, notIn, gt, gte, lt, lte, contains, exists,
    /// notExists.
    #[serde(default)]
    pub op: FilterOp,
    /// The value to compare with, as a string (for gt/gte/lt/lte a number such as "10").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub value: Option<String>,
    /// The values for in and notIn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub values: Option<Vec<String>>,
}

impl PropertyFilter {
    /// Checks what the schema's CEL rules check, for inputs that do not pass through the
    /// Kubernetes API server (ad-hoc queries). `field` prefixes the error paths.
    pub(crate) fn validate_into(&self, field: &str, errors: &mut crate::validation::Errors) {
        // The schema's lengths (`schemars(length)` above).
        if self.value.as_ref().is_some_and(|v| v.chars().count() > 1024) {
            errors.add(format!("{field}.value"), "at most 1024 characters");
        }
        if self.values.as_ref().is_some_and(|v| v.len() > 100) {
            errors.add(format!("{field}.values"), "at most 100 values");
        }
        if self.op.takes_values() {
            if self.values.as_ref().is_none_or(Vec::is_empty) || self.value.is_some() {
                errors.add(
                    format!("{field}.values"),
                    "ops in and notIn compare with `values` (a list), not `value`",
                );
            }
        } else if self.op.takes_value() {
            if self.value.is_none() || self.values.is_some() {
                errors.add(format!("{field}.value"), "this op compares with `value`, not `values`");
            } else if self.op.is_numeric() && self.value.as_deref().and_then(parse_number).is_none() {
                errors.add(format!("{field}.value"), "ops gt, gte, lt and lte need a number in `value`");
            }
        } else if self.value.is_some() || self.values.is_some() {
            errors.add(format!("{field}.op"), "ops exists and notExists take neither `value` nor `values`");
        }
    }

    /// Whether the event `properties` satisfy this filter.
    pub fn matches(&self, properties: &Value) -> bool {
        let found = self.property.lookup(properties);
        let text = found.map(value_text);
        let number = found.and_then(Value::as_f64);
        let wanted = self.value.as_deref().unwrap_or_default();
        let compare = |accept: fn(f64, f64) -> bool| match (number, parse_number(wanted)) {
            (Some(have), Some(want)) => accept(have, want),
            _ => false,
        };
        match self.op {
            FilterOp::Eq => text.as_deref() == Some(wanted),
            FilterOp::Neq => text.as_deref() != Some(wanted),
            FilterOp::In => text.is_some_and(|t| self.values.iter().flatten().any(|v| *v == t)),
            FilterOp::NotIn => !text.is_some_and(|t| self.values.iter().flatten().any(|v| *v == t)),
            FilterOp::Gt => compare(|a, b| a > b),
            FilterOp::Gte => compare(|a, b| a >= b),
            FilterOp::Lt => compare(|a, b| a < b),
            FilterOp::Lte => compare(|a, b| a <= b),
            FilterOp::Contains => found.and_then(Value::as_str).is_some_and(|s| s.contains(wanted)),
            FilterOp::Exists => found.is_some(),
            FilterOp::NotExists => found.is_none(),
        }
    }
}

/// A property value as filters compare it: strings as they are, anything else as JSON text.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse_number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Checks `filters` (each with its field path under `field`, e.g. `filters[0].value`).
pub fn check_filters(
    field: &str,
    filters: &[PropertyFilter],
) -> Result<(), Vec<crate::validation::FieldError>> {
    let mut errors = crate::validation::Errors::default();
    for (i, filter) in filters.iter().enumerate() {
        filter.validate_into(&format!("{field}[{i}]"), &mut errors);
    }
    errors.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(property: &str, op: FilterOp, value: Option<&str>, values: Option<&[&str]>) -> PropertyFilter {
        PropertyFilter {
            property: property.parse().expect("valid path"),
            op,
            value: value.map(str::to_string),
            values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn paths_look_up_nested_properties() {
        let props = json!({ "plan": "pro", "device": { "os": "ios" }, "$browser": "Firefox" });
        let path = |s: &str| s.parse::<PropertyPath>().expect("valid");
        assert_eq!(path("plan").lookup(&props), Some(&json!("pro")));
        assert_eq!(path("device.os").lookup(&props), Some(&json!("ios")));
        assert_eq!(path("$browser").lookup(&props), Some(&json!("Firefox")));
        assert_eq!(path("device.model").lookup(&props), None);
    }

    #[test]
    fn keys_containing_dots_are_named_as_written() {
        let props = json!({
            "utm.source": "newsletter",
            "page": { "query.q": "shoes", "a": { "b.c": 1 } },
            "both": { "x": 1 }, "both.x": 2,
        });
        let path = |s: &str| s.parse::<PropertyPath>().expect("valid");
        assert_eq!(path("utm.source").lookup(&props), Some(&json!("newsletter")));
        assert_eq!(path("page.query.q").lookup(&props), Some(&json!("shoes")));
        assert_eq!(path("page.a.b.c").lookup(&props), Some(&json!(1)));
        assert_eq!(path("both.x").lookup(&props), Some(&json!(1)), "nested keys come first");
        assert_eq!(path("utm.medium").lookup(&props), None);
        let filter = filter("utm.source", FilterOp::Eq, Some("newsletter"), None);
        assert!(filter.matches(&props), "a filter names a key containing '.'");
    }

    #[test]
    fn malformed_paths_are_refused() {
        for bad in ["", ".plan", "plan.", "a..b", "has space", "a.b.c.d.e.f.g.h.i", &"k".repeat(65)] {
            assert!(bad.parse::<PropertyPath>().is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn filters_compare_as_documented() {
        let props = json!({ "plan": "pro", "seats": 12, "trial": true, "note": "from newsletter" });
        assert!(filter("plan", FilterOp::Eq, Some("pro"), None).matches(&props));
        assert!(filter("trial", FilterOp::Eq, Some("true"), None).matches(&props));
        assert!(filter("seats", FilterOp::Eq, Some("12"), None).matches(&props));
        assert!(filter("plan", FilterOp::Neq, Some("free"), None).matches(&props));
        assert!(filter("missing", FilterOp::Neq, Some("x"), None).matches(&props));
        assert!(filter("plan", FilterOp::In, None, Some(&["team", "pro"])).matches(&props));
        assert!(!filter("plan", FilterOp::NotIn, None, Some(&["team", "pro"])).matches(&props));
        assert!(filter("seats", FilterOp::Gt, Some("10"), None).matches(&props));
        assert!(!filter("seats", FilterOp::Lt, Some("12"), None).matches(&props));
        assert!(filter("seats", FilterOp::Lte, Some("12"), None).matches(&props));
        assert!(!filter("plan", FilterOp::Gt, Some("1"), None).matches(&props), "a string is not a number");
        assert!(filter("note", FilterOp::Contains, Some("news"), None).matches(&props));
        assert!(filter("plan", FilterOp::Exists, None, None).matches(&props));
        assert!(filter("coupon", FilterOp::NotExists, None, None).matches(&props));
    }

    #[test]
    fn validation_matches_the_cel_rules() {
        let check = |f: PropertyFilter| {
            let mut errors = crate::validation::Errors::default();
            f.validate_into("filters[0]", &mut errors);
            errors.into_result()
        };
        assert!(check(filter("plan", FilterOp::Eq, Some("pro"), None)).is_ok());
        assert!(check(filter("plan", FilterOp::In, Some("pro"), None)).is_err());
        assert!(check(filter("plan", FilterOp::In, None, Some(&[]))).is_err());
        assert!(check(filter("plan", FilterOp::Eq, None, None)).is_err());
        assert!(check(filter("seats", FilterOp::Gt, Some("ten"), None)).is_err());
        assert!(check(filter("plan", FilterOp::Exists, Some("x"), None)).is_err());
    }
}
