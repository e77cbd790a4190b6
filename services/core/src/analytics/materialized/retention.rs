//! Retention from per-user activity: for every event name, the local days a user did it
//! and the first time ever, which is all `retention::run` reads of events without
//! property filters.

use std::collections::{BTreeMap, HashMap};

use jiff::tz::TimeZone;

use super::calendar::{Calendar, week_of, whole_days};
use super::group_by_user;
use super::seen::SeenIds;
use crate::analytics::error::{AnalyticsError, Limits, check_events};
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
}

#[derive(Default)]
struct UserActivity {
    seen: SeenIds,
    /// (name, day number), sorted, each once.
    days: Vec<(u32, i32)>,
    /// (name, day of the first time, first time), sorted by name.
    firsts: Vec<(u32, i32, i64)>,
}

#[derive(Default)]
struct NameActivity {
    /// Per day number, the users with the event that day (each once).
    active: BTreeMap<i32, Vec<u32>>,
    /// Per day number, users whose first event was that day. A user whose first time
    /// moves earlier (a late event) stays listed under the old day too: readers check.
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
            let mut days: Vec<(u32, i32)> = Vec::with_capacity(fresh.len());
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
                let day = self.calendar.day(e.timestamp).number as i32;
                days.push((name, day));
                firsts.push((name, e.timestamp, day));
            }
            days.sort_unstable();
            days.dedup();
            firsts.sort_unstable();
            firsts.dedup_by_key(|f| f.0);
            self.merge_days(user, days);
            self.merge_firsts(user, firsts);
        }
    }

    /// Equal to `retention::run(query, every event added, None, tz, limits)` when Some;
    /// None when the start or return event has property filters, or for recurring
    /// cohorts when `from` or `to` is not a local midnight (the view keeps days, not
    /// times, of recurring events). Errors as `run` gives them, the event limit counted on
    /// the distinct events added.
    pub fn retention(
        &self,
        query: &RetentionQuery,
        limits: &Limits,
    ) -> Result<Option<RetentionReport>, AnalyticsError> {
        query.validate(limits)?;
        check_events(self.events, limits)?;
        let tz = &self.calendar.tz;
        let starts = period::starts(query.from, query.to, query.period, tz, limits)?;
        if !query.start.filters.is_empty() || !query.return_event.filters.is_empty() {
            return Ok(None);
        }
        let periods = query.periods as usize;
        let period_of = |day: i64| if query.period == Interval::Week { week_of(day) } else { day };
        let mut rows: HashMap<i64, (u64, Vec<u64>)> = HashMap::new();
        let start_name = self.name_index.get(&query.start.event).copied();
        let return_name = self.name_index.get(&query.return_event.event).copied();
        // (cohort period, user), each once.
        let mut members: Vec<(i64, u32)> = Vec::new();
        match (query.kind, start_name) {
            (_, None) => {}
            (RetentionKind::FirstTime, Some(name)) => {
                let first_day = period::day_number(query.from, tz) as i32;
                let last_day = period::day_number(query.to - 1, tz) as i32;
                for (&day, users) in self.names[name as usize].first.range(first_day..=last_day) {
                    for &user in users {
                        let firsts = &self.users[user as usize].firsts;
                        let Ok(at) = firsts.binary_search_by_key(&name, |f| f.0) else { continue };
                        let (_, first_day, ts) = firsts[at];
                        // Listed under an old day whose first time moved earlier: skip.
                        if first_day == day && (query.from..query.to).contains(&ts) {
                            members.push((period_of(i64::from(day)), user));
                        }
                    }
                }
            }
            (RetentionKind::Recurring, Some(name)) => {
                let Some((first, end)) = whole_days(query.from, query.to, tz) else { return Ok(None) };
                for (&day, users) in self.names[name as usize].active.range(first as i32..end as i32) {
                    let cohort = period_of(i64::from(day));
                    members.extend(users.iter().map(|&u| (cohort, u)));
                }
                if query.period == Interval::Week {
                    members.sort_unstable();
                    members.dedup();
                }
            }
        }
        let mut returned = vec![false; periods];
        for (cohort, user) in members {
            let row = rows.entry(cohort).or_insert_with(|| (0, vec![0; periods]));
            row.0 += 1;
            let Some(name) = return_name else { continue };
            returned.iter_mut().for_each(|r| *r = false);
            let days = &self.users[user as usize].days;
            let lo = days.partition_point(|d| d.0 < name);
            let hi = days.partition_point(|d| d.0 <= name);
            let mine = &days[lo..hi];
            // Days from the cohort's first day on: the offsets 0..periods.
            let begin = mine.partition_point(|d| period_of(i64::from(d.1)) < cohort);
            for &(_, day) in &mine[begin..] {
                let k = period_of(i64::from(day)) - cohort;
                if k >= periods as i64 {
                    break;
                }
                returned[k as usize] = true;
            }
            for (count, &r) in row.1.iter_mut().zip(&returned) {
                *count += u64::from(r);
            }
        }
        let cohorts = starts
            .into_iter()
            .map(|s| {
                let (users, retained) =
                    rows.remove(&period::period_number(s, query.period, tz)).unwrap_or((0, vec![0; periods]));
                RetentionCohort { period_start: s, users, retained }
            })
            .collect();
        Ok(Some(RetentionReport { cohorts }))
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
                    + u.days.capacity() * 8
                    + u.firsts.capacity() * 16
            })
            .sum();
        let lists = |m: &BTreeMap<i32, Vec<u32>>| m.values().map(|v| v.capacity() * 4 + 48).sum::<usize>();
        let names: usize = self.names.iter().map(|n| lists(&n.active) + lists(&n.first)).sum();
        let ids: usize = self.user_index.keys().map(|s| s.capacity() + 32).sum();
        users + names + ids
    }

    /// Adds a user's (name, day) pairs, sorted and distinct, listing the new ones by day.
    fn merge_days(&mut self, user: u32, new: Vec<(u32, i32)>) {
        let old = std::mem::take(&mut self.users[user as usize].days);
        let mut merged = Vec::with_capacity(old.len() + new.len());
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            if j == new.len() || (i < old.len() && old[i] < new[j]) {
                merged.push(old[i]);
                i += 1;
            } else if i < old.len() && old[i] == new[j] {
                merged.push(old[i]);
                i += 1;
                j += 1;
            } else {
                let (name, day) = new[j];
                self.names[name as usize].active.entry(day).or_default().push(user);
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
            let moved = match firsts.binary_search_by_key(&name, |f| f.0) {
                Ok(at) if ts < firsts[at].2 => {
                    let moved = firsts[at].1 != day;
                    firsts[at] = (name, day, ts);
                    moved
                }
                Ok(_) => false,
                Err(at) => {
                    firsts.insert(at, (name, day, ts));
                    true
                }
            };
            if moved {
                self.names[name as usize].first.entry(day).or_default().push(user);
            }
        }
    }
}
