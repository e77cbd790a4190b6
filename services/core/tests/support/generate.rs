//! Generators of small, nasty event sets and definitions: few event names and timestamps
//! on a coarse grid (so ties and window boundaries are common), repeated event ids, steps
//! that share an event name, filters that split one name.

use proptest::prelude::*;
use pulse_core::analytics::AnalyticsEvent;
use pulse_core::funnel::{FunnelDefinition, FunnelOrder};
use serde_json::json;

pub const SECOND: i64 = 1_000;

/// One generated event before it gets its user and id.
fn event() -> impl Strategy<Value = (usize, i64, u8, Option<&'static str>, bool)> {
    (0usize..4, 0i64..12, 0u8..3, prop::option::of(prop::sample::select(vec!["p", "q"])), any::<bool>())
}

/// Events of up to `users` users, up to `per_user` each; now and then an event repeats an
/// earlier id (a redelivery), sometimes with a different time (which must be ignored).
pub fn events(users: usize, per_user: usize) -> impl Strategy<Value = Vec<AnalyticsEvent>> {
    prop::collection::vec(prop::collection::vec(event(), 0..=per_user), 1..=users).prop_map(|users| {
        let mut out = Vec::new();
        for (u, list) in users.into_iter().enumerate() {
            for (i, (name, secs, v, d, repeat)) in list.into_iter().enumerate() {
                let mut props = json!({ "v": v });
                if let Some(d) = d {
                    props["d"] = json!(d);
                }
                let id = if repeat && i > 0 { format!("u{u}-e{}", i - 1) } else { format!("u{u}-e{i}") };
                out.push(AnalyticsEvent {
                    event_id: id,
                    event: ["a", "b", "c", "x"][name].to_string(),
                    distinct_id: format!("u{u}"),
                    timestamp: secs * SECOND,
                    properties: props,
                });
            }
        }
        out
    })
}

/// Funnel definitions over the names a, b, c (steps may repeat a name), in each order
/// mode, with exclusions, holdConstant on `d` and breakdown by `d` now and then.
pub fn definitions() -> impl Strategy<Value = FunnelDefinition> {
    let step = (0usize..3, prop::option::of(0u8..3));
    (
        prop::collection::vec(step, 2..=4),
        1u32..6,
        prop::sample::select(vec![FunnelOrder::Ordered, FunnelOrder::Strict, FunnelOrder::Unordered]),
        prop::collection::vec((any::<bool>(), prop::option::of(0u8..3), 0u32..3, 1u32..3), 0..=2),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(steps, window, order, exclusions, hold, breakdown)| {
            let n = steps.len() as u32;
            let steps: Vec<_> = steps
                .into_iter()
                .map(|(name, v)| {
                    let filters: Vec<_> =
                        v.map(|v| json!({ "property": "v", "op": "gte", "value": v.to_string() })).into_iter().collect();
                    let event = ["a", "b", "c"][name];
                    json!({ "event": event, "filters": filters })
                })
                .collect();
            let exclusions: Vec<_> = if order == FunnelOrder::Unordered {
                Vec::new()
            } else {
                exclusions
                    .into_iter()
                    .map(|(x, v, from, len)| {
                        let from = 1 + from.min(n - 2);
                        let to = (from + len).min(n);
                        let filters: Vec<_> =
                            v.map(|v| json!({ "property": "v", "value": v.to_string() })).into_iter().collect();
                        json!({ "event": if x { "x" } else { "b" }, "filters": filters, "fromStep": from, "toStep": to })
                    })
                    .collect()
            };
            let mut def = json!({
                "steps": steps,
                "window": format!("{window}s"),
                "order": order,
                "exclusions": exclusions,
            });
            if hold {
                def["holdConstant"] = json!(["d"]);
            }
            if breakdown {
                def["breakdown"] = json!("d");
            }
            serde_json::from_value(def).expect("generated definitions are well-formed")
        })
}
