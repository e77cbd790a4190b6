//! The event ids a user's view has seen, so a repeated delivery counts once.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::analytics::event::AnalyticsEvent;

/// A user's event ids as sorted 64-bit hashes (8 bytes an event instead of the id's
/// text): two different ids of one user share a hash with odds of about k^2 / 2^65 for k
/// events, in which case the later is taken for a repeat.
#[derive(Debug, Default, Clone)]
pub(super) struct SeenIds(Vec<u64>);

impl SeenIds {
    /// Of `positions` (one user's events in input order), the ones not seen before and
    /// not repeating an earlier one of the batch: the first copy counts. Remembers them.
    pub fn first_copies(&mut self, events: &[AnalyticsEvent], positions: &[usize]) -> Vec<usize> {
        let mut keyed: Vec<(u64, usize)> = positions.iter().map(|&p| (id_hash(&events[p]), p)).collect();
        keyed.sort_unstable();
        keyed.dedup_by_key(|k| k.0);
        keyed.retain(|k| self.0.binary_search(&k.0).is_err());
        if keyed.is_empty() {
            return Vec::new();
        }
        let mut merged = Vec::with_capacity(self.0.len() + keyed.len());
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() || j < keyed.len() {
            if j == keyed.len() || (i < self.0.len() && self.0[i] < keyed[j].0) {
                merged.push(self.0[i]);
                i += 1;
            } else {
                merged.push(keyed[j].0);
                j += 1;
            }
        }
        self.0 = merged;
        let mut kept: Vec<usize> = keyed.into_iter().map(|k| k.1).collect();
        kept.sort_unstable();
        kept
    }

    pub fn heap_bytes(&self) -> usize {
        self.0.capacity() * 8
    }
}

fn id_hash(e: &AnalyticsEvent) -> u64 {
    // SipHash with fixed keys: the same hash in every process, well spread.
    let mut h = DefaultHasher::new();
    e.event_id.hash(&mut h);
    h.finish()
}
