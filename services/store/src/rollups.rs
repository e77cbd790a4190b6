//! Exact pre-aggregates without transactions.
//!
//! Each partition has one writer at a time (a lease with a fencing token) and processes its
//! stream in order, and each partition has its own document per bucket (`<bucket>|p<n>`),
//! so no two writers ever update one document (a bucket's value is the sum over its
//! partitions' documents). Besides the partition's contribution, the document keeps the
//! stream position of the last entry applied to it (`wm`) and its writer's fencing token
//! (`fence`).
//! Applying a batch to a bucket only counts the batch's events after that watermark and
//! moves it in the same single-document update, guarded by a compare-and-set on the old
//! watermark: a crash before the update leaves it to the redelivery, a crash after it makes
//! the redelivery skip it, and a stale writer's update fails its guard. Raw events tell a
//! true duplicate from a redelivery by the entry that stored them ([`Store::insert_events`]);
//! unique users are markers per (bucket, user) that also carry the entry that created them.

use std::collections::{BTreeMap, HashMap};

use jiff::tz::TimeZone;
use mongodb::bson::{Bson, Document, doc};
use pulse_core::buffer::BufferedEvent;
use pulse_core::config::RollupInterval;
use pulse_core::property::PropertyPath;
use pulse_core::rollup::{BucketKey, Contribution, StreamPosition, buckets_of, counts_users, interval_name};

use crate::collections::{ROLLUP_USERS, ROLLUPS};
use crate::{Store, StoreError, is_duplicate};

/// How many bucket updates of one batch run at once.
const CONCURRENT_BUCKETS: usize = 4;
/// Compare-and-set attempts before giving up on a bucket (only concurrent writers of
/// other partitions creating the same bucket make it retry).
const MAX_ATTEMPTS: u32 = 8;

/// The writer of one partition: its number and its lease's fencing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLease {
    pub partition: u32,
    pub fence: u64,
}

/// What to maintain: the pipeline's intervals, numeric properties and time zone.
pub struct BatchRollups<'a> {
    pub intervals: &'a [RollupInterval],
    pub numeric: &'a [PropertyPath],
    pub tz: &'a TimeZone,
}

/// Which batch is being applied: its writer, its last position, and whether its entries
/// were delivered before.
#[derive(Debug, Clone, Copy)]
struct BatchOf {
    lease: PartitionLease,
    last: StreamPosition,
    redelivered: bool,
}

/// A bucket's watermark and fencing token for one partition.
#[derive(Debug, Clone, Default)]
struct BucketState {
    watermark: Option<String>,
    fence: Option<u64>,
}

impl Store {
    /// Applies a batch of one partition's events (those [`Store::insert_events`] flagged as
    /// stored by their entry, in stream order) to every bucket they fall in. `last` is the
    /// batch's last stream position, which becomes the buckets' watermark.
    pub async fn apply_rollups(
        &self,
        lease: PartitionLease,
        last: StreamPosition,
        events: &[(StreamPosition, &BufferedEvent)],
        rollups: &BatchRollups<'_>,
        redelivered: bool,
    ) -> Result<(), StoreError> {
        let mut buckets: BTreeMap<BucketKey, Vec<(StreamPosition, &BufferedEvent)>> = BTreeMap::new();
        for (position, event) in events {
            for key in buckets_of(event, rollups.intervals, rollups.tz) {
                buckets.entry(key).or_default().push((*position, *event));
            }
        }
        if buckets.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = buckets.keys().map(|k| partition_doc_id(k, lease.partition)).collect();
        let states = self.bucket_states(&ids).await?;
        // Eagerly built futures joined in chunks (a stream adapter over closures here would
        // make the caller's future fail rustc's Send check).
        let work: Vec<(BucketKey, Vec<(StreamPosition, &BufferedEvent)>)> = buckets.into_iter().collect();
        for chunk in work.chunks(CONCURRENT_BUCKETS) {
            let mut updates = Vec::with_capacity(chunk.len());
            for (key, items) in chunk {
                let state = states.get(&partition_doc_id(key, lease.partition)).cloned().unwrap_or_default();
                let batch = BatchOf { lease, last, redelivered };
                updates.push(self.apply_bucket(batch, key, items, state, rollups.numeric));
            }
            futures::future::try_join_all(updates).await?;
        }
        Ok(())
    }

    async fn bucket_states(&self, ids: &[String]) -> Result<HashMap<String, BucketState>, StoreError> {
        let rollups = self.db.collection::<Document>(ROLLUPS);
        // One lookup by `_id` each, concurrently (`$in` is not index-backed everywhere).
        let mut states = HashMap::new();
        for chunk in ids.chunks(64) {
            let lookups =
                chunk.iter().map(|id| {
                    let rollups = rollups.clone();
                    async move {
                        rollups.find_one(doc! { "_id": id }).projection(doc! { "wm": 1, "fence": 1 }).await
                    }
                });
            for d in futures::future::try_join_all(lookups).await?.into_iter().flatten() {
                let id = d.get_str("_id").unwrap_or_default().to_string();
                states.insert(id, state_of(&d));
            }
        }
        Ok(states)
    }

