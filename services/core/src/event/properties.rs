//! The checks of an event's `properties`: the limits (count, depth, name length) and what
//! every MongoDB-wire store can hold. An event that passes here must be storable as it is:
//! once acknowledged, a store that refuses it would block its stream partition forever.

use serde_json::{Map, Value};

use super::{ErrorCode, EventError, EventRules, MAX_SUMMED_MAGNITUDE, NUL_REASON};

impl EventRules {
    pub(super) fn check_properties(&self, properties: &Map<String, Value>) -> Result<(), EventError> {
        let mut count = 0usize;
        self.walk(properties, "properties", 1, &mut count)?;
        check_unset_names(properties)?;
        self.check_summed(properties)
    }

    /// Values the rollups sum stay far from infinity, so no sum of them overflows.
    fn check_summed(&self, properties: &Map<String, Value>) -> Result<(), EventError> {
        for path in &self.summed {
            let mut keys = path.keys();
            let first = keys.next().and_then(|k| properties.get(k));
            let value = keys.try_fold(first, |v, k| Some(v?.get(k))).flatten();
            if let Some(n) = value.and_then(Value::as_f64)
                && n.abs() > MAX_SUMMED_MAGNITUDE
            {
                return Err(EventError::new(
                    ErrorCode::NumberOutOfRange,
                    format!("properties.{path}"),
                    format!(
                        "the pipeline sums this property (rollups.numericProperties): its values must be within ±{MAX_SUMMED_MAGNITUDE:e}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Counts keys (nested ones too) and checks depth, key names and values.
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
            // Stores keep nested keys as dotted paths: an empty key is an empty path segment.
            if key.trim().is_empty() {
                return Err(EventError::new(
                    ErrorCode::Empty,
                    path,
                    "a property name must not be empty or only whitespace",
                ));
            }
            if key.contains('\0') {
                return Err(EventError::new(
                    ErrorCode::InvalidCharacter,
                    format!("{path}.{key}"),
                    format!("a property name {NUL_REASON}"),
                ));
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
                items.iter().enumerate().try_for_each(|(i, v)| {
                    let item = format!("{path}[{i}]");
                    // FerretDB cannot store an array directly inside an array.
                    if v.is_array() {
                        return Err(EventError::new(
                            ErrorCode::NestedArray,
                            item,
                            "an array must not directly hold an array; wrap the inner one in an object, e.g. [{\"items\": [1, 2]}]",
                        ));
                    }
                    self.walk_value(v, &item, depth + 1, count)
                })
            }
            // PostgreSQL (a FerretDB backend) cannot store U+0000 in any text.
            Value::String(s) if s.contains('\0') => Err(EventError::new(
                ErrorCode::InvalidCharacter,
                path,
                format!("a string value {NUL_REASON}"),
            )),
            _ => Ok(()),
        }
    }
}

/// `$unset` names become field paths of the user's profile: none may be empty or blank.
fn check_unset_names(properties: &Map<String, Value>) -> Result<(), EventError> {
    let Some(Value::Array(names)) = properties.get("$unset") else { return Ok(()) };
    for (i, name) in names.iter().enumerate() {
        if name.as_str().is_some_and(|n| n.trim().is_empty()) {
            return Err(EventError::new(
                ErrorCode::Empty,
                format!("properties.$unset[{i}]"),
                "a property name to unset must not be empty or only whitespace",
            ));
        }
    }
    Ok(())
}
