//! Retention from per-user activity: for every event name, the local days a user did it
//! and the first time ever, which is all `retention::run` reads of events without
//! property filters.

mod periods;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use jiff::tz::TimeZone;

use super::calendar::Calendar;
use super::group_by_user;
use super::seen::SeenIds;
use crate::analytics::error::{AnalyticsError, Limits};
use crate::analytics::event::AnalyticsEvent;
use crate::analytics::period::{self, Interval};
use crate::analytics::retention::{RetentionCohort, RetentionKind, RetentionQuery, RetentionReport};

/// Per user and event name, the active local days and the first time ever; per name and
/// day, who was active and whose first time it was.
pub struct ActivityView {
    calendar: Calendar,
    user_index: HashMap<String, u32>,
    users: Vec<UserActivity>,
    name_index: HashMap<String, u32>,
    names: Vec<NameActivity>,
    events: usize,
    scratch: Mutex<Vec<Scratch>>,
    /// First-time day returns of recently queried (start, return) name pairs.
    returns: Mutex<ReturnCache>,
}

/// The most (start, return) pairs whose counts are kept; the least recently used goes.
const CACHED_PAIRS: usize = 16;

/// Per (start name, return name), the first-time day retention counts over all days:
/// built on a pair's first whole-day query and kept current in `add`.
#[derive(Default)]
struct ReturnCache {
    tick: u64,
    pairs: Vec<PairReturns>,
}

struct PairReturns {
    start: u32,
    ret: u32,
    used: u64,
    /// Per day number of users' first start, per offset in days, the users of that cohort
    /// with the return event that many days later.
    rows: HashMap<i32, Vec<u32>>,
}

impl PairReturns {
    /// Adds `delta` for a user whose first start is on `cohort` and returns on `day`.
    fn count(&mut self, cohort: i32, day: i32, delta: i32) {
        if day < cohort {
            return;
        }
        let row = self.rows.entry(cohort).or_default();
        let k = (day - cohort) as usize;
        if row.len() <= k {
            row.resize(k + 1, 0);
        }
        row[k] = row[k].wrapping_add_signed(delta);
    }

    fn heap_bytes(&self) -> usize {
        self.rows.values().map(|r| r.capacity() * 4 + 48).sum::<usize>()
    }
}

/// The day of a user's first event of `name`.
fn first_day(firsts: &[(u32, i32, i64)], name: u32) -> Option<i32> {
    firsts.binary_search_by_key(&name, |f| f.0).ok().map(|at| firsts[at].1)
}

/// A user's active days of `name`.
fn days_of_name(days: &[ActiveDay], name: u32) -> &[ActiveDay] {
    let lo = days.partition_point(|d| d.name < name);
    let hi = days.partition_point(|d| d.name <= name);
    &days[lo..hi]
}

/// Per-user marks of one query, reused across queries (see the funnel view's).
#[derive(Default)]
struct Scratch {
    epoch: u32,
    /// The cohort (epoch) a user was last counted in.
    cohort: Vec<u32>,
    /// The offset (epoch) a user was last counted as returning in.
    counted: Vec<u32>,
}

impl Scratch {
    fn prepare(&mut self, users: usize) {
        // Start afresh well before the epochs run out: a reset within a query would lose
        // its marks (one query uses at most (periods + 1) x cohorts epochs).
        if self.epoch > u32::MAX / 2 {
            *self = Scratch::default();
        }
        if self.cohort.len() < users {
            self.cohort.resize(users, 0);
            self.counted.resize(users, 0);
        }
    }

    fn next_epoch(&mut self) -> u32 {
        if self.epoch == u32::MAX {
            self.cohort.iter_mut().for_each(|c| *c = 0);
            self.counted.iter_mut().for_each(|c| *c = 0);
            self.epoch = 0;
        }
        self.epoch += 1;
        self.epoch
    }
}

/// A local day with events of one user: the day's `[start, end)`, and the user's first and
/// last event time in it (epoch ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserDay {
    pub start: i64,
    pub end: i64,
    pub first: i64,
    pub last: i64,
}

#[derive(Default)]
struct UserActivity {
    seen: SeenIds,
    /// Per (name, day number), sorted, each once: the first and last time that day.
    days: Vec<ActiveDay>,
    /// (name, day of the first time, first time), sorted by name.
    firsts: Vec<(u32, i32, i64)>,
}

