//! What one partition's writer knows of the users its buckets counted: per period and
//! event name, every user the partition's records up to the last one it followed counted
//! ([`crate::rollups`]). Exact, not a guess: a period is either known whole or not at all
//! (then its user lists are read before a record uses it), and the whole memory is dropped
//! when the record a writer is about to write is not the one after those it knows (another
//! writer committed records meanwhile, or this one's last attempt failed).
//!
//! Memory is bounded: past [`WriterMemory::capacity`] (period, user) pairs, periods are
//! forgotten whole, the least recently used first, then whole days of those the last batch
//! used (`WriterMemory::trim` says why).
//!
//! Users are kept as [`UserKey`]s, 128 bits of a hash, not strings: 16 bytes per (bucket,
//! user), as the user lists store them.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};

/// A user as the memory and the user lists know it: the first 128 bits of the SHA-256 of
/// the distinct id. Stable across processes and releases (the lists are read by later
/// writers); two different users of one bucket share a key with probability about
/// n^2 / 2^129, below 1e-25 for a million users, and no one can make two ids collide on
/// purpose (that takes about 2^64 hashes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserKey(pub u128);

impl UserKey {
    /// The key of `distinct_id`.
    pub fn of(distinct_id: &str) -> Self {
        let digest = Sha256::digest(distinct_id.as_bytes());
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        UserKey(u128::from_be_bytes(first))
    }
}

/// Kept (period, user) pairs per processor, shared evenly by its partitions' writers: 16
/// bytes each in sorted arrays (a quarter more in hash sets until folded), about 350 MB
/// resident when all are full (the `full_memory_size` test below), within the processor
/// pod's 1 GiB. A day of a million events of 100,000 users takes about 1.5 million pairs
/// (hour and day buckets), so this holds the ten days a backfill spread over them touches
/// in every batch, just (the backfill adds its own); one spread over more days than the
/// memory holds reads one day's user lists again in every batch (see docs/operations.md).
pub const PROCESS_CAPACITY: usize = 16_000_000;

/// A period as the writer knows it.
struct Period {
    /// The batch that last used it: the least recently used are forgotten first.
    used: u64,
    /// The UTC day it starts on (`yyyymmdd`), whose user lists hold its users.
    day: String,
    /// Per event name (encoded), the users counted in its bucket.
    users: HashMap<String, Users>,
}

/// The users counted in one bucket: a sorted array (16 bytes a user: what a read of the
/// user lists brings, most of a backfill's memory) and a hash set of those added since,
/// folded into the array once it holds a quarter as many.
#[derive(Default)]
struct Users {
    sorted: Vec<u128>,
    added: HashSet<u128>,
}

impl Users {
    /// Added users kept apart at least up to this many before a fold.
    const FOLD_AFTER: usize = 1_024;

    fn learned(mut keys: Vec<u128>) -> Self {
        keys.sort_unstable();
        keys.dedup();
        Users { sorted: keys, added: HashSet::new() }
    }

    fn contains(&self, key: u128) -> bool {
        self.added.contains(&key) || self.sorted.binary_search(&key).is_ok()
    }

    fn insert(&mut self, key: u128) {
        if self.contains(key) {
            return;
        }
        self.added.insert(key);
        if self.added.len() > Self::FOLD_AFTER.max(self.sorted.len() / 4) {
            self.sorted.extend(self.added.drain());
            self.sorted.sort_unstable();
            self.added.shrink_to(Self::FOLD_AFTER);
        }
    }

    fn len(&self) -> usize {
        self.sorted.len() + self.added.len()
    }
}

