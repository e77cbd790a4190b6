//! Synthetic but realistic product traffic: visitors who read the pricing page, sign up,
//! verify their email, create and share projects, come back on later days, and buy through
//! a checkout whose new flow (experiment `checkout_v2`, variant `new_flow`) converts better
//! than `control`. Seeded, so two runs send the same users (with fresh event ids).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;
/// How far back the first visits go.
pub const DAYS: i64 = 14;

/// The checkout experiment's variants and the chance that a started checkout is paid.
pub const VARIANTS: [(&str, f64); 2] = [("control", 0.40), ("new_flow", 0.60)];

/// The events of `users` users, each with a timestamp before `now` (epoch ms).
pub fn generate(users: usize, now: i64, run: &str) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut events = Vec::new();
    for n in 0..users {
        User::new(n, now, &mut rng).events(&mut rng, &mut events);
    }
    events.retain(|e| e["timestamp"].as_i64().is_some_and(|t| t < now - MINUTE));
    for (i, e) in events.iter_mut().enumerate() {
        e["event_id"] = json!(format!("demo-{run}-{i}"));
    }
    events
}

struct User {
    index: usize,
    id: String,
    device: String,
    first_seen: i64,
    now: i64,
}

impl User {
    fn new(n: usize, now: i64, rng: &mut StdRng) -> User {
        // More new users on recent days: a product that is growing.
        let day = DAYS - 1 - ((rng.random::<f64>().powf(0.8) * DAYS as f64) as i64).min(DAYS - 1);
        let first_seen = now - (day + 1) * DAY + rng.random_range(0..DAY);
        User { index: n, id: format!("user-{n:05}"), device: format!("device-{}", n % 4096), first_seen, now }
    }

    fn event(&self, name: &str, at: i64, properties: Value) -> Value {
        json!({ "event": name, "distinct_id": self.id, "timestamp": at, "properties": properties })
    }

    fn events(&self, rng: &mut StdRng, out: &mut Vec<Value>) {
        let t0 = self.first_seen;
        let path = ["/pricing", "/pricing", "/pricing", "/", "/docs", "/blog/launch"][rng.random_range(0..6)];
        let referrer = ["google", "twitter", "newsletter", "direct"][rng.random_range(0..4)];
        out.push(self.event("page_viewed", t0, json!({ "path": path, "referrer": referrer })));
        let signs_up = if path == "/pricing" { 0.52 } else { 0.18 };
        if !rng.random_bool(signs_up) {
            return;
        }
        let signed_up = t0 + rng.random_range(MINUTE..40 * MINUTE);
        let plan = if rng.random_bool(0.3) { "pro" } else { "free" };
        out.push(self.event("signed_up", signed_up, json!({ "plan": plan, "referrer": referrer })));
        if rng.random_bool(0.74) {
            // Most verify within hours; a few after the funnel's one-day window.
            let after =
                if rng.random_bool(0.92) { rng.random_range(2 * MINUTE..20 * HOUR) } else { 30 * HOUR };
            out.push(self.event("email_verified", signed_up + after, json!({})));
        }
        self.activation(rng, signed_up, out);
        self.sessions(rng, signed_up, out);
        self.checkout(rng, signed_up, out);
    }

    fn activation(&self, rng: &mut StdRng, signed_up: i64, out: &mut Vec<Value>) {
        if !rng.random_bool(0.8) {
            return;
        }
        let created = signed_up + rng.random_range(MINUTE..2 * HOUR);
        let device = json!({ "device_id": self.device });
        out.push(self.event("project_created", created, device.clone()));
        if !rng.random_bool(0.62) {
            return;
        }
        let channel = ["email", "link", "link", "slack"][rng.random_range(0..4)];
        let shared = created + rng.random_range(5 * MINUTE..DAY);
        out.push(self.event(
            "project_shared",
            shared,
            json!({ "device_id": self.device, "channel": channel }),
        ));
        if rng.random_bool(0.75) {
            out.push(self.event("project_opened", shared + rng.random_range(HOUR..5 * DAY), device));
        }
    }

