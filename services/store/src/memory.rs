//! What one partition's writer knows of the users its buckets counted: per period and
//! event name, the users known to be claimed ([`crate::rollups`]). Only an optimization:
//! a user the writer does not know is claimed again, and the store says whether an earlier
//! record counted them, so a writer that starts without memory, after a crash or on another
//! process, counts exactly what one with memory would. Claims are never taken back, so what
//! it knows stays true after a failed write too.
//!
//! Memory is bounded: past [`WriterMemory::capacity`] (period, user) pairs, the periods
//! least recently used are forgotten first.
//!
//! Users are kept as 128-bit keyed hashes (two independent SipHash keys), not strings:
//! 16 bytes per (bucket, user). Two different users of one bucket share a hash with
//! probability about n^2 / 2^129, below 1e-25 for a million users.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

/// Kept (period, user) pairs per processor, shared evenly by its partitions' writers: 17
/// bytes each in hash tables of up to twice their size, 185 MB resident when all are full
/// (the `full_memory_size` test below): the day and hour buckets of a million daily users
/// with two event names each (the `a_day_of_a_million_users...` test).
pub const PROCESS_CAPACITY: usize = 4_000_000;

/// Unknown users in one period of one batch past which the writer reads the period's
/// claims instead of claiming them one by one: a writer that starts cold would otherwise
/// claim every returning user again, and a refused claim costs about ten inserts on some
/// stores (FerretDB on PostgreSQL: 0.3 ms, where an insert costs 0.03).
pub const LEARN_ABOVE: usize = 256;

/// A period as the writer knows it.
#[derive(Default)]
struct Period {
    /// The batch that last used it: the least recently used are forgotten first.
    used: u64,
    /// Per event name, the users known to be counted in its bucket.
    users: HashMap<String, HashSet<u128>>,
    /// Whether every claim of the partition's buckets in the period was read.
    learned: bool,
}

/// One writer's memory of one partition, for the time it holds the partition's lease.
pub struct WriterMemory {
    capacity: usize,
    /// Unknown users in one period of one batch past which the period's claims are read.
    learn_above: usize,
    remembered: usize,
    /// Batches begun.
    batch: u64,
    periods: HashMap<String, Period>,
    hashers: (RandomState, RandomState),
}

impl Default for WriterMemory {
    /// A memory with the whole [`PROCESS_CAPACITY`].
    fn default() -> Self {
        Self::with_capacity(PROCESS_CAPACITY)
    }
}

impl WriterMemory {
    /// A memory that holds at most about `capacity` (period, user) pairs.
    pub fn with_capacity(capacity: usize) -> Self {
        WriterMemory {
            capacity,
            learn_above: LEARN_ABOVE,
            remembered: 0,
            batch: 0,
            periods: HashMap::new(),
            hashers: (RandomState::new(), RandomState::new()),
        }
    }

    /// The memory of one of a processor's writers for `partitions` partitions: its share of
    /// [`PROCESS_CAPACITY`].
    pub fn for_one_of(partitions: u32) -> Self {
        Self::with_capacity(PROCESS_CAPACITY / partitions.max(1) as usize)
    }

    /// A memory that reads a period's claims past `users` unknown users in one batch (the
    /// default is [`LEARN_ABOVE`]; tests make it read them every time).
    pub fn learning_above(mut self, users: usize) -> Self {
        self.learn_above = users;
        self
    }

    /// Unknown users past which a period's claims are read.
    pub(crate) fn learn_above(&self) -> usize {
        self.learn_above
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

    /// Begins a batch: the periods it uses become the most recently used.
    pub(crate) fn begin_batch(&mut self) {
        self.batch += 1;
    }

    /// Marks a period as used by this batch, known or not.
    pub(crate) fn touch(&mut self, period: &str) {
        let batch = self.batch;
        if let Some(p) = self.periods.get_mut(period) {
            p.used = batch;
            return;
        }
        self.periods
            .insert(period.to_string(), Period { used: batch, users: HashMap::new(), learned: false });
        self.remembered += 1;
    }

    /// Whether the period's claims were all read ([`Self::mark_learned`]).
    pub(crate) fn learned(&self, period: &str) -> bool {
        self.periods.get(period).is_some_and(|p| p.learned)
    }

    /// Says the period's claims were all read into it.
    pub(crate) fn mark_learned(&mut self, period: &str) {
        if let Some(p) = self.periods.get_mut(period) {
            p.learned = true;
        }
    }

    /// Whether `user` is known to be counted in `event`'s bucket of `period`.
    pub(crate) fn counted(&self, period: &str, event: &str, user: &str) -> bool {
        self.periods
            .get(period)
            .and_then(|p| p.users.get(event))
            .is_some_and(|users| users.contains(&self.user_key(user)))
    }

    /// Records users now counted (claimed) in `period`'s buckets, by event name.
    pub(crate) fn applied<'u>(
        &mut self,
        period: &str,
        counted: impl IntoIterator<Item = (&'u str, &'u str)>,
    ) {
        let keys: Vec<(&str, u128)> = counted.into_iter().map(|(e, u)| (e, self.user_key(u))).collect();
        let batch = self.batch;
        if !self.periods.contains_key(period) {
            self.touch(period);
        }
        let Some(known) = self.periods.get_mut(period) else { return };
        let before = size(known);
        known.used = batch;
        for (event, key) in keys {
            known.users.entry(event.to_string()).or_default().insert(key);
        }
        self.remembered = self.remembered - before + size(known);
    }

