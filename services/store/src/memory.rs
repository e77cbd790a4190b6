//! What one partition's writer knows of the rollup documents it writes: per period
//! document, its state (watermark and fencing token) and, per event name, every user its
//! buckets have counted. A period is either known whole or not at all: the users of a
//! period the writer does not know yet are found in the event blocks (the events the
//! partition stored in that period up to the document's watermark, see
//! `Store::apply_rollups`), so a writer that starts without memory, after a crash or on
//! another process, counts exactly what one with memory would.
//!
//! Only facts are kept: a period's state and users as read, then as changed by an update
//! that succeeded. After any failed write the writer drops its whole memory (the outcome of
//! the write is unknown) and reads again. Memory is bounded: past
//! [`WriterMemory::capacity`] (period, user) pairs, the oldest periods are forgotten first;
//! a late event into one makes the writer read it again.
//!
//! Users are kept as 128-bit keyed hashes (two independent SipHash keys), not strings:
//! 16 bytes per (bucket, user). Two different users of one bucket share a hash with
//! probability about n^2 / 2^129, below 1e-25 for a million users.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

/// Kept (period, user) pairs by default: 16 bytes each in hash sets of up to twice their
/// size, so 35 to 70 MB when full.
pub const DEFAULT_CAPACITY: usize = 2_000_000;

/// One period document's watermark and its writer's fencing token, as last read or written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BucketState {
    pub watermark: Option<String>,
    pub fence: Option<u64>,
}

/// A period document as the writer knows it.
struct Period {
    /// Its start (ms), the eviction order.
    start: i64,
    state: BucketState,
    /// Per event name, the users counted in its bucket.
    users: HashMap<String, HashSet<u128>>,
}

/// One writer's memory of one partition, for the time it holds the partition's lease.
pub struct WriterMemory {
    capacity: usize,
    remembered: usize,
    periods: HashMap<String, Period>,
    hashers: (RandomState, RandomState),
}

impl Default for WriterMemory {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl WriterMemory {
    /// A memory that holds at most about `capacity` (period, user) pairs.
    pub fn with_capacity(capacity: usize) -> Self {
        WriterMemory {
            capacity,
            remembered: 0,
            periods: HashMap::new(),
            hashers: (RandomState::new(), RandomState::new()),
        }
    }

    /// The most (period, user) pairs it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many (period, user) pairs it holds now (a period without users counts as one).
    pub fn remembered(&self) -> usize {
        self.remembered
    }

    fn user_key(&self, user: &str) -> u128 {
        let (a, b) = &self.hashers;
        (u128::from(a.hash_one(user)) << 64) | u128::from(b.hash_one(user))
    }

    /// The state of a period document the writer knows whole.
    pub(crate) fn state(&self, period: &str) -> Option<&BucketState> {
        self.periods.get(period).map(|p| &p.state)
    }

    /// Whether `user` is counted in `event`'s bucket of `period` (a period the writer knows).
    pub(crate) fn counted(&self, period: &str, event: &str, user: &str) -> bool {
        self.periods
            .get(period)
            .and_then(|p| p.users.get(event))
            .is_some_and(|users| users.contains(&self.user_key(user)))
    }

    /// Learns a period document whole: its state and every (event, user) it has counted.
    pub(crate) fn learn<'u>(
        &mut self,
        period: &str,
        start: i64,
        state: BucketState,
        counted: impl IntoIterator<Item = (&'u str, &'u str)>,
    ) {
        if let Some(old) = self.periods.remove(period) {
            self.remembered -= size(&old);
        }
        let mut known = Period { start, state, users: HashMap::new() };
        for (event, user) in counted {
            let key = self.user_key(user);
            known.users.entry(event.to_string()).or_default().insert(key);
        }
        self.remembered += size(&known);
        self.periods.insert(period.to_string(), known);
    }

    /// Records an update of a known period that succeeded: its new state, and the users it
    /// counted, by event name.
    pub(crate) fn applied<'u>(
        &mut self,
        period: &str,
        state: BucketState,
        counted: impl IntoIterator<Item = (&'u str, &'u str)>,
    ) {
        let keys: Vec<(&str, u128)> = counted.into_iter().map(|(e, u)| (e, self.user_key(u))).collect();
        let Some(known) = self.periods.get_mut(period) else { return };
        let before = size(known);
        known.state = state;
        for (event, key) in keys {
            known.users.entry(event.to_string()).or_default().insert(key);
        }
        self.remembered = self.remembered - before + size(known);
    }

    /// Forgets whole periods, oldest first, down to 90% of the capacity when it is
    /// exceeded (so eviction is rare, not once per batch).
    pub(crate) fn trim(&mut self) {
        if self.remembered <= self.capacity {
            return;
        }
        let mut by_age: Vec<(i64, String)> =
            self.periods.iter().map(|(id, p)| (p.start, id.clone())).collect();
        by_age.sort_unstable();
        let target = self.capacity / 10 * 9;
        for (_, id) in by_age {
            if self.remembered <= target {
                break;
            }
            if let Some(p) = self.periods.remove(&id) {
                self.remembered -= size(&p);
            }
        }
    }
}

/// What a known period counts against the capacity.
fn size(period: &Period) -> usize {
    1 + period.users.values().map(HashSet::len).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(wm: &str) -> BucketState {
        BucketState { watermark: Some(wm.to_string()), fence: Some(1) }
    }

    #[test]
    fn knows_users_per_period_and_event() {
        let mut m = WriterMemory::with_capacity(100);
        m.learn("day|1|p0", 1, state("a"), [("buy", "ann"), ("view", "bob")]);
        assert!(m.counted("day|1|p0", "buy", "ann"));
        assert!(!m.counted("day|1|p0", "view", "ann"));
        assert!(!m.counted("day|2|p0", "buy", "ann"));
        m.applied("day|1|p0", state("b"), [("buy", "ann"), ("buy", "cat")]);
        assert!(m.counted("day|1|p0", "buy", "cat"));
        assert_eq!(m.state("day|1|p0"), Some(&state("b")));
        // One period plus three (event, user) pairs.
        assert_eq!(m.remembered(), 4);
        // An update of a period it does not know teaches it nothing.
        m.applied("day|2|p0", state("c"), [("buy", "ann")]);
        assert_eq!(m.state("day|2|p0"), None);
        assert_eq!(m.remembered(), 4);
    }

    #[test]
    fn forgets_the_oldest_periods_past_capacity() {
        let mut m = WriterMemory::with_capacity(10);
        let users: Vec<String> = (0..3).map(|i| format!("u{i}")).collect();
        for (period, start) in [("b", 2), ("a", 1), ("c", 3)] {
            m.learn(period, start, state("x"), users.iter().map(|u| ("e", u.as_str())));
        }
        assert_eq!(m.remembered(), 12);
        m.trim();
        // 12 > 10: "a" (the oldest) goes, which brings it to 8 <= 9.
        assert_eq!(m.remembered(), 8);
        assert_eq!(m.state("a"), None);
        assert!(m.counted("b", "e", "u0") && m.counted("c", "e", "u2"));
    }
}
