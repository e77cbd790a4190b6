//! Synthetic product traffic of one UTC hour: sessions of users from a pool (a core of
//! regulars who come back most days, and occasional visitors) over a daily curve, each
//! session sent as ingest requests of up to [`MAX_REQUEST_EVENTS`] events of its user.
//! Deterministic per seed and hour, so a day is the same however the history is split
//! into loader runs.

use pulse_core::buffer::BufferedEvent;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Event names with weights out of 1000: a typical web and mobile product's mix.
const EVENT_MIX: [(&str, u32); 15] = [
    ("page_viewed", 380),
    ("screen_viewed", 120),
    ("button_clicked", 150),
    ("search_performed", 60),
    ("item_viewed", 90),
    ("add_to_cart", 40),
    ("checkout_started", 20),
    ("purchase", 12),
    ("signup", 8),
    ("login", 30),
    ("logout", 10),
    ("share", 15),
    ("video_played", 35),
    ("notification_opened", 20),
    ("settings_changed", 10),
];

/// Relative traffic by UTC hour: quiet at night, busiest in the afternoon.
const HOURLY: [u64; 24] =
    [30, 20, 15, 12, 12, 15, 25, 45, 70, 90, 100, 105, 110, 110, 105, 100, 95, 90, 85, 80, 75, 65, 50, 40];

/// An SDK flushes its queue every this many events (and at the end of a session).
pub const MAX_REQUEST_EVENTS: usize = 10;
/// Sessions last 1 to 15 events (8 on average).
const SESSION_EVENTS: std::ops::RangeInclusive<usize> = 1..=15;
/// Share of sessions (out of 100) from the regulars, the first 30% of the pool.
const REGULAR_SESSIONS: u32 = 70;

const PATHS: [&str; 12] = [
    "/",
    "/pricing",
    "/docs/getting-started",
    "/docs/api/reference",
    "/blog/how-we-count-events",
    "/signup",
    "/settings/profile",
    "/dashboard",
    "/products/analytics",
    "/products/funnels",
    "/checkout",
    "/search",
];
const REFERRERS: [&str; 6] = [
    "",
    "https://www.google.com/",
    "https://news.ycombinator.com/",
    "https://twitter.com/",
    "https://www.bing.com/",
    "https://github.com/",
];
const BROWSERS: [&str; 5] = ["Chrome", "Safari", "Firefox", "Edge", "Samsung Internet"];
const OSES: [&str; 5] = ["Windows", "macOS", "iOS", "Android", "Linux"];
const COUNTRIES: [&str; 12] = ["US", "GB", "DE", "FR", "IN", "BR", "JP", "CA", "AU", "ES", "NL", "SE"];
const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];
const PLANS: [&str; 4] = ["free", "pro", "team", "enterprise"];

/// One ingest request: one user's events, received at `received_at`.
pub struct Request {
    pub received_at: i64,
    pub events: Vec<BufferedEvent>,
}

/// What the generated traffic looks like.
#[derive(Debug, Clone, Copy)]
pub struct Traffic {
    pub seed: u64,
    pub events_per_day: u64,
    /// Users in the pool, `user-000000` upwards (pulse-loadgen's names, so live load
    /// brings returning users too).
    pub users: u64,
}

impl Traffic {
    /// Events of the UTC hour starting at `hour_start` (a multiple of [`HOUR_MS`]).
    pub fn events_in_hour(&self, hour_start: i64) -> u64 {
        let hour = hour_start.rem_euclid(DAY_MS) / HOUR_MS;
        let total: u64 = HOURLY.iter().sum();
        let before: u64 = HOURLY[..hour as usize].iter().sum();
        let upto = before + HOURLY[hour as usize];
        // Cumulative shares, so the hours of a day add up to exactly events_per_day.
        self.events_per_day * upto / total - self.events_per_day * before / total
    }

