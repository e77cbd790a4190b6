//! Batch bodies, built once before the run.
//!
//! Each template is a complete `{"batch": [...]}` body whose event ids read
//! `<run>-<request>-<index>`, with `<request>` a fixed-width decimal field. Sending a request
//! copies a template and overwrites that field with the request's number, so ids never
//! repeat within a run (the request number is unique) and no JSON is built on the hot path.

use std::io::Write;

use bytes::{Bytes, BytesMut};
use rand::Rng;
use serde_json::json;

use crate::format::WireFormat;
use crate::mix::EventMix;

/// Digits of the request number in every event id.
pub const REQUEST_DIGITS: usize = 10;

/// What the events of a run look like.
#[derive(Debug, Clone)]
pub struct EventShape {
    /// Prefix of every event id, unique per run.
    pub run_id: String,
    /// Event names by weight.
    pub mix: EventMix,
    /// Distinct users; ids are `user-000000` upwards.
    pub users: u64,
    /// The SDK's send time, epoch milliseconds.
    pub now_ms: i64,
    /// Timestamps fall in the `spread_ms` before `spread_end_ms` (the minute before
    /// `now_ms` by default; a backfill spreads them over past days).
    pub spread_ms: i64,
    pub spread_end_ms: i64,
    /// The API the bodies are for.
    pub format: WireFormat,
    /// The write key, for formats that carry it in the body (PostHog's `api_key`).
    pub api_key: String,
}

/// One precomputed batch body with the places of its request-number fields.
#[derive(Debug, Clone)]
pub struct BatchTemplate {
    json: Vec<u8>,
    request_fields: Vec<usize>,
}

impl BatchTemplate {
    /// A body of `events` random events of `shape`.
    pub fn build<R: Rng + ?Sized>(shape: &EventShape, events: usize, rng: &mut R) -> BatchTemplate {
        let mut json = Vec::with_capacity(events * 220 + 16);
        let mut request_fields = Vec::with_capacity(events);
        shape.format.open(&mut json, &shape.api_key);
        for i in 0..events {
            if i > 0 {
                json.push(b',');
            }
            json.extend_from_slice(shape.format.event_start());
            json.extend_from_slice(shape.run_id.as_bytes());
            json.push(b'-');
            request_fields.push(json.len());
            json.extend_from_slice(&[b'0'; REQUEST_DIGITS]);
            let event = serde_json::Value::from(shape.mix.pick(rng));
            let user = rng.random_range(0..shape.users.max(1));
            let timestamp = shape.spread_end_ms - rng.random_range(0..shape.spread_ms.max(1));
            // Writing into a Vec cannot fail.
            let _ = write!(json, "-{i:04}");
            let user = format!("user-{user:06}");
            shape.format.event_rest(&mut json, &event, &user, timestamp, properties(rng));
        }
        shape.format.close(&mut json, shape.now_ms);
        BatchTemplate { json, request_fields }
    }

    /// The body with every request-number field at zero.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// Byte offsets of the request-number fields, in order.
    pub fn request_fields(&self) -> &[usize] {
        &self.request_fields
    }

    /// Events in the body.
    pub fn events(&self) -> usize {
        self.request_fields.len()
    }

    /// The body of request number `request`.
    pub fn body(&self, request: u64) -> Bytes {
        let digits = request_digits(request);
        let mut body = BytesMut::from(&self.json[..]);
        for &at in &self.request_fields {
            body[at..at + REQUEST_DIGITS].copy_from_slice(&digits);
        }
        body.freeze()
    }
}

/// `request` as fixed-width decimal; wraps past 10^10 requests, far beyond any run.
pub fn request_digits(mut request: u64) -> [u8; REQUEST_DIGITS] {
    let mut digits = [b'0'; REQUEST_DIGITS];
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (request % 10) as u8;
        request /= 10;
    }
    digits
}

/// Typical product-analytics properties, about 60-90 bytes of JSON.
fn properties<R: Rng + ?Sized>(rng: &mut R) -> serde_json::Value {
    const PLANS: [&str; 4] = ["free", "pro", "team", "enterprise"];
    const PATHS: [&str; 6] = ["/", "/pricing", "/docs/getting-started", "/blog", "/signup", "/settings"];
    let revenue = f64::from(rng.random_range(0..20_000u32)) / 100.0;
    json!({
        "plan": PLANS[rng.random_range(0..PLANS.len())],
        "path": PATHS[rng.random_range(0..PATHS.len())],
        "revenue": revenue,
        "variant": if rng.random_bool(0.5) { "a" } else { "b" },
    })
}

