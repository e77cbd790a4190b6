//! The engines' input: one event as stored, and a user's events in time order.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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
///
/// Sorting works on compact keys (user, time, id hash, position) rather than on the events,
/// whose fields live all over the heap: a million events then sort in a few tens of
/// milliseconds; event ids are compared only for equal hashes or equal times.
pub fn by_user(events: &[AnalyticsEvent]) -> Vec<UserEvents<'_>> {
    let mut user_of: HashMap<&str, u32, BuildHasherDefault<Fnv>> =
        HashMap::with_capacity_and_hasher(events.len() / 8 + 1, BuildHasherDefault::default());
    let mut keys: Vec<(u32, i64, u64, u32)> = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let next = user_of.len() as u32;
        let user = *user_of.entry(e.distinct_id.as_str()).or_insert(next);
        keys.push((user, e.timestamp, fnv(e.event_id.as_bytes()), i as u32));
    }
    let mut names: Vec<&str> = vec![""; user_of.len()];
    for (name, i) in user_of {
        names[i as usize] = name;
    }
    keys.sort_unstable_by_key(|k| (k.0, k.1, k.3));
    let mut out = Vec::with_capacity(names.len());
    for run in keys.chunk_by(|a, b| a.0 == b.0) {
        let mut run = run.to_vec();
        drop_repeated_ids(&mut run, events);
        // Ties in time: by event id, so the order does not depend on the input's.
        for tie in run.chunk_by_mut(|a, b| a.1 == b.1).filter(|t| t.len() > 1) {
            tie.sort_by(|a, b| events[a.3 as usize].event_id.cmp(&events[b.3 as usize].event_id));
        }
        out.push(UserEvents {
            distinct_id: names[run[0].0 as usize],
            events: run.iter().map(|k| &events[k.3 as usize]).collect(),
        });
    }
    out.sort_unstable_by(|a, b| a.distinct_id.cmp(b.distinct_id));
    out
}

/// Keeps the first given (lowest position) of the events that share an id.
fn drop_repeated_ids(run: &mut Vec<(u32, i64, u64, u32)>, events: &[AnalyticsEvent]) {
    if run.len() < 2 {
        return;
    }
    let mut by_hash: Vec<(u64, u32)> = run.iter().map(|k| (k.2, k.3)).collect();
    by_hash.sort_unstable();
    let mut repeated: Vec<u32> = Vec::new();
    for same in by_hash.chunk_by(|a, b| a.0 == b.0).filter(|s| s.len() > 1) {
        // Equal hashes: compare the ids themselves; the lowest position of each id stays.
        for (j, &(_, pos)) in same.iter().enumerate() {
            let id = &events[pos as usize].event_id;
            if same[..j].iter().any(|&(_, p)| events[p as usize].event_id == *id) {
                repeated.push(pos);
            }
        }
    }
    if !repeated.is_empty() {
        run.retain(|k| !repeated.contains(&k.3));
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.write(bytes);
    h.finish()
}

/// FNV-1a: user ids are short, and SipHash's flood resistance is not needed for a map
/// that lives for one query.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
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
