//! Calendar periods in the pipeline's time zone: the intervals of trends, the periods of
//! retention and of funnel conversion trends. A period is named by its start (epoch ms);
//! days start at local midnight (so a DST day has 23 or 25 hours), weeks on Monday.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ZonedDateTime};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{AnalyticsError, Limits, check_periods};
use crate::config::RollupInterval;
use crate::rollup::{bucket_start, week_start};

/// A calendar interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Interval {
    /// A clock hour in the time zone.
    Hour,
    /// A day, from local midnight.
    Day,
    /// An ISO week, from Monday's local midnight.
    Week,
    /// A calendar month, from the first's local midnight.
    Month,
}

fn zoned(ms: i64, tz: &TimeZone) -> Option<ZonedDateTime> {
    Timestamp::from_millisecond(ms).ok().map(|t| t.to_zoned_datetime(tz.clone()))
}

/// The start (epoch ms) of the interval holding `ts`.
pub fn start(ts: i64, interval: Interval, tz: &TimeZone) -> i64 {
    match interval {
        Interval::Hour => bucket_start(ts, RollupInterval::Hour, tz),
        Interval::Day => bucket_start(ts, RollupInterval::Day, tz),
        Interval::Week => week_start(ts, tz),
        Interval::Month => zoned(ts, tz)
            .and_then(|z| z.first_of_month().ok())
            .and_then(|z| z.start_of_day().ok())
            .map_or(ts, |z| z.timestamp().as_millisecond()),
    }
}

/// The start of the interval after the one starting at `period_start`.
pub fn next(period_start: i64, interval: Interval, tz: &TimeZone) -> i64 {
    let step = match interval {
        Interval::Hour => Span::new().hours(1),
        Interval::Day => Span::new().days(1),
        Interval::Week => Span::new().weeks(1),
        Interval::Month => Span::new().months(1),
    };
    let later = zoned(period_start, tz)
        .and_then(|z| z.checked_add(step).ok())
        .map_or(period_start + 3_600_000, |z| z.timestamp().as_millisecond());
    let candidate = start(later, interval, tz);
    // A zone's odd transition could round back to the same start: step past it.
    if candidate > period_start { candidate } else { start(later + 3_600_000, interval, tz) }
}

/// The starts of every interval that overlaps `[from, to)`, oldest first; refuses more
/// than the limit.
pub fn starts(
    from: i64,
    to: i64,
    interval: Interval,
    tz: &TimeZone,
    limits: &Limits,
) -> Result<Vec<i64>, AnalyticsError> {
    let mut out = Vec::new();
    let mut s = start(from, interval, tz);
    while s < to {
        out.push(s);
        check_periods(out.len(), limits)?;
        s = next(s, interval, tz);
    }
    Ok(out)
}

/// The local calendar day of `ts` as a day number (days since 1970-01-01), so the number
/// of days between two periods is a subtraction, whatever DST does.
pub fn day_number(ts: i64, tz: &TimeZone) -> i64 {
    let Some(date) = zoned(ts, tz).map(|z| z.date()) else { return ts.div_euclid(86_400_000) };
    date_number(date)
}

fn date_number(date: Date) -> i64 {
    date.to_zoned_datetime(TimeZone::UTC).map_or(0, |z| z.timestamp().as_second().div_euclid(86_400))
}

/// The period number of `ts` for day, week or month periods: consecutive periods have
/// consecutive numbers (an hour interval is numbered by its day).
pub fn period_number(ts: i64, interval: Interval, tz: &TimeZone) -> i64 {
    day_period(day_number(ts, tz), interval)
}

/// The number of the day, week or month period holding the local day `day` (a
/// [`day_number`]): weeks are numbered from the Monday 1969-12-29, months from January 1970
/// (an hour interval is numbered by its day).
pub fn day_period(day: i64, interval: Interval) -> i64 {
    match interval {
        // 1970-01-01 was a Thursday: day -3 is a Monday.
        Interval::Week => (day + 3).div_euclid(7),
        Interval::Month => {
            let (year, month) = year_month(day);
            (year - 1970) * 12 + (month - 1)
        }
        Interval::Day | Interval::Hour => day,
    }
}