/// One writer's memory of one partition, for the time it holds the partition's lease.
pub struct WriterMemory {
    capacity: usize,
    remembered: usize,
    /// The last record of the partition's log whose users it holds.
    upto: Option<u64>,
    /// Records begun.
    batch: u64,
    periods: HashMap<String, Period>,
    /// Days whose user lists it read whole, and the batch that read them: a period of theirs
    /// it does not hold counted no user (every record it follows wrote its lists before it
    /// was committed).
    days: HashMap<String, u64>,
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
            remembered: 0,
            upto: None,
            batch: 0,
            periods: HashMap::new(),
            days: HashMap::new(),
        }
    }

    /// The memory of one of a processor's writers for `partitions` partitions: its share of
    /// [`PROCESS_CAPACITY`].
    pub fn for_one_of(partitions: u32) -> Self {
        Self::with_capacity(PROCESS_CAPACITY / partitions.max(1) as usize)
    }

    /// The most (period, user) pairs it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many (period, user) pairs it holds now (a period without users counts as one).
    pub fn remembered(&self) -> usize {
        self.remembered
    }

    /// Begins (an attempt at) `record` of the log: what it knows holds only if it knows the
    /// records just before, so it forgets everything otherwise. The periods the record uses
    /// become the most recently used.
    pub(crate) fn begin_record(&mut self, record: u64) {
        if self.upto != record.checked_sub(1) {
            self.forget();
            self.upto = record.checked_sub(1);
        }
        self.batch += 1;
    }

    /// Says `record` is committed with the users [`Self::applied`] gave it, and trims.
    pub(crate) fn committed(&mut self, record: u64) {
        self.upto = Some(record);
        self.trim();
    }

    /// Forgets everything, as a writer that just started.
    pub fn forget(&mut self) {
        self.periods.clear();
        self.days.clear();
        self.remembered = 0;
        self.upto = None;
    }

    /// Whether it knows every user the records it follows counted in `period`.
    pub(crate) fn knows(&self, period: &str) -> bool {
        self.periods.contains_key(period)
    }

    /// Whether it knows `period`, which starts on UTC day `day`: a period it holds, or one of
    /// a day it read whole, which it then holds (empty) from now on. A new hour of today
    /// then costs no read of today's lists.
    pub(crate) fn knows_in(&mut self, period: &str, day: &str) -> bool {
        if self.periods.contains_key(period) {
            return true;
        }
        if !self.days.contains_key(day) {
            return false;
        }
        self.learned(period, day, []);
        true
    }

    /// Says it read every user list of `day` (and learned each of its periods it did not
    /// hold already).
    pub(crate) fn learned_day(&mut self, day: &str) {
        self.days.insert(day.to_string(), self.batch);
    }

    /// Learns a period of UTC day `day` whole: `counted` holds every (event, user) it
    /// counted.
    pub(crate) fn learned<'e>(
        &mut self,
        period: &str,
        day: &str,
        counted: impl IntoIterator<Item = (&'e str, UserKey)>,
    ) {
        if let Some(old) = self.periods.remove(period) {
            self.remembered -= size(&old);
        }
        let mut by_event: HashMap<&str, Vec<u128>> = HashMap::new();
        for (event, user) in counted {
            by_event.entry(event).or_default().push(user.0);
        }
        let users =
            by_event.into_iter().map(|(event, keys)| (event.to_string(), Users::learned(keys))).collect();
        let known = Period { used: self.batch, day: day.to_string(), users };
        self.remembered += size(&known);
        self.periods.insert(period.to_string(), known);
    }

    /// Whether `user` is counted in `event`'s bucket of a known `period`.
    pub(crate) fn counted(&self, period: &str, event: &str, user: UserKey) -> bool {
        self.periods.get(period).and_then(|p| p.users.get(event)).is_some_and(|users| users.contains(user.0))
    }

    /// Adds users now counted in a known `period`'s buckets, by event name (a period it
    /// does not know stays unknown: it is read whole when next used).
    pub(crate) fn applied<'e>(
        &mut self,
        period: &str,
        counted: impl IntoIterator<Item = (&'e str, UserKey)>,
    ) {
        let batch = self.batch;
        let Some(known) = self.periods.get_mut(period) else { return };
        let before = size(known);
        known.used = batch;
        for (event, key) in counted {
            match known.users.get_mut(event) {
                Some(users) => users.insert(key.0),
                None => {
                    known.users.insert(event.to_string(), Users::learned(vec![key.0]));
                }
            }
        }
        self.remembered = self.remembered - before + size(known);
    }

    /// Forgets whole periods when the capacity is exceeded. First those the last batch did
    /// not use, least recently used first, down to 90% of the capacity (so that eviction is
    /// rare, not once per batch). If the last batch's own periods are still too many (a
    /// backfill touching more days in every batch than fit), whole days of them, the day
    /// read most recently first, down to the capacity: the next batch then reads one day
    /// again, where forgetting by period dropped a part of every day (their day buckets, say)
    /// and read them all again. Days that lose a period are no longer known whole.
    fn trim(&mut self) {
        if self.remembered <= self.capacity {
            return;
        }
        let mut idle: Vec<(u64, String)> = self
            .periods
            .iter()
            .filter(|(_, p)| p.used < self.batch)
            .map(|(id, p)| (p.used, id.clone()))
            .collect();
        idle.sort_unstable();
        let target = self.capacity / 10 * 9;
        for (_, id) in idle {
            if self.remembered <= target {
                return;
            }
            self.forget_period(&id);
        }
        let mut days: Vec<(std::cmp::Reverse<u64>, String)> = self
            .periods
            .values()
            .map(|p| (std::cmp::Reverse(self.days.get(&p.day).copied().unwrap_or(0)), p.day.clone()))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        days.sort_unstable();
        for (_, day) in days {
            if self.remembered <= self.capacity {
                return;
            }
            let of_day: Vec<String> =
                self.periods.iter().filter(|(_, p)| p.day == day).map(|(id, _)| id.clone()).collect();
            for id in of_day {
                self.forget_period(&id);
            }
        }
    }

    /// Forgets one period; its day is no longer known whole.
    fn forget_period(&mut self, id: &str) {
        if let Some(p) = self.periods.remove(id) {
            self.remembered -= size(&p);
            self.days.remove(&p.day);
        }
    }
}