/// A fixed shape for tests.
#[cfg(test)]
pub(crate) fn sample_shape() -> EventShape {
    EventShape {
        run_id: "r1a2b3c4d5e6".to_string(),
        mix: "signup:1,page_viewed:8,purchase:1".parse().expect("valid mix"),
        users: 100,
        now_ms: 1_750_000_000_000,
        spread_ms: 60_000,
        spread_end_ms: 1_750_000_000_000,
        format: WireFormat::Native,
        api_key: "k1".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use serde_json::Value;

    use super::*;

    fn shape() -> EventShape {
        sample_shape()
    }

    fn events_of(body: &[u8]) -> Vec<Value> {
        let doc: Value = serde_json::from_slice(body).expect("valid JSON");
        doc["batch"].as_array().expect("batch array").clone()
    }

    #[test]
    fn a_body_is_a_batch_of_well_formed_events() {
        let template = BatchTemplate::build(&shape(), 50, &mut StdRng::seed_from_u64(1));
        let events = events_of(&template.body(42));
        assert_eq!(events.len(), 50);
        assert_eq!(template.events(), 50);
        for event in &events {
            let name = event["event"].as_str().expect("event name");
            assert!(["signup", "page_viewed", "purchase"].contains(&name), "{name}");
            let user = event["distinct_id"].as_str().expect("distinct_id");
            let n: u64 = user.strip_prefix("user-").expect("user- prefix").parse().expect("number");
            assert!(n < 100);
            let ts = event["timestamp"].as_i64().expect("integer timestamp");
            assert!((1_750_000_000_000 - 60_000..=1_750_000_000_000).contains(&ts));
            assert!(event["properties"].is_object());
        }
    }

    #[test]
    fn events_are_about_200_bytes() {
        let template = BatchTemplate::build(&shape(), 500, &mut StdRng::seed_from_u64(2));
        let per_event = template.json().len() / 500;
        assert!((170..=230).contains(&per_event), "{per_event} bytes per event");
    }

    #[test]
    fn ids_are_unique_within_and_across_requests() {
        let mut rng = StdRng::seed_from_u64(3);
        let pool: Vec<_> = (0..3).map(|_| BatchTemplate::build(&shape(), 20, &mut rng)).collect();
        let mut ids = HashSet::new();
        // Cycling the pool: request n uses template n % 3, as the run does.
        for request in 0..30u64 {
            let body = pool[(request % 3) as usize].body(request);
            for event in events_of(&body) {
                let id = event["event_id"].as_str().expect("event_id").to_string();
                assert!(id.starts_with("r1a2b3c4d5e6-"), "{id}");
                assert!(ids.insert(id.clone()), "duplicate id {id}");
            }
        }
        assert_eq!(ids.len(), 30 * 20);
    }

    #[test]
    fn the_request_number_lands_in_every_id() {
        let template = BatchTemplate::build(&shape(), 3, &mut StdRng::seed_from_u64(4));
        let ids: Vec<String> = events_of(&template.body(1_234_567))
            .iter()
            .map(|e| e["event_id"].as_str().expect("event_id").to_string())
            .collect();
        assert_eq!(
            ids,
            ["r1a2b3c4d5e6-0001234567-0000", "r1a2b3c4d5e6-0001234567-0001", "r1a2b3c4d5e6-0001234567-0002"]
        );
    }

    #[test]
    fn request_digits_are_fixed_width() {
        assert_eq!(&request_digits(0), b"0000000000");
        assert_eq!(&request_digits(9_876_543_210), b"9876543210");
        assert_eq!(&request_digits(12), b"0000000012");
    }

    #[test]
    fn a_backfill_spreads_timestamps_over_the_span() {
        const DAY: i64 = 86_400_000;
        let end = 1_750_000_000_000 - 3 * DAY;
        let shape = EventShape { spread_ms: 10 * DAY, spread_end_ms: end, ..shape() };
        let template = BatchTemplate::build(&shape, 500, &mut StdRng::seed_from_u64(3));
        let times: Vec<i64> = events_of(&template.body(1))
            .iter()
            .map(|e| e["timestamp"].as_i64().expect("integer timestamp"))
            .collect();
        assert!(times.iter().all(|t| (end - 10 * DAY..=end).contains(t)));
        let span = times.iter().max().unwrap_or(&0) - times.iter().min().unwrap_or(&0);
        assert!(span > 8 * DAY, "spread over {span} ms");
    }
}