    /// Forgets whole periods, least recently used first, down to 90% of the capacity when
    /// it is exceeded (so eviction is rare, not once per batch).
    pub(crate) fn trim(&mut self) {
        if self.remembered <= self.capacity {
            return;
        }
        let mut by_use: Vec<(u64, String)> =
            self.periods.iter().map(|(id, p)| (p.used, id.clone())).collect();
        by_use.sort_unstable();
        let target = self.capacity / 10 * 9;
        for (_, id) in by_use {
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

    #[test]
    fn knows_users_per_period_and_event() {
        let mut m = WriterMemory::with_capacity(100);
        m.applied("day|1", [("buy", "ann"), ("view", "bob")]);
        assert!(m.counted("day|1", "buy", "ann"));
        assert!(!m.counted("day|1", "view", "ann"));
        assert!(!m.counted("day|2", "buy", "ann"));
        m.applied("day|1", [("buy", "ann"), ("buy", "cat")]);
        assert!(m.counted("day|1", "buy", "cat"));
        // One period plus three (event, user) pairs.
        assert_eq!(m.remembered(), 4);
    }

    #[test]
    fn forgets_the_least_recently_used_periods_past_capacity() {
        let mut m = WriterMemory::with_capacity(10);
        let users: Vec<String> = (0..3).map(|i| format!("u{i}")).collect();
        for period in ["a", "b", "c"] {
            m.begin_batch();
            m.applied(period, users.iter().map(|u| ("e", u.as_str())));
        }
        // "a" is the oldest to learn, but the newest to be used.
        m.begin_batch();
        m.touch("a");
        assert_eq!(m.remembered(), 12);
        m.trim();
        // 12 > 10: "b" (least recently used) goes, which brings it to 8 <= 9.
        assert_eq!(m.remembered(), 8);
        assert!(!m.counted("b", "e", "u0"));
        assert!(m.counted("a", "e", "u0") && m.counted("c", "e", "u2"));
    }

    #[test]
    fn a_day_of_a_million_users_fits_in_the_process_capacity() {
        // A day and its hours, a million distinct users of two event names, a batch of
        // 1,000 users at a time, by one writer with the whole capacity.
        let mut m = WriterMemory::default();
        for b in 0..1_000 {
            m.begin_batch();
            let hour = format!("hour|{:03}", b / 42);
            m.touch(&hour);
            m.touch("day|0");
            let users: Vec<String> = (0..1_000).map(|i| format!("user-{:07}", b * 1_000 + i)).collect();
            let counted: Vec<(&str, &str)> =
                users.iter().flat_map(|u| [("view", u.as_str()), ("buy", u.as_str())]).collect();
            m.applied("day|0", counted.iter().copied());
            m.applied(&hour, users.iter().map(|u| ("view", u.as_str())));
            m.trim();
            assert!(m.remembered() <= m.capacity(), "{} pairs after batch {b}", m.remembered());
        }
        assert!(m.counted("day|0", "buy", "user-0000000"));
    }

    /// Prints the resident memory of a full memory (no assertion):
    /// `cargo test --release -p pulse-store --lib -- --ignored full_memory_size --nocapture`.
    #[test]
    #[ignore]
    fn full_memory_size() {
        let rss = || {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
                .unwrap_or_default()
        };
        let before = rss();
        let mut m = WriterMemory::default();
        // Two days of distinct users, up to the capacity.
        for (day, users) in [(0, 2_000_000), (1, 1_990_000)] {
            let id = format!("day|{day}");
            m.begin_batch();
            for chunk in (0..users).collect::<Vec<u32>>().chunks(10_000) {
                let names: Vec<String> = chunk.iter().map(|i| format!("user-{i:07}")).collect();
                m.applied(&id, names.iter().map(|u| ("view", u.as_str())));
            }
            m.trim();
        }
        eprintln!("{} pairs (capacity {}): {before} before, {} after", m.remembered(), m.capacity(), rss());
    }
}
