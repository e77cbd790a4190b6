//! Exact pre-aggregates without transactions.
//!
//! Each partition has one writer at a time (a lease with a fencing token) and processes its
//! stream in order, and each partition has its own document per period (an interval and
//! its start: `<interval>|<start>|p<n>`) holding every event name's bucket of that period
//! (`ev.<event>`), so no two writers ever update one document (a bucket's value is the sum
//! over its partitions' documents) and a batch costs one update per period it touches,
//! however many event names it has. Besides the partition's contribution, the document
//! keeps the stream position of the last entry applied to it (`wm`) and its writer's
//! fencing token (`fence`).
//! Applying a batch to a period only counts the batch's events after that watermark and
//! moves it in the same single-document update, guarded by a compare-and-set on the old
//! watermark: a crash before the update leaves it to the redelivery, a crash after it makes
//! the redelivery skip it, and a stale writer's update fails its guard. Raw events tell a
//! true duplicate from a redelivery by the entry that stored them ([`Store::insert_events`]);
//! unique users are markers per (bucket, user) that also carry the entry that created them.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::tz::TimeZone;
use mongodb::bson::{Bson, Document, doc};
use pulse_core::buffer::BufferedEvent;
use pulse_core::config::RollupInterval;
use pulse_core::property::PropertyPath;
use pulse_core::rollup::{
    BucketKey, Contribution, PeriodKey, StreamPosition, buckets_of, counts_users, encode_key, interval_name,
};

use crate::collections::{ROLLUP_USERS, ROLLUPS};
use crate::memory::{BucketState, WriterMemory};
use crate::{Store, StoreError, is_duplicate};

/// How many period updates of one batch run at once.
const CONCURRENT_PERIODS: usize = 4;
/// Compare-and-set attempts before giving up on a period (only concurrent writers of
/// other partitions creating the same document make it retry).
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

/// A batch's events in one period, by event name.
type PeriodItems<'e> = BTreeMap<String, Vec<(StreamPosition, &'e BufferedEvent)>>;

