//! Property discovery: what an event's properties look like over a range, so an analyst can
//! build a filter or a breakdown without guessing names or values.
//!
//! Nested objects are walked: a property path is its keys joined by `.`, as filters and
//! breakdowns name it (`device.os`). Arrays are values, not walked.

use std::collections::{BTreeMap, HashMap};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::AnalyticsEvent;

/// Distinct values counted per property at most; past it a property's top values are
/// counted over the values met first and the report says so (`exact: false`).
pub const MAX_TRACKED_VALUES: usize = 100_000;
/// Keys deeper than this are not walked (property paths have at most 8 keys).
const MAX_DEPTH: usize = 8;

/// One event name's properties over the events read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PropertyReport {
    /// The events read (each event id once).
    pub events: u64,
    /// By path, in path order.
    pub properties: Vec<PropertySummary>,
}

/// One property path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PropertySummary {
    pub path: String,
    /// Events holding a value at this path.
    pub events: u64,
    /// Events per JSON type of the value: `string`, `number`, `boolean`, `null`, `array`.
    pub types: BTreeMap<String, u64>,
    /// Distinct values met (at most [`MAX_TRACKED_VALUES`] counted).
    pub distinct: u64,
    /// The most frequent values, most frequent first (ties by value).
    pub top: Vec<ValueCount>,
    /// False when the property had more distinct values than are counted: `distinct` is a
    /// lower bound, and the counts of `top` are of the values met while counting went on.
    pub exact: bool,
}

/// A value and the events holding it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ValueCount {
    pub value: Value,
    pub count: u64,
}

#[derive(Default)]
struct Tally {
    events: u64,
    types: BTreeMap<&'static str, u64>,
    values: HashMap<String, (Value, u64)>,
    /// A value went uncounted: more distinct values than [`MAX_TRACKED_VALUES`].
    overflowed: bool,
}

/// The properties of `events` (any order; a repeated event id counts once), each with its
/// `top` most frequent values.
pub fn properties(events: &[AnalyticsEvent], top: usize) -> PropertyReport {
    let mut seen = std::collections::HashSet::new();
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut read = 0;
    for event in events {
        if !seen.insert(event.event_id.as_str()) {
            continue;
        }
        read += 1;
        if let Value::Object(fields) = &event.properties {
            for (key, value) in fields {
                walk(key.clone(), value, 1, &mut tallies);
            }
        }
    }
    let properties = tallies
        .into_iter()
        .map(|(path, t)| {
            let distinct = t.values.len() as u64;
            let mut values: Vec<(Value, u64)> = t.values.into_values().collect();
            values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.to_string().cmp(&b.0.to_string())));
            values.truncate(top);
            PropertySummary {
                path,
                events: t.events,
                types: t.types.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                distinct,
                top: values.into_iter().map(|(value, count)| ValueCount { value, count }).collect(),
                exact: !t.overflowed,
            }
        })
        .collect();
    PropertyReport { events: read, properties }
}

fn walk(path: String, value: &Value, depth: usize, tallies: &mut BTreeMap<String, Tally>) {
    if let Value::Object(fields) = value
        && depth < MAX_DEPTH
    {
        for (key, inner) in fields {
            walk(format!("{path}.{key}"), inner, depth + 1, tallies);
        }
        return;
    }
    let tally = tallies.entry(path).or_default();
    tally.events += 1;
    *tally.types.entry(type_name(value)).or_default() += 1;
    let key = value.to_string();
    let room = tally.values.len() < MAX_TRACKED_VALUES;
    match tally.values.get_mut(&key) {
        Some(counted) => counted.1 += 1,
        None if room => {
            tally.values.insert(key, (value.clone(), 1));
        }
        None => tally.overflowed = true,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(id: &str, properties: Value) -> AnalyticsEvent {
        AnalyticsEvent {
            event_id: id.into(),
            event: "paid".into(),
            distinct_id: "u".into(),
            timestamp: 0,
            properties,
        }
    }

    #[test]
    fn paths_types_and_top_values_of_each_property() {
        let events = vec![
            ev("1", json!({ "plan": "pro", "total": 10, "device": { "os": "ios" } })),
            ev("2", json!({ "plan": "pro", "total": "10", "device": { "os": "android" }, "tags": ["a"] })),
            ev("3", json!({ "plan": "free", "total": null })),
            // A repeated id counts once.
            ev("3", json!({ "plan": "team" })),
        ];
        let report = properties(&events, 1);
        assert_eq!(report.events, 3);
        let paths: Vec<&str> = report.properties.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["device.os", "plan", "tags", "total"]);
        let plan = &report.properties[1];
        assert_eq!((plan.events, plan.distinct, plan.exact), (3, 2, true));
        assert_eq!(plan.top, [ValueCount { value: json!("pro"), count: 2 }]);
        let total = &report.properties[3];
        let types: Vec<(&str, u64)> = total.types.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(types, [("null", 1), ("number", 1), ("string", 1)]);
        assert_eq!(total.distinct, 3, "10 and \"10\" are different values");
        assert_eq!(report.properties[2].types.get("array"), Some(&1));
    }

    #[test]
    fn past_the_values_it_counts_a_property_says_it_is_not_exact() {
        let events: Vec<AnalyticsEvent> = (0..MAX_TRACKED_VALUES + 5)
            .map(|i| ev(&i.to_string(), json!({ "id": i, "kind": "x" })))
            .collect();
        let report = properties(&events, 3);
        let id = &report.properties[0];
        assert_eq!((id.path.as_str(), id.exact, id.distinct), ("id", false, MAX_TRACKED_VALUES as u64));
        assert_eq!(id.events, (MAX_TRACKED_VALUES + 5) as u64, "every event is still counted");
        let kind = &report.properties[1];
        assert!(kind.exact);
        assert_eq!(kind.top, [ValueCount { value: json!("x"), count: (MAX_TRACKED_VALUES + 5) as u64 }]);
    }
}
