//! Exact pre-aggregates without transactions and without updates in place.
//!
//! Each partition has one writer at a time (a lease), and its pre-aggregates are the
//! partition's rollup log ([`crate::log`]): one record per batch, holding the batch's
//! contribution to every bucket it touches (events `n`, unique users `u`, numeric stats),
//! written by an insert. A bucket is the sum of its records over every partition. A batch
//! costs the same few inserts whatever the store holds and however many periods it touches
//! (a backfill costs what live traffic does): no update, no lookup on the way.
//!
//! Events count once: a batch counts the events its entries stored first
//! ([`Store::insert_events`]), and the log gives each entry to one record.
//!
//! Unique users: a bucket's users are counted by claiming them. The first record to count
//! a user in a bucket inserts a claim, `<interval>|<start>|<event>|<user>`, tagged with the
//! record; a duplicate key means an earlier record counted the user. A redo of a record
//! counts the claims tagged with that record too, since an earlier attempt of it may have
//! made them. Claims are kept in one collection per UTC day of the period's start
//! ([`bucket_users_collection`]), which retention drops whole. The writer remembers which
//! users it knows to be claimed ([`WriterMemory`]), so a returning user costs nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::TryStreamExt;
use jiff::tz::TimeZone;
use mongodb::bson::{Document, doc};
use pulse_core::buffer::BufferedEvent;
use pulse_core::config::RollupInterval;
use pulse_core::property::PropertyPath;
use pulse_core::rollup::{
    Contribution, PeriodKey, StreamPosition, buckets_of, counts_users, encode_key, interval_name,
};

use crate::memory::WriterMemory;
use crate::{Store, StoreError};

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

/// Which record of its partition's log a batch writes, and whether earlier attempts of the
/// same record may have written some of it already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordAttempt {
    pub record: u64,
    pub redo: bool,
}

/// The prefix of the collections of user claims.
pub const BUCKET_USERS_PREFIX: &str = "bucket_users_";

/// The collection holding the user claims of buckets whose period starts on the UTC day of
/// `start` (epoch ms): `bucket_users_<yyyymmdd>`.
pub fn bucket_users_collection(start: i64) -> String {
    let day = jiff::Timestamp::from_millisecond(start.max(0))
        .map(|t| t.strftime("%Y%m%d").to_string())
        .unwrap_or_else(|_| "00000000".to_string());
    format!("{BUCKET_USERS_PREFIX}{day}")
}

/// A user claim's id: `<interval>|<start>|<event>|<user>`.
pub fn claim_id(period: &PeriodKey, event: &str, user: &str) -> String {
    format!("{}|{}|{user}", period.id(), encode_key(event))
}

/// A batch's record of the log before it is committed: its period documents, and the
/// (period, event, user) it claimed or found claimed.
pub struct RecordDelta {
    pub periods: Vec<Document>,
    claimed: Vec<(String, String, String)>,
}

impl RecordDelta {
    /// Tells `memory` the users now counted, once the record is committed.
    pub fn remember(&self, memory: &mut WriterMemory) {
        for (period, event, user) in &self.claimed {
            memory.applied(period, [(event.as_str(), user.as_str())]);
        }
    }
}

/// A batch's events in one period, by event name.
type PeriodItems<'e> = BTreeMap<String, Vec<&'e BufferedEvent>>;