/// A user's events of one name on one local day, 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ActiveDay {
    name: u32,
    day: i32,
    /// The first and last event's milliseconds after the day's start (a day is at most 25
    /// hours): they decide whether a day cut by a range has an event in it.
    first: u32,
    last: u32,
}

impl ActiveDay {
    fn key(&self) -> (u32, i32) {
        (self.name, self.day)
    }

    fn merge(&mut self, other: &ActiveDay) {
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
    }
}

#[derive(Default)]
struct NameActivity {
    /// Per day number, the users with the event that day (each once).
    active: BTreeMap<i32, Vec<u32>>,
    /// Per day number, the users whose first event was that day.
    first: BTreeMap<i32, Vec<u32>>,
}

impl ActivityView {
    pub fn new(tz: TimeZone) -> Self {
        ActivityView {
            calendar: Calendar::new(tz),
            user_index: HashMap::new(),
            users: Vec::new(),
            name_index: HashMap::new(),
            names: Vec::new(),
            events: 0,
            scratch: Mutex::new(Vec::new()),
            returns: Mutex::new(ReturnCache::default()),
        }
    }

    /// Same contract as `FunnelView::add`; keeps what retention needs for every event name.
    pub fn add(&mut self, events: &[AnalyticsEvent]) {
        for (user, positions) in group_by_user(events, &mut self.user_index) {
            let u = user as usize;
            if self.users.len() <= u {
                self.users.resize_with(u + 1, UserActivity::default);
            }
            let fresh = self.users[u].seen.first_copies(events, &positions);
            self.events += fresh.len();
            let mut days: Vec<ActiveDay> = Vec::with_capacity(fresh.len());
            let mut firsts: Vec<(u32, i64, i32)> = Vec::new();
            for p in fresh {
                let e = &events[p];
                let name = match self.name_index.get(e.event.as_str()) {
                    Some(&n) => n,
                    None => {
                        let n = self.names.len() as u32;
                        self.name_index.insert(e.event.clone(), n);
                        self.names.push(NameActivity::default());
                        n
                    }
                };
                let day = self.calendar.day(e.timestamp);
                let offset = (e.timestamp - day.start) as u32;
                days.push(ActiveDay { name, day: day.number as i32, first: offset, last: offset });
                firsts.push((name, e.timestamp, day.number as i32));
            }
            days.sort_unstable_by_key(ActiveDay::key);
            days.dedup_by(|later, kept| {
                let same = later.key() == kept.key();
                if same {
                    kept.merge(later);
                }
                same
            });
            firsts.sort_unstable();
            firsts.dedup_by_key(|f| f.0);
            self.merge_days(user, days);
            self.merge_firsts(user, firsts);
        }
    }

