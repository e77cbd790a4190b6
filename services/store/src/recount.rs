//! Recounting pre-aggregates from raw events: the check that they are exact, and the
//! rebuild that repairs them or applies a changed definition.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use pulse_core::buffer::BufferedEvent;
use pulse_core::rollup::{
    BucketKey, Contribution, NumericStat, StreamPosition, buckets_of, counts_users, interval_name,
};

use crate::collections::{EVENTS, ROLLUP_USERS, ROLLUPS};
use crate::documents::json_of_bson;
use crate::rollups::BatchRollups;
use crate::{Store, StoreError};

/// A bucket's numbers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BucketTotals {
    pub events: u64,
    /// Unique users, for intervals that count them.
    pub users: Option<u64>,
    pub numeric: BTreeMap<String, NumericStat>,
}

impl BucketTotals {
    /// Equal counts, and numeric stats equal up to floating-point summation order.
    pub fn agrees_with(&self, other: &BucketTotals) -> bool {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
        self.events == other.events
            && self.users == other.users
            && self.numeric.len() == other.numeric.len()
            && self.numeric.iter().all(|(k, a)| {
                other.numeric.get(k).is_some_and(|b| {
                    a.count == b.count && close(a.sum, b.sum) && close(a.min, b.min) && close(a.max, b.max)
                })
            })
    }
}

/// A raw event document as the event it stores.
pub fn event_of_document(d: &Document) -> BufferedEvent {
    let millis = |field: &str| d.get_datetime(field).map(|t| t.timestamp_millis()).unwrap_or(0);
    let properties = match d.get("properties").map(json_of_bson) {
        Some(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    BufferedEvent {
        event_id: d.get_str("_id").unwrap_or_default().to_string(),
        id_generated: d.get_bool("id_generated").unwrap_or(false),
        event: d.get_str("event").unwrap_or_default().to_string(),
        distinct_id: d.get_str("distinct_id").unwrap_or_default().to_string(),
        timestamp: millis("ts"),
        received_at: millis("received_at"),
        properties,
    }
}

impl Store {
    /// Every bucket's numbers computed from the raw events alone.
    pub async fn recount(
        &self,
        rollups: &BatchRollups<'_>,
    ) -> Result<BTreeMap<String, BucketTotals>, StoreError> {
        let (totals, _) = self.recount_with_users(rollups).await?;
        Ok(totals)
    }

    async fn recount_with_users(
        &self,
        rollups: &BatchRollups<'_>,
    ) -> Result<(BTreeMap<String, BucketTotals>, BTreeMap<BucketKey, BTreeSet<String>>), StoreError> {
        let mut contributions: BTreeMap<BucketKey, Contribution> = BTreeMap::new();
        let mut users: BTreeMap<BucketKey, BTreeSet<String>> = BTreeMap::new();
        let mut cursor = self.db.collection::<Document>(EVENTS).find(doc! {}).await?;
        while let Some(d) = cursor.try_next().await? {
            let event = event_of_document(&d);
            for key in buckets_of(&event, rollups.intervals, rollups.tz) {
                if counts_users(key.interval) {
                    users.entry(key.clone()).or_default().insert(event.distinct_id.clone());
                }
                contributions.entry(key).or_default().add(&event, rollups.numeric);
            }
        }
        let totals = contributions
            .into_iter()
            .map(|(key, c)| {
                let unique = users.get(&key).map(|u| u.len() as u64);
                (key.id(), BucketTotals { events: c.events, users: unique, numeric: c.numeric })
            })
            .collect();
        Ok((totals, users))
    }

    /// Every bucket's numbers as the processor maintains them.
    pub async fn stored_rollups(&self) -> Result<BTreeMap<String, BucketTotals>, StoreError> {
        let mut out = BTreeMap::new();
        let mut cursor = self.db.collection::<Document>(ROLLUPS).find(doc! {}).await?;
        while let Some(d) = cursor.try_next().await? {
            let id = d.get_str("_id").unwrap_or_default().to_string();
            let int = |v: Option<&Bson>| match v {
                Some(Bson::Int64(n)) => *n as u64,
                Some(Bson::Int32(n)) => *n as u64,
                Some(Bson::Double(n)) => *n as u64,
                _ => 0,
            };
            let float = |v: Option<&Bson>| match v {
                Some(Bson::Double(n)) => *n,
                Some(Bson::Int64(n)) => *n as f64,
                Some(Bson::Int32(n)) => f64::from(*n),
                _ => 0.0,
            };
            let users = d.contains_key("users").then(|| int(d.get("users")));
            let mut numeric = BTreeMap::new();
            if let Ok(num) = d.get_document("num") {
                for (path, stat) in num {
                    if let Some(s) = stat.as_document() {
                        numeric.insert(
                            path.clone(),
                            NumericStat {
                                sum: float(s.get("sum")),
                                min: float(s.get("min")),
                                max: float(s.get("max")),
                                count: int(s.get("count")),
                            },
                        );
                    }
                }
            }
            out.insert(id, BucketTotals { events: int(d.get("events")), users, numeric });
        }
        Ok(out)
    }

    /// Replaces every pre-aggregate with a recount from raw events. `watermarks` are, per
    /// partition, the last stream position whose events are all stored: the rebuilt buckets
    /// start from there, so the processor continues exactly. Run it while holding every
    /// partition's lease (the processor's `rebuild` command does).
    pub async fn rebuild(
        &self,
        rollups: &BatchRollups<'_>,
        watermarks: &[(u32, StreamPosition, u64)],
    ) -> Result<usize, StoreError> {
        let (totals, users) = self.recount_with_users(rollups).await?;
        for collection in [ROLLUPS, ROLLUP_USERS] {
            self.db.collection::<Document>(collection).delete_many(doc! {}).await?;
        }
        let mut wm = Document::new();
        let mut fence = Document::new();
        for (partition, position, token) in watermarks {
            wm.insert(format!("p{partition}"), position.to_key());
            fence.insert(format!("p{partition}"), *token as i64);
        }
        let mut docs = Vec::new();
        for (key, set) in &users {
            let markers: Vec<Document> = set
                .iter()
                .map(|u| {
                    doc! {
                        "_id": format!("{}|{u}", key.id()),
                        "interval": interval_name(key.interval),
                        "start": key.start,
                        // Not any partition's: never recounted by the processor.
                        "p": -1i64,
                        "src": "",
                    }
                })
                .collect();
            for chunk in markers.chunks(1000) {
                self.db.collection::<Document>(ROLLUP_USERS).insert_many(chunk.to_vec()).await?;
            }
        }
        for (id, t) in &totals {
            let mut parts = id.splitn(3, '|');
            let (interval, start, event) = (parts.next(), parts.next(), parts.next());
            let mut d = doc! {
                "_id": id,
                "event": event.unwrap_or_default(),
                "interval": interval.unwrap_or_default(),
                "start": start.and_then(|s| s.parse::<i64>().ok()).unwrap_or(0),
                "events": t.events as i64,
                "wm": wm.clone(),
                "fence": fence.clone(),
            };
            if let Some(u) = t.users {
                d.insert("users", u as i64);
            }
            let mut num = Document::new();
            for (path, s) in &t.numeric {
                num.insert(path, doc! { "sum": s.sum, "min": s.min, "max": s.max, "count": s.count as i64 });
            }
            if !num.is_empty() {
                d.insert("num", num);
            }
            docs.push(d);
        }
        let written = docs.len();
        for chunk in docs.chunks(1000) {
            self.db.collection::<Document>(ROLLUPS).insert_many(chunk.to_vec()).await?;
        }
        Ok(written)
    }
}
