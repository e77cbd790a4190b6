//! A declared funnel kept per user and local day, so a range of whole days is a merge of
//! the days' results instead of a pass over events.
//!
//! Why days compose: a chain belongs to the range of its first step, so over adjacent
//! ranges a user's level is the largest of the per-range levels; the breakdown value is
//! that of the first first-step event at or after the range's start, found from the first
//! day with a slot; a step's time to convert comes from the chain that reached it first
//! (earliest arrival, then latest start), found by comparing the days' first arrivals. A
//! day the range cuts is computed at query time over the part in range, for the users with
//! a slot that day. Every day is computed by the ad-hoc engine's own code
//! ([`progress_in`]) over the user's kept events, so the two paths cannot drift apart.
//!
//! Why each slot also holds its user's merges up to it and from it on (a [`Join`]): most
//! ranges hold a user's first day or last day with a slot, so most users are counted from
//! one record read in order, and only the others are merged per query in scratch space
//! (random access, which at a million events cost twice as much).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use jiff::tz::TimeZone;
use serde_json::Value;

mod query;

use self::query::Scratch;
use super::calendar::Calendar;
use super::group_by_user;
use super::seen::SeenIds;
use crate::analytics::error::{AnalyticsError, Limits, check_range};
use crate::analytics::event::AnalyticsEvent;
use crate::analytics::funnel::{Compiled, FunnelQuery, FunnelReport, Marked, progress_in};
use crate::analytics::period::{self, Interval};
use crate::funnel::{FunnelDefinition, FunnelOrder};

/// No arrival at a level: later than any, with the earliest start.
const NEVER: (i64, i64) = (i64::MAX, i64::MIN);

/// A declared funnel's pre-aggregate: per user and local day on which the user can start a
/// chain (a first-step event; any step's event in an unordered funnel), the funnel over
/// that day (level, breakdown value, first arrival at each level), and the user's events
/// the funnel uses, to recompute the days new events touch.
pub struct FunnelView {
    def: FunnelDefinition,
    kept: Kept,
    scratch: Mutex<Vec<Scratch>>,
}

/// Everything but the definition, so the definition can be borrowed while this changes.
struct Kept {
    steps: usize,
    window_ms: i64,
    calendar: Calendar,
    user_index: HashMap<String, u32>,
    users: Vec<UserState>,
    days: BTreeMap<i64, DayColumn>,
    /// The kept events' ids, end to end (the order of events with one time is by id).
    ids: Vec<u8>,
    /// Held-constant value keys, interned.
    holds: HashMap<String, u32>,
    /// Breakdown values, interned; 0 is "absent".
    values: Vec<Option<String>>,
    value_ids: HashMap<Option<String>, u32>,
    events: usize,
    /// A day number beyond 32 bits was seen (see `join_user_days`).
    wide_days: bool,
}

#[derive(Default)]
struct UserState {
    seen: SeenIds,
    /// The events matching a step or an exclusion, by time then id.
    events: Vec<Event>,
    /// (day number, index in that day's column), by day.
    slots: Vec<(i64, u32)>,
}

/// One kept event, 32 bytes.
#[derive(Debug, Clone, Copy)]
struct Event {
    ts: i64,
    /// Offset in `Kept::ids` (low 40 bits) and length (high 24 bits).
    id: u64,
    steps: u32,
    /// Interned held-constant key (0 when none are held or the event is no step).
    hold: u32,
    /// Interned breakdown value (first-step events only).
    value: u32,
    exclusions: u16,
}

