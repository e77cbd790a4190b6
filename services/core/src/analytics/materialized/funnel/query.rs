//! Answering a query from a funnel view: whole days as kept, the days the range cuts
//! recomputed for their users, each user's days merged, then counted.

use std::collections::BTreeMap;

use super::{DayColumn, Kept, NEVER, earlier, mark};
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
                ..DayColumn::default()
            };
            let (mut marked, mut holds) = (Vec::new(), Vec::new());
            for (i, &user) in whole.users.iter().enumerate() {
                // From the day's first and last entry alone: none in the part in range
                // (the user does not enter, below), or all of them (the kept day holds).
                let (earliest, latest) = whole.entries[i];
                if latest < part_from || earliest >= part_to {
                    continue;
                }
                if earliest >= part_from && latest < part_to {
                    column.push_kept(whole, i, self.steps - 1);
                    continue;
                }
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
                    column.push_kept(whole, i, self.steps - 1);
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

    /// The days of `[from, to)`: the cut ones from `cut`, the others as kept.
    pub(super) fn days_of<'a>(&'a self, from: i64, to: i64, cut: &'a [(i64, DayColumn)]) -> Days<'a> {
        let tz = &self.calendar.tz;
        let first = period::day_number(from, tz);
        let last = period::day_number(to - 1, tz);
        let cut_first = cut.iter().find(|(d, _)| *d == first).map(|(_, c)| c);
        let cut_last = cut.iter().find(|(d, _)| *d == last && last != first).map(|(_, c)| c);
        let whole = (first + i64::from(cut_first.is_some()), last - i64::from(cut_last.is_some()));
        let mut segments: Vec<(i64, &DayColumn)> = Vec::new();
        segments.extend(cut_first.map(|c| (first, c)));
        if whole.0 <= whole.1 {
            segments.extend(self.days.range(whole.0..=whole.1).map(|(d, c)| (*d, c)));
        }
        segments.extend(cut_last.map(|c| (last, c)));
        Days { segments, whole, cut_first, cut_last }
    }

    /// Adds up the users with a slot in `days`. A user whose days in range hold their first
    /// or their last day is counted from one slot's merge (suffix or prefix); the others
    /// have their days merged in `s`, in day order. `trend` is the interval and period
    /// starts asked for.
    pub(super) fn tally(
        &self,
        def: &FunnelDefinition,
        days: &Days<'_>,
        trend: Option<(Interval, &[i64])>,
        s: &mut Scratch,
    ) -> FunnelTally {
        let n = self.steps;
        let n1 = n - 1;
        s.prepare(self.users.len(), n1);
        let epoch = s.next_epoch();
        s.touched.clear();
        // Each counted user's merge, gathered first (a slot is written whether it counts or
        // not) and counted after.
        let bound = days.segments.iter().map(|(_, c)| c.users.len()).sum::<usize>() + 1;
        let mut picked = std::mem::take(&mut s.picked);
        picked.reset(bound, n1);
        // Joins hold 32-bit day numbers strictly between i32::MIN and i32::MAX (their
        // "none"); clamped, the range compares with them as it would unclamped.
        let narrow = |day: i64| day.clamp(i64::from(i32::MIN) + 1, i64::from(i32::MAX) - 1) as i32;
        let (w1, w2) = (narrow(days.whole.0), narrow(days.whole.1));
        // Users with a slot in a cut day have that day merged with their others.
        for column in days.cut_first.iter().chain(&days.cut_last) {
            for &user in &column.users {
                s.cut[user as usize] = epoch;
            }
        }
        if let Some(column) = days.cut_first {
            (0..column.users.len()).for_each(|i| s.merge(epoch, column, i, n1));
        }
        for &(day, column) in &days.segments {
            if !(days.whole.0..=days.whole.1).contains(&day) {
                continue;
            }
            for (i, (&user, join)) in column.users.iter().zip(&column.joins).enumerate() {
                // Only users with a day before `w1` can have one in the first cut day,
                // and only users with one after `w2` in the last.
                let in_cut = ((days.cut_first.is_some() && join.first < w1)
                    || (days.cut_last.is_some() && join.last > w2))
                    && s.cut[user as usize] == epoch;
                let span = i * n1..(i + 1) * n1;
                if join.last <= w2 && !in_cut {
                    // All the user's days from here on are in range: counted at the first.
                    let first = join.prev < w1;
                    picked.pick(first, column.values[i], join.suffix_level, &column.suffix_times[span]);
                } else if join.first >= w1 && !in_cut {
                    // All the user's days up to here are in range: counted at the last.
                    let last = join.next > w2;
                    picked.pick(last, join.prefix_value, join.prefix_level, &column.prefix_times[span]);
                } else {
                    s.merge(epoch, column, i, n1);
                }
            }
        }
        if let Some(column) = days.cut_last {
            (0..column.users.len()).for_each(|i| s.merge(epoch, column, i, n1));
        }
        for &user in &s.touched {
            let u = user as usize;
            let Acc { value, level, .. } = s.acc[u];
            picked.pick_merged(value, level, &s.firsts[u * n1..(u + 1) * n1]);
        }
        let mut periods = BTreeMap::new();
        if let Some((interval, starts)) = trend {
            let tz = &self.calendar.tz;
            let segments = &days.segments;
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
        let timed = def.order != FunnelOrder::Unordered;
        let tally = picked.tally(n, &self.values, timed, periods);
        s.picked = picked;
        tally
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

impl DayColumn {
    /// Adds slot `i` of the kept day `whole` as it is.
    fn push_kept(&mut self, whole: &DayColumn, i: usize, n1: usize) {
        self.users.push(whole.users[i]);
        self.levels.push(whole.levels[i]);
        self.values.push(whole.values[i]);
        self.firsts.extend_from_slice(&whole.firsts[i * n1..(i + 1) * n1]);
    }
}

/// A query's days in order, whole ones as kept and cut ones recomputed.
pub(super) struct Days<'a> {
    /// Every day of the range with a column, in order.
    segments: Vec<(i64, &'a DayColumn)>,
    /// The first and last whole day (none when the first is after the last).
    whole: (i64, i64),
    /// The range's first and last day when the range cuts them.
    cut_first: Option<&'a DayColumn>,
    cut_last: Option<&'a DayColumn>,
}

/// The users a query counts, each as (breakdown value, level, times to reach levels
/// 2..=n), in buffers reused across queries. A slot is written whether it counts or not,
/// and kept when it does.
#[derive(Default)]
pub(super) struct Picked {
    values: Vec<u32>,
    levels: Vec<u8>,
    times: Vec<i64>,
    len: usize,
    n1: usize,
}

impl Picked {
    /// Empty, for up to `bound - 1` users of a funnel with `n1 + 1` steps.
    fn reset(&mut self, bound: usize, n1: usize) {
        self.values.resize(bound.max(self.values.len()), 0);
        self.levels.resize(bound.max(self.levels.len()), 0);
        self.times.resize((bound * n1).max(self.times.len()), 0);
        self.len = 0;
        self.n1 = n1;
    }

    fn pick(&mut self, counted: bool, value: u32, level: u8, times: &[i64]) {
        let at = self.len;
        self.values[at] = value;
        self.levels[at] = level;
        let n1 = self.n1;
        self.times[at * n1..(at + 1) * n1].copy_from_slice(times);
        self.len = at + usize::from(counted);
    }

    /// A user merged in a query's scratch: first arrivals as (time, start).
    fn pick_merged(&mut self, value: u32, level: u8, firsts: &[(i64, i64)]) {
        let at = self.len;
        self.values[at] = value;
        self.levels[at] = level;
        let n1 = self.n1;
        for (time, &(t, start)) in self.times[at * n1..(at + 1) * n1].iter_mut().zip(firsts) {
            *time = t.wrapping_sub(start);
        }
        self.len = at + 1;
    }

    /// Users per (breakdown value, exact level) and times to convert, as a tally.
    fn tally(
        &self,
        steps: usize,
        values: &[Option<String>],
        timed: bool,
        periods: BTreeMap<i64, (u64, u64)>,
    ) -> FunnelTally {
        let (n, n1, len) = (steps, self.n1, self.len);
        let (picked_values, levels) = (&self.values[..len], &self.levels[..len]);
        // Per value met, its users by exact level (1..=n; level 0, an unordered funnel's
        // day where no chain can begin, is not counted).
        let rows: Vec<(usize, Vec<u64>)> = if values.len() <= DENSE_VALUES {
            let mut exact = vec![0u64; values.len() * (n + 1)];
            for (&value, &level) in picked_values.iter().zip(levels) {
                exact[value as usize * (n + 1) + usize::from(level)] += 1;
            }
            exact
                .chunks(n + 1)
                .enumerate()
                .filter(|(_, row)| row[1..].iter().any(|&c| c > 0))
                .map(|(value, row)| (value, row.to_vec()))
                .collect()
        } else {
            let mut rows: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
            for (&value, &level) in picked_values.iter().zip(levels).filter(|(_, l)| **l > 0) {
                rows.entry(value as usize).or_insert_with(|| vec![0; n + 1])[usize::from(level)] += 1;
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
            by_value.insert(values[value].clone(), at_least);
        }
        // times[k]: times to reach step k+1, of the users at level k+1 or more (times[0],
        // always 0, is not reported).
        let mut times: Vec<Vec<i64>> = vec![Vec::new(); n];
        for (k, buffer) in times.iter_mut().enumerate().skip(1) {
            if !timed {
                continue;
            }
            buffer.resize(len, 0);
            let mut kept = 0;
            for (j, &level) in levels.iter().enumerate() {
                buffer[kept] = self.times[j * n1 + k - 1];
                kept += usize::from(usize::from(level) > k);
            }
            buffer.truncate(kept);
        }
        FunnelTally::from_parts(reached, times, by_value, periods)
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
    /// Per user, the epoch of the last query that found the user in a cut day.
    cut: Vec<u32>,
    picked: Picked,
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
            self.cut.resize(users, 0);
        }
        if self.firsts.len() < users * n1 {
            self.firsts.resize(users * n1, NEVER);
        }
    }

    fn next_epoch(&mut self) -> u32 {
        if self.epoch == u32::MAX {
            self.acc.iter_mut().for_each(|a| a.seen = 0);
            self.cut.fill(0);
            self.epoch = 0;
        }
        self.epoch += 1;
        self.epoch
    }

    /// Merges slot `i` of `column` into its user's days merged so far this query (days
    /// come in order: the first one's value is the breakdown).
    fn merge(&mut self, epoch: u32, column: &DayColumn, i: usize, n1: usize) {
        let user = column.users[i];
        let u = user as usize;
        let level = column.levels[i];
        let firsts = &column.firsts[i * n1..(i + 1) * n1];
        let mine = &mut self.firsts[u * n1..(u + 1) * n1];
        let acc = &mut self.acc[u];
        if acc.seen != epoch {
            *acc = Acc { seen: epoch, value: column.values[i], level, converted: false };
            mine.copy_from_slice(firsts);
            self.touched.push(user);
        } else {
            acc.level = acc.level.max(level);
            for (m, &f) in mine.iter_mut().zip(firsts) {
                *m = earlier(*m, f);
            }
        }
    }
}
