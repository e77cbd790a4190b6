//! Answering a query from a funnel view: whole days as kept, the days the range cuts
//! recomputed for their users, each user's days merged, then counted.

use std::collections::{BTreeMap, HashMap};

use super::{DayColumn, Kept, NEVER, mark};
use crate::analytics::funnel::{Compiled, FunnelTally, progress_in};
use crate::analytics::period::{self, Interval};
use crate::funnel::{FunnelDefinition, FunnelOrder};

impl Kept {
    /// The days `[from, to)` cuts (the first and the last, when `from` or `to` is not a
    /// local midnight), each as (day number, column over the part in range): the users
    /// with a slot that day, recomputed from their kept events.
    pub(super) fn cut_days(&self, c: &Compiled<'_>, from: i64, to: i64) -> Vec<(i64, DayColumn)> {
        let tz = &self.calendar.tz;
        let first_start = period::start(from, Interval::Day, tz);
        let last_start = period::start(to - 1, Interval::Day, tz);
        let mut cut = Vec::new();
        let entry = if c.order == FunnelOrder::Unordered { u32::MAX } else { 1 };
        for day_start in
            if first_start == last_start { vec![first_start] } else { vec![first_start, last_start] }
        {
            let day_end = period::next(day_start, Interval::Day, tz);
            let (part_from, part_to) = (from.max(day_start), to.min(day_end));
            if (part_from, part_to) == (day_start, day_end) {
                continue;
            }
            let number = period::day_number(day_start, tz);
            let Some(whole) = self.days.get(&number) else { continue };
            let mut column = DayColumn {
                start: part_from,
                end: part_to,
                users: Vec::with_capacity(whole.users.len()),
                levels: Vec::with_capacity(whole.users.len()),
                values: Vec::with_capacity(whole.users.len()),
                firsts: Vec::with_capacity(whole.firsts.len()),
            };
            let (mut marked, mut holds) = (Vec::new(), Vec::new());
            for (i, &user) in whole.users.iter().enumerate() {
                let events = &self.users[user as usize].events;
                let starts_in = |from: i64, to: i64| {
                    let at = events.partition_point(|e| e.ts < from);
                    events[at..].iter().take_while(|e| e.ts < to).any(|e| e.steps & entry != 0)
                };
                // No chain can start in the part in range: the user does not enter that
                // day, and the breakdown (the first first-step event at or after `from`)
                // is found as well on the user's next day in range.
                if !starts_in(part_from, part_to) {
                    continue;
                }
                // No chain can start in the parts of the day cut off: the kept day holds.
                if !starts_in(day_start, part_from) && !starts_in(part_to, day_end) {
                    column.users.push(user);
                    column.levels.push(whole.levels[i]);
                    column.values.push(whole.values[i]);
                    column
                        .firsts
                        .extend_from_slice(&whole.firsts[i * (self.steps - 1)..(i + 1) * (self.steps - 1)]);
                    continue;
                }
                let lo = events.partition_point(|e| e.ts < part_from);
                let hi = events.partition_point(|e| e.ts <= part_to.saturating_add(self.window_ms));
                mark(c, &events[lo..hi.max(lo)], &mut marked, &mut holds);
                let (level, first) = progress_in(c, &marked, part_from, part_to);
                column.users.push(user);
                column.levels.push(level as u8);
                column.values.push(events[lo..].iter().find(|e| e.steps & 1 != 0).map_or(0, |e| e.value));
                column
                    .firsts
                    .extend((1..self.steps).map(|k| first.get(k).copied().flatten().unwrap_or(NEVER)));
            }
            cut.push((number, column));
        }
        cut
    }