    /// Equal to `retention::run(query, every event added, None, tz, limits)` when Some;
    /// None when the start or return event has property filters, or for recurring cohorts
    /// over a range within one day that cuts it at both ends when a user's start events
    /// that day lie before and after the range (the view keeps the first and last time of
    /// a user's events per day, not every time), or when the view holds more events than
    /// `limits.max_events` (the ad-hoc path applies the limit to what it reads). Errors as
    /// `run` gives them (invalid query, too many periods). First-time day retention over
    /// whole days reads the counts kept for its (start, return) pair, counted from the
    /// users' days on the pair's first such query and kept current by `add` after it.
    pub fn retention(
        &self,
        query: &RetentionQuery,
        limits: &Limits,
    ) -> Result<Option<RetentionReport>, AnalyticsError> {
        query.validate(limits)?;
        let tz = &self.calendar.tz;
        let starts = period::starts(query.from, query.to, query.period, tz, limits)?;
        let filtered = !query.start.filters.is_empty() || !query.return_event.filters.is_empty();
        if filtered || self.events > limits.max_events {
            return Ok(None);
        }
        let week = query.period == Interval::Week;
        // A period's day numbers [first, end), weeks numbered as `period::period_number` does.
        let days_of = |p: i64| if week { (7 * p - 3, 7 * p + 4) } else { (p, p + 1) };
        let (Some(start_name), return_name) = (
            self.name_index.get(&query.start.event).copied(),
            self.name_index.get(&query.return_event.event).copied(),
        ) else {
            let periods = query.periods as usize;
            let empty = |s| RetentionCohort {
                period_start: s,
                users: 0,
                retained: vec![0; periods],
                progress: Vec::new(),
            };
            return Ok(Some(RetentionReport { cohorts: starts.into_iter().map(empty).collect() }));
        };
        let start = &self.names[start_name as usize];
        // The days of the range; on the first and last, when the range cuts them, each
        // user is checked by time.
        let first_start = period::start(query.from, Interval::Day, tz);
        let last_start = period::start(query.to - 1, Interval::Day, tz);
        let (first_day, last_day) = (period::day_number(first_start, tz), period::day_number(last_start, tz));
        let end_day = last_day + 1;
        let cut_first = first_start != query.from;
        let cut_last = period::next(last_start, Interval::Day, tz) != query.to;
        let first_time = query.kind == RetentionKind::FirstTime;
        if let (true, false, false, false, Some(ret)) = (first_time, week, cut_first, cut_last, return_name) {
            // Whole days: each cohort is the users whose first start is its day.
            let mut cache = self.returns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let pair = self.pair_returns(&mut cache, start_name, ret);
            let periods = query.periods as usize;
            let cohorts = starts
                .into_iter()
                .map(|period_start| {
                    let p = period::period_number(period_start, query.period, tz) as i32;
                    let users = start.first.get(&p).map_or(0, |l| l.len() as u64);
                    let row = pair.rows.get(&p).map_or(&[][..], |r| &r[..]);
                    let retained = (0..periods).map(|k| row.get(k).map_or(0, |&c| u64::from(c))).collect();
                    RetentionCohort { period_start, users, retained, progress: Vec::new() }
                })
                .collect();
            return Ok(Some(RetentionReport { cohorts }));
        }
        let mut s = self.take_scratch();
        s.prepare(self.users.len());
        let mut cohorts = Vec::with_capacity(starts.len());
        // First-time cohorts take consecutive epochs from this one on (see below).
        let first_cohort = s.epoch + 1;
        for period_start in starts {
            let p = period::period_number(period_start, query.period, tz);
            let (a, b) = days_of(p);
            let (a, b) = (a.max(first_day) as i32, b.min(end_day) as i32);
            let cohort = s.next_epoch();
            let mut users = 0;
            let lists = match query.kind {
                RetentionKind::FirstTime => start.first.range(a..b.max(a)),
                RetentionKind::Recurring => start.active.range(a..b.max(a)),
            };
            for (&day, list) in lists {
                let day = i64::from(day);
                let checked = (cut_first && day == first_day) || (cut_last && day == last_day);
                for &user in list {
                    if checked {
                        let inside = match query.kind {
                            RetentionKind::FirstTime => self.first_in(user, start_name, query.from, query.to),
                            RetentionKind::Recurring => {
                                let day_start = if day == first_day { first_start } else { last_start };
                                match self.active_in(user, start_name, day, day_start, query.from, query.to) {
                                    Some(inside) => inside,
                                    None => {
                                        self.put_scratch(s);
                                        return Ok(None);
                                    }
                                }
                            }
                        };
                        if !inside {
                            continue;
                        }
                    }
                    let mark = &mut s.cohort[user as usize];
                    if *mark != cohort {
                        *mark = cohort;
                        users += 1;
                    }
                }
            }
            let mut retained = vec![0u64; query.periods as usize];
            if let (Some(name), true, false) = (return_name, users > 0, first_time) {
                let active = &self.names[name as usize].active;
                for (k, count) in retained.iter_mut().enumerate() {
                    let (a, b) = days_of(p + k as i64);
                    let counted = s.next_epoch();
                    for (_, list) in active.range(a as i32..b as i32) {
                        for &user in list {
                            let u = user as usize;
                            // A user returns once per offset, however many days of it.
                            if s.cohort[u] == cohort && s.counted[u] != counted {
                                s.counted[u] = counted;
                                *count += 1;
                            }
                        }
                    }
                }
            }
            cohorts.push(RetentionCohort { period_start, users, retained, progress: Vec::new() });
        }
        if let (true, Some(name)) = (first_time, return_name) {
            self.count_first_time_returns(query, name, first_cohort, &mut cohorts, &mut s);
        }
        self.put_scratch(s);
        Ok(Some(RetentionReport { cohorts }))
    }

