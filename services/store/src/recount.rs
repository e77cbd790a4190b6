//! Recounting pre-aggregates from raw events: the check that they are exact, and the
//! rebuild that repairs them or applies a changed definition.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use pulse_core::buffer::BufferedEvent;
use pulse_core::rollup::{
    BucketKey, Contribution, NumericStat, PeriodKey, StreamPosition, buckets_of, counts_users, decode_key,
    encode_key, interval_name,
};

use crate::collections::LEGACY;
use crate::documents::json_of_bson;
use crate::log::ROLLUP_LOG;
use crate::rollups::BatchRollups;
use crate::rollups::{BUCKET_USERS_PREFIX, DayUsers, bucket_users_collection, user_lists};
use crate::{Store, StoreError, UserKey};

/// A bucket's numbers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BucketTotals {
    pub events: u64,
    /// Unique users, for intervals that count them.
    pub users: Option<u64>,
    pub numeric: BTreeMap<String, NumericStat>,
}

impl BucketTotals {
    /// Adds another partition's share of the same bucket.
    pub fn merge(&mut self, other: &BucketTotals) {
        self.events += other.events;
        self.users = match (self.users, other.users) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        for (path, stat) in &other.numeric {
            self.numeric
                .entry(path.clone())
                .and_modify(|s| {
                    s.sum += stat.sum;
                    s.count += stat.count;
                    s.min = s.min.min(stat.min);
                    s.max = s.max.max(stat.max);
                })
                .or_insert(*stat);
        }
    }

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
        let shares = self.recount_shares(rollups).await?;
        let mut totals: BTreeMap<String, BucketTotals> = BTreeMap::new();
        for ((key, _), share) in shares {
            totals.entry(key.id()).and_modify(|t| t.merge(&share)).or_insert(share);
        }
        Ok(totals)
    }

    /// Each partition's share of each bucket, from raw events: events count where the
    /// partition that stored them (`src_p`) is; a user counts in the lowest partition that
    /// stored one of their events in the bucket (all of a user's events share a partition, unless
    /// partitions grew meanwhile: see docs/exactness.md).
    async fn recount_shares(
        &self,
        rollups: &BatchRollups<'_>,
    ) -> Result<BTreeMap<(BucketKey, i64), BucketTotals>, StoreError> {
        Ok(self.recount_shares_and_users(rollups).await?.0)
    }

    /// [`Self::recount_shares`], and the partition that counts each (bucket, user).
    async fn recount_shares_and_users(
        &self,
        rollups: &BatchRollups<'_>,
    ) -> Result<(BTreeMap<(BucketKey, i64), BucketTotals>, UserPartitions), StoreError> {
        let mut contributions: BTreeMap<(BucketKey, i64), Contribution> = BTreeMap::new();
        let mut user_partition: BTreeMap<(BucketKey, String), i64> = BTreeMap::new();
        for collection in self.raw_event_collections().await? {
            let mut cursor = self.db.collection::<Document>(&collection).find(doc! {}).await?;
            while let Some(d) = cursor.try_next().await? {
                let event = event_of_document(&d);
                let partition = match d.get("src_p") {
                    Some(Bson::Int64(p)) => *p,
                    Some(Bson::Int32(p)) => i64::from(*p),
                    _ => 0,
                };
                for key in buckets_of(&event, rollups.intervals, rollups.tz) {
                    if counts_users(key.interval) {
                        user_partition
                            .entry((key.clone(), event.distinct_id.clone()))
                            .and_modify(|p| *p = (*p).min(partition))
                            .or_insert(partition);
                    }
                    contributions.entry((key, partition)).or_default().add(&event, rollups.numeric);
                }
            }
        }
        let mut shares: BTreeMap<(BucketKey, i64), BucketTotals> = contributions
            .into_iter()
            .map(|((key, p), c)| {
                let users = counts_users(key.interval).then_some(0);
                ((key, p), BucketTotals { events: c.events, users, numeric: c.numeric })
            })
            .collect();
        for ((key, _), partition) in &user_partition {
            if let Some(share) = shares.get_mut(&(key.clone(), *partition)) {
                share.users = Some(share.users.unwrap_or(0) + 1);
            }
        }
        Ok((shares, user_partition))
    }

    /// Every bucket's numbers as the processor maintains them (the sums of the rollup
    /// logs), by bucket id.
    pub async fn stored_rollups(&self) -> Result<BTreeMap<String, BucketTotals>, StoreError> {
        let mut out = BTreeMap::new();
        for delta in self.live_records(doc! {}).await? {
            for period in &crate::log::periods_of(&delta)? {
                let Some(key) = crate::read::period_key(period) else { continue };
                let Ok(events) = period.get_document("ev") else { continue };
                for (name, bucket) in events {
                    let Some(bucket) = bucket.as_document() else { continue };
                    let share = totals_of(bucket, counts_users(key.interval));
                    out.entry(key.bucket(&decode_key(name)).id())
                        .and_modify(|total: &mut BucketTotals| total.merge(&share))
                        .or_insert(share);
                }
            }
        }
        Ok(out)
    }

    /// Replaces every pre-aggregate with a recount from raw events. `watermarks` are, per
    /// partition, the last stream position whose events are all stored: each partition's
    /// log starts again with one record ending there, so the processor continues exactly.
    /// Run it while holding every partition's lease (the processor's `rebuild` command does).
    pub async fn rebuild(
        &self,
        rollups: &BatchRollups<'_>,
        watermarks: &[(u32, StreamPosition, u64)],
    ) -> Result<usize, StoreError> {
        let (shares, users) = self.recount_shares_and_users(rollups).await?;
        // Dropped, not emptied: FerretDB refuses a deletion of more documents than its
        // backend takes parameters, and these have no secondary index to recreate.
        for name in [ROLLUP_LOG, crate::compaction::ROLLUP_VERSIONS, crate::log::ROLLUP_DELTAS] {
            self.db.collection::<Document>(name).drop().await?;
        }
        for name in self.db.list_collection_names().await? {
            // Collections of earlier versions (nothing reads them any more) and the user lists.
            if name.starts_with(BUCKET_USERS_PREFIX) || LEGACY.contains(&name.as_str()) {
                self.db.collection::<Document>(&name).drop().await?;
            }
        }
        // The user lists first: a record's lists are written before it is committed.
        let mut lists: BTreeMap<(u32, String), DayUsers> = BTreeMap::new();
        for ((key, user), partition) in users {
            let period = key.period();
            lists
                .entry((partition as u32, bucket_users_collection(period.start, partition as u32)))
                .or_default()
                .entry(period.id())
                .or_default()
                .entry(encode_key(&key.event))
                .or_default()
                .insert(UserKey::of(&user));
        }
        for ((partition, collection), users) in &lists {
            let docs = user_lists(*partition, 1, users);
            for chunk in docs.chunks(20) {
                self.db.collection::<Document>(collection).insert_many(chunk.to_vec()).await?;
            }
        }
        let mut periods: BTreeMap<i64, BTreeMap<PeriodKey, Document>> = BTreeMap::new();
        let mut buckets = BTreeSet::new();
        for ((key, partition), share) in &shares {
            buckets.insert(key.id());
            let period = key.period();
            let d = periods.entry(*partition).or_default().entry(period).or_insert_with(|| {
                doc! { "id": period.id(), "i": interval_name(period.interval), "s": period.start, "ev": {} }
            });
            if let Ok(events) = d.get_document_mut("ev") {
                events.insert(encode_key(&key.event), document_of_totals(share));
            }
        }
        for (partition, last, _) in watermarks {
            let docs = periods.remove(&i64::from(*partition)).unwrap_or_default().into_values().collect();
            self.commit_record(*partition, 1, (StreamPosition::default(), *last), docs).await?;
        }
        if let Some(partition) = periods.keys().next() {
            return Err(StoreError::Encode(format!(
                "raw events stored by partition {partition}, which has no watermark: rebuild with every partition"
            )));
        }
        Ok(buckets.len())
    }
}

