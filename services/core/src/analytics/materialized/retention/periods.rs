//! Lifecycle and stickiness from the activity view: both need only who was active on which
//! local day and whose first day it was, which the view keeps per event name.

use super::ActivityView;
use crate::analytics::error::{AnalyticsError, Limits};
use crate::analytics::lifecycle::{LifecyclePeriod, LifecycleQuery, LifecycleReport};
use crate::analytics::period::{self, Interval};
use crate::analytics::stickiness::{StickinessQuery, StickinessReport};

impl ActivityView {
    /// Equal to `lifecycle::run(query, every event added, None, tz, limits)` when Some;
    /// None when the event has property filters or the view holds more events than
    /// `limits.max_events` (as for retention). Errors as `run` gives them.
    pub fn lifecycle(
        &self,
        query: &LifecycleQuery,
        limits: &Limits,
    ) -> Result<Option<LifecycleReport>, AnalyticsError> {
        let tz = &self.calendar.tz;
        query.validate(tz, limits)?;
        if !query.event.filters.is_empty() || self.events > limits.max_events {
            return Ok(None);
        }
        let starts = period::starts(query.from, query.to, query.period, tz, limits)?;
        let Some(&name) = self.name_index.get(&query.event.event) else {
            let empty = |period_start| LifecyclePeriod {
                period_start,
                new: 0,
                returning: 0,
                resurrecting: 0,
                dormant: 0,
                progress: None,
            };
            return Ok(Some(LifecycleReport { periods: starts.into_iter().map(empty).collect() }));
        };
        let activity = &self.names[name as usize];
        let mut s = self.take_scratch();
        s.prepare(self.users.len());
        // A user's mark is the epoch of the last period they were found active in: a mark of
        // the epoch before the current one means "active in the period before".
        let before = starts.first().map_or(0, |&first| period::start(first - 1, query.period, tz));
        let mut previous = s.next_epoch();
        let mut previous_users = 0u64;
        for (_, list) in activity.active.range(day_range(before, query.period, tz)) {
            for &user in list {
                let mark = &mut s.cohort[user as usize];
                if *mark != previous {
                    *mark = previous;
                    previous_users += 1;
                }
            }
        }
        let mut periods = Vec::with_capacity(starts.len());
        for period_start in starts {
            let days = day_range(period_start, query.period, tz);
            let current = s.next_epoch();
            let (mut active, mut returning) = (0u64, 0u64);
            for (_, list) in activity.active.range(days.clone()) {
                for &user in list {
                    let mark = &mut s.cohort[user as usize];
                    if *mark == current {
                        continue;
                    }
                    returning += u64::from(*mark == previous);
                    *mark = current;
                    active += 1;
                }
            }
            // Each user has one first day per name.
            let new: u64 = activity.first.range(days).map(|(_, list)| list.len() as u64).sum();
            periods.push(LifecyclePeriod {
                period_start,
                new,
                returning,
                resurrecting: active - new - returning,
                dormant: -((previous_users - returning) as i64),
                progress: None,
            });
            (previous, previous_users) = (current, active);
        }
        self.put_scratch(s);
        Ok(Some(LifecycleReport { periods }))
    }

    /// Equal to `stickiness::run(query, every event added, None, tz, limits)` when Some;
    /// None when the event has property filters or the view holds more events than
    /// `limits.max_events`. Errors as `run` gives them.
    pub fn stickiness(
        &self,
        query: &StickinessQuery,
        limits: &Limits,
    ) -> Result<Option<StickinessReport>, AnalyticsError> {
        let tz = &self.calendar.tz;
        query.validate(tz, limits)?;
        if !query.event.filters.is_empty() || self.events > limits.max_events {
            return Ok(None);
        }
        let starts = period::starts(query.from, query.to, query.period, tz, limits)?;
        let mut report = StickinessReport::empty(&starts, query.period, tz);
        let Some(&name) = self.name_index.get(&query.event.event) else { return Ok(Some(report)) };
        let activity = &self.names[name as usize];
        let mut s = self.take_scratch();
        s.prepare(self.users.len());
        let mut touched: Vec<u32> = Vec::new();
        for (index, &period_start) in starts.iter().enumerate() {
            // `cohort` marks the users met in this period, `counted` their active days.
            let epoch = s.next_epoch();
            touched.clear();
            for (_, list) in activity.active.range(day_range(period_start, query.period, tz)) {
                for &user in list {
                    let u = user as usize;
                    if s.cohort[u] != epoch {
                        s.cohort[u] = epoch;
                        s.counted[u] = 0;
                        touched.push(user);
                    }
                    s.counted[u] += 1;
                }
            }
            for &user in &touched {
                report.count(index, s.counted[user as usize] as usize);
                // Retention keeps epochs in `counted`, and none is 0.
                s.counted[user as usize] = 0;
            }
        }
        self.put_scratch(s);
        Ok(Some(report))
    }
}

/// The day numbers of the period starting at `start`, as the view's per-day lists key them.
fn day_range(start: i64, interval: Interval, tz: &jiff::tz::TimeZone) -> std::ops::Range<i32> {
    let end = period::next(start, interval, tz);
    period::day_number(start, tz) as i32..period::day_number(end, tz) as i32
}
