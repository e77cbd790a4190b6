//! Per-user profiles: the user properties that property cohorts filter on, changed by
//! events that carry `$set`, `$set_once` or `$unset` in their properties (a Segment
//! identify, PostHog's `set`/`set_once`/`$identify`, or any native event).
//!
//! Updates apply in stream order, which is the order of one user's events because a user's
//! events share a partition: `$set` overwrites, `$set_once` writes only a property the
//! profile lacks, `$unset` (an array of names) removes. The updates of a run of events fold
//! into one [`ProfileUpdate`] per user that has exactly the effect of applying them one by
//! one, and replaying a run whose prefix was already applied gives the same profile, which
//! is what makes the store's write exact under redelivery (see the tests).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::buffer::BufferedEvent;

/// The change a run of events makes to one user's profile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileUpdate {
    /// Properties removed first.
    pub unset: BTreeSet<String>,
    /// Properties then written.
    pub set: Map<String, Value>,
    /// Properties then written only where the profile (after `unset` and `set`) has none.
    pub set_once: Map<String, Value>,
}

impl ProfileUpdate {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.unset.is_empty() && self.set.is_empty() && self.set_once.is_empty()
    }

    /// Folds `event`'s `$unset`, `$set` and `$set_once` (in that order, as PostHog applies
    /// them within one event) onto this update, as if applied after it.
    pub fn then(&mut self, event: &BufferedEvent) {
        let p = &event.properties;
        let unset: Vec<&str> = match p.get("$unset") {
            Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let empty = Map::new();
        let object = |key: &str| match p.get(key) {
            Some(Value::Object(m)) => m,
            _ => &empty,
        };
        self.then_parts(unset, object("$set"), object("$set_once"));
    }

    /// Folds `later` onto this update, as if applied after it: applying the result equals
    /// applying this update, then `later`.
    pub fn then_update(&mut self, later: &ProfileUpdate) {
        self.then_parts(later.unset.iter().map(String::as_str), &later.set, &later.set_once);
    }

    fn then_parts<'a>(
        &mut self,
        unset: impl IntoIterator<Item = &'a str>,
        set: &Map<String, Value>,
        set_once: &Map<String, Value>,
    ) {
        for name in unset {
            self.set.remove(name);
            self.set_once.remove(name);
            self.unset.insert(name.to_string());
        }
        for (name, value) in set {
            self.set_once.remove(name);
            self.set.insert(name.clone(), value.clone());
        }
        for (name, value) in set_once {
            if self.set.contains_key(name) || self.set_once.contains_key(name) {
                continue; // already present after this update
            }
            if self.unset.contains(name) {
                // Removed by this update, so absent: the write happens.
                self.set.insert(name.clone(), value.clone());
            } else {
                self.set_once.insert(name.clone(), value.clone());
            }
        }
    }

    /// The profile after this update, for a profile `before` (the store does the same
    /// with a read and one update by `_id`).
    pub fn apply(&self, before: &Map<String, Value>) -> Map<String, Value> {
        let mut after = before.clone();
        for name in &self.unset {
            after.remove(name);
        }
        after.extend(self.set.clone());
        for (name, value) in &self.set_once {
            after.entry(name.clone()).or_insert_with(|| value.clone());
        }
        after
    }
}

/// Whether an event changes its user's profile.
pub fn updates_profile(event: &BufferedEvent) -> bool {
    let p = &event.properties;
    matches!(p.get("$set"), Some(Value::Object(m)) if !m.is_empty())
        || matches!(p.get("$set_once"), Some(Value::Object(m)) if !m.is_empty())
        || matches!(p.get("$unset"), Some(Value::Array(a)) if !a.is_empty())
}