    /// The returns of first-time cohorts, whose users each belong to one cohort (marked
    /// with the consecutive epochs from `first_cohort`): one pass over the return event's
    /// days instead of one per cohort and offset.
    fn count_first_time_returns(
        &self,
        query: &RetentionQuery,
        name: u32,
        first_cohort: u32,
        cohorts: &mut [RetentionCohort],
        s: &mut Scratch,
    ) {
        let tz = &self.calendar.tz;
        let week = query.period == Interval::Week;
        let periods = i64::from(query.periods);
        let cohort_periods: Vec<i64> =
            cohorts.iter().map(|c| period::period_number(c.period_start, query.period, tz)).collect();
        let (Some(&first_p), Some(&last_p)) = (cohort_periods.first(), cohort_periods.last()) else {
            return;
        };
        // Day numbers of period p: [7p - 3, 7p + 4) for weeks (as `period::period_number`).
        let (from_day, to_day) =
            if week { (7 * first_p - 3, 7 * (last_p + periods) - 3) } else { (first_p, last_p + periods) };
        let n = cohorts.len() as u32;
        let mut counted: Option<(i64, u32)> = None;
        for (&day, list) in self.names[name as usize].active.range(from_day as i32..to_day as i32) {
            let p = if week { (i64::from(day) + 3).div_euclid(7) } else { i64::from(day) };
            // A user returns once per period, however many of its days.
            let epoch = match counted {
                Some((q, epoch)) if q == p => epoch,
                _ => {
                    let epoch = s.next_epoch();
                    counted = Some((p, epoch));
                    epoch
                }
            };
            for &user in list {
                let u = user as usize;
                let c = s.cohort[u].wrapping_sub(first_cohort);
                if c >= n || s.counted[u] == epoch {
                    continue;
                }
                let k = p - cohort_periods[c as usize];
                if (0..periods).contains(&k) {
                    s.counted[u] = epoch;
                    cohorts[c as usize].retained[k as usize] += 1;
                }
            }
        }
    }