    /// The requests of the sessions starting in the hour at `hour_start`, by receive time.
    /// Event times never leave the hour's UTC day, so a day is wholly in one loader run.
    pub fn hour(&self, hour_start: i64) -> Vec<Request> {
        let quota = self.events_in_hour(hour_start) as usize;
        let day_end = hour_start - hour_start.rem_euclid(DAY_MS) + DAY_MS;
        let mut rng =
            StdRng::seed_from_u64(self.seed ^ (hour_start as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let id_prefix = format!("h{}", hour_start / HOUR_MS);
        let regulars = (self.users * 3 / 10).max(1);
        let mut requests = Vec::new();
        let mut made = 0usize;
        let mut session = 0u64;
        while made < quota {
            let user = if rng.random_ratio(REGULAR_SESSIONS, 100) {
                rng.random_range(0..regulars)
            } else {
                rng.random_range(0..self.users.max(1))
            };
            let user = format!("user-{user:06}");
            let length = rng.random_range(SESSION_EVENTS).min(quota - made);
            let mut at = hour_start + rng.random_range(0..HOUR_MS);
            let context = Context::pick(&mut rng, &format!("{id_prefix}-s{session}"));
            let mut events = Vec::with_capacity(length);
            for _ in 0..length {
                at = (at + rng.random_range(3_000..90_000)).min(day_end - 1);
                events.push(event(&mut rng, format!("{id_prefix}-{made:07}"), &user, at, &context));
                made += 1;
            }
            for chunk in events.chunks(MAX_REQUEST_EVENTS) {
                let newest = chunk.iter().map(|e| e.timestamp).max().unwrap_or(hour_start);
                // Sent a moment after its last event.
                let received_at = newest + rng.random_range(200..3_000);
                let mut events = chunk.to_vec();
                for e in &mut events {
                    e.received_at = received_at;
                }
                requests.push(Request { received_at, events });
            }
            session += 1;
        }
        requests.sort_by_key(|r| r.received_at);
        requests
    }
}

/// What stays the same through a session.
struct Context {
    session_id: String,
    browser: &'static str,
    os: &'static str,
    country: &'static str,
    device: &'static str,
    plan: &'static str,
    referrer: &'static str,
    screen_width: i64,
    variant: &'static str,
}

impl Context {
    fn pick(rng: &mut StdRng, session_id: &str) -> Context {
        Context {
            session_id: session_id.to_string(),
            browser: pick(rng, &BROWSERS),
            os: pick(rng, &OSES),
            country: pick(rng, &COUNTRIES),
            device: pick(rng, &DEVICES),
            plan: pick(rng, &PLANS),
            referrer: pick(rng, &REFERRERS),
            screen_width: [375, 414, 768, 1280, 1440, 1920][rng.random_range(0..6)],
            variant: if rng.random_bool(0.5) { "a" } else { "b" },
        }
    }
}

fn pick<T: Copy>(rng: &mut StdRng, from: &[T]) -> T {
    from[rng.random_range(0..from.len())]
}

fn event_name(rng: &mut StdRng) -> &'static str {
    let mut roll = rng.random_range(0..1000);
    for (name, weight) in EVENT_MIX {
        if roll < weight {
            return name;
        }
        roll -= weight;
    }
    EVENT_MIX[0].0
}

/// One event with properties of a realistic size (about 300 bytes of JSON); signups and
/// logins carry profile changes, purchases a revenue (a rollup's numeric property).
fn event(rng: &mut StdRng, event_id: String, user: &str, at: i64, context: &Context) -> BufferedEvent {
    let name = event_name(rng);
    let mut properties = Map::new();
    let mut put = |key: &str, value: Value| {
        properties.insert(key.to_string(), value);
    };
    put("path", json!(pick(rng, &PATHS)));
    put("referrer", json!(context.referrer));
    put("browser", json!(context.browser));
    put("os", json!(context.os));
    put("device", json!(context.device));
    put("country", json!(context.country));
    put("plan", json!(context.plan));
    put("session_id", json!(context.session_id));
    put("app_version", json!("3.12.1"));
    put("screen_width", json!(context.screen_width));
    put("variant", json!(context.variant));
    match name {
        "purchase" => {
            put("revenue", json!(f64::from(rng.random_range(99..50_000u32)) / 100.0));
            put("currency", json!("USD"));
            put("item_id", json!(format!("sku-{:05}", rng.random_range(0..5_000))));
        }
        "item_viewed" | "add_to_cart" => {
            put("item_id", json!(format!("sku-{:05}", rng.random_range(0..5_000))));
            put("price", json!(f64::from(rng.random_range(99..20_000u32)) / 100.0));
        }
        "search_performed" => put("query_length", json!(rng.random_range(1..40))),
        "signup" => {
            put("$set", json!({ "plan": context.plan, "country": context.country }));
            put("$set_once", json!({ "signed_up_at": at }));
        }
        "login" => put("$set", json!({ "last_login_at": at, "app_version": "3.12.1" })),
        _ => {}
    }
    BufferedEvent {
        event_id,
        id_generated: false,
        event: name.to_string(),
        distinct_id: user.to_string(),
        timestamp: at,
        received_at: at,
        properties,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const DAY: i64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z

    fn traffic(events_per_day: u64) -> Traffic {
        Traffic { seed: 7, events_per_day, users: 100_000 }
    }

    #[test]
    fn a_day_holds_exactly_its_events() {
        let t = traffic(1_000_000);
        let total: u64 = (0..24).map(|h| t.events_in_hour(DAY + h * HOUR_MS)).sum();
        assert_eq!(total, 1_000_000);
        let hour: usize = t.hour(DAY + 13 * HOUR_MS).iter().map(|r| r.events.len()).sum();
        assert_eq!(hour as u64, t.events_in_hour(DAY + 13 * HOUR_MS));
    }

    #[test]
    fn requests_are_one_users_events_in_order_within_the_day() {
        let requests = traffic(100_000).hour(DAY + 23 * HOUR_MS);
        let mut last = 0;
        for r in &requests {
            assert!(r.received_at >= last, "requests are sorted by receive time");
            last = r.received_at;
            assert!((1..=MAX_REQUEST_EVENTS).contains(&r.events.len()));
            let user = &r.events[0].distinct_id;
            for e in &r.events {
                assert_eq!(&e.distinct_id, user);
                assert!(e.timestamp >= DAY + 23 * HOUR_MS && e.timestamp < DAY + DAY_MS, "{}", e.timestamp);
                assert!(e.timestamp <= e.received_at && e.received_at == r.received_at);
            }
        }
    }

    #[test]
    fn the_traffic_looks_like_a_product() {
        let requests = traffic(200_000).hour(DAY + 14 * HOUR_MS);
        let events: Vec<&BufferedEvent> = requests.iter().flat_map(|r| &r.events).collect();
        let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), events.len(), "event ids are unique");
        let names: HashSet<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(names.len(), EVENT_MIX.len());
        let users: HashSet<&str> = events.iter().map(|e| e.distinct_id.as_str()).collect();
        assert!(users.len() > 500 && users.len() < events.len(), "{} users", users.len());
        let bytes: usize = events.iter().map(|e| Value::Object(e.properties.clone()).to_string().len()).sum();
        let mean = bytes / events.len();
        assert!((200..600).contains(&mean), "properties average {mean} bytes");
        assert!(events.iter().any(|e| pulse_core::profile::updates_profile(e)));
        assert!(events.iter().any(|e| e.properties.contains_key("revenue")));
    }

    #[test]
    fn an_hour_is_the_same_every_time() {
        let ids = |t: &Traffic| -> Vec<String> {
            t.hour(DAY)
                .iter()
                .flat_map(|r| r.events.iter().map(|e| format!("{}{}", e.event_id, e.distinct_id)))
                .collect()
        };
        assert_eq!(ids(&traffic(50_000)), ids(&traffic(50_000)));
    }
}