/// The users who can start a chain on one day (a slot each), and their funnel over it.
#[derive(Default)]
struct DayColumn {
    start: i64,
    end: i64,
    users: Vec<u32>,
    levels: Vec<u8>,
    values: Vec<u32>,
    /// Per user, `steps - 1` pairs: the first arrival (time, latest start) at levels 2..=n.
    firsts: Vec<(i64, i64)>,
    /// Per user, the first and last time that day a chain can start, so a range cutting the
    /// day reads the user's events only when it cuts between them (kept days only).
    entries: Vec<(i64, i64)>,
    /// Per user, where this day sits among the user's days and the funnel merged over
    /// the user's days up to it and from it on, so a range holding a user's first or last
    /// day is answered from one slot (kept days only: empty in a recomputed cut day).
    joins: Vec<Join>,
    /// Per user, `steps - 1` times each: the times to reach levels 2..=n (arrival minus
    /// start) merged over the user's days up to this one, and over this one and later
    /// (meaningless above the merged level).
    prefix_times: Vec<i64>,
    suffix_times: Vec<i64>,
}

/// A slot's place among its user's days (day numbers, 24 bytes in all: a query reads one
/// per slot), and the user's funnel merged over the days before and after.
#[derive(Debug, Clone, Copy)]
struct Join {
    /// The user's previous day with a slot, or `i32::MIN`.
    prev: i32,
    /// The user's next day with a slot, or `i32::MAX`.
    next: i32,
    /// The user's first and last day with a slot.
    first: i32,
    last: i32,
    /// The level over the user's days up to this one, and from this one on.
    prefix_level: u8,
    suffix_level: u8,
    /// The breakdown value over the user's days up to this one: the first day's.
    prefix_value: u32,
}

impl Default for Join {
    fn default() -> Self {
        Join {
            prev: i32::MIN,
            next: i32::MAX,
            first: i32::MIN,
            last: i32::MAX,
            prefix_level: 0,
            suffix_level: 0,
            prefix_value: 0,
        }
    }
}

/// Of two first arrivals at a level, the one a merge keeps: the earlier arrival, then the
/// later start (the chain that reached the level first). Sessions merge the same way.
pub(crate) fn earlier(kept: (i64, i64), other: (i64, i64)) -> (i64, i64) {
    if other.0 < kept.0 || (other.0 == kept.0 && other.1 > kept.1) { other } else { kept }
}

impl FunnelView {
    /// For a declared funnel; `tz` is the pipeline's time zone (day/week periods).
    pub fn new(def: FunnelDefinition, tz: TimeZone) -> Result<Self, AnalyticsError> {
        def.validate().map_err(AnalyticsError::Invalid)?;
        let window_ms = Compiled::new(&def).window_ms;
        let kept = Kept {
            steps: def.steps.len(),
            window_ms,
            calendar: Calendar::new(tz),
            user_index: HashMap::new(),
            users: Vec::new(),
            days: BTreeMap::new(),
            ids: Vec::new(),
            holds: HashMap::new(),
            values: vec![None],
            value_ids: HashMap::from([(None, 0)]),
            events: 0,
            wide_days: false,
        };
        Ok(FunnelView { def, kept, scratch: Mutex::new(Vec::new()) })
    }

    /// Adds events in any order and batch split; an event id already added for the user is
    /// ignored (the first copy counts, as in `funnel::run`); events the funnel does not
    /// use (matching no step and no exclusion) are dropped, their ids remembered. Costs the
    /// events added plus, per touched user, a pass over the user's kept events and the
    /// recomputation of the user's days within a window of the new ones.
    pub fn add(&mut self, events: &[AnalyticsEvent]) {
        // A same-session funnel needs every event of its users: the ad-hoc path answers it.
        if self.def.same_session {
            return;
        }
        let c = Compiled::new(&self.def);
        let kept = &mut self.kept;
        for (user, positions) in group_by_user(events, &mut kept.user_index) {
            let u = user as usize;
            if kept.users.len() <= u {
                kept.users.resize_with(u + 1, UserState::default);
            }
            let fresh = kept.users[u].seen.first_copies(events, &positions);
            let added: Vec<Event> = fresh.into_iter().filter_map(|p| kept.event_of(&c, &events[p])).collect();
            if !added.is_empty() {
                kept.add_user_events(&c, user, added);
            }
        }
    }