    async fn apply_bucket(
        &self,
        batch: BatchOf,
        key: &BucketKey,
        items: &[(StreamPosition, &BufferedEvent)],
        mut state: BucketState,
        numeric: &[PropertyPath],
    ) -> Result<(), StoreError> {
        let BatchOf { lease, last, mut redelivered } = batch;
        let id = partition_doc_id(key, lease.partition);
        let rollups = self.db.collection::<Document>(ROLLUPS);
        for _ in 0..MAX_ATTEMPTS {
            if let Some(newer) = state.fence.filter(|f| *f > lease.fence) {
                return Err(StoreError::Fenced { partition: lease.partition, ours: lease.fence, newer });
            }
            let after_watermark: Vec<&(StreamPosition, &BufferedEvent)> = items
                .iter()
                .filter(|(p, _)| state.watermark.as_ref().is_none_or(|w| p.to_key() > *w))
                .collect();
            if after_watermark.is_empty() {
                return Ok(());
            }
            let mut contribution = Contribution::default();
            for (_, event) in &after_watermark {
                contribution.add(event, numeric);
            }
            let mut inc = doc! { "events": contribution.events as i64 };
            if counts_users(key.interval) {
                let users = self
                    .new_users(
                        key,
                        lease.partition,
                        state.watermark.as_deref(),
                        last,
                        &after_watermark,
                        redelivered,
                    )
                    .await?;
                inc.insert("users", users as i64);
            }
            let (mut min, mut max) = (Document::new(), Document::new());
            for (path, stat) in &contribution.numeric {
                inc.insert(format!("num.{path}.sum"), stat.sum);
                inc.insert(format!("num.{path}.count"), stat.count as i64);
                min.insert(format!("num.{path}.min"), stat.min);
                max.insert(format!("num.{path}.max"), stat.max);
            }
            let mut update = doc! {
                "$inc": inc,
                "$set": { "wm": last.to_key(), "fence": lease.fence as i64 },
                "$setOnInsert": {
                    "bucket": key.id(),
                    "event": &key.event,
                    "interval": interval_name(key.interval),
                    "start": key.start,
                    "p": i64::from(lease.partition),
                },
            };
            if !min.is_empty() {
                update.insert("$min", min);
                update.insert("$max", max);
            }
            let watermark_guard = match &state.watermark {
                Some(w) => Bson::String(w.clone()),
                None => Bson::Document(doc! { "$exists": false }),
            };
            let filter = doc! {
                "_id": &id,
                "wm": watermark_guard,
                "$or": [{ "fence": { "$exists": false } }, { "fence": { "$lte": lease.fence as i64 } }],
            };
            match rollups.update_one(filter, update).upsert(state.watermark.is_none()).await {
                Ok(r) if r.matched_count == 1 || r.upserted_id.is_some() => return Ok(()),
                Ok(_) => {}
                Err(e) if is_duplicate(&e) => {}
                Err(e) => return Err(e.into()),
            }
            // The guard failed: someone moved the bucket. Read it again and recompute; this
            // batch's own markers now exist, so look them up.
            redelivered = true;
            let current =
                rollups.find_one(doc! { "_id": &id }).projection(doc! { "wm": 1, "fence": 1 }).await?;
            state = current.map(|d| state_of(&d)).unwrap_or_default();
        }
        Err(StoreError::Contended(MAX_ATTEMPTS))
    }

    /// How many of the users in `items` this batch adds to the bucket: a marker per
    /// (bucket, user) is inserted once; a marker that exists counts only if this partition
    /// created it after the watermark and within this batch (a crash left it uncounted),
    /// which is possible only when the batch is `redelivered`: otherwise existing markers
    /// are not looked up at all.
    async fn new_users(
        &self,
        key: &BucketKey,
        partition: u32,
        watermark: Option<&str>,
        last: StreamPosition,
        items: &[&(StreamPosition, &BufferedEvent)],
        redelivered: bool,
    ) -> Result<u64, StoreError> {
        let mut earliest: BTreeMap<&str, StreamPosition> = BTreeMap::new();
        for (position, event) in items {
            earliest
                .entry(event.distinct_id.as_str())
                .and_modify(|p| *p = (*p).min(*position))
                .or_insert(*position);
        }
        let bucket = key.id();
        let markers: Vec<Document> = earliest
            .iter()
            .map(|(user, position)| {
                doc! {
                    "_id": format!("{bucket}|{user}"),
                    "interval": interval_name(key.interval),
                    "start": key.start,
                    "p": i64::from(partition),
                    "src": position.to_key(),
                }
            })
            .collect();
        let ids: Vec<String> =
            markers.iter().map(|m| m.get_str("_id").unwrap_or_default().to_string()).collect();
        let collection = self.db.collection::<Document>(ROLLUP_USERS);
        let existing: Vec<&str> =
            crate::insert_new(&collection, markers).await?.into_iter().map(|i| ids[i].as_str()).collect();
        let mut new = (ids.len() - existing.len()) as u64;
        if existing.is_empty() || !redelivered {
            return Ok(new);
        }
        let last = last.to_key();
        let lookups = existing.iter().map(|id| {
            let collection = collection.clone();
            async move { collection.find_one(doc! { "_id": *id }).await }
        });
        for marker in futures::future::try_join_all(lookups).await?.into_iter().flatten() {
            let by_us = matches!(marker.get("p"), Some(Bson::Int64(p)) if *p == i64::from(partition));
            let src = marker.get_str("src").unwrap_or_default();
            if by_us && watermark.is_none_or(|w| src > w) && src <= last.as_str() {
                new += 1;
            }
        }
        Ok(new)
    }
}

fn state_of(d: &Document) -> BucketState {
    let watermark = d.get_str("wm").ok().map(str::to_string);
    let fence = match d.get("fence") {
        Some(Bson::Int64(v)) => u64::try_from(*v).ok(),
        Some(Bson::Int32(v)) => u64::try_from(*v).ok(),
        _ => None,
    };
    BucketState { watermark, fence }
}

/// The document of one partition's share of a bucket: `<bucket id>|p<partition>`.
pub fn partition_doc_id(key: &BucketKey, partition: u32) -> String {
    format!("{}|p{partition}", key.id())
}