/// What a known period counts against the capacity.
fn size(period: &Period) -> usize {
    1 + period.users.values().map(Users::len).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(user: &str) -> UserKey {
        UserKey::of(user)
    }

    #[test]
    fn a_users_key_is_stable_and_tells_users_apart() {
        // SHA-256("ann") begins 4991 5e0d: the keys that lists written by one release hold must
        // mean the same users to the next.
        assert_eq!(u("ann").0 >> 96, 0x4991_5e0d);
        assert_ne!(u("ann"), u("Ann"));
        assert_ne!(u(""), u(" "));
    }

    #[test]
    fn a_buckets_users_stay_exact_across_folds() {
        let mut users = Users::learned(vec![9, 3, 3, 7]);
        assert_eq!(users.len(), 3, "learned users are kept once");
        for key in (0..5_000u128).chain(0..5_000) {
            users.insert(key * 2);
        }
        assert_eq!(users.len(), 5_000 + 3, "each user once, the 5,000 even keys inserted twice");
        assert!(users.sorted.len() >= Users::FOLD_AFTER, "added users were folded into the array");
        assert!((0..5_000u128).all(|k| users.contains(k * 2)) && users.contains(9) && !users.contains(11));
    }

    #[test]
    fn a_period_of_a_day_read_whole_is_known_empty_until_a_trim() {
        let mut m = WriterMemory::with_capacity(3);
        m.begin_record(1);
        m.learned("hour|1", "d1", [("buy", u("ann"))]);
        assert!(!m.knows_in("hour|2", "d1"), "a day not read");
        m.learned_day("d1");
        assert!(m.knows_in("hour|2", "d1") && !m.counted("hour|2", "buy", u("ann")));
        m.applied("hour|2", [("buy", u("bob")), ("buy", u("cat"))]);
        assert!(m.counted("hour|2", "buy", u("bob")), "held from its first use on");
        m.committed(1);
        // 5 pairs > 3: trimmed, and the day is no longer known whole.
        m.begin_record(2);
        assert!(!m.knows_in("hour|3", "d1"));
        m.learned_day("d1");
        m.begin_record(4);
        assert!(!m.knows_in("hour|3", "d1"), "forgotten with the rest when record 3 is not its own");
    }

    #[test]
    fn knows_users_per_period_and_event() {
        let mut m = WriterMemory::with_capacity(100);
        m.begin_record(1);
        m.learned("day|1", "d1", [("buy", u("ann")), ("view", u("bob"))]);
        assert!(m.counted("day|1", "buy", u("ann")));
        assert!(!m.counted("day|1", "view", u("ann")));
        assert!(!m.counted("day|2", "buy", u("ann")));
        m.applied("day|1", [("buy", u("ann")), ("buy", u("cat"))]);
        assert!(m.counted("day|1", "buy", u("cat")));
        // One period plus three (event, user) pairs.
        assert_eq!(m.remembered(), 4);
    }

    #[test]
    fn a_period_it_does_not_know_stays_unknown() {
        let mut m = WriterMemory::with_capacity(100);
        m.begin_record(1);
        m.applied("day|1", [("buy", u("ann"))]);
        assert!(!m.knows("day|1"), "users added to an unknown period would make it look whole");
        m.learned("day|1", "d1", []);
        assert!(m.knows("day|1") && !m.counted("day|1", "buy", u("ann")));
    }

    #[test]
    fn it_forgets_everything_unless_the_record_follows_the_last_it_knows() {
        let mut m = WriterMemory::with_capacity(100);
        m.begin_record(5);
        m.learned("day|1", "d1", [("buy", u("ann"))]);
        // A failed attempt at 5, then a redo of 5: still what the records up to 4 counted.
        m.begin_record(5);
        assert!(m.counted("day|1", "buy", u("ann")));
        m.committed(5);
        m.begin_record(6);
        assert!(m.knows("day|1"));
        // Record 7 after 6 was never committed here (another writer wrote it).
        m.begin_record(8);
        assert!(!m.knows("day|1"));
        assert_eq!(m.remembered(), 0);
    }

    #[test]
    fn forgets_the_least_recently_used_periods_past_capacity() {
        let mut m = WriterMemory::with_capacity(10);
        let users: Vec<String> = (0..3).map(|i| format!("u{i}")).collect();
        for (record, period) in (1..).zip(["a", "b", "c"]) {
            m.begin_record(record);
            m.learned(period, period, users.iter().map(|name| ("e", u(name))));
            m.committed(record);
        }
        // 12 > 10 once "c" came: "a" (least recently used) went, which brought it to 8 <= 9.
        assert_eq!(m.remembered(), 8);
        assert!(!m.knows("a"));
        assert!(m.counted("b", "e", u("u0")) && m.counted("c", "e", u("u2")));
    }

    #[test]
    fn a_backfill_over_more_days_than_fit_reads_one_day_again_per_batch() {
        // Ten days of a day bucket and four hour buckets, 200 users each: 1,005 pairs a day
        // (periods count one each). Every batch adds a user to every bucket of every day, learning the
        // days it does not know whole from the "store" as the writer reads user lists.
        let days: Vec<String> = (0..10).map(|d| format!("d{d}")).collect();
        let periods_of = |day: &str| -> Vec<String> {
            std::iter::once(format!("day|{day}")).chain((0..4).map(|h| format!("hour|{day}|{h}"))).collect()
        };
        let mut store: HashMap<String, Vec<UserKey>> = HashMap::new();
        for day in &days {
            for period in periods_of(day) {
                store.insert(period, (0..200).map(|i| u(&format!("old-{i}"))).collect());
            }
        }
        // Room for about nine and a half days, and still nine after ten batches added 5 pairs
        // a day each.
        let mut m = WriterMemory::with_capacity(9_550);
        let mut reads_per_batch = Vec::new();
        for record in 1..=10u64 {
            m.begin_record(record);
            let mut reads = 0;
            for day in &days {
                let periods = periods_of(day);
                if periods.iter().any(|p| !m.knows_in(p, day)) {
                    reads += 1;
                    for period in &periods {
                        if !m.knows(period) {
                            m.learned(period, day, store[period].iter().map(|k| ("e", *k)));
                        }
                    }
                    m.learned_day(day);
                }
                let user = u(&format!("new-{record}"));
                for period in &periods {
                    assert!(!m.counted(period, "e", user), "batch {record}: a new user is counted already");
                    assert!(m.counted(period, "e", u("old-3")), "batch {record}: {period} lost a user");
                    m.applied(period, [("e", user)]);
                    store.get_mut(period).expect("period").push(user);
                }
            }
            m.committed(record);
            assert!(m.remembered() <= m.capacity());
            reads_per_batch.push(reads);
        }
        assert_eq!(reads_per_batch[0], 10, "the first batch reads every day");
        assert!(
            reads_per_batch[1..].iter().all(|&r| r <= 1),
            "past the first batch, one day read again per batch at most: {reads_per_batch:?}"
        );
    }

    #[test]
    fn a_day_of_a_million_users_fits_in_the_process_capacity() {
        // A day and its hours, a million distinct users of two event names, a batch of
        // 1,000 users at a time, by one writer with the whole capacity.
        let mut m = WriterMemory::default();
        for b in 0..1_000u64 {
            m.begin_record(b + 1);
            let hour = format!("hour|{:03}", b / 42);
            for period in [hour.as_str(), "day|0"] {
                if !m.knows(period) {
                    m.learned(period, "d0", []);
                }
            }
            let users: Vec<String> = (0..1_000).map(|i| format!("user-{:07}", b * 1_000 + i)).collect();
            let counted: Vec<(&str, UserKey)> =
                users.iter().flat_map(|name| [("view", u(name)), ("buy", u(name))]).collect();
            m.applied("day|0", counted.iter().copied());
            m.applied(&hour, users.iter().map(|name| ("view", u(name))));
            m.committed(b + 1);
            assert!(m.remembered() <= m.capacity(), "{} pairs after batch {b}", m.remembered());
        }
        assert!(m.counted("day|0", "buy", u("user-0000000")));
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
        let half = PROCESS_CAPACITY as u32 / 2;
        for (day, users) in [(0u64, half), (1, half - 10_000)] {
            let id = format!("day|{day}");
            m.begin_record(day + 1);
            m.learned(&id, &id, []);
            for chunk in (0..users).collect::<Vec<u32>>().chunks(10_000) {
                let names: Vec<String> = chunk.iter().map(|i| format!("user-{i:07}")).collect();
                m.applied(&id, names.iter().map(|name| ("view", u(name))));
            }
            m.committed(day + 1);
        }
        eprintln!("{} pairs (capacity {}): {before} before, {} after", m.remembered(), m.capacity(), rss());
    }
}