    /// A session on the signup day, then on later days with a decaying chance: the
    /// retention curve.
    fn sessions(&self, rng: &mut StdRng, signed_up: i64, out: &mut Vec<Value>) {
        let platform = if rng.random_bool(0.7) { "web" } else { "ios" };
        out.push(self.event("session_started", signed_up + MINUTE, json!({ "platform": platform })));
        let mut chance: f64 = 0.62;
        for day in 1..DAYS {
            let at = signed_up + day * DAY + rng.random_range(-3 * HOUR..3 * HOUR);
            if at >= self.now {
                break;
            }
            if rng.random_bool(chance) {
                out.push(self.event("session_started", at, json!({ "platform": platform })));
            }
            chance = (chance * 0.86).max(0.12);
        }
    }

    fn checkout(&self, rng: &mut StdRng, signed_up: i64, out: &mut Vec<Value>) {
        // Half the users each, as an experiment assigns them.
        let (variant, pays) = VARIANTS[self.index % VARIANTS.len()];
        let experiment = json!({ "checkout_v2": variant });
        if !rng.random_bool(0.66) {
            return;
        }
        let viewed = signed_up + rng.random_range(10 * MINUTE..2 * DAY);
        let items = rng.random_range(1..6);
        out.push(self.event(
            "cart_viewed",
            viewed,
            json!({ "experiments": experiment, "cart": { "items": items } }),
        ));
        if !rng.random_bool(0.6) {
            return;
        }
        let started = viewed + rng.random_range(MINUTE..20 * MINUTE);
        out.push(self.event("checkout_started", started, json!({ "experiments": experiment })));
        if rng.random_bool(0.05) {
            // Emptied the cart: excluded from the funnel even if they pay later.
            out.push(self.event("cart_emptied", started + MINUTE, json!({ "experiments": experiment })));
        }
        if rng.random_bool(pays) {
            let total = (items as f64 * rng.random_range(9.0..60.0) * 100.0).round() / 100.0;
            out.push(self.event(
                "order_paid",
                started + rng.random_range(2 * MINUTE..90 * MINUTE),
                json!({ "experiments": experiment, "total": total, "revenue": total }),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_in_the_past_with_unique_ids_and_both_variants() {
        let now = 1_800_000_000_000;
        let events = generate(500, now, "t");
        assert!(events.iter().all(|e| e["timestamp"].as_i64().is_some_and(|t| t < now)));
        let ids: std::collections::HashSet<_> = events.iter().map(|e| e["event_id"].to_string()).collect();
        assert_eq!(ids.len(), events.len());
        for (variant, _) in VARIANTS {
            assert!(events.iter().any(|e| e["properties"]["experiments"]["checkout_v2"] == variant));
        }
        assert_eq!(generate(500, now, "t"), events, "seeded: the same traffic every run");
    }

    #[test]
    fn the_new_checkout_flow_converts_better_in_the_generated_traffic() {
        use std::collections::{HashMap, HashSet};
        let events = generate(3000, 1_800_000_000_000, "t");
        let mut viewed: HashMap<&str, HashSet<&str>> = HashMap::new();
        let mut paid: HashMap<&str, HashSet<&str>> = HashMap::new();
        for e in &events {
            let variant = e["properties"]["experiments"]["checkout_v2"].as_str().unwrap_or_default();
            let user = e["distinct_id"].as_str().unwrap_or_default();
            match e["event"].as_str() {
                Some("cart_viewed") => viewed.entry(variant).or_default().insert(user),
                Some("order_paid") => paid.entry(variant).or_default().insert(user),
                _ => false,
            };
        }
        let rate = |v: &str| paid[v].len() as f64 / viewed[v].len() as f64;
        assert!(rate("new_flow") > rate("control") + 0.05);
    }
}