/// The profile update of each user of `events` (in stream order), for the users whose
/// profile changes.
pub fn profile_updates<'a>(
    events: impl IntoIterator<Item = &'a BufferedEvent>,
) -> BTreeMap<String, ProfileUpdate> {
    let mut updates: BTreeMap<String, ProfileUpdate> = BTreeMap::new();
    for event in events.into_iter().filter(|e| updates_profile(e)) {
        updates.entry(event.distinct_id.clone()).or_default().then(event);
    }
    updates.retain(|_, u| !u.is_empty());
    updates
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn event(user: &str, properties: Value) -> BufferedEvent {
        BufferedEvent {
            event_id: "e".into(),
            id_generated: false,
            event: "$identify".into(),
            distinct_id: user.into(),
            timestamp: 0,
            received_at: 0,
            properties: properties.as_object().cloned().unwrap_or_default(),
        }
    }

    /// One event at a time: the reference the fold must equal.
    fn one_by_one(profile: &Map<String, Value>, events: &[BufferedEvent]) -> Map<String, Value> {
        events.iter().fold(profile.clone(), |p, e| {
            let mut single = ProfileUpdate::default();
            single.then(e);
            single.apply(&p)
        })
    }

    #[test]
    fn set_overwrites_set_once_keeps_the_first_unset_removes() {
        let events = [
            event("u", json!({ "$set": { "plan": "free" }, "$set_once": { "first": "a" } })),
            event("u", json!({ "$set": { "plan": "pro" }, "$set_once": { "first": "b", "source": "ads" } })),
            event("u", json!({ "$unset": ["source"] })),
            event("v", json!({ "plan": "not a profile change" })),
        ];
        let updates = profile_updates(&events);
        assert_eq!(updates.keys().collect::<Vec<_>>(), vec!["u"], "only users whose profile changes");
        let before = json!({ "first": "z", "email": "e" }).as_object().cloned().expect("object");
        assert_eq!(
            Value::Object(updates["u"].apply(&before)),
            json!({ "plan": "pro", "first": "z", "email": "e" })
        );
        assert_eq!(Value::Object(updates["u"].apply(&Map::new())), json!({ "plan": "pro", "first": "a" }));
    }

    #[test]
    fn malformed_updates_change_nothing() {
        let events = [event("u", json!({ "$set": "plan=pro", "$set_once": [1], "$unset": "plan" }))];
        assert!(profile_updates(&events).is_empty());
    }

    fn op() -> impl Strategy<Value = Value> {
        let key = prop::sample::select(vec!["a", "b", "c"]);
        let value = 0..4i32;
        prop_oneof![
            (key.clone(), value.clone()).prop_map(|(k, v)| json!({ "$set": { k: v } })),
            (key.clone(), value).prop_map(|(k, v)| json!({ "$set_once": { k: v } })),
            key.prop_map(|k| json!({ "$unset": [k] })),
        ]
    }

    proptest! {
        #[test]
        fn the_fold_equals_applying_one_by_one(ops in prop::collection::vec(op(), 0..12), start in prop::collection::btree_map(prop::sample::select(vec!["a", "b", "c"]), 0..4i32, 0..3)) {
            let events: Vec<BufferedEvent> = ops.into_iter().map(|p| event("u", p)).collect();
            let start: Map<String, Value> = start.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            let folded = profile_updates(&events).remove("u").unwrap_or_default().apply(&start);
            prop_assert_eq!(folded, one_by_one(&start, &events));
        }

        #[test]
        fn composed_updates_of_consecutive_runs_equal_the_whole_run(ops in prop::collection::vec(op(), 0..12), cuts in (0usize..12, 0usize..12)) {
            let events: Vec<BufferedEvent> = ops.into_iter().map(|p| event("u", p)).collect();
            let (a, b) = (cuts.0.min(cuts.1).min(events.len()), cuts.0.max(cuts.1).min(events.len()));
            let update = |run: &[BufferedEvent]| profile_updates(run).remove("u").unwrap_or_default();
            let mut composed = update(&events[..a]);
            composed.then_update(&update(&events[a..b]));
            composed.then_update(&update(&events[b..]));
            prop_assert_eq!(composed.apply(&Map::new()), one_by_one(&Map::new(), &events));
        }

        #[test]
        fn overlapping_redelivered_runs_in_stream_order_equal_the_whole_run(ops in prop::collection::vec(op(), 0..12), cuts in (0usize..12, 0usize..12)) {
            // A batch up to b, whose acknowledgement was lost, then the redelivery cut at a.
            let events: Vec<BufferedEvent> = ops.into_iter().map(|p| event("u", p)).collect();
            let (a, b) = (cuts.0.min(cuts.1).min(events.len()), cuts.0.max(cuts.1).min(events.len()));
            let update = |run: &[BufferedEvent]| profile_updates(run).remove("u").unwrap_or_default();
            let first = update(&events[..b]).apply(&Map::new());
            let redelivered = update(&events[a..]).apply(&update(&events[..a]).apply(&first));
            prop_assert_eq!(&redelivered, &one_by_one(&Map::new(), &events));
            // The same three, ordered by where their batches end in the stream (a <= b <= end).
            let by_position = update(&events[a..]).apply(&update(&events[..b]).apply(&update(&events[..a]).apply(&Map::new())));
            prop_assert_eq!(by_position, redelivered);
        }

        #[test]
        fn replaying_a_run_after_its_prefix_was_applied_changes_nothing(ops in prop::collection::vec(op(), 0..12), cut in 0usize..12) {
            let events: Vec<BufferedEvent> = ops.into_iter().map(|p| event("u", p)).collect();
            let cut = cut.min(events.len());
            let once = one_by_one(&Map::new(), &events);
            let crashed_after_prefix = one_by_one(&Map::new(), &events[..cut]);
            prop_assert_eq!(one_by_one(&crashed_after_prefix, &events), once);
        }
    }
}
