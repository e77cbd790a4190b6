//! When each request is due, so the offered load is the target rate whatever the server does.
//!
//! Request `k` (numbered from 0 over the whole run, warmup included) is due at
//! `k * batch_size / rate` seconds after the start. Latency is measured from that due time,
//! not from when a worker got round to sending it, so a slow server shows up as latency
//! instead of as fewer requests (no coordinated omission).

use std::time::Duration;

/// The send schedule of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Every worker sends its next request as soon as the previous one is answered.
    FlatOut,
    /// Requests are due at a fixed rate.
    Paced {
        /// Target events per second, above 0.
        events_per_second: u64,
        /// Events per request, above 0.
        batch_size: u64,
    },
}

impl Schedule {
    /// The schedule for `--rate` (0 is flat out) and `--batch-size`.
    pub fn new(events_per_second: u64, batch_size: usize) -> Schedule {
        match (events_per_second, batch_size as u64) {
            (0, _) | (_, 0) => Schedule::FlatOut,
            (events_per_second, batch_size) => Schedule::Paced { events_per_second, batch_size },
        }
    }

    /// When request `k` is due, from the start of the run; `None` when flat out.
    pub fn due(&self, k: u64) -> Option<Duration> {
        match *self {
            Schedule::FlatOut => None,
            Schedule::Paced { events_per_second, batch_size } => {
                // In nanoseconds with 128-bit arithmetic: exact, so no drift over a long run.
                let nanos =
                    u128::from(k) * u128::from(batch_size) * 1_000_000_000 / u128::from(events_per_second);
                Some(Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
            }
        }
    }

    /// Requests due in `[from, to)`; `None` when flat out.
    pub fn due_between(&self, from: Duration, to: Duration) -> Option<u64> {
        Some(self.first_due_at_or_after(to)? - self.first_due_at_or_after(from)?)
    }

    /// Requests per second; `None` when flat out.
    pub fn requests_per_second(&self) -> Option<f64> {
        match *self {
            Schedule::FlatOut => None,
            Schedule::Paced { events_per_second, batch_size } => {
                Some(events_per_second as f64 / batch_size as f64)
            }
        }
    }

    /// The smallest `k` with `due(k) >= t`.
    fn first_due_at_or_after(&self, t: Duration) -> Option<u64> {
        match *self {
            Schedule::FlatOut => None,
            Schedule::Paced { events_per_second, batch_size } => {
                // k * batch * 1e9 >= t_ns * rate  <=>  k >= ceil(t_ns * rate / (batch * 1e9))
                let numerator = t.as_nanos() * u128::from(events_per_second);
                let denominator = u128::from(batch_size) * 1_000_000_000;
                Some(u64::try_from(numerator.div_ceil(denominator)).unwrap_or(u64::MAX))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_rate_is_flat_out() {
        let s = Schedule::new(0, 500);
        assert_eq!(s, Schedule::FlatOut);
        assert_eq!(s.due(10), None);
        assert_eq!(s.due_between(Duration::ZERO, Duration::from_secs(1)), None);
    }

    #[test]
    fn requests_are_spaced_by_batch_over_rate() {
        // 100 000 events/s in batches of 500: 200 requests/s, one every 5 ms.
        let s = Schedule::new(100_000, 500);
        assert_eq!(s.due(0), Some(Duration::ZERO));
        assert_eq!(s.due(1), Some(Duration::from_millis(5)));
        assert_eq!(s.due(200), Some(Duration::from_secs(1)));
        assert_eq!(s.requests_per_second(), Some(200.0));
    }

    #[test]
    fn due_times_do_not_drift_when_the_interval_is_not_whole() {
        // 3 requests/s: intervals of 333 333 333.3 ns must still land on whole seconds.
        let s = Schedule::new(3, 1);
        assert_eq!(s.due(3), Some(Duration::from_secs(1)));
        assert_eq!(s.due(3_000_000), Some(Duration::from_secs(1_000_000)));
        assert_eq!(s.due(1), Some(Duration::from_nanos(333_333_333)));
    }

    #[test]
    fn a_rate_below_one_batch_per_second_still_paces() {
        let s = Schedule::new(250, 500);
        assert_eq!(s.due(1), Some(Duration::from_secs(2)));
    }

    #[test]
    fn counts_the_requests_due_in_a_window() {
        let s = Schedule::new(100_000, 500);
        // Warmup 1 s then 10 s measured: requests 200..2200 are measured.
        assert_eq!(s.due_between(Duration::from_secs(1), Duration::from_secs(11)), Some(2000));
        assert_eq!(s.due_between(Duration::ZERO, Duration::from_millis(5)), Some(1));
        assert_eq!(s.due_between(Duration::ZERO, Duration::from_nanos(5_000_001)), Some(2));
        let odd = Schedule::new(3, 1);
        assert_eq!(odd.due_between(Duration::ZERO, Duration::from_secs(1)), Some(3));
    }
}
