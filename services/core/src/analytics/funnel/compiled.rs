//! A funnel definition made ready to scan events: each event becomes the set of steps and
//! exclusions it matches and the values it holds constant.

use std::collections::HashMap;

use serde_json::Value;

use crate::analytics::event::{AnalyticsEvent, matches};
use crate::funnel::{FunnelDefinition, FunnelOrder};

/// A user's event as a funnel sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Marked {
    pub ts: i64,
    /// Bit i: the event matches step i (from 0).
    pub steps: u32,
    /// Bit e: the event matches exclusion e.
    pub exclusions: u16,
    /// The user's held-constant values of this event, as an index (0 when none are held).
    pub hold: u32,
}

pub(crate) struct Compiled<'d> {
    pub def: &'d FunnelDefinition,
    pub n: usize,
    pub window_ms: i64,
    pub order: FunnelOrder,
    /// `active[k]`: the exclusions whose from-step is among steps 1..=k.
    pub active: Vec<u16>,
    /// `pending[k]`: the exclusions whose to-step is after step k.
    pub pending: Vec<u16>,
}

impl<'d> Compiled<'d> {
    pub fn new(def: &'d FunnelDefinition) -> Self {
        let n = def.steps.len();
        let bits = |keep: &dyn Fn(u32, u32) -> bool| -> u16 {
            def.exclusions
                .iter()
                .enumerate()
                .filter(|(_, x)| keep(x.from_step, x.to_step))
                .fold(0u16, |m, (i, _)| m | (1 << i))
        };
        let active = (0..=n as u32).map(|k| bits(&|from, _| from <= k)).collect();
        let pending = (0..=n as u32).map(|k| bits(&|_, to| to > k)).collect();
        Compiled {
            def,
            n,
            window_ms: i64::try_from(def.window.as_secs()).unwrap_or(i64::MAX / 2_000) * 1_000,
            order: def.order,
            active,
            pending,
        }
    }

    /// The events that match a step or an exclusion, in time order, with their marks.
    pub fn mark(&self, events: &[&AnalyticsEvent]) -> Vec<Marked> {
        let mut holds: HashMap<String, u32> = HashMap::new();
        let mut out = Vec::new();
        for e in events {
            let (steps, exclusions) = self.masks(e);
            if steps == 0 && exclusions == 0 {
                continue;
            }
            let hold = if self.def.hold_constant.is_empty() || steps == 0 {
                0
            } else {
                let key = self.hold_key(&e.properties);
                let next = holds.len() as u32;
                *holds.entry(key).or_insert(next)
            };
            out.push(Marked { ts: e.timestamp, steps, exclusions, hold });
        }
        out
    }

    /// The steps (bit i: step i) and exclusions (bit e) the event matches.
    pub fn masks(&self, e: &AnalyticsEvent) -> (u32, u16) {
        let steps = self
            .def
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| matches(&s.event, &s.filters, e))
            .fold(0u32, |m, (i, _)| m | (1 << i));
        let exclusions = self
            .def
            .exclusions
            .iter()
            .enumerate()
            .filter(|(_, x)| matches(&x.event, &x.filters, e))
            .fold(0u16, |m, (i, _)| m | (1 << i));
        (steps, exclusions)
    }

    /// The held-constant values as one key: each value's JSON text, an absent property as
    /// its own value (so two events both without `device_id` share it).
    pub fn hold_key(&self, properties: &Value) -> String {
        let mut key = String::new();
        for path in &self.def.hold_constant {
            match path.lookup(properties) {
                Some(v) => key.push_str(&v.to_string()),
                None => key.push('\u{0}'),
            }
            key.push('\u{1f}');
        }
        key
    }
}

/// How many consecutive steps from `first` (0-based) the events with these step masks can
/// take, each event at most once: a bipartite matching grown one step at a time (Kuhn's
/// augmenting paths), so an event that fits several steps goes where it is needed.
pub(crate) fn reach(masks: &[u32], first: usize, n: usize) -> usize {
    if masks.len() == 1 {
        return usize::from(first < n && masks[0] & (1 << first) != 0);
    }
    let mut owner = vec![usize::MAX; masks.len()];
    for step in first..n {
        let mut seen = vec![false; masks.len()];
        if !augment(step, masks, &mut owner, &mut seen) {
            return step - first;
        }
    }
    n - first
}

/// Whether every step in `steps` can take its own event.
pub(crate) fn matchable(masks: &[u32], steps: impl Iterator<Item = usize>) -> bool {
    let mut owner = vec![usize::MAX; masks.len()];
    for step in steps {
        let mut seen = vec![false; masks.len()];
        if !augment(step, masks, &mut owner, &mut seen) {
            return false;
        }
    }
    true
}

fn augment(step: usize, masks: &[u32], owner: &mut [usize], seen: &mut [bool]) -> bool {
    for e in 0..masks.len() {
        if masks[e] & (1 << step) != 0 && !seen[e] {
            seen[e] = true;
            if owner[e] == usize::MAX || augment(owner[e], masks, owner, seen) {
                owner[e] = step;
                return true;
            }
        }
    }
    false
}

/// Keeps at most `n` events of each mask: more can never be used by `n` steps.
pub(crate) fn capped(mut masks: Vec<u32>, n: usize) -> Vec<u32> {
    if masks.len() <= n {
        return masks;
    }
    masks.sort_unstable();
    let mut out: Vec<u32> = Vec::with_capacity(masks.len().min(n * 4));
    let mut run = 0;
    for (i, m) in masks.iter().enumerate() {
        run = if i > 0 && masks[i - 1] == *m { run + 1 } else { 1 };
        if run <= n {
            out.push(*m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_puts_shared_events_where_needed() {
        // Event 0 fits steps 0 and 1, event 1 only step 0: both steps can be taken.
        assert_eq!(reach(&[0b11, 0b01], 0, 2), 2);
        // Two events that both fit only step 0: one step.
        assert_eq!(reach(&[0b01, 0b01], 0, 3), 1);
        assert_eq!(reach(&[0b110, 0b100], 1, 3), 2);
        assert_eq!(reach(&[0b1], 1, 3), 0);
        assert!(matchable(&[0b011, 0b110], [0usize, 2].into_iter()));
        assert!(!matchable(&[0b001, 0b001], [0usize, 1].into_iter()));
    }

    #[test]
    fn capping_keeps_n_of_each() {
        assert_eq!(capped(vec![1, 1, 1, 2, 1, 2, 2, 2], 2), [1, 1, 2, 2]);
    }
}