    /// Equal to `funnel::run(def, query, every event added, None, tz, limits)` whenever
    /// it is Some. Whole local days are merged from the kept days; a day the range cuts
    /// (`from` or `to` not a local midnight) is recomputed for the users with a slot that
    /// day, which costs more. Errors as `run` gives them (invalid range or trend, too many
    /// periods or breakdown values). None when the view holds more events than
    /// `limits.max_events`: the ad-hoc path then reads only the query's span and applies
    /// the limit to that. None for a same-session funnel, whose sessions depend on events
    /// the view does not keep.
    pub fn report(
        &self,
        query: &FunnelQuery,
        limits: &Limits,
    ) -> Result<Option<FunnelReport>, AnalyticsError> {
        check_range(query.from, query.to)?;
        if self.def.same_session {
            return Ok(None);
        }
        let tz = &self.kept.calendar.tz;
        let starts = match query.trend {
            None => Vec::new(),
            Some(interval @ (Interval::Day | Interval::Week)) => {
                period::starts(query.from, query.to, interval, tz, limits)?
            }
            Some(other) => {
                return Err(AnalyticsError::invalid(
                    "trend",
                    format!("a conversion trend is per day or week, not {other:?}"),
                ));
            }
        };
        if self.kept.events > limits.max_events || self.kept.wide_days {
            return Ok(None);
        }
        // Days cut by the range are computed for their users from the kept events.
        let c = Compiled::new(&self.def);
        let cut = self.kept.cut_days(&c, query.from, query.to);
        let days = self.kept.days_of(query.from, query.to, &cut);
        let mut scratch = self.take_scratch();
        let tally = self.kept.tally(&self.def, &days, query.trend.map(|i| (i, &starts[..])), &mut scratch);
        self.put_scratch(scratch);
        tally.report(&self.def, &starts, limits).map(Some)
    }

    /// The users seen (with or without events the funnel uses).
    pub fn users(&self) -> usize {
        self.kept.users.len()
    }

    /// The events kept: distinct, matching a step or an exclusion.
    pub fn events(&self) -> usize {
        self.kept.events
    }

    /// An estimate of the heap bytes the view holds (capacities, not allocator overhead).
    pub fn heap_bytes(&self) -> usize {
        let k = &self.kept;
        let users: usize = k
            .users
            .iter()
            .map(|u| {
                std::mem::size_of::<UserState>()
                    + u.seen.heap_bytes()
                    + u.events.capacity() * std::mem::size_of::<Event>()
                    + u.slots.capacity() * 16
            })
            .sum();
        let days: usize = k
            .days
            .values()
            .map(|d| {
                d.users.capacity() * 4
                    + d.levels.capacity()
                    + d.values.capacity() * 4
                    + d.firsts.capacity() * 16
                    + (d.prefix_times.capacity() + d.suffix_times.capacity()) * 8
                    + d.joins.capacity() * std::mem::size_of::<Join>()
                    + d.entries.capacity() * 16
            })
            .sum();
        let names: usize = k.user_index.keys().map(|s| s.capacity() + 32).sum();
        let interned: usize = k.holds.keys().map(|s| s.capacity() + 32).sum::<usize>()
            + k.values.iter().map(|v| v.as_ref().map_or(0, String::capacity) + 64).sum::<usize>();
        users + days + names + interned + k.ids.capacity()
    }

    fn take_scratch(&self) -> Scratch {
        self.scratch.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop().unwrap_or_default()
    }

    fn put_scratch(&self, scratch: Scratch) {
        self.scratch.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(scratch);
    }
}

impl Kept {
    /// The event as kept, or None when the funnel does not use it.
    fn event_of(&mut self, c: &Compiled<'_>, e: &AnalyticsEvent) -> Option<Event> {
        let (steps, exclusions) = c.masks(e);
        if steps == 0 && exclusions == 0 {
            return None;
        }
        let hold = if c.def.hold_constant.is_empty() || steps == 0 {
            0
        } else {
            let next = self.holds.len() as u32;
            *self.holds.entry(c.hold_key(&e.properties)).or_insert(next)
        };
        let value = match &c.def.breakdown {
            Some(path) if steps & 1 != 0 => {
                let text = path.lookup(&e.properties).map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                let next = self.values.len() as u32;
                let id = *self.value_ids.entry(text.clone()).or_insert(next);
                if id == next {
                    self.values.push(text);
                }
                id
            }
            _ => 0,
        };
        let at = self.ids.len() as u64;
        self.ids.extend_from_slice(e.event_id.as_bytes());
        let len = (e.event_id.len() as u64).min(ID_LEN_MAX);
        Some(Event { ts: e.timestamp, id: at | (len << 40), steps, hold, value, exclusions })
    }

