//! What one partition's writer knows to be stored and counted already, so that it neither
//! looks it up nor writes it again: the watermark of each bucket document it updated, and
//! which users each bucket (and each activity period) has counted.
//!
//! Only facts that stay true are remembered: a user is remembered for a bucket after the
//! bucket update that counted them succeeded (or when the bucket's watermark showed they
//! were counted before); a bucket's watermark only after the update that set it. Markers are
//! never removed while a writer holds its lease (a rebuild takes every lease first, which
//! ends the tenure and its memory). So skipping what is remembered changes no count, and a
//! writer that starts without memory (after a crash, or on another process) finds the same
//! facts in the store, as before. Memory is bounded: past [`WriterMemory::capacity`]
//! remembered users, the oldest periods are forgotten first (late events into them then go
//! to the store again).
//!
//! Users are remembered as 128-bit keyed hashes (two independent SipHash keys), not strings:
//! 16 bytes per (bucket, user). Two different users of one bucket share a hash with
//! probability about n^2 / 2^129, below 1e-25 for a million users.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

/// Remembered (bucket, user) pairs by default: 16 bytes each in hash sets of up to twice
/// their size, so 35 to 70 MB when full.
pub const DEFAULT_CAPACITY: usize = 2_000_000;

/// One bucket document's watermark and its writer's fencing token, as last read or written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BucketState {
    pub watermark: Option<String>,
    pub fence: Option<u64>,
}

/// The users one period (a rollup bucket, or an activity day or week) has counted.
struct Period {
    /// Its start (ms), the eviction order.
    start: i64,
    users: HashSet<u128>,
}

/// One writer's memory of one partition, for the time it holds the partition's lease.
pub struct WriterMemory {
    capacity: usize,
    remembered: usize,
    periods: HashMap<String, Period>,
    buckets: HashMap<String, BucketState>,
    hashers: (RandomState, RandomState),
}

impl Default for WriterMemory {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl WriterMemory {
    /// A memory that holds at most `capacity` (period, user) pairs.
    pub fn with_capacity(capacity: usize) -> Self {
        WriterMemory {
            capacity,
            remembered: 0,
            periods: HashMap::new(),
            buckets: HashMap::new(),
            hashers: (RandomState::new(), RandomState::new()),
        }
    }

    /// The most (period, user) pairs it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many (period, user) pairs it holds now.
    pub fn remembered(&self) -> usize {
        self.remembered
    }

    fn user_key(&self, user: &str) -> u128 {
        let (a, b) = &self.hashers;
        (u128::from(a.hash_one(user)) << 64) | u128::from(b.hash_one(user))
    }

    /// Whether `user` is known to be counted in `period`.
    pub(crate) fn knows(&self, period: &str, user: &str) -> bool {
        self.periods.get(period).is_some_and(|p| p.users.contains(&self.user_key(user)))
    }

    /// Remembers that `users` are counted in `period` (which starts at `start`).
    pub(crate) fn remember<'u>(
        &mut self,
        period: &str,
        start: i64,
        users: impl IntoIterator<Item = &'u str>,
    ) {
        let keys: Vec<u128> = users.into_iter().map(|u| self.user_key(u)).collect();
        let entry =
            self.periods.entry(period.to_string()).or_insert_with(|| Period { start, users: HashSet::new() });
        for key in keys {
            if entry.users.insert(key) {
                self.remembered += 1;
            }
        }
        if self.remembered > self.capacity {
            self.forget_oldest();
        }
    }

    /// Forgets whole periods, oldest first, down to 90% of the capacity (so eviction is
    /// rare, not once per insert).
    fn forget_oldest(&mut self) {
        let mut by_age: Vec<(i64, String)> =
            self.periods.iter().map(|(id, p)| (p.start, id.clone())).collect();
        by_age.sort_unstable();
        let target = self.capacity / 10 * 9;
        for (_, id) in by_age {
            if self.remembered <= target {
                break;
            }
            if let Some(p) = self.periods.remove(&id) {
                self.remembered -= p.users.len();
            }
        }
    }

    /// A bucket document's state, if this writer read or wrote it.
    pub(crate) fn bucket(&self, doc_id: &str) -> Option<&BucketState> {
        self.buckets.get(doc_id)
    }

    /// Records a bucket document's state after reading or writing it.
    pub(crate) fn set_bucket(&mut self, doc_id: String, state: BucketState) {
        // Bucket states are few (one per bucket document the writer touched); forget them
        // all rather than track their age when a flood of late events makes them many.
        if self.buckets.len() >= self.capacity / 16 {
            self.buckets.clear();
        }
        self.buckets.insert(doc_id, state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_users_per_period() {
        let mut m = WriterMemory::with_capacity(100);
        m.remember("day|1", 1, ["ann", "bob"]);
        assert!(m.knows("day|1", "ann"));
        assert!(!m.knows("day|1", "cat"));
        assert!(!m.knows("day|2", "ann"));
        m.remember("day|1", 1, ["ann"]);
        assert_eq!(m.remembered(), 2);
    }

    #[test]
    fn forgets_the_oldest_periods_past_capacity() {
        let mut m = WriterMemory::with_capacity(10);
        let users: Vec<String> = (0..4).map(|i| format!("u{i}")).collect();
        for (period, start) in [("b", 2), ("a", 1), ("c", 3)] {
            m.remember(period, start, users.iter().map(String::as_str));
        }
        // 12 > 10: "a" (the oldest) goes, which brings it to 8 <= 9.
        assert_eq!(m.remembered(), 8);
        assert!(!m.knows("a", "u0"));
        assert!(m.knows("b", "u0") && m.knows("c", "u3"));
    }
}