/// The partition that counts each user in each bucket.
type UserPartitions = BTreeMap<(BucketKey, String), i64>;

fn int(v: Option<&Bson>) -> u64 {
    match v {
        Some(Bson::Int64(n)) => *n as u64,
        Some(Bson::Int32(n)) => *n as u64,
        Some(Bson::Double(n)) => *n as u64,
        _ => 0,
    }
}

fn float(v: Option<&Bson>) -> f64 {
    match v {
        Some(Bson::Double(n)) => *n,
        Some(Bson::Int64(n)) => *n as f64,
        Some(Bson::Int32(n)) => f64::from(*n),
        _ => 0.0,
    }
}

/// A stored bucket (`ev.<event>` of a period document) as its numbers.
pub fn totals_of(bucket: &Document, counts_users: bool) -> BucketTotals {
    let mut numeric = BTreeMap::new();
    if let Ok(num) = bucket.get_document("num") {
        for (path, stat) in num {
            if let Some(s) = stat.as_document() {
                let stat = NumericStat {
                    sum: float(s.get("sum")),
                    min: float(s.get("min")),
                    max: float(s.get("max")),
                    count: int(s.get("count")),
                };
                numeric.insert(path.clone(), stat);
            }
        }
    }
    let users = counts_users.then(|| int(bucket.get("u")));
    BucketTotals { events: int(bucket.get("n")), users, numeric }
}

/// A bucket's numbers as stored in `ev.<event>` of a period document.
pub(crate) fn document_of_totals(t: &BucketTotals) -> Document {
    let mut d = doc! { "n": t.events as i64 };
    if let Some(u) = t.users {
        d.insert("u", u as i64);
    }
    let mut num = Document::new();
    for (path, s) in &t.numeric {
        num.insert(path, doc! { "sum": s.sum, "min": s.min, "max": s.max, "count": s.count as i64 });
    }
    if !num.is_empty() {
        d.insert("num", num);
    }
    d
}
