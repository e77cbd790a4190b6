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
//! Unique users: a record counts the users new to each bucket, those no earlier record of
//! the partition counted (a user's events all go to one partition, so partitions count
//! disjoint users and a bucket's users are the sum over them). It writes them down as the
//! record's user lists: per UTC day of the periods it touches, one document (or a few, past
//! 10,000 entries) `{_id: <k>|<chunk>, p, k, periods, events, pairs}`, each pair a
//! (period, event, [`UserKey`]) packed in one binary value, inserted before the seal. The writer knows the users counted up to the record before its
//! own ([`WriterMemory`]), and reads the lists of a period it does not know (those of
//! earlier records only: every earlier record is committed, and a redo's own lists are what
//! it is about to write). So every attempt of a record computes the same lists, and a
//! duplicate key means an earlier attempt wrote it. Lists are kept in one collection per
//! partition and UTC day of the period's start ([`bucket_users_collection`]), which
//! retention drops whole. A batch costs one insert per day it touches, however many periods
//! and users it counts: a backfill over ten days writes ten small documents.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::TryStreamExt;
use jiff::tz::TimeZone;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Document, doc};
use pulse_core::buffer::BufferedEvent;
use pulse_core::config::RollupInterval;
use pulse_core::property::PropertyPath;
use pulse_core::rollup::{
    Contribution, PeriodKey, StreamPosition, buckets_of, counts_users, encode_key, interval_name,
};

use crate::memory::{UserKey, WriterMemory};
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

/// The prefix of the collections of user lists.
pub const BUCKET_USERS_PREFIX: &str = "bucket_users_";

/// The UTC day (`yyyymmdd`) of `start` (epoch ms).
pub fn utc_day(start: i64) -> String {
    jiff::Timestamp::from_millisecond(start.max(0))
        .map(|t| t.strftime("%Y%m%d").to_string())
        .unwrap_or_else(|_| "00000000".to_string())
}

/// The collection of `partition`'s user lists of the periods that start on the UTC day of
/// `start` (epoch ms): `bucket_users_<yyyymmdd>_p<partition>`. One per partition, so that a
/// writer's read of a day (a scan on a store without indexes) reads only its own lists.
pub fn bucket_users_collection(start: i64, partition: u32) -> String {
    day_collection(&utc_day(start), partition)
}

fn day_collection(day: &str, partition: u32) -> String {
    format!("{BUCKET_USERS_PREFIX}{day}_p{partition}")
}

/// (Period, event, user) entries per user-list document: a record's lists of one day are
/// cut in documents this long (240 KB), in a fixed order, so that every attempt of the
/// record writes the same documents.
const ENTRIES_PER_LIST: usize = 10_000;

/// Bytes of one entry of a list's `pairs`: the period's and the event's index (u32 each)
/// and the user's key (u128), little-endian.
const ENTRY_BYTES: usize = 24;

/// The users a record counts first in the periods of one UTC day: by period id, then by
/// event name (encoded as in rollups).
pub type DayUsers = BTreeMap<String, BTreeMap<String, BTreeSet<UserKey>>>;

/// A user list's id in its day's collection: `<record:012>|<chunk:04>`.
pub fn user_list_id(record: u64, chunk: usize) -> String {
    format!("{record:012}|{chunk:04}")
}

/// A record's user-list documents for one UTC day of one partition:
/// `{_id, p, k, periods: [ids], events: [names], pairs: <binary>}`, where `pairs` holds
/// (period index, event index, user key) entries. One binary value rather than arrays of
/// names: a store reads it back several times faster (FerretDB decodes every array element).
pub fn user_lists(partition: u32, record: u64, users: &DayUsers) -> Vec<Document> {
    let entries: Vec<(&String, &String, UserKey)> = users
        .iter()
        .flat_map(|(period, events)| {
            events.iter().flat_map(move |(event, users)| users.iter().map(move |u| (period, event, *u)))
        })
        .collect();
    entries
        .chunks(ENTRIES_PER_LIST)
        .enumerate()
        .map(|(chunk, entries)| {
            let mut periods: Vec<&str> = Vec::new();
            let mut events: Vec<&str> = Vec::new();
            let mut pairs = Vec::with_capacity(entries.len() * ENTRY_BYTES);
            for (period, event, user) in entries {
                let p = index_of(&mut periods, period);
                let e = index_of(&mut events, event);
                pairs.extend_from_slice(&p.to_le_bytes());
                pairs.extend_from_slice(&e.to_le_bytes());
                pairs.extend_from_slice(&user.0.to_le_bytes());
            }
            doc! {
                "_id": user_list_id(record, chunk),
                "p": i64::from(partition),
                "k": record as i64,
                "periods": periods,
                "events": events,
                "pairs": Binary { subtype: BinarySubtype::Generic, bytes: pairs },
            }
        })
        .collect()
}

/// The index of `name` in `names`, added last when absent (entries come sorted, so the
/// name is last or new).
fn index_of<'a>(names: &mut Vec<&'a str>, name: &'a str) -> u32 {
    match names.iter().rposition(|n| *n == name) {
        Some(i) => i as u32,
        None => {
            names.push(name);
            (names.len() - 1) as u32
        }
    }
}