impl Store {
    /// Applies a batch of one partition's events (those [`Store::insert_events`] flagged as
    /// stored by their entry, in stream order) to every bucket they fall in. `last` is the
    /// batch's last stream position, which becomes the periods' watermark. `memory` is the
    /// writer's memory of this partition for its current lease (empty after a restart).
    pub async fn apply_rollups(
        &self,
        lease: PartitionLease,
        last: StreamPosition,
        events: &[(StreamPosition, &BufferedEvent)],
        rollups: &BatchRollups<'_>,
        redelivered: bool,
        memory: &mut WriterMemory,
    ) -> Result<(), StoreError> {
        let mut periods: BTreeMap<PeriodKey, PeriodItems<'_>> = BTreeMap::new();
        for (position, event) in events {
            for key in buckets_of(event, rollups.intervals, rollups.tz) {
                periods
                    .entry(key.period())
                    .or_default()
                    .entry(key.event)
                    .or_default()
                    .push((*position, *event));
            }
        }
        if periods.is_empty() {
            return Ok(());
        }
        let unknown: Vec<String> = periods
            .keys()
            .map(|k| period_doc_id(k, lease.partition))
            .filter(|id| memory.bucket(id).is_none())
            .collect();
        let read = self.period_states(&unknown).await?;
        let batch = BatchOf { lease, last, redelivered };
        let work: Vec<(PeriodKey, PeriodItems<'_>)> = periods.into_iter().collect();
        let states: Vec<BucketState> = work
            .iter()
            .map(|(period, _)| {
                let id = period_doc_id(period, lease.partition);
                memory.bucket(&id).or_else(|| read.get(&id)).cloned().unwrap_or_default()
            })
            .collect();
        let counted: Vec<HashMap<&str, HashSet<&str>>> =
            work.iter().map(|(period, items)| counted_users(memory, period, items)).collect();
        // Every bucket's user markers in one insert, against the states just read.
        let mut plans = Vec::new();
        for (((period, items), state), counted) in work.iter().zip(&states).zip(&counted) {
            if counts_users(period.interval) {
                for (event, events) in items {
                    plans.push(UserPlan {
                        bucket: period.bucket(event),
                        watermark: state.watermark.as_deref(),
                        items: after_watermark(events, state),
                        counted: counted.get(event.as_str()),
                    });
                }
            }
        }
        let new_users = self.new_users(&plans, batch).await?;
        let mut users: HashMap<String, u64> = plans.iter().map(|p| p.bucket.id()).zip(new_users).collect();
        for (i, chunk) in work.chunks(CONCURRENT_PERIODS).enumerate() {
            // Eagerly built futures joined per chunk (a stream adapter over closures here
            // would make the caller's future fail rustc's Send check).
            let mut updates = Vec::with_capacity(chunk.len());
            for (j, (period, items)) in chunk.iter().enumerate() {
                let k = i * CONCURRENT_PERIODS + j;
                let first_users: HashMap<String, u64> = items
                    .keys()
                    .filter_map(|event| {
                        let id = period.bucket(event).id();
                        users.remove(&id).map(|n| (event.clone(), n))
                    })
                    .collect();
                let state = states[k].clone();
                let period_users = PeriodUsers { counted: &counted[k], first: first_users };
                updates.push(self.apply_period(batch, period, items, state, period_users, rollups.numeric));
            }
            let states = futures::future::try_join_all(updates).await?;
            // Every user of these buckets is now counted, and each watermark is known.
            for ((period, items), state) in chunk.iter().zip(states) {
                memory.set_bucket(period_doc_id(period, lease.partition), state);
                if counts_users(period.interval) {
                    for (event, events) in items {
                        let bucket = period.bucket(event).id();
                        memory.remember(
                            &bucket,
                            period.start,
                            events.iter().map(|(_, e)| e.distinct_id.as_str()),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The watermark and fencing token of each document, one lookup by `_id` each,
    /// concurrently (`$in` is not index-backed everywhere).
    async fn period_states(&self, ids: &[String]) -> Result<HashMap<String, BucketState>, StoreError> {
        let rollups = self.db.collection::<Document>(ROLLUPS);
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

    /// Adds the batch's events after the period's watermark to its document and moves the
    /// watermark, with a compare-and-set on the old one. Returns the document's new state.
    async fn apply_period(
        &self,
        batch: BatchOf,
        period: &PeriodKey,
        items: &PeriodItems<'_>,
        mut state: BucketState,
        mut users: PeriodUsers<'_>,
        numeric: &[PropertyPath],
    ) -> Result<BucketState, StoreError> {
        let BatchOf { lease, last, mut redelivered } = batch;
        let id = period_doc_id(period, lease.partition);
        let rollups = self.db.collection::<Document>(ROLLUPS);
        for _ in 0..MAX_ATTEMPTS {
            if let Some(newer) = state.fence.filter(|f| *f > lease.fence) {
                return Err(StoreError::Fenced { partition: lease.partition, ours: lease.fence, newer });
            }
            let (mut inc, mut min, mut max) = (Document::new(), Document::new(), Document::new());
            for (event, events) in items {
                let after_watermark = after_watermark(events, &state);
                if after_watermark.is_empty() {
                    continue;
                }
                let mut contribution = Contribution::default();
                for (_, event) in &after_watermark {
                    contribution.add(event, numeric);
                }
                let field = format!("ev.{}", encode_key(event));
                inc.insert(format!("{field}.n"), contribution.events as i64);
                if counts_users(period.interval) {
                    let new = match users.first.remove(event.as_str()) {
                        Some(n) => n,
                        None => {
                            let plan = UserPlan {
                                bucket: period.bucket(event),
                                watermark: state.watermark.as_deref(),
                                items: after_watermark,
                                counted: users.counted.get(event.as_str()),
                            };
                            let batch = BatchOf { lease, last, redelivered };
                            self.new_users(std::slice::from_ref(&plan), batch).await?[0]
                        }
                    };
                    inc.insert(format!("{field}.u"), new as i64);
                }
                for (path, stat) in &contribution.numeric {
                    inc.insert(format!("{field}.num.{path}.sum"), stat.sum);
                    inc.insert(format!("{field}.num.{path}.count"), stat.count as i64);
                    min.insert(format!("{field}.num.{path}.min"), stat.min);
                    max.insert(format!("{field}.num.{path}.max"), stat.max);
                }
            }
            if inc.is_empty() {
                return Ok(state);
            }
            let mut update = doc! {
                "$inc": inc,
                "$set": { "wm": last.to_key(), "fence": lease.fence as i64 },
                "$setOnInsert": {
                    "interval": interval_name(period.interval),
                    "start": period.start,
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
                Ok(r) if r.matched_count == 1 || r.upserted_id.is_some() => {
                    return Ok(BucketState { watermark: Some(last.to_key()), fence: Some(lease.fence) });
                }
                Ok(_) => {}
                Err(e) if is_duplicate(&e) => {}
                Err(e) => return Err(e.into()),
            }
            // The guard failed: someone moved the document. Read it again and recompute;
            // this batch's own markers now exist, so look them up.
            redelivered = true;
            users.first.clear();
            let current =
                rollups.find_one(doc! { "_id": &id }).projection(doc! { "wm": 1, "fence": 1 }).await?;
            state = current.map(|d| state_of(&d)).unwrap_or_default();
        }
        Err(StoreError::Contended(MAX_ATTEMPTS))
    }

    /// How many users each plan's batch adds to its bucket: users the writer remembers as
    /// counted are not; otherwise a marker per (bucket, user) is inserted once (all plans'
    /// markers in one insert); a marker that exists counts only if this partition created
    /// it after the bucket's watermark and within this batch (a crash left it uncounted),
    /// which is possible only when the batch is `redelivered`: otherwise existing markers
    /// are not looked up at all.
    async fn new_users(&self, plans: &[UserPlan<'_, '_>], batch: BatchOf) -> Result<Vec<u64>, StoreError> {
        let BatchOf { lease: PartitionLease { partition, .. }, last, redelivered } = batch;
        let mut new = vec![0u64; plans.len()];
        // (plan, marker id) and the marker, for every user not counted yet.
        let mut ids: Vec<(usize, String)> = Vec::new();
        let mut markers: Vec<Document> = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let mut earliest: BTreeMap<&str, StreamPosition> = BTreeMap::new();
            for (position, event) in &plan.items {
                if plan.counted.is_some_and(|c| c.contains(event.distinct_id.as_str())) {
                    continue;
                }
                earliest
                    .entry(event.distinct_id.as_str())
                    .and_modify(|p| *p = (*p).min(*position))
                    .or_insert(*position);
            }
            let bucket = plan.bucket.id();
            for (user, position) in earliest {
                let id = format!("{bucket}|{user}");
                markers.push(doc! {
                    "_id": &id,
                    "interval": interval_name(plan.bucket.interval),
                    "start": plan.bucket.start,
                    "p": i64::from(partition),
                    "src": position.to_key(),
                });
                ids.push((i, id));
                new[i] += 1;
            }
        }
        let collection = self.db.collection::<Document>(ROLLUP_USERS);
        let existing = crate::insert_new(&collection, markers).await?;
        for &m in &existing {
            new[ids[m].0] -= 1;
        }
        if existing.is_empty() || !redelivered {
            return Ok(new);
        }
        let last = last.to_key();
        for chunk in existing.chunks(64) {
            let lookups = chunk.iter().map(|&m| {
                let collection = collection.clone();
                let id = ids[m].1.clone();
                async move { collection.find_one(doc! { "_id": id }).await }
            });
            let found = futures::future::try_join_all(lookups).await?;
            for (&m, marker) in chunk.iter().zip(found) {
                let Some(marker) = marker else { continue };
                let plan = &plans[ids[m].0];
                let by_us = matches!(marker.get("p"), Some(Bson::Int64(p)) if *p == i64::from(partition));
                let src = marker.get_str("src").unwrap_or_default();
                if by_us && plan.watermark.is_none_or(|w| src > w) && src <= last.as_str() {
                    new[ids[m].0] += 1;
                }
            }
        }
        Ok(new)
    }
}

/// The users of one bucket a batch may add: its events after the bucket's period watermark,
/// less the users the writer remembers as counted.
struct UserPlan<'a, 'e> {
    bucket: BucketKey,
    watermark: Option<&'a str>,
    items: Vec<&'e (StreamPosition, &'e BufferedEvent)>,
    counted: Option<&'a HashSet<&'e str>>,
}

/// A period's users: those the writer remembers, per event, and the new-user counts
/// computed for the whole batch against the period's first state.
struct PeriodUsers<'a> {
    counted: &'a HashMap<&'a str, HashSet<&'a str>>,
    first: HashMap<String, u64>,
}

/// The events after the period document's watermark.
fn after_watermark<'e>(
    events: &'e [(StreamPosition, &'e BufferedEvent)],
    state: &BucketState,
) -> Vec<&'e (StreamPosition, &'e BufferedEvent)> {
    events.iter().filter(|(p, _)| state.watermark.as_ref().is_none_or(|w| p.to_key() > *w)).collect()
}

/// Per event name of a period, the users of `items` the writer remembers as counted.
fn counted_users<'e>(
    memory: &WriterMemory,
    period: &PeriodKey,
    items: &'e PeriodItems<'e>,
) -> HashMap<&'e str, HashSet<&'e str>> {
    if !counts_users(period.interval) {
        return HashMap::new();
    }
    items
        .iter()
        .map(|(event, events)| {
            let bucket = period.bucket(event).id();
            let known = events
                .iter()
                .map(|(_, e)| e.distinct_id.as_str())
                .filter(|user| memory.knows(&bucket, user))
                .collect();
            (event.as_str(), known)
        })
        .collect()
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

/// The document of one partition's share of a period: `<interval>|<start>|p<partition>`.
pub fn period_doc_id(key: &PeriodKey, partition: u32) -> String {
    format!("{}|p{partition}", key.id())
}