impl Store {
    /// A batch's contribution to every bucket its events fall in (the events its entries
    /// stored first, [`Store::insert_events`]), as the period documents of its log record:
    /// `{id, i, s, ev: {<event>: {n, u, num}}}`. Claims the users it counts first. Once the
    /// record is committed, [`RecordDelta::remember`] tells the memory: before, a redo of the
    /// record must still count the claims this attempt made.
    pub async fn rollup_delta(
        &self,
        lease: PartitionLease,
        attempt: RecordAttempt,
        events: &[(StreamPosition, &BufferedEvent)],
        rollups: &BatchRollups<'_>,
        memory: &mut WriterMemory,
    ) -> Result<RecordDelta, StoreError> {
        let mut periods: BTreeMap<PeriodKey, PeriodItems<'_>> = BTreeMap::new();
        for (_, event) in events {
            for key in buckets_of(event, rollups.intervals, rollups.tz) {
                periods.entry(key.period()).or_default().entry(key.event).or_default().push(*event);
            }
        }
        memory.begin_batch();
        // The (period, event, user) this batch may be the first to count.
        let mut candidates: BTreeSet<(PeriodKey, &str, &str)> = BTreeSet::new();
        for (period, items) in &periods {
            if !counts_users(period.interval) {
                continue;
            }
            let id = period.id();
            memory.touch(&id);
            let unknown = |memory: &WriterMemory| {
                let mut found = BTreeSet::new();
                for (event, list) in items {
                    for e in list.iter().filter(|e| !memory.counted(&id, event, &e.distinct_id)) {
                        found.insert((*period, event.as_str(), e.distinct_id.as_str()));
                    }
                }
                found
            };
            let mut found = unknown(memory);
            // A period with many users unknown to a cold writer is read once instead of
            // claimed user by user (`LEARN_ABOVE`).
            if found.len() >= memory.learn_above() && !memory.learned(&id) {
                self.learn_claims(lease.partition, attempt, period, memory).await?;
                found = unknown(memory);
            }
            candidates.extend(found);
        }
        let won = self.claim_users(lease.partition, attempt, &candidates).await?;
        memory.trim();
        let mut users: HashMap<(PeriodKey, &str), i64> = HashMap::new();
        for (period, event, _) in &won {
            *users.entry((*period, *event)).or_default() += 1;
        }
        let mut out = Vec::with_capacity(periods.len());
        for (period, items) in &periods {
            let mut ev = Document::new();
            for (event, list) in items {
                let mut contribution = Contribution::default();
                for e in list {
                    contribution.add(e, rollups.numeric);
                }
                let mut bucket = doc! { "n": contribution.events as i64 };
                if counts_users(period.interval) {
                    bucket.insert("u", users.get(&(*period, event.as_str())).copied().unwrap_or(0));
                }
                let mut num = Document::new();
                for (path, s) in &contribution.numeric {
                    num.insert(
                        path,
                        doc! { "sum": s.sum, "min": s.min, "max": s.max, "count": s.count as i64 },
                    );
                }
                if !num.is_empty() {
                    bucket.insert("num", num);
                }
                ev.insert(encode_key(event), bucket);
            }
            out.push(doc! {
                "id": period.id(),
                "i": interval_name(period.interval),
                "s": period.start,
                "ev": ev,
            });
        }
        let claimed = candidates.iter().map(|(p, e, u)| (p.id(), e.to_string(), u.to_string())).collect();
        Ok(RecordDelta { periods: out, claimed })
    }

    /// Reads into `memory` every user the partition's earlier records claimed in `period`'s
    /// buckets (not those of `attempt`'s own record: a redo must still count them).
    async fn learn_claims(
        &self,
        partition: u32,
        attempt: RecordAttempt,
        period: &PeriodKey,
        memory: &mut WriterMemory,
    ) -> Result<(), StoreError> {
        let prefix = format!("{}|", period.id());
        let filter =
            doc! { "_id": { "$gte": &prefix, "$lt": format!("{prefix}~") }, "p": i64::from(partition) };
        let tag = crate::log::record_tag(partition, attempt.record);
        let mut cursor = self
            .db
            .collection::<Document>(&bucket_users_collection(period.start))
            .find(filter)
            .projection(doc! { "e": 1, "u": 1, "r": 1 })
            .await?;
        let id = period.id();
        while let Some(claim) = cursor.try_next().await? {
            if claim.get_str("r").is_ok_and(|r| r == tag) {
                continue;
            }
            if let (Ok(event), Ok(user)) = (claim.get_str("e"), claim.get_str("u")) {
                memory.applied(&id, [(event, user)]);
            }
        }
        memory.mark_learned(&id);
        Ok(())
    }