    fn id(&self, e: &Event) -> &[u8] {
        let at = (e.id & ((1 << 40) - 1)) as usize;
        let len = (e.id >> 40) as usize;
        &self.ids[at..at + len]
    }

    /// Merges a user's new events and recomputes the days they can change: a day's funnel
    /// reads its first-step events and anything up to a window after its end.
    fn add_user_events(&mut self, c: &Compiled<'_>, user: u32, added: Vec<Event>) {
        let u = user as usize;
        self.events += added.len();
        let lo = added.iter().map(|e| e.ts).min().unwrap_or(i64::MAX);
        let hi = added.iter().map(|e| e.ts).max().unwrap_or(i64::MIN);
        // A day can have users entering when it has a first-step event; in an unordered
        // funnel, any step's event (the earliest of the chosen events may take any step).
        let entry = if c.order == FunnelOrder::Unordered { u32::MAX } else { 1 };
        for e in added.iter().filter(|e| e.steps & entry != 0) {
            let day = self.calendar.day(e.ts);
            let slots = &mut self.users[u].slots;
            if let Err(at) = slots.binary_search_by_key(&day.number, |s| s.0) {
                let column = self.days.entry(day.number).or_insert_with(|| DayColumn {
                    start: day.start,
                    end: day.end,
                    ..DayColumn::default()
                });
                slots.insert(at, (day.number, column.users.len() as u32));
                column.users.push(user);
                column.levels.push(0);
                column.values.push(0);
                column.joins.push(Join::default());
                column.entries.push((i64::MAX, i64::MIN));
                column.firsts.extend(std::iter::repeat_n(NEVER, self.steps - 1));
                for times in [&mut column.prefix_times, &mut column.suffix_times] {
                    times.extend(std::iter::repeat_n(0, self.steps - 1));
                }
            }
        }
        let mut events = std::mem::take(&mut self.users[u].events);
        events.extend(added);
        // Stable, so a presorted run and an appended batch merge in linear time.
        events.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| self.id(a).cmp(self.id(b))));
        let mut marked = Vec::new();
        let mut holds = Vec::new();
        for &(day, slot) in &self.users[u].slots {
            let Some(column) = self.days.get_mut(&day) else { continue };
            if column.start > hi || column.end.saturating_add(self.window_ms) < lo {
                continue;
            }
            let (start, end) = (column.start, column.end);
            let from = events.partition_point(|e| e.ts < start);
            let to = events.partition_point(|e| e.ts <= end.saturating_add(self.window_ms));
            let window = &events[from..to.max(from)];
            mark(c, window, &mut marked, &mut holds);
            let (level, first) = progress_in(c, &marked, start, end);
            let slot = slot as usize;
            let mut entries = window.iter().take_while(|e| e.ts < end).filter(|e| e.steps & entry != 0);
            let earliest = entries.next().map_or(i64::MAX, |e| e.ts);
            column.entries[slot] = (earliest, entries.last().map_or(earliest, |e| e.ts));
            column.levels[slot] = level as u8;
            let n1 = self.steps - 1;
            for (k, pair) in column.firsts[slot * n1..(slot + 1) * n1].iter_mut().enumerate() {
                *pair = first.get(k + 1).copied().flatten().unwrap_or(NEVER);
            }
        }
        // The breakdown is the value of the first first-step event at or after `from`
        // (in an unordered funnel possibly in a later day): per day, the first from its
        // start on. One pass from the end over events and days.
        let mut next_value = 0;
        let mut e = events.len();
        for &(day, slot) in self.users[u].slots.iter().rev() {
            let Some(column) = self.days.get_mut(&day) else { continue };
            while e > 0 && events[e - 1].ts >= column.start {
                e -= 1;
                if events[e].steps & 1 != 0 {
                    next_value = events[e].value;
                }
            }
            column.values[slot as usize] = next_value;
        }
        self.users[u].events = events;
        self.join_user_days(user);
    }

    /// Recomputes the joins of a user's slots from the user's days: places, then the
    /// merges forward (prefix) and backward (suffix), as a query's tally merges days.
    fn join_user_days(&mut self, user: u32) {
        let n1 = self.steps - 1;
        let slots = &self.users[user as usize].slots;
        let (Some(&(first, _)), Some(&(last, _))) = (slots.first(), slots.last()) else { return };
        // Day numbers fit in 32 bits for any date the calendar knows; a view fed a day
        // beyond that stops answering (`report` is None) rather than compare wrongly.
        let mut narrow = |day: i64| match i32::try_from(day) {
            Ok(day) if day != i32::MIN && day != i32::MAX => day,
            _ => {
                self.wide_days = true;
                0
            }
        };
        let (first, last) = (narrow(first), narrow(last));
        let places: Vec<(i32, i32)> = (0..slots.len())
            .map(|j| {
                let prev = if j > 0 { narrow(slots[j - 1].0) } else { i32::MIN };
                (prev, slots.get(j + 1).map_or(i32::MAX, |s| narrow(s.0)))
            })
            .collect();
        let mut level = 0;
        let mut value = 0;
        let mut merged = vec![NEVER; n1];
        for (j, &(day, slot)) in slots.iter().enumerate() {
            let Some(column) = self.days.get_mut(&day) else { continue };
            let slot = slot as usize;
            if j == 0 {
                value = column.values[slot];
            }
            level = level.max(column.levels[slot]);
            let span = slot * n1..(slot + 1) * n1;
            for (m, &f) in merged.iter_mut().zip(&column.firsts[span.clone()]) {
                *m = earlier(*m, f);
            }
            for (time, &(t, start)) in column.prefix_times[span].iter_mut().zip(&merged) {
                *time = t.wrapping_sub(start);
            }
            let (prev, next) = places[j];
            column.joins[slot] =
                Join { prev, next, first, last, prefix_level: level, suffix_level: 0, prefix_value: value };
        }
        level = 0;
        merged.fill(NEVER);
        for &(day, slot) in slots.iter().rev() {
            let Some(column) = self.days.get_mut(&day) else { continue };
            let slot = slot as usize;
            level = level.max(column.levels[slot]);
            let span = slot * n1..(slot + 1) * n1;
            for (m, &f) in merged.iter_mut().zip(&column.firsts[span.clone()]) {
                *m = earlier(*m, f);
            }
            for (time, &(t, start)) in column.suffix_times[span].iter_mut().zip(&merged) {
                *time = t.wrapping_sub(start);
            }
            column.joins[slot].suffix_level = level;
        }
    }
}

/// The longest id length the packed offset holds; longer ids compare on this prefix.
const ID_LEN_MAX: u64 = (1 << 24) - 1;

/// The engine's marks of `events`, with held-constant keys renumbered from 0 (the engine
/// indexes a vector by them).
fn mark(c: &Compiled<'_>, events: &[Event], marked: &mut Vec<Marked>, holds: &mut Vec<u32>) {
    holds.clear();
    if !c.def.hold_constant.is_empty() {
        holds.extend(events.iter().filter(|e| e.steps != 0).map(|e| e.hold));
        holds.sort_unstable();
        holds.dedup();
    }
    marked.clear();
    marked.extend(events.iter().map(|e| Marked {
        ts: e.ts,
        steps: e.steps,
        exclusions: e.exclusions,
        hold: if holds.is_empty() || e.steps == 0 {
            0
        } else {
            holds.binary_search(&e.hold).unwrap_or(0) as u32
        },
    }));
}
