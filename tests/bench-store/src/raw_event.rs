//! Documents shaped like the processor's raw events (see pulse-store's `raw_document`):
//! same fields, same BSON types, similar sizes.

use mongodb::bson::{DateTime, Document, doc};

/// Event names and their weights out of 100, as pulse-loadgen's default mix.
const EVENT_MIX: [(&str, u64); 5] =
    [("page_viewed", 60), ("button_clicked", 20), ("login", 10), ("signup", 5), ("purchase", 5)];

const PLANS: [&str; 4] = ["free", "pro", "team", "enterprise"];
const PATHS: [&str; 6] = ["/", "/pricing", "/docs/getting-started", "/blog", "/signup", "/settings"];

/// Distinct users the events spread over, as the processor benchmark's load.
const USERS: u64 = 10_000;

/// Generates the documents of one run: ids unique across runs, received at `now_ms`.
pub struct RawEvents {
    run_id: String,
    now_ms: i64,
}

impl RawEvents {
    pub fn new(run_id: String, now_ms: i64) -> Self {
        RawEvents { run_id, now_ms }
    }

    /// The `index`-th document of the run.
    pub fn document(&self, index: u64) -> Document {
        // A cheap, deterministic scramble so users and revenue do not follow the index.
        let mixed = index.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
        // Times over the minute before `now_ms`, as a backlog's events have (the order of
        // times matters to an index on them).
        let at = DateTime::from_millis(self.now_ms - ((mixed >> 12) % 60_000) as i64);
        let received = DateTime::from_millis(self.now_ms);
        doc! {
            "_id": format!("{}-{index:012}", self.run_id),
            "event": event_name(mixed % 100),
            "distinct_id": format!("user-{:05}", (mixed >> 8) % USERS),
            "ts": at,
            "received_at": received,
            // pulse-loadgen's properties: its plans, paths, revenue range and variants.
            "properties": {
                "plan": PLANS[((mixed >> 40) % PLANS.len() as u64) as usize],
                "path": PATHS[((mixed >> 44) % PATHS.len() as u64) as usize],
                "revenue": ((mixed >> 24) % 20_000) as f64 / 100.0,
                "variant": if (mixed >> 50) & 1 == 0 { "a" } else { "b" },
            },
            "src_p": 0_i64,
            // The stream position key: two zero-padded 20-digit numbers, as StreamPosition::to_key.
            "src": format!("{:020}-{index:020}", self.now_ms),
        }
    }
}

fn event_name(percentile: u64) -> &'static str {
    let mut bound = 0;
    for (name, weight) in EVENT_MIX {
        bound += weight;
        if percentile < bound {
            return name;
        }
    }
    EVENT_MIX[0].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_have_the_raw_event_shape() {
        let events = RawEvents::new("run1".to_string(), 1_700_000_000_000);
        let d = events.document(7);
        assert_eq!(d.get_str("_id").ok(), Some("run1-000000000007"));
        assert!(d.get_datetime("ts").is_ok() && d.get_datetime("received_at").is_ok());
        assert_eq!(d.get_i64("src_p").ok(), Some(0));
        assert_eq!(d.get_str("src").map(str::len).ok(), Some(41));
        let properties = d.get_document("properties").ok();
        assert!(properties.is_some_and(|p| p.get_f64("revenue").is_ok() && p.get_str("plan").is_ok()));
    }

    #[test]
    fn ids_are_unique_within_a_run() {
        let events = RawEvents::new("r".to_string(), 0);
        let ids: std::collections::HashSet<String> =
            (0..1000).filter_map(|i| events.document(i).get_str("_id").ok().map(str::to_string)).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn the_mix_covers_every_event() {
        let names: std::collections::HashSet<&str> = (0..100).map(event_name).collect();
        assert_eq!(names.len(), EVENT_MIX.len());
    }
}