    /// Claims each (period, event, user): returns those this record counts, the ones it
    /// inserted and, for a redo, the ones an earlier attempt of the same record inserted.
    async fn claim_users<'c>(
        &self,
        partition: u32,
        attempt: RecordAttempt,
        candidates: &BTreeSet<(PeriodKey, &'c str, &'c str)>,
    ) -> Result<Vec<(PeriodKey, &'c str, &'c str)>, StoreError> {
        let tag = crate::log::record_tag(partition, attempt.record);
        let mut by_collection: BTreeMap<String, Vec<(PeriodKey, &str, &str)>> = BTreeMap::new();
        for c in candidates {
            by_collection.entry(bucket_users_collection(c.0.start)).or_default().push(*c);
        }
        let mut won = Vec::new();
        for (name, claims) in by_collection {
            let collection = self.db.collection::<Document>(&name);
            let docs: Vec<Document> = claims
                .iter()
                .map(|(p, e, u)| doc! { "_id": claim_id(p, e, u), "r": &tag, "p": i64::from(partition), "e": *e, "u": *u })
                .collect();
            let mut taken: BTreeSet<usize> = BTreeSet::new();
            for (offset, chunk) in docs.chunks(1000).enumerate() {
                let existing = crate::insert_new(&collection, chunk.to_vec()).await?;
                taken.extend(existing.into_iter().map(|i| offset * 1000 + i));
            }
            // Taken before: by an earlier record (not ours to count), or by an earlier
            // attempt of this one (a redo), found by its tag.
            let ours: BTreeSet<String> = if attempt.redo && !taken.is_empty() {
                collection
                    .find(doc! { "r": &tag })
                    .projection(doc! { "_id": 1 })
                    .await?
                    .try_collect::<Vec<Document>>()
                    .await?
                    .into_iter()
                    .filter_map(|d| d.get_str("_id").ok().map(str::to_string))
                    .collect()
            } else {
                BTreeSet::new()
            };
            for (i, claim) in claims.into_iter().enumerate() {
                if !taken.contains(&i) || ours.contains(docs[i].get_str("_id").unwrap_or_default()) {
                    won.push(claim);
                }
            }
        }
        Ok(won)
    }
}

/// The document of one partition's share of a period as the query API names it in change
/// notices: `<interval>|<start>|p<partition>`.
pub fn period_doc_id(key: &PeriodKey, partition: u32) -> String {
    format!("{}|p{partition}", key.id())
}

impl Store {
    /// Applies a batch's events (those its entries stored first, in stream order, already
    /// in the event blocks) as the partition's next record of the rollup log, the way the
    /// processor's writer does around its raw insert and blocks: takes the record (or redoes
    /// the one left open), claims users, seals and commits. Entries the log already counts
    /// change nothing. For tools and tests that drive the rules without a stream.
    pub async fn apply_rollups(
        &self,
        lease: PartitionLease,
        last: StreamPosition,
        events: &[(StreamPosition, &BufferedEvent)],
        rollups: &BatchRollups<'_>,
        memory: &mut WriterMemory,
    ) -> Result<(), StoreError> {
        use crate::log::Ballot;
        let partition = lease.partition;
        let log = self.log_state(partition).await?;
        if last <= log.tail.last {
            return Ok(());
        }
        // Entries the log counts already are skipped, as the processor acknowledges them.
        let counted = events.iter().take_while(|(p, _)| *p <= log.tail.last).count();
        let events = &events[counted..];
        let first = events.first().map(|(p, _)| *p).unwrap_or(last);
        let tenure = format!("p{partition}#{}", lease.fence);
        let (attempt, ballot) = match &log.open {
            Some(open) if open.sealed => (RecordAttempt { record: open.record, redo: true }, None),
            Some(open) => (RecordAttempt { record: open.record, redo: true }, Some(open.ballot + 1)),
            None => (RecordAttempt { record: log.tail.record + 1, redo: false }, Some(0)),
        };
        let range = match &log.open {
            Some(open) => (open.first, open.last),
            None => (first, last),
        };
        let moved =
            || StoreError::Moved(format!("record {} of partition {partition}'s rollup log", attempt.record));
        if let Some(b) = ballot
            && !self.take_ballot(partition, attempt.record, b, Ballot::Begin, range, &tenure).await?
        {
            return Err(moved());
        }
        let delta = self.rollup_delta(lease, attempt, events, rollups, memory).await?;
        if let Some(b) = ballot
            && !self.take_ballot(partition, attempt.record, b + 1, Ballot::Seal, range, &tenure).await?
        {
            return Err(moved());
        }
        self.commit_record(partition, attempt.record, range, delta.periods.clone()).await?;
        delta.remember(memory);
        Ok(())
    }
}
