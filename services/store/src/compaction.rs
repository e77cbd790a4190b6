//! Compaction of the rollup log: a partition's committed records, but its newest, merged
//! into versions of its shares, so that the log stays small (a writer's start and the query
//! API's reads pass over it) and rollup retention drops expired periods.
//!
//! Versions live apart from the log, in `rollup_versions`, so that reading where the log
//! ends never passes over history. A partition's shares are one document per UTC day of
//! the periods' starts, `c|p<p>|<yyyymmdd>|<b>`, where `b` is the compaction that wrote it.
//! A marker `~|p<p>|<b>` in the log (small, unlike the versions) says compaction `b` is
//! whole and lists, per day, the compaction whose document is current (its manifest).
//! Readers take the documents the newest marker lists and the records after it
//! ([`Store::live_records`]), reading the versions once and only for those documents. A compaction rewrites only the days its records touch (and
//! days whose minute or hour periods just expired), so its cost follows the traffic since
//! the last one, not the history; only after its marker are the older documents of those
//! days and the merged records deleted. A version is a function of what it merges, so two
//! compactions at once write the same documents, and one interrupted anywhere leaves the
//! sums readable as before.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use pulse_core::config::RollupInterval;
use pulse_core::rollup::{PeriodKey, counts_users};

use crate::log::{PACKED_PERIODS, ROLLUP_DELTAS, ROLLUP_LOG, int, pack_periods, periods_of};
use crate::read::period_key;
use crate::recount::{BucketTotals, document_of_totals, totals_of};
use crate::{Store, StoreError, is_duplicate};

/// The collection of compacted versions of the rollup log.
pub const ROLLUP_VERSIONS: &str = "rollup_versions";

/// How long minute and hour periods are kept (day periods are kept for good).
const MINUTE_DAYS: i64 = 14;
const HOUR_DAYS: i64 = 400;
const DAY_MS: i64 = 86_400_000;

/// The fewest records worth a compaction.
pub const MIN_RECORDS: usize = 2;

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    /// The version written (0: none).
    pub version: u64,
    pub records_merged: usize,
    /// Days whose documents it wrote again.
    pub days_written: usize,
    pub periods_dropped: usize,
}

/// A version document's place: partition, UTC day (`yyyymmdd`), compaction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DayVersion {
    partition: u32,
    day: String,
    version: u64,
}

impl DayVersion {
    fn id(&self) -> String {
        format!("c|p{}|{}|{:012}", self.partition, self.day, self.version)
    }
}

/// A partition's newest whole compaction, as its marker in the log says: the compaction,
/// and per UTC day the compaction whose document readers take for it, and when its first
/// minute or hour period expires.
#[derive(Debug, Clone, Default, PartialEq)]
struct Manifest {
    version: u64,
    days: BTreeMap<String, u64>,
    expiring: BTreeMap<String, i64>,
}

impl Manifest {
    fn of(marker: &Document) -> Self {
        let days = marker
            .get_document("days")
            .map(|d| d.iter().map(|(day, b)| (day.clone(), int(Some(b)))).collect())
            .unwrap_or_default();
        let expiring = marker
            .get_document("expiring")
            .map(|d| d.iter().filter_map(|(day, at)| at.as_i64().map(|at| (day.clone(), at))).collect())
            .unwrap_or_default();
        Manifest { version: int(marker.get("upto")), days, expiring }
    }

    /// The ids of the day documents readers take.
    fn documents(&self, partition: u32) -> impl Iterator<Item = String> + '_ {
        self.days.iter().map(move |(day, b)| DayVersion { partition, day: day.clone(), version: *b }.id())
    }
}

impl Store {
    /// Every partition's newest whole compaction (from the markers in the log, which is
    /// small: no pass over the versions).
    async fn manifests(&self, partition: Option<u32>) -> Result<HashMap<u32, Manifest>, StoreError> {
        let (from, to) = match partition {
            Some(p) => (format!("~|p{p}|"), format!("~|p{p}|~")),
            None => ("~|".to_string(), "~}".to_string()),
        };
        let filter = doc! { "_id": { "$gte": from, "$lt": to }, "done": true };
        let mut cursor = self.db.collection::<Document>(ROLLUP_LOG).find(filter).await?;
        let mut out: HashMap<u32, Manifest> = HashMap::new();
        while let Some(m) = cursor.try_next().await? {
            let manifest = Manifest::of(&m);
            let p = int(m.get("p")) as u32;
            if out.get(&p).is_none_or(|known| known.version < manifest.version) {
                out.insert(p, manifest);
            }
        }
        Ok(out)
    }