/// The (period id, event, user) entries of a user-list document.
pub fn list_entries(list: &Document) -> Result<Vec<(&str, &str, UserKey)>, StoreError> {
    let malformed = || StoreError::Malformed(format!("user list {:?}", list.get("_id")));
    let names = |field: &str| -> Result<Vec<&str>, StoreError> {
        let array = list.get_array(field).map_err(|_| malformed())?;
        array.iter().map(|b| b.as_str().ok_or_else(malformed)).collect()
    };
    let (periods, events) = (names("periods")?, names("events")?);
    let pairs = list.get_binary_generic("pairs").map_err(|_| malformed())?;
    if pairs.len() % ENTRY_BYTES != 0 {
        return Err(malformed());
    }
    pairs
        .chunks_exact(ENTRY_BYTES)
        .map(|entry| {
            let index =
                |at: usize| u32::from_le_bytes(entry[at..at + 4].try_into().unwrap_or_default()) as usize;
            let key = u128::from_le_bytes(entry[8..].try_into().unwrap_or_default());
            match (periods.get(index(0)), events.get(index(4))) {
                (Some(period), Some(event)) => Ok((*period, *event, UserKey(key))),
                _ => Err(malformed()),
            }
        })
        .collect()
}

/// A batch's record of the log before it is committed: its period documents, and the
/// users it counts first, by period id and encoded event name.
pub struct RecordDelta {
    pub periods: Vec<Document>,
    /// The periods of `periods`, in the same order.
    keys: Vec<PeriodKey>,
    record: u64,
    counted: Vec<(String, String, UserKey)>,
}

impl RecordDelta {
    /// Tells `memory` the users now counted, once the record is committed.
    pub fn remember(&self, memory: &mut WriterMemory) {
        for (period, event, user) in &self.counted {
            memory.applied(period, [(event.as_str(), *user)]);
        }
        memory.committed(self.record);
    }

    /// The period documents the record changes, as change notices name them.
    pub fn period_doc_ids(&self, partition: u32) -> Vec<String> {
        self.keys.iter().map(|key| period_doc_id(key, partition)).collect()
    }
}

/// A batch's events in one period, by event name.
type PeriodItems<'e> = BTreeMap<String, Vec<&'e BufferedEvent>>;

impl Store {
    /// A batch's contribution to every bucket its events fall in (the events its entries
    /// stored first, [`Store::insert_events`]), as the period documents of its log record:
    /// `{id, i, s, ev: {<event>: {n, u, num}}}`. Writes the record's user lists first (the
    /// users it counts). Once the record is committed, [`RecordDelta::remember`] tells the
    /// memory.
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
        memory.begin_record(attempt.record);
        let with_users: Vec<PeriodKey> =
            periods.keys().filter(|p| counts_users(p.interval)).copied().collect();
        let unknown: Vec<PeriodKey> =
            with_users.iter().filter(|p| !memory.knows_in(&p.id(), &utc_day(p.start))).copied().collect();
        if !unknown.is_empty() {
            self.learn_users(lease.partition, attempt.record, &unknown, memory).await?;
        }
        // The users each period's buckets count first, and their lists by day collection.
        let mut new_users: HashMap<(PeriodKey, String), i64> = HashMap::new();
        let mut counted = Vec::new();
        let mut lists: BTreeMap<String, DayUsers> = BTreeMap::new();
        for period in &with_users {
            let id = period.id();
            let mut users: BTreeMap<String, BTreeSet<UserKey>> = BTreeMap::new();
            for (event, list) in &periods[period] {
                let event = encode_key(event);
                let new: BTreeSet<UserKey> = list
                    .iter()
                    .map(|e| UserKey::of(&e.distinct_id))
                    .filter(|u| !memory.counted(&id, &event, *u))
                    .collect();
                if new.is_empty() {
                    continue;
                }
                new_users.insert((*period, event.clone()), new.len() as i64);
                counted.extend(new.iter().map(|u| (id.clone(), event.clone(), *u)));
                users.insert(event, new);
            }
            if !users.is_empty() {
                lists
                    .entry(bucket_users_collection(period.start, lease.partition))
                    .or_default()
                    .insert(id, users);
            }
        }
        // One collection per UTC day, one after the other (as the raw events). A duplicate
        // is the same list, written by an earlier attempt of the record.
        for (name, users) in &lists {
            let docs = user_lists(lease.partition, attempt.record, users);
            crate::insert_new(&self.db.collection::<Document>(name), docs).await?;
        }
        let mut out = Vec::with_capacity(periods.len());
        for (period, items) in &periods {
            let mut ev = Document::new();
            for (event, list) in items {
                let mut contribution = Contribution::default();
                for e in list {
                    contribution.add(e, rollups.numeric);
                }
                let event = encode_key(event);
                let mut bucket = doc! { "n": contribution.events as i64 };
                if counts_users(period.interval) {
                    bucket.insert("u", new_users.get(&(*period, event.clone())).copied().unwrap_or(0));
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
                ev.insert(event, bucket);
            }
            out.push(doc! {
                "id": period.id(),
                "i": interval_name(period.interval),
                "s": period.start,
                "ev": ev,
            });
        }
        Ok(RecordDelta {
            periods: out,
            keys: periods.keys().copied().collect(),
            record: attempt.record,
            counted,
        })
    }

