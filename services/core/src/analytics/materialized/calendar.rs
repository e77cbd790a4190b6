//! Local days of the pipeline's time zone, cached: converting a time to its zone's date
//! costs more than the rest of adding an event.

use jiff::tz::TimeZone;

use crate::analytics::period::{self, Interval};

/// One local day: its number (see [`period::day_number`]) and `[start, end)` in epoch ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Day {
    pub number: i64,
    pub start: i64,
    pub end: i64,
}

#[derive(Debug, Clone)]
pub(super) struct Calendar {
    pub tz: TimeZone,
    /// Days met so far, by start.
    known: Vec<Day>,
}

impl Calendar {
    pub fn new(tz: TimeZone) -> Self {
        Calendar { tz, known: Vec::new() }
    }

    /// The day holding `ts`.
    pub fn day(&mut self, ts: i64) -> Day {
        let i = self.known.partition_point(|d| d.start <= ts);
        if i > 0 && ts < self.known[i - 1].end {
            return self.known[i - 1];
        }
        let start = period::start(ts, Interval::Day, &self.tz);
        let day = Day {
            number: period::day_number(start, &self.tz),
            start,
            end: period::next(start, Interval::Day, &self.tz),
        };
        self.known.insert(i, day);
        day
    }

    /// The day numbered `number`, if met before.
    pub fn known(&self, number: i64) -> Option<Day> {
        // Numbers grow with starts.
        let at = self.known.partition_point(|d| d.number < number);
        self.known.get(at).filter(|d| d.number == number).copied()
    }
}