    /// The documents whose sum is the rollups, among those `filter` selects: each partition's
    /// current day versions and its records after its newest compaction.
    pub(crate) async fn live_records(&self, filter: Document) -> Result<Vec<Document>, StoreError> {
        let manifests = self.manifests(None).await?;
        let mut out = Vec::new();
        let current: Vec<String> = manifests.iter().flat_map(|(p, m)| m.documents(*p)).collect();
        if !current.is_empty() {
            let mut f = filter.clone();
            f.insert("_id", doc! { "$in": current });
            let mut cursor = self.db.collection::<Document>(ROLLUP_VERSIONS).find(f).await?;
            while let Some(d) = cursor.try_next().await? {
                out.push(d);
            }
        }
        let committed = self.committed(None).await?;
        let mut f = filter;
        f.insert("_id", doc! { "$gte": "d|", "$lt": "d}" });
        let mut cursor = self.db.collection::<Document>(ROLLUP_DELTAS).find(f).await?;
        while let Some(d) = cursor.try_next().await? {
            let (partition, record) = (int(d.get("p")) as u32, int(d.get("k")));
            let version = manifests.get(&partition).map(|m| m.version);
            if version.is_none_or(|v| record > v) && committed.contains(&(partition, record)) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// The committed records (partition, record) of one partition's log or of all.
    async fn committed(&self, partition: Option<u32>) -> Result<BTreeSet<(u32, u64)>, StoreError> {
        let (from, to) = match partition {
            Some(p) => (format!("d|p{p}|"), format!("d|p{p}|~")),
            None => ("d|".to_string(), "d}".to_string()),
        };
        let mut cursor = self
            .db
            .collection::<Document>(ROLLUP_LOG)
            .find(doc! { "_id": { "$gte": from, "$lt": to } })
            .projection(doc! { "p": 1, "k": 1 })
            .await?;
        let mut out = BTreeSet::new();
        while let Some(d) = cursor.try_next().await? {
            out.insert((int(d.get("p")) as u32, int(d.get("k"))));
        }
        Ok(out)
    }

    /// Merges the partition's records, all but the newest, into its day versions: rewrites
    /// the days they touch, and the days whose minute periods are older than 14 days or hour
    /// periods older than 400 days (`now_ms`), which it leaves out.
    pub async fn compact_rollup_log(&self, partition: u32, now_ms: i64) -> Result<Compaction, StoreError> {
        let log = self.db.collection::<Document>(ROLLUP_LOG);
        let versions = self.db.collection::<Document>(ROLLUP_VERSIONS);
        let old = self.manifests(Some(partition)).await?.remove(&partition).unwrap_or_default();
        let prefix = format!("d|p{partition}|");
        let mut committed: Vec<u64> = self
            .committed(Some(partition))
            .await?
            .into_iter()
            .map(|(_, k)| k)
            .filter(|k| *k > old.version)
            .collect();
        // The newest stays a record: it tells a starting writer where the log ends.
        committed.pop();
        if committed.len() < MIN_RECORDS {
            return Ok(Compaction::default());
        }
        let upto = committed.last().copied().unwrap_or(0);
        let deltas = self.db.collection::<Document>(ROLLUP_DELTAS);
        let range =
            doc! { "$gt": format!("{prefix}{:012}", old.version), "$lte": format!("{prefix}{upto:012}") };
        let mut records: Vec<Document> = deltas.find(doc! { "_id": range }).await?.try_collect().await?;
        records.sort_by_key(|d| int(d.get("k")));
        if records.len() != committed.len() {
            return Err(StoreError::Encode(format!(
                "partition {partition}'s rollup log commits {} records after {} but holds the content of {}",
                committed.len(),
                old.version,
                records.len()
            )));
        }
        let version = upto;
        // The days to write: those the records touch, and those holding expired periods.
        let mut sources = records.iter().map(periods_of).collect::<Result<Vec<_>, _>>()?;
        let mut days: BTreeSet<String> = BTreeSet::new();
        for period in sources.iter().flatten() {
            days.extend(period_key(period).map(|key| crate::rollups::utc_day(key.start)));
        }
        days.extend(old.expiring.iter().filter(|(_, at)| **at <= now_ms).map(|(day, _)| day.clone()));
        let records_merged = records.len();
        let replaced: Vec<String> = days
            .iter()
            .filter_map(|day| {
                old.days.get(day).map(|b| DayVersion { partition, day: day.clone(), version: *b })
            })
            .map(|v| v.id())
            .collect();
        if !replaced.is_empty() {
            let mut cursor = versions.find(doc! { "_id": { "$in": &replaced } }).await?;
            while let Some(d) = cursor.try_next().await? {
                sources.push(periods_of(&d)?);
            }
        }
        let (mut merged, dropped) = merge(&sources, now_ms);
        let mut manifest = Manifest { version, days: old.days.clone(), expiring: old.expiring.clone() };
        let mut docs = Vec::with_capacity(days.len());
        for day in &days {
            // A day left without periods is written empty: it replaces the older one.
            let periods = merged.remove(day).unwrap_or_default();
            let pids: Vec<Bson> =
                periods.iter().filter_map(|p| p.get_str("id").ok()).map(Bson::from).collect();
            manifest.days.insert(day.clone(), version);
            match expiring_at(&periods) {
                Some(at) => manifest.expiring.insert(day.clone(), at),
                None => manifest.expiring.remove(day),
            };
            docs.push(doc! {
                "_id": DayVersion { partition, day: day.clone(), version }.id(),
                "p": i64::from(partition),
                "day": day,
                "b": version as i64,
                "pids": pids,
                PACKED_PERIODS: pack_periods(&periods)?,
            });
        }
        if !docs.is_empty() {
            crate::insert_new(&versions, docs).await?;
        }
        let days_doc: Document =
            manifest.days.iter().map(|(d, b)| (d.clone(), Bson::Int64(*b as i64))).collect();
        let expiring_doc: Document =
            manifest.expiring.iter().map(|(d, at)| (d.clone(), Bson::Int64(*at))).collect();
        let marker = doc! {
            "_id": format!("~|p{partition}|{version:012}"),
            "p": i64::from(partition),
            "upto": version as i64,
            "done": true,
            "days": days_doc,
            "expiring": expiring_doc,
            "at": DateTime::now(),
        };
        match log.insert_one(marker).await {
            Ok(_) => {}
            Err(e) if is_duplicate(&e) => {}
            Err(e) => return Err(e.into()),
        }
        // Readers now take the new version: what it replaces can go (the contents first, so
        // that a commit never outlives its content).
        let merged = doc! { "_id": { "$gte": &prefix, "$lte": format!("{prefix}{version:012}") } };
        deltas.delete_many(merged.clone()).await?;
        log.delete_many(merged).await?;
        // The ballots of merged records are spent: a starting writer reads only those of the
        // record after the log's end.
        let ballots = format!("b|p{partition}|");
        log.delete_many(doc! { "_id": { "$gte": &ballots, "$lt": format!("{ballots}{version:012}~") } })
            .await?;
        if !replaced.is_empty() {
            versions.delete_many(doc! { "_id": { "$in": replaced } }).await?;
        }
        let markers = format!("~|p{partition}|");
        log.delete_many(doc! { "_id": { "$gte": &markers, "$lt": format!("{markers}{version:012}") } })
            .await?;
        Ok(Compaction { version, records_merged, days_written: days.len(), periods_dropped: dropped })
    }
}

/// How long each interval's periods are kept, in ms (`None`: for good).
fn kept_for(interval: RollupInterval) -> Option<i64> {
    match interval {
        RollupInterval::Minute => Some(MINUTE_DAYS * DAY_MS),
        RollupInterval::Hour => Some(HOUR_DAYS * DAY_MS),
        RollupInterval::Day => None,
    }
}

/// When the first of `periods` expires (epoch ms), if any does.
fn expiring_at(periods: &[Document]) -> Option<i64> {
    periods
        .iter()
        .filter_map(period_key)
        .filter_map(|key| kept_for(key.interval).map(|kept| key.start + kept))
        .min()
}

/// The periods of `sources` summed, by UTC day of their start (`yyyymmdd`), without the
/// expired ones; and how many periods were dropped.
fn merge(sources: &[Vec<Document>], now_ms: i64) -> (BTreeMap<String, Vec<Document>>, usize) {
    let mut sums: BTreeMap<PeriodKey, BTreeMap<String, BucketTotals>> = BTreeMap::new();
    for source in sources {
        for period in source {
            let Some(key) = period_key(period) else { continue };
            let Ok(ev) = period.get_document("ev") else { continue };
            let buckets = sums.entry(key).or_default();
            for (name, bucket) in ev {
                let Some(bucket) = bucket.as_document() else { continue };
                let share = totals_of(bucket, counts_users(key.interval));
                buckets.entry(name.clone()).and_modify(|t| t.merge(&share)).or_insert(share);
            }
        }
    }
    let kept_from = |interval| kept_for(interval).map_or(i64::MIN, |kept| now_ms - kept);
    let mut days: BTreeMap<String, Vec<Document>> = BTreeMap::new();
    let mut dropped = 0;
    for (key, buckets) in sums {
        if key.start < kept_from(key.interval) {
            dropped += 1;
            continue;
        }
        let mut ev = Document::new();
        for (name, totals) in &buckets {
            ev.insert(name, document_of_totals(totals));
        }
        days.entry(crate::rollups::utc_day(key.start)).or_default().push(doc! {
            "id": key.id(),
            "i": pulse_core::rollup::interval_name(key.interval),
            "s": key.start,
            "ev": ev,
        });
    }
    (days, dropped)
}