    /// Reads into `memory` the users the partition's records before `record` counted in
    /// each of `periods` (their user lists; those of `record` itself are an earlier
    /// attempt's, which this one writes again), and in every other period of the same UTC
    /// days: one read per day of the partition's lists, which a store without indexes pays
    /// in full anyway, so a backfill reads each day once and not once per batch.
    async fn learn_users(
        &self,
        partition: u32,
        record: u64,
        periods: &[PeriodKey],
        memory: &mut WriterMemory,
    ) -> Result<(), StoreError> {
        let mut by_day: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for period in periods {
            by_day.entry(utc_day(period.start)).or_default().push(period.id());
        }
        for (day, ids) in by_day {
            let name = day_collection(&day, partition);
            let reading = std::time::Instant::now();
            let mut users: HashMap<String, Vec<(String, UserKey)>> = HashMap::new();
            let mut cursor = self
                .db
                .collection::<Document>(&name)
                .find(doc! { "k": { "$lt": record as i64 } })
                .projection(doc! { "k": 1, "periods": 1, "events": 1, "pairs": 1 })
                .await?;
            let mut lists = 0;
            while let Some(list) = cursor.try_next().await? {
                lists += 1;
                // The filter may not be applied by every store: checked again.
                if crate::log::int(list.get("k")) >= record {
                    continue;
                }
                for (period, event, user) in list_entries(&list)? {
                    users.entry(period.to_string()).or_default().push((event.to_string(), user));
                }
            }
            for id in ids {
                users.entry(id).or_default();
            }
            let pairs: usize = users.values().map(Vec::len).sum();
            for (id, pairs) in users {
                // A period it knows already holds at least as much (records up to the one
                // before this): kept as it is.
                if !memory.knows(&id) {
                    memory.learned(&id, &day, pairs.iter().map(|(e, u)| (e.as_str(), *u)));
                }
            }
            memory.learned_day(&day);
            tracing::debug!(
                collection = %name,
                lists,
                pairs,
                ms = reading.elapsed().as_millis() as u64,
                "user lists read"
            );
        }
        Ok(())
    }
}

/// The document of one partition's share of a period as the query API names it in change
/// notices: `<interval>|<start>|p<partition>`.
pub fn period_doc_id(key: &PeriodKey, partition: u32) -> String {
    format!("{}|p{partition}", key.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_days_lists_are_cut_in_the_same_documents_every_time_and_hold_every_user() {
        let mut users = DayUsers::new();
        for hour in 0..25 {
            let events = users.entry(format!("hour|{}", hour * 3_600_000)).or_default();
            for event in ["signed up", "paid"] {
                events
                    .insert(event.to_string(), (0..500).map(|u| UserKey::of(&format!("user-{u}"))).collect());
            }
        }
        let lists = user_lists(3, 42, &users);
        assert_eq!(lists.len(), 3, "25,000 entries in documents of {ENTRIES_PER_LIST}");
        assert_eq!(lists, user_lists(3, 42, &users), "every attempt writes the same documents");
        let ids: Vec<&str> = lists.iter().map(|d| d.get_str("_id").unwrap_or_default()).collect();
        assert_eq!(ids, ["000000000042|0000", "000000000042|0001", "000000000042|0002"]);
        let mut read = DayUsers::new();
        for list in &lists {
            assert_eq!((list.get_i64("p"), list.get_i64("k")), (Ok(3), Ok(42)));
            for (period, event, user) in list_entries(list).expect("a list as written") {
                read.entry(period.to_string())
                    .or_default()
                    .entry(event.to_string())
                    .or_default()
                    .insert(user);
            }
        }
        assert_eq!(read, users);
        let mut torn = lists[0].clone();
        torn.insert("pairs", Binary { subtype: BinarySubtype::Generic, bytes: vec![0; ENTRY_BYTES + 1] });
        assert!(matches!(list_entries(&torn), Err(StoreError::Malformed(_))));
        let mut unnamed = lists[0].clone();
        unnamed.insert("events", Vec::<String>::new());
        assert!(matches!(list_entries(&unnamed), Err(StoreError::Malformed(_))));
    }

    #[test]
    fn a_partitions_lists_of_a_day_sort_after_the_day_that_retention_keeps() {
        let day = 1_796_515_200_000; // 2026-12-06T00:00:00Z
        assert_eq!(bucket_users_collection(day + 3_600_000, 7), "bucket_users_20261206_p7");
        let oldest_kept = format!("{BUCKET_USERS_PREFIX}{}", utc_day(day));
        assert!(bucket_users_collection(day, 0) >= oldest_kept);
        assert!(bucket_users_collection(day - 1, 12) < oldest_kept);
    }
}
