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
//! true duplicate from a redelivery by the entry that stored them ([`Store::insert_events`]).
//!
//! Unique users: all of a user's events go to one partition (`partition_of`), so a bucket's
//! users are the sum of its partitions' users, and each writer counts its own. It knows
//! the users each bucket of a period counted ([`WriterMemory`]); a period it does not know
//! yet it learns from the event blocks, which hold every event the partition stored with
//! the stream entry that stored it and are written before the rollups: the users counted
//! are exactly those of the period's events at or before the document's watermark.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::tz::TimeZone;
use mongodb::bson::{Bson, Document, doc};
use pulse_core::buffer::BufferedEvent;
use pulse_core::config::RollupInterval;
use pulse_core::property::PropertyPath;
use pulse_core::rollup::{
    Contribution, PeriodKey, StreamPosition, bucket_start, buckets_of, counts_users, encode_key,
    interval_name,
};

use crate::collections::ROLLUPS;
use crate::memory::{BucketState, WriterMemory};
use crate::{Store, StoreError, is_duplicate};

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

/// A batch's events in one period, by event name.
type PeriodItems<'e> = BTreeMap<String, Vec<(StreamPosition, &'e BufferedEvent)>>;

impl Store {
    /// Applies a batch of one partition's events (those [`Store::insert_events`] flagged as
    /// stored by their entry, in stream order, already in the event blocks) to every
    /// bucket they fall in. `last` is the batch's last stream position, which becomes the
    /// periods' watermark. `memory` is the writer's memory of this partition for its
    /// current lease; after an error it must be dropped (an update's outcome is unknown).
    pub async fn apply_rollups(
        &self,
        lease: PartitionLease,
        last: StreamPosition,
        events: &[(StreamPosition, &BufferedEvent)],
        rollups: &BatchRollups<'_>,
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
        memory.begin_batch();
        let unknown: Vec<PeriodKey> = periods
            .keys()
            .filter(|p| memory.use_period(&period_doc_id(p, lease.partition)).is_none())
            .copied()
            .collect();
        self.learn_periods(lease.partition, &unknown, rollups.tz, memory).await?;
        // One update after another: a store that applies writes one at a time (FerretDB's
        // SQLite) only makes updates sent at once wait on each other (make bench-processor:
        // 4 at once cost 57 ms a batch where one at a time cost 44).
        for (period, items) in &periods {
            let Some(plan) = plan_period(lease, last, period, items, memory, rollups.numeric)? else {
                continue;
            };
            self.apply_period(lease, &plan).await?;
            let counted = plan.counted.iter().map(|(event, user)| (event.as_str(), *user));
            memory.applied(&plan.id, plan.after.clone(), counted);
        }
        memory.trim();
        Ok(())
    }

