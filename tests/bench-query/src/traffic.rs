//! Synthetic product traffic: users sign up into an A/B experiment (property `variant`),
//! view pages over the following days, some activate and some purchase (variant B converts
//! a little better), deterministic for a given size.

use pulse_core::buffer::BufferedEvent;
use serde_json::{Map, Value, json};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// xorshift64: fast, deterministic, good enough for traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
}

/// At least `n` events between `from` and `to` (whole users), sorted by time.
pub fn generate(n: usize, from: i64, to: i64) -> Vec<BufferedEvent> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let span = (to - from).max(DAY) as u64;
    let mut events = Vec::with_capacity(n + n / 10);
    // Users until there are enough events (some fall after `to` and are dropped).
    for u in 0.. {
        if events.len() >= n {
            break;
        }
        let user = format!("user-{u}");
        let variant = if u % 2 == 0 { "A" } else { "B" };
        let signup = from + rng.below(span) as i64;
        let mut push = |name: &str, ts: i64, properties: Value| {
            if ts < to {
                let properties: Map<String, Value> = properties.as_object().cloned().unwrap_or_default();
                events.push(BufferedEvent {
                    event_id: format!("{user}-{}", events.len()),
                    id_generated: false,
                    event: name.to_string(),
                    distinct_id: user.clone(),
                    timestamp: ts,
                    received_at: ts,
                    properties,
                });
            }
        };
        push("signup", signup, json!({ "variant": variant, "plan": "free" }));
        for _ in 0..(5 + rng.below(21)) {
            let ts = signup + rng.below(14 * DAY as u64) as i64;
            push("page_viewed", ts, json!({ "path": format!("/p/{}", rng.below(40)) }));
        }
        if rng.chance(0.6) {
            let activated = signup + rng.below(2 * DAY as u64) as i64;
            push("activated", activated, json!({}));
            let p = if variant == "A" { 0.30 } else { 0.36 };
            if rng.chance(p) {
                let ts = activated + rng.below(5 * DAY as u64) as i64;
                push("purchase", ts, json!({ "revenue": (rng.below(20_000) as f64) / 100.0 }));
            }
        }
    }
    events.sort_by_key(|e| e.timestamp);
    events
}
