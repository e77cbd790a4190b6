//! Compaction of the rollup log: a partition's committed records, but its newest, merged
//! into one version of its shares, so that the log stays small (the writer's start and the
//! query API's reads pass over it) and rollup retention drops expired periods.
//!
//! Version `b` of partition `p` sums its records up to `b`: one document per UTC day of the
//! periods' starts, `c|p<p>|<b>|<yyyymmdd>`, then a marker `c|p<p>|<b>|~` saying the version
//! is whole. Readers take the newest whole version and the records after it
//! ([`Store::live_records`]); only then are the older version and the merged records deleted.
//! A version is a function of the records it sums, so two compactions at once write the same
//! documents, and one interrupted anywhere leaves the log readable as before.

use std::collections::{BTreeMap, HashMap};

use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use pulse_core::config::RollupInterval;
use pulse_core::rollup::{PeriodKey, counts_users};

use crate::log::{ROLLUP_LOG, int};
use crate::read::period_key;
use crate::recount::{BucketTotals, document_of_totals, totals_of};
use crate::{Store, StoreError, is_duplicate};

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
    pub periods_dropped: usize,
}

impl Store {
    /// Every partition's newest whole version (the `upto` of its marker).
    async fn versions(&self, partition: Option<u32>) -> Result<HashMap<u32, u64>, StoreError> {
        let (from, to) = match partition {
            Some(p) => (format!("c|p{p}|"), format!("c|p{p}|~")),
            None => ("c|".to_string(), "c}".to_string()),
        };
        let filter = doc! { "_id": { "$gte": from, "$lt": to }, "done": true };
        let markers: Vec<Document> = self
            .db
            .collection::<Document>(ROLLUP_LOG)
            .find(filter)
            .projection(doc! { "p": 1, "upto": 1 })
            .await?
            .try_collect()
            .await?;
        let mut versions = HashMap::new();
        for m in markers {
            let (p, upto) = (int(m.get("p")) as u32, int(m.get("upto")));
            let v = versions.entry(p).or_insert(upto);
            *v = (*v).max(upto);
        }
        Ok(versions)
    }

    /// The documents whose sum is the rollups, among those `filter` selects: each partition's
    /// newest whole version and its records after it.
    pub(crate) async fn live_records(&self, filter: Document) -> Result<Vec<Document>, StoreError> {
        let versions = self.versions(None).await?;
        let log = self.db.collection::<Document>(ROLLUP_LOG);
        let mut out = Vec::new();
        for (from, to) in [("c|", "c}"), ("d|", "d}")] {
            let mut f = filter.clone();
            f.insert("_id", doc! { "$gte": from, "$lt": to });
            let mut cursor = log.find(f).await?;
            while let Some(d) = cursor.try_next().await? {
                let version = versions.get(&(int(d.get("p")) as u32)).copied();
                let live = match d.get("upto") {
                    Some(_) => !d.get_bool("done").unwrap_or(false) && version == Some(int(d.get("upto"))),
                    None => version.is_none_or(|v| int(d.get("k")) > v),
                };
                if live {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// Merges the partition's records, all but the newest, into a new version, dropping
    /// minute periods older than 14 days and hour periods older than 400 days (`now_ms`).
    pub async fn compact_rollup_log(&self, partition: u32, now_ms: i64) -> Result<Compaction, StoreError> {
        let log = self.db.collection::<Document>(ROLLUP_LOG);
        let old = self.versions(Some(partition)).await?.get(&partition).copied().unwrap_or(0);
        let prefix = format!("d|p{partition}|");
        let mut records: Vec<Document> = log
            .find(doc! { "_id": { "$gt": format!("{prefix}{old:012}"), "$lt": format!("{prefix}~") } })
            .await?
            .try_collect()
            .await?;
        records.sort_by_key(|d| int(d.get("k")));
        // The newest stays a record: it tells a starting writer where the log ends.
        records.pop();
        if records.len() < MIN_RECORDS {
            return Ok(Compaction::default());
        }
        let version = records.last().map(|d| int(d.get("k"))).unwrap_or(0);
        let mut sources = records.clone();
        if old > 0 {
            let from = format!("c|p{partition}|{old:012}|");
            let mut cursor = log.find(doc! { "_id": { "$gte": &from, "$lt": format!("{from}~") } }).await?;
            while let Some(d) = cursor.try_next().await? {
                sources.push(d);
            }
        }
        let (days, dropped) = merge(&sources, now_ms);
        let docs: Vec<Document> = days
            .into_iter()
            .map(|(day, periods)| {
                let pids: Vec<Bson> =
                    periods.iter().filter_map(|p| p.get_str("id").ok()).map(Bson::from).collect();
                doc! {
                    "_id": format!("c|p{partition}|{version:012}|{day}"),
                    "p": i64::from(partition),
                    "upto": version as i64,
                    "pids": pids,
                    "periods": periods,
                }
            })
            .collect();
        if !docs.is_empty() {
            crate::insert_new(&log, docs).await?;
        }
        let marker = doc! {
            "_id": format!("c|p{partition}|{version:012}|~"),
            "p": i64::from(partition),
            "upto": version as i64,
            "done": true,
            "at": DateTime::now(),
        };
        match log.insert_one(marker).await {
            Ok(_) => {}
            Err(e) if is_duplicate(&e) => {}
            Err(e) => return Err(e.into()),
        }
        // Readers now take the new version: the documents it replaces can go.
        log.delete_many(doc! { "_id": { "$gte": &prefix, "$lte": format!("{prefix}{version:012}") } })
            .await?;
        // The ballots of merged records are spent: a starting writer reads only those of the
        // record after the log's end.
        let ballots = format!("b|p{partition}|");
        log.delete_many(doc! { "_id": { "$gte": &ballots, "$lt": format!("{ballots}{version:012}~") } })
            .await?;
        let versions = format!("c|p{partition}|");
        log.delete_many(doc! { "_id": { "$gte": &versions, "$lt": format!("{versions}{version:012}") } })
            .await?;
        Ok(Compaction { version, records_merged: records.len(), periods_dropped: dropped })
    }
}

/// The periods of `sources` summed, by UTC day of their start (`yyyymmdd`), without the
/// expired ones; and how many periods were dropped.
fn merge(sources: &[Document], now_ms: i64) -> (BTreeMap<String, Vec<Document>>, usize) {
    let mut sums: BTreeMap<PeriodKey, BTreeMap<String, BucketTotals>> = BTreeMap::new();
    for source in sources {
        for period in source.get_array("periods").into_iter().flatten().filter_map(|p| p.as_document()) {
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
    let kept_from = |interval| match interval {
        RollupInterval::Minute => now_ms - MINUTE_DAYS * DAY_MS,
        RollupInterval::Hour => now_ms - HOUR_DAYS * DAY_MS,
        RollupInterval::Day => i64::MIN,
    };
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
        let day = crate::rollups::bucket_users_collection(key.start)
            .trim_start_matches(crate::rollups::BUCKET_USERS_PREFIX)
            .to_string();
        days.entry(day).or_default().push(doc! {
            "id": key.id(),
            "i": pulse_core::rollup::interval_name(key.interval),
            "s": key.start,
            "ev": ev,
        });
    }
    (days, dropped)
}
