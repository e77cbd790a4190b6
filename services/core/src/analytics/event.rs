//! The engines' input: one event as stored, and a user's events in time order.

use std::collections::{HashMap, HashSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::buffer::BufferedEvent;
use crate::property::PropertyFilter;
use crate::rollup::decode_properties;

/// One event as the engines see it: everything a stored raw event holds that analytics
/// reads (the event id, so a repeated delivery counts once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsEvent {
    /// The tenant-scoped event id (`_id` in the store).
    pub event_id: String,
    /// The event name.
    pub event: String,
    /// The user.
    pub distinct_id: String,
    /// When it happened, epoch milliseconds (`ts` in the store).
    pub timestamp: i64,
    /// The properties as the client sent them (a JSON object).
    pub properties: Value,
}

impl AnalyticsEvent {
    /// From a stored raw event's fields, whose property keys the store encodes (see
    /// [`crate::rollup::encode_properties`]); decodes them, so nothing is lost.
    pub fn from_stored(
        event_id: String,
        event: String,
        distinct_id: String,
        timestamp: i64,
        stored_properties: &Map<String, Value>,
    ) -> Self {
        let properties = Value::Object(decode_properties(stored_properties));
        AnalyticsEvent { event_id, event, distinct_id, timestamp, properties }
    }
}

impl From<BufferedEvent> for AnalyticsEvent {
    fn from(e: BufferedEvent) -> Self {
        AnalyticsEvent {
            event_id: e.event_id,
            event: e.event,
            distinct_id: e.distinct_id,
            timestamp: e.timestamp,
            properties: Value::Object(e.properties),
        }
    }
}

/// Which events count: an event name and conditions on its properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventMatcher {
    /// The event name, exactly (case-sensitive).
    pub event: String,
    /// Conditions the event's properties must all meet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<PropertyFilter>,
}

impl EventMatcher {
    /// Any event named `event`.
    pub fn named(event: impl Into<String>) -> Self {
        EventMatcher { event: event.into(), filters: Vec::new() }
    }

    /// Whether the event is named so and meets every filter.
    pub fn matches(&self, event: &AnalyticsEvent) -> bool {
        matches(&self.event, &self.filters, event)
    }

    pub(crate) fn validate_into(&self, field: &str, errors: &mut crate::validation::Errors) {
        if self.event.is_empty() {
            errors.add(format!("{field}.event"), "an event name has at least one character");
        }
        for (i, f) in self.filters.iter().enumerate() {
            f.validate_into(&format!("{field}.filters[{i}]"), errors);
        }
    }
}

/// Whether `event` is named `name` and meets every filter.
pub(crate) fn matches(name: &str, filters: &[PropertyFilter], event: &AnalyticsEvent) -> bool {
    event.event == name && filters.iter().all(|f| f.matches(&event.properties))
}

/// One user's events: each event id once, sorted by time (then event id, so the order is
/// the same whatever order the events came in).
#[derive(Debug, Clone)]
pub struct UserEvents<'a> {
    pub distinct_id: &'a str,
    pub events: Vec<&'a AnalyticsEvent>,
}

/// Groups events per user. An event id seen twice for a user counts once (the first
/// given, as the store keeps the first insert). Users come out sorted by id.
pub fn by_user(events: &[AnalyticsEvent]) -> Vec<UserEvents<'_>> {
    let mut users: HashMap<&str, Vec<&AnalyticsEvent>> = HashMap::new();
    for e in events {
        users.entry(e.distinct_id.as_str()).or_default().push(e);
    }
    let mut out: Vec<UserEvents<'_>> = users
        .into_iter()
        .map(|(distinct_id, mut events)| {
            let mut seen = HashSet::with_capacity(events.len());
            events.retain(|e| seen.insert(e.event_id.as_str()));
            events.sort_by(|a, b| (a.timestamp, &a.event_id).cmp(&(b.timestamp, &b.event_id)));
            UserEvents { distinct_id, events }
        })
        .collect();
    out.sort_unstable_by(|a, b| a.distinct_id.cmp(b.distinct_id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(id: &str, user: &str, ts: i64) -> AnalyticsEvent {
        AnalyticsEvent {
            event_id: id.into(),
            event: "e".into(),
            distinct_id: user.into(),
            timestamp: ts,
            properties: json!({}),
        }
    }

    #[test]
    fn groups_sorts_and_drops_repeated_ids() {
        let events =
            vec![ev("b", "u1", 5), ev("a", "u1", 5), ev("c", "u2", 1), ev("a", "u1", 9), ev("z", "u1", 2)];
        let users = by_user(&events);
        assert_eq!(users.len(), 2);
        let u1: Vec<(&str, i64)> =
            users[0].events.iter().map(|e| (e.event_id.as_str(), e.timestamp)).collect();
        assert_eq!(u1, [("z", 2), ("a", 5), ("b", 5)], "the later copy of id a is dropped");
    }

    #[test]
    fn stored_properties_are_decoded() {
        let stored = json!({ "%24browser": "Firefox", "utm%2Esource": "x" });
        let e = AnalyticsEvent::from_stored(
            "i".into(),
            "e".into(),
            "u".into(),
            1,
            stored.as_object().expect("object"),
        );
        assert_eq!(e.properties, json!({ "$browser": "Firefox", "utm.source": "x" }));
    }
}