    /// The cached counts of a (start, return) pair, built from the users' days when missing.
    fn pair_returns<'a>(&self, cache: &'a mut ReturnCache, start: u32, ret: u32) -> &'a PairReturns {
        cache.tick += 1;
        let tick = cache.tick;
        let at = match cache.pairs.iter().position(|p| p.start == start && p.ret == ret) {
            Some(at) => at,
            None => {
                let mut pair = PairReturns { start, ret, used: tick, rows: HashMap::new() };
                for (&cohort, list) in &self.names[start as usize].first {
                    for &user in list {
                        for day in days_of_name(&self.users[user as usize].days, ret) {
                            pair.count(cohort, day.day, 1);
                        }
                    }
                }
                if cache.pairs.len() >= CACHED_PAIRS
                    && let Some(oldest) = (0..cache.pairs.len()).min_by_key(|&i| cache.pairs[i].used)
                {
                    cache.pairs.swap_remove(oldest);
                }
                cache.pairs.push(pair);
                cache.pairs.len() - 1
            }
        };
        cache.pairs[at].used = tick;
        &cache.pairs[at]
    }

    /// Whether the user has an event of `name` in `[from, to)` on `day` (starting at
    /// `day_start`), from the day's first and last time: None when both lie outside on
    /// either side (the range is inside the day and the view cannot tell).
    fn active_in(&self, user: u32, name: u32, day: i64, day_start: i64, from: i64, to: i64) -> Option<bool> {
        let days = &self.users[user as usize].days;
        let Ok(at) = days.binary_search_by_key(&(name, day as i32), ActiveDay::key) else {
            return Some(false);
        };
        let (first, last) = (day_start + i64::from(days[at].first), day_start + i64::from(days[at].last));
        let range = from..to;
        if range.contains(&first) || range.contains(&last) {
            Some(true)
        } else if first < from && last >= to {
            None
        } else {
            Some(false)
        }
    }

    /// Whether the user's first event of `name` is in `[from, to)`.
    fn first_in(&self, user: u32, name: u32, from: i64, to: i64) -> bool {
        let firsts = &self.users[user as usize].firsts;
        firsts.binary_search_by_key(&name, |f| f.0).is_ok_and(|at| (from..to).contains(&firsts[at].2))
    }

    fn take_scratch(&self) -> Scratch {
        self.scratch.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop().unwrap_or_default()
    }

    fn put_scratch(&self, scratch: Scratch) {
        self.scratch.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(scratch);
    }

    /// The local days on which the user `distinct_id` has an event, newest first, each with
    /// its first and last event time; None for a user the view has not seen.
    pub fn user_days(&self, distinct_id: &str) -> Option<Vec<UserDay>> {
        let user = &self.users[*self.user_index.get(distinct_id)? as usize];
        let mut by_day: BTreeMap<i32, (u32, u32)> = BTreeMap::new();
        for d in &user.days {
            let span = by_day.entry(d.day).or_insert((d.first, d.last));
            *span = (span.0.min(d.first), span.1.max(d.last));
        }
        let days = by_day
            .into_iter()
            .rev()
            .filter_map(|(number, (first, last))| {
                let day = self.calendar.known(i64::from(number))?;
                Some(UserDay {
                    start: day.start,
                    end: day.end,
                    first: day.start + i64::from(first),
                    last: day.start + i64::from(last),
                })
            })
            .collect();
        Some(days)
    }

    /// The users seen.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// The distinct events added.
    pub fn events(&self) -> usize {
        self.events
    }

    /// An estimate of the heap bytes the view holds (capacities, not allocator overhead).
    pub fn heap_bytes(&self) -> usize {
        let users: usize = self
            .users
            .iter()
            .map(|u| {
                std::mem::size_of::<UserActivity>()
                    + u.seen.heap_bytes()
                    + u.days.capacity() * std::mem::size_of::<ActiveDay>()
                    + u.firsts.capacity() * 16
            })
            .sum();
        let lists = |m: &BTreeMap<i32, Vec<u32>>| m.values().map(|v| v.capacity() * 4 + 48).sum::<usize>();
        let names: usize = self.names.iter().map(|n| lists(&n.active) + lists(&n.first)).sum();
        let ids: usize = self.user_index.keys().map(|s| s.capacity() + 32).sum();
        let returns = self.returns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let cached: usize = returns.pairs.iter().map(PairReturns::heap_bytes).sum();
        users + names + ids + cached
    }

    /// Adds a user's active days (sorted by name and day, each once), listing the new ones
    /// by day.
    fn merge_days(&mut self, user: u32, new: Vec<ActiveDay>) {
        let old = std::mem::take(&mut self.users[user as usize].days);
        let mut merged = Vec::with_capacity(old.len() + new.len());
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            if j == new.len() || (i < old.len() && old[i].key() < new[j].key()) {
                merged.push(old[i]);
                i += 1;
            } else if i < old.len() && old[i].key() == new[j].key() {
                let mut day = old[i];
                day.merge(&new[j]);
                merged.push(day);
                i += 1;
                j += 1;
            } else {
                let ActiveDay { name, day, .. } = new[j];
                self.names[name as usize].active.entry(day).or_default().push(user);
                // A new return day counts in the user's cohort of each cached pair.
                let returns = self.returns.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
                for pair in returns.pairs.iter_mut().filter(|p| p.ret == name) {
                    if let Some(cohort) = first_day(&self.users[user as usize].firsts, pair.start) {
                        pair.count(cohort, day, 1);
                    }
                }
                merged.push(new[j]);
                j += 1;
            }
        }
        self.users[user as usize].days = merged;
    }

    /// Lowers a user's first times ((name, time, day), one per name, sorted by name),
    /// listing the users under their new first day.
    fn merge_firsts(&mut self, user: u32, new: Vec<(u32, i64, i32)>) {
        for (name, ts, day) in new {
            let firsts = &mut self.users[user as usize].firsts;
            let previous = first_day(firsts, name);
            let moved = match firsts.binary_search_by_key(&name, |f| f.0) {
                Ok(at) if ts < firsts[at].2 => {
                    let before = firsts[at].1;
                    firsts[at] = (name, day, ts);
                    if before != day {
                        // A late event moves the first time to an earlier day.
                        if let Some(list) = self.names[name as usize].first.get_mut(&before)
                            && let Some(i) = list.iter().position(|&u| u == user)
                        {
                            list.swap_remove(i);
                        }
                    }
                    before != day
                }
                Ok(_) => false,
                Err(at) => {
                    firsts.insert(at, (name, day, ts));
                    true
                }
            };
            if moved {
                self.names[name as usize].first.entry(day).or_default().push(user);
                self.move_cohort(user, name, previous, day);
            }
        }
    }

    /// Moves a user's returns in the cached pairs starting with `name` from the cohort of
    /// their previous first day (if any) to `day`'s (the user's days already merged).
    fn move_cohort(&mut self, user: u32, name: u32, previous: Option<i32>, day: i32) {
        let returns = self.returns.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        let days = &self.users[user as usize].days;
        for pair in returns.pairs.iter_mut().filter(|p| p.start == name) {
            for d in days_of_name(days, pair.ret) {
                if let Some(previous) = previous {
                    pair.count(previous, d.day, -1);
                }
                pair.count(day, d.day, 1);
            }
        }
    }
}