/// The calendar year and month (1 to 12) of day number `day`, by arithmetic: this runs
/// once per user and active day, where a time zone lookup would cost more than the rest.
fn year_month(day: i64) -> (i64, i64) {
    // Days since 0000-03-01 in eras of 400 years (H. Hinnant's civil_from_days).
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

/// How much of a period has happened at a time: whether a count for it is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CellProgress {
    /// The period is over: the count is final.
    Complete,
    /// The period is under way: the count is what happened so far.
    Partial,
    /// The period has not begun: nothing can have happened yet (the count is 0).
    Pending,
}

/// Where the period `[start, end)` stands at `now` (epoch ms).
pub fn progress(start: i64, end: i64, now: i64) -> CellProgress {
    if end <= now {
        CellProgress::Complete
    } else if start <= now {
        CellProgress::Partial
    } else {
        CellProgress::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().expect("timestamp").as_millisecond()
    }

    #[test]
    fn months_and_weeks_start_where_the_calendar_says() {
        let berlin = TimeZone::get("Europe/Berlin").expect("zone");
        assert_eq!(start(ms("2026-03-15T12:00:00Z"), Interval::Month, &berlin), ms("2026-02-28T23:00:00Z"));
        assert_eq!(next(ms("2026-02-28T23:00:00Z"), Interval::Month, &berlin), ms("2026-03-31T22:00:00Z"));
        let utc = TimeZone::UTC;
        let weeks = starts(
            ms("2026-11-24T00:00:00Z"),
            ms("2026-12-08T00:00:00Z"),
            Interval::Week,
            &utc,
            &Limits::default(),
        )
        .expect("weeks");
        assert_eq!(
            weeks,
            [ms("2026-11-23T00:00:00Z"), ms("2026-11-30T00:00:00Z"), ms("2026-12-07T00:00:00Z")]
        );
    }

    #[test]
    fn a_dst_day_is_one_period_of_25_hours() {
        let berlin = TimeZone::get("Europe/Berlin").expect("zone");
        let day = start(ms("2026-10-25T12:00:00Z"), Interval::Day, &berlin);
        assert_eq!(next(day, Interval::Day, &berlin) - day, 25 * 3_600_000);
        let a = period_number(ms("2026-10-24T23:30:00Z"), Interval::Day, &berlin);
        let b = period_number(ms("2026-10-26T22:30:00Z"), Interval::Day, &berlin);
        assert_eq!(b - a, 1, "local 01:30 on the 25th and 23:30 on the 26th are one day apart");
    }

    #[test]
    fn week_numbers_change_on_monday() {
        let utc = TimeZone::UTC;
        let sunday = period_number(ms("2026-11-22T23:59:59Z"), Interval::Week, &utc);
        let monday = period_number(ms("2026-11-23T00:00:00Z"), Interval::Week, &utc);
        assert_eq!(monday - sunday, 1);
    }

    #[test]
    fn month_numbers_follow_the_calendar() {
        let utc = TimeZone::UTC;
        let jan_1970 = period_number(ms("1970-01-31T23:59:59Z"), Interval::Month, &utc);
        assert_eq!(jan_1970, 0);
        assert_eq!(period_number(ms("1969-12-31T12:00:00Z"), Interval::Month, &utc), -1);
        let feb_2028 = period_number(ms("2028-02-29T12:00:00Z"), Interval::Month, &utc);
        assert_eq!(feb_2028, 58 * 12 + 1);
        assert_eq!(period_number(ms("2028-03-01T00:00:00Z"), Interval::Month, &utc), feb_2028 + 1);
        // Every day of four centuries around the epoch: the arithmetic equals the calendar.
        let mut date = jiff::civil::date(1800, 1, 1);
        while date.year() < 2200 {
            let day = date_number(date);
            assert_eq!(year_month(day), (i64::from(date.year()), i64::from(date.month())), "{date}");
            date = date.tomorrow().expect("date");
        }
    }

    #[test]
    fn too_many_periods_is_an_error() {
        let limits = Limits { max_periods: 10, ..Limits::default() };
        let err = starts(0, 11 * 3_600_000, Interval::Hour, &TimeZone::UTC, &limits).expect_err("11 hours");
        assert_eq!(err, AnalyticsError::TooManyPeriods { count: 11, limit: 10 });
    }
}
