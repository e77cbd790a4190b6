//! What one request came to, and the tally of many.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hyper::StatusCode;
use serde_json::Value;

/// Distinct error messages kept per worker; the rest are counted under the last one.
const MAX_MESSAGES: usize = 16;
/// Longest error text kept from a response body.
const MAX_SNIPPET: usize = 200;

/// The result of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 202 with a readable answer.
    Accepted { accepted: u64, rejected: u64, first_error: Option<String> },
    /// 429 or 503.
    Backpressure(StatusCode),
    /// Any other status, or a 202 whose body could not be read.
    HttpError { status: StatusCode, message: String },
    /// No HTTP answer: connection refused or reset, timeout.
    Transport(String),
}

impl Outcome {
    /// Classifies an HTTP answer.
    pub fn of_response(status: StatusCode, body: &[u8]) -> Outcome {
        match status {
            // 202 from /v1/batch; 200 from the compat endpoints, as their SDKs expect.
            StatusCode::ACCEPTED | StatusCode::OK => match serde_json::from_slice::<Value>(body) {
                Ok(answer) => match answer.get("accepted").and_then(Value::as_u64) {
                    Some(accepted) => Outcome::Accepted {
                        accepted,
                        rejected: answer.get("rejected").and_then(Value::as_u64).unwrap_or(0),
                        first_error: answer
                            .get("errors")
                            .and_then(Value::as_array)
                            .and_then(|errors| errors.first())
                            .map(|e| snippet(e.to_string().as_bytes())),
                    },
                    None => Outcome::HttpError {
                        status,
                        message: format!("no accepted count in {}", snippet(body)),
                    },
                },
                Err(e) => Outcome::HttpError {
                    status,
                    message: format!("body is not JSON ({e}): {}", snippet(body)),
                },
            },
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Outcome::Backpressure(status),
            _ => Outcome::HttpError { status, message: snippet(body) },
        }
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX_SNIPPET) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// Counts and latencies of the measured requests.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Requests answered 202.
    pub ok: u64,
    /// 429 and 503 answers.
    pub backpressure: BTreeMap<u16, u64>,
    /// Other answers by status, with the first message of each.
    pub http_errors: BTreeMap<u16, (u64, String)>,
    /// Requests without an answer, by message.
    pub transport_errors: BTreeMap<String, u64>,
    /// Events the server accepted and rejected.
    pub accepted: u64,
    pub rejected: u64,
    /// The first rejection reason seen.
    pub first_rejection: Option<String>,
    /// Latency of every answered request (any status), microseconds.
    pub latency_us: Histogram<u64>,
    /// When the last measured request was answered.
    pub last_done: Option<Instant>,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            ok: 0,
            backpressure: BTreeMap::new(),
            http_errors: BTreeMap::new(),
            transport_errors: BTreeMap::new(),
            accepted: 0,
            rejected: 0,
            first_rejection: None,
            // 1 us to 1 h at 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid"),
            last_done: None,
        }
    }

    /// Counts one request sent at `sent` (its due time when paced) and finished at `done`.
    pub fn record(&mut self, outcome: Outcome, sent: Instant, done: Instant) {
        if !matches!(outcome, Outcome::Transport(_)) {
            let micros = done.saturating_duration_since(sent).as_micros();
            self.latency_us.saturating_record(u64::try_from(micros).unwrap_or(u64::MAX).max(1));
        }
        self.last_done = self.last_done.max(Some(done));
        match outcome {
            Outcome::Accepted { accepted, rejected, first_error } => {
                self.ok += 1;
                self.accepted += accepted;
                self.rejected += rejected;
                if self.first_rejection.is_none() {
                    self.first_rejection = first_error;
                }
            }
            Outcome::Backpressure(status) => *self.backpressure.entry(status.as_u16()).or_default() += 1,
            Outcome::HttpError { status, message } => {
                self.http_errors.entry(status.as_u16()).or_insert((0, message)).0 += 1;
            }
            Outcome::Transport(message) => {
                let key = if self.transport_errors.len() < MAX_MESSAGES
                    || self.transport_errors.contains_key(&message)
                {
                    message
                } else {
                    "other transport errors".to_string()
                };
                *self.transport_errors.entry(key).or_default() += 1;
            }
        }
    }

    /// Adds another worker's tally.
    pub fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.first_rejection = self.first_rejection.take().or(other.first_rejection);
        for (status, n) in other.backpressure {
            *self.backpressure.entry(status).or_default() += n;
        }
        for (status, (n, message)) in other.http_errors {
            self.http_errors.entry(status).or_insert((0, message)).0 += n;
        }
        for (message, n) in other.transport_errors {
            *self.transport_errors.entry(message).or_default() += n;
        }
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        self.last_done = self.last_done.max(other.last_done);
    }

    /// Requests counted, of any outcome.
    pub fn requests(&self) -> u64 {
        self.ok + self.backpressured() + self.errors()
    }

    /// 429 and 503 answers.
    pub fn backpressured(&self) -> u64 {
        self.backpressure.values().sum()
    }

    /// Other statuses and transport errors.
    pub fn errors(&self) -> u64 {
        self.http_errors.values().map(|(n, _)| n).sum::<u64>() + self.transport_errors.values().sum::<u64>()
    }

    /// Latency at quantile `q`.
    pub fn latency(&self, q: f64) -> Duration {
        Duration::from_micros(self.latency_us.value_at_quantile(q))
    }

    /// Highest latency.
    pub fn max_latency(&self) -> Duration {
        Duration::from_micros(self.latency_us.max())
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_202_counts_accepted_and_rejected_events() {
        let body =
            br#"{"accepted": 498, "rejected": 2, "errors": [{"index": 7, "error": "timestamp too old"}]}"#;
        match Outcome::of_response(StatusCode::ACCEPTED, body) {
            Outcome::Accepted { accepted: 498, rejected: 2, first_error: Some(error) } => {
                assert!(error.contains("timestamp too old"), "{error}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(
            Outcome::of_response(StatusCode::TOO_MANY_REQUESTS, b""),
            Outcome::Backpressure(StatusCode::TOO_MANY_REQUESTS)
        );
        assert_eq!(
            Outcome::of_response(StatusCode::SERVICE_UNAVAILABLE, b"{}"),
            Outcome::Backpressure(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(
            Outcome::of_response(StatusCode::UNAUTHORIZED, b" bad key \n"),
            Outcome::HttpError { status: StatusCode::UNAUTHORIZED, message: "bad key".to_string() }
        );
        // A 202 we cannot read is an error, not a success with 0 events.
        assert!(matches!(
            Outcome::of_response(StatusCode::ACCEPTED, b"ok"),
            Outcome::HttpError { status: StatusCode::ACCEPTED, .. }
        ));
        assert!(matches!(
            Outcome::of_response(StatusCode::ACCEPTED, b"{}"),
            Outcome::HttpError { status: StatusCode::ACCEPTED, .. }
        ));
    }

    #[test]
    fn long_error_bodies_are_cut() {
        let body = "x".repeat(1000);
        match Outcome::of_response(StatusCode::BAD_REQUEST, body.as_bytes()) {
            Outcome::HttpError { message, .. } => assert_eq!(message.len(), MAX_SNIPPET + 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tallies_merge() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut a = Tally::new();
        a.record(Outcome::Accepted { accepted: 500, rejected: 0, first_error: None }, t0, ms(2));
        a.record(Outcome::Backpressure(StatusCode::TOO_MANY_REQUESTS), t0, ms(1));
        let mut b = Tally::new();
        b.record(Outcome::Accepted { accepted: 499, rejected: 1, first_error: Some("e".into()) }, t0, ms(10));
        b.record(Outcome::HttpError { status: StatusCode::BAD_REQUEST, message: "m".into() }, t0, ms(3));
        b.record(Outcome::Transport("connection refused".into()), t0, ms(4));
        a.merge(b);
        assert_eq!((a.ok, a.accepted, a.rejected, a.backpressured(), a.errors()), (2, 999, 1, 1, 2));
        assert_eq!(a.requests(), 5);
        assert_eq!(a.first_rejection.as_deref(), Some("e"));
        assert_eq!(a.http_errors[&400], (1, "m".to_string()));
        // Transport errors have no latency: 4 answered requests recorded.
        assert_eq!(a.latency_us.len(), 4);
        assert!(a.max_latency() >= Duration::from_millis(10) && a.max_latency() < Duration::from_millis(11));
        assert_eq!(a.last_done, Some(ms(10)));
    }
}