    /// Learns the periods the writer does not know: each document's state (a lookup by
    /// `_id`) and, where it counts users and exists, the users each bucket counted: the
    /// users of the partition's events in the period at or before its watermark, read from
    /// the event blocks (one read per run of overlapping periods).
    async fn learn_periods(
        &self,
        partition: u32,
        periods: &[PeriodKey],
        tz: &TimeZone,
        memory: &mut WriterMemory,
    ) -> Result<(), StoreError> {
        if periods.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = periods.iter().map(|p| period_doc_id(p, partition)).collect();
        let mut states = self.period_states(&ids).await?;
        let mut watermarks: HashMap<PeriodKey, StreamPosition> = HashMap::new();
        for (period, id) in periods.iter().zip(&ids) {
            let Some(watermark) = states.get(id).and_then(|s| s.watermark.as_deref()) else { continue };
            if counts_users(period.interval) {
                watermarks.insert(*period, watermark_position(id, watermark)?);
            }
        }
        let mut counted: HashMap<PeriodKey, Vec<(String, String)>> = HashMap::new();
        let intervals: BTreeSet<RollupInterval> = watermarks.keys().map(|p| p.interval).collect();
        for (from, to) in merged_spans(watermarks.keys()) {
            for (position, event) in self.partition_events_between(partition, from, to).await? {
                for &interval in &intervals {
                    let period = PeriodKey { interval, start: bucket_start(event.timestamp, interval, tz) };
                    if watermarks.get(&period).is_some_and(|w| position <= *w) {
                        counted
                            .entry(period)
                            .or_default()
                            .push((event.event.clone(), event.distinct_id.clone()));
                    }
                }
            }
        }
        for (period, id) in periods.iter().zip(&ids) {
            let state = states.remove(id).unwrap_or_default();
            let users = counted.get(period).map(Vec::as_slice).unwrap_or_default();
            memory.learn(id, state, users.iter().map(|(e, u)| (e.as_str(), u.as_str())));
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

    /// Runs a period's planned update: its compare-and-set on the watermark and fencing
    /// token. A failed guard means a newer writer ([`StoreError::Fenced`]) or a document
    /// that changed since the writer read it ([`StoreError::Moved`]).
    async fn apply_period(&self, lease: PartitionLease, plan: &PeriodPlan<'_>) -> Result<(), StoreError> {
        let rollups = self.db.collection::<Document>(ROLLUPS);
        match rollups.update_one(plan.filter.clone(), plan.update.clone()).upsert(plan.upsert).await {
            Ok(r) if r.matched_count == 1 || r.upserted_id.is_some() => return Ok(()),
            Ok(_) => {}
            Err(e) if is_duplicate(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let current =
            rollups.find_one(doc! { "_id": &plan.id }).projection(doc! { "wm": 1, "fence": 1 }).await?;
        match current.map(|d| state_of(&d)).and_then(|s| s.fence).filter(|f| *f > lease.fence) {
            Some(newer) => Err(StoreError::Fenced { partition: lease.partition, ours: lease.fence, newer }),
            None => Err(StoreError::Moved(plan.id.clone())),
        }
    }
}

/// One period document's update for a batch, and what it counts.
struct PeriodPlan<'e> {
    id: String,
    filter: Document,
    update: Document,
    upsert: bool,
    /// The document's state once the update succeeded.
    after: BucketState,
    /// The (event name, user) pairs it counts for the first time.
    counted: Vec<(String, &'e str)>,
}

/// The update that adds a batch's events after the period document's watermark (known to
/// `memory`) and moves the watermark to `last`; None when none of its events are new.
fn plan_period<'e>(
    lease: PartitionLease,
    last: StreamPosition,
    period: &PeriodKey,
    items: &PeriodItems<'e>,
    memory: &WriterMemory,
    numeric: &[PropertyPath],
) -> Result<Option<PeriodPlan<'e>>, StoreError> {
    let id = period_doc_id(period, lease.partition);
    let state = memory.state(&id).cloned().unwrap_or_default();
    if let Some(newer) = state.fence.filter(|f| *f > lease.fence) {
        return Err(StoreError::Fenced { partition: lease.partition, ours: lease.fence, newer });
    }
    let watermark = state.watermark.as_deref();
    let after = watermark.map(|w| watermark_position(&id, w)).transpose()?;
    let (mut inc, mut min, mut max) = (Document::new(), Document::new(), Document::new());
    let mut counted = Vec::new();
    for (event, events) in items {
        let mut contribution = Contribution::default();
        let mut users = BTreeSet::new();
        for (position, e) in events {
            if after.is_some_and(|w| *position <= w) {
                continue;
            }
            contribution.add(e, numeric);
            if counts_users(period.interval) && !memory.counted(&id, event, &e.distinct_id) {
                users.insert(e.distinct_id.as_str());
            }
        }
        if contribution.events == 0 {
            continue;
        }
        let field = format!("ev.{}", encode_key(event));
        inc.insert(format!("{field}.n"), contribution.events as i64);
        if counts_users(period.interval) {
            inc.insert(format!("{field}.u"), users.len() as i64);
            counted.extend(users.into_iter().map(|u| (event.clone(), u)));
        }
        for (path, stat) in &contribution.numeric {
            inc.insert(format!("{field}.num.{path}.sum"), stat.sum);
            inc.insert(format!("{field}.num.{path}.count"), stat.count as i64);
            min.insert(format!("{field}.num.{path}.min"), stat.min);
            max.insert(format!("{field}.num.{path}.max"), stat.max);
        }
    }
    if inc.is_empty() {
        return Ok(None);
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
    let watermark_guard = match watermark {
        Some(w) => Bson::String(w.to_string()),
        None => Bson::Document(doc! { "$exists": false }),
    };
    let filter = doc! {
        "_id": &id,
        "wm": watermark_guard,
        "$or": [{ "fence": { "$exists": false } }, { "fence": { "$lte": lease.fence as i64 } }],
    };
    Ok(Some(PeriodPlan {
        upsert: watermark.is_none(),
        id,
        filter,
        update,
        after: BucketState { watermark: Some(last.to_key()), fence: Some(lease.fence) },
        counted,
    }))
}

/// A period document's watermark as a stream position.
fn watermark_position(id: &str, watermark: &str) -> Result<StreamPosition, StoreError> {
    StreamPosition::from_key(watermark).ok_or_else(|| {
        StoreError::Encode(format!("rollup document {id} has an unreadable watermark {watermark:?}"))
    })
}

/// The time spans that hold `periods` (each widened to the longest its interval can be in
/// any time zone), merged where they overlap: what to read to learn them.
fn merged_spans<'p>(periods: impl Iterator<Item = &'p PeriodKey>) -> Vec<(i64, i64)> {
    const MINUTE: i64 = 60_000;
    let mut spans: Vec<(i64, i64)> = periods
        .map(|p| {
            let longest = match p.interval {
                RollupInterval::Minute => 2 * MINUTE,
                RollupInterval::Hour => 120 * MINUTE,
                RollupInterval::Day => 26 * 60 * MINUTE,
            };
            (p.start, p.start.saturating_add(longest))
        })
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (from, to) in spans {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    merged
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