    /// The days of `[from, to)` in order, as (day number, column): the cut ones from
    /// `cut`, the others as kept.
    pub(super) fn segments<'a>(
        &'a self,
        from: i64,
        to: i64,
        cut: &'a [(i64, DayColumn)],
    ) -> Vec<(i64, &'a DayColumn)> {
        let tz = &self.calendar.tz;
        let first = period::day_number(from, tz);
        let last = period::day_number(to - 1, tz);
        let mut out: Vec<(i64, &DayColumn)> = Vec::new();
        let is_cut = |day: i64| cut.iter().any(|(d, _)| *d == day);
        out.extend(cut.iter().filter(|(d, _)| *d == first).map(|(d, c)| (*d, c)));
        out.extend(self.days.range(first..=last).filter(|(d, _)| !is_cut(**d)).map(|(d, c)| (*d, c)));
        out.extend(cut.iter().filter(|(d, _)| *d == last && last != first).map(|(d, c)| (*d, c)));
        out
    }

    /// Adds up the users with a slot in `segments` (days in order): each user's days
    /// merged, then counted. `trend` is the interval and period starts asked for.
    pub(super) fn tally(
        &self,
        def: &FunnelDefinition,
        segments: &[(i64, &DayColumn)],
        trend: Option<(Interval, &[i64])>,
        s: &mut Scratch,
    ) -> FunnelTally {
        let n = self.steps;
        let n1 = n - 1;
        s.prepare(self.users.len(), n1);
        let epoch = s.next_epoch();
        s.touched.clear();
        for &(_, column) in segments {
            for (i, &user) in column.users.iter().enumerate() {
                let u = user as usize;
                let level = column.levels[i];
                let firsts = &column.firsts[i * n1..(i + 1) * n1];
                let mine = &mut s.firsts[u * n1..(u + 1) * n1];
                let acc = &mut s.acc[u];
                if acc.seen != epoch {
                    // Days come in order: the first one's value is the breakdown.
                    *acc = Acc { seen: epoch, value: column.values[i], level, converted: false };
                    mine.copy_from_slice(firsts);
                    s.touched.push(user);
                } else {
                    acc.level = acc.level.max(level);
                    for (m, f) in mine.iter_mut().zip(firsts) {
                        if f.0 < m.0 || (f.0 == m.0 && f.1 > m.1) {
                            *m = *f;
                        }
                    }
                }
            }
        }
        // times[0] (always 0) is not reported, so it is not collected.
        let mut times: Vec<Vec<i64>> = vec![Vec::new(); n];
        // Users per (breakdown value, exact level): a flat table while values are few.
        let dense = self.values.len() <= DENSE_VALUES;
        let mut exact = vec![0u64; if dense { self.values.len() * (n + 1) } else { 0 }];
        let mut sparse: HashMap<(u32, u8), u64> = HashMap::new();
        let timed = def.order != FunnelOrder::Unordered;
        for &user in &s.touched {
            let u = user as usize;
            let Acc { value, level, .. } = s.acc[u];
            if level == 0 {
                // Unordered: step events that day, but none of them can begin a chain.
                continue;
            }
            if dense {
                exact[value as usize * (n + 1) + usize::from(level)] += 1;
            } else {
                *sparse.entry((value, level)).or_default() += 1;
            }
            if timed {
                let level = usize::from(level);
                for (k, &(t, start)) in s.firsts[u * n1..(u + 1) * n1].iter().enumerate().take(level - 1) {
                    times[k + 1].push(t - start);
                }
            }
        }
        // Per value met, its users by exact level.
        let rows: Vec<(usize, Vec<u64>)> = if dense {
            exact
                .chunks(n + 1)
                .enumerate()
                .filter(|(_, row)| row.iter().any(|&c| c > 0))
                .map(|(value, row)| (value, row.to_vec()))
                .collect()
        } else {
            let mut rows: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
            for ((value, level), count) in sparse {
                rows.entry(value as usize).or_insert_with(|| vec![0; n + 1])[usize::from(level)] = count;
            }
            rows.into_iter().collect()
        };
        let mut reached = vec![0u64; n];
        let mut by_value: BTreeMap<Option<String>, Vec<u64>> = BTreeMap::new();
        for (value, row) in rows {
            // At least step k: the users with level k or more.
            let mut at_least = vec![0u64; n];
            let mut sum = 0;
            for k in (0..n).rev() {
                sum += row[k + 1];
                at_least[k] = sum;
                reached[k] += sum;
            }
            by_value.insert(self.values[value].clone(), at_least);
        }
        let mut periods = BTreeMap::new();
        if let Some((interval, starts)) = trend {
            let tz = &self.calendar.tz;
            for &start in starts {
                let lo = period::day_number(start, tz);
                let hi = match interval {
                    Interval::Week => period::day_number(period::next(start, interval, tz), tz),
                    _ => lo + 1,
                };
                let from = segments.partition_point(|(d, _)| *d < lo);
                let to = segments.partition_point(|(d, _)| *d < hi);
                periods.insert(start, self.entered_and_converted(&segments[from..to], s));
            }
        }
        FunnelTally::from_parts(reached, times, by_value, periods)
    }

    /// Users entering in `segments` and those of them converting.
    fn entered_and_converted(&self, segments: &[(i64, &DayColumn)], s: &mut Scratch) -> (u64, u64) {
        let full = self.steps as u8;
        if let [(_, c)] = segments {
            // One day: each user is there once.
            let count = |keep: &dyn Fn(u8) -> bool| c.levels.iter().filter(|&&l| keep(l)).count() as u64;
            return (count(&|l| l > 0), count(&|l| l == full));
        }
        let epoch = s.next_epoch();
        let (mut entered, mut converted) = (0, 0);
        for (_, column) in segments {
            for (&user, &level) in column.users.iter().zip(&column.levels).filter(|(_, l)| **l > 0) {
                let acc = &mut s.acc[user as usize];
                if acc.seen != epoch {
                    acc.seen = epoch;
                    acc.converted = false;
                    entered += 1;
                }
                if level == full && !acc.converted {
                    acc.converted = true;
                    converted += 1;
                }
            }
        }
        (entered, converted)
    }
}

/// Up to this many breakdown values a query counts in a flat table (2 in unit tests, so
/// the proptests run both ways of counting).
const DENSE_VALUES: usize = if cfg!(test) { 2 } else { 1 << 14 };

/// Per-user working space of one query, reused across queries (a pool behind a lock, so
/// concurrent readers each take their own). Entries are valid where `seen` holds the
/// query's epoch, so nothing is cleared between queries.
#[derive(Default)]
pub(super) struct Scratch {
    epoch: u32,
    acc: Vec<Acc>,
    firsts: Vec<(i64, i64)>,
    touched: Vec<u32>,
}

/// One user's days merged so far.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    /// The epoch this entry belongs to.
    seen: u32,
    value: u32,
    level: u8,
    converted: bool,
}

impl Scratch {
    fn prepare(&mut self, users: usize, n1: usize) {
        // Start afresh well before the epochs run out: a reset within a query would lose
        // its marks (one query uses at most one epoch per trend period, plus one).
        if self.epoch > u32::MAX / 2 {
            *self = Scratch::default();
        }
        if self.acc.len() < users {
            self.acc.resize(users, Acc::default());
        }
        if self.firsts.len() < users * n1 {
            self.firsts.resize(users * n1, NEVER);
        }
    }

    fn next_epoch(&mut self) -> u32 {
        if self.epoch == u32::MAX {
            self.acc.iter_mut().for_each(|a| a.seen = 0);
            self.epoch = 0;
        }
        self.epoch += 1;
        self.epoch
    }
}
