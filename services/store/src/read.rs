//! Reads for the query API: rollup buckets, summed from the partitions' rollup logs
//! ([`crate::log`]). Events by name and time are read from the event blocks
//! ([`crate::blocks`], `Store::events_between`).

use std::collections::BTreeMap;

use mongodb::bson::{Document, doc};
use pulse_core::config::RollupInterval;
use pulse_core::rollup::{PeriodKey, counts_users, decode_key, interval_of_name};

use crate::recount::{BucketTotals, totals_of};
use crate::{Store, StoreError};

impl Store {
    /// One event's buckets of `interval` starting in `[from, to)`, summed over partitions.
    pub async fn rollup_series(
        &self,
        interval: RollupInterval,
        event: &str,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<i64, BucketTotals>, StoreError> {
        let mut series: BTreeMap<i64, BucketTotals> = BTreeMap::new();
        for share in self
            .shares_matching(doc! {}, |p| p.interval == interval && p.start >= from && p.start < to)
            .await?
        {
            if let Some(b) = share.buckets.get(event) {
                series.entry(share.period.start).and_modify(|t| t.merge(b)).or_insert_with(|| b.clone());
            }
        }
        Ok(series)
    }

    /// Event names with their event counts over the days starting in `[from, to)`.
    pub async fn event_names(&self, from: i64, to: i64) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut names: BTreeMap<String, u64> = BTreeMap::new();
        let day = |p: &PeriodKey| p.interval == RollupInterval::Day && p.start >= from && p.start < to;
        for share in self.shares_matching(doc! {}, day).await? {
            for (name, totals) in share.buckets {
                *names.entry(name).or_default() += totals.events;
            }
        }
        Ok(names)
    }

    /// Each partition's share of the periods that `keep` selects, summed from the deltas
    /// that `filter` selects.
    async fn shares_matching(
        &self,
        filter: Document,
        keep: impl Fn(&PeriodKey) -> bool,
    ) -> Result<Vec<PeriodShare>, StoreError> {
        let mut shares: BTreeMap<(PeriodKey, u32), PeriodShare> = BTreeMap::new();
        for delta in self.live_records(filter).await? {
            let partition = crate::log::int(delta.get("p")) as u32;
            let last = delta.get_str("last").unwrap_or_default();
            for period in &crate::log::periods_of(&delta)? {
                let Some(key) = period_key(period) else { continue };
                if !keep(&key) {
                    continue;
                }
                let share = shares.entry((key, partition)).or_insert_with(|| PeriodShare {
                    period: key,
                    partition,
                    watermark: String::new(),
                    buckets: BTreeMap::new(),
                });
                if share.watermark.as_str() < last {
                    share.watermark = last.to_string();
                }
                let Ok(ev) = period.get_document("ev") else { continue };
                for (name, bucket) in ev {
                    let Some(bucket) = bucket.as_document() else { continue };
                    let totals = totals_of(bucket, counts_users(key.interval));
                    share.buckets.entry(decode_key(name)).and_modify(|t| t.merge(&totals)).or_insert(totals);
                }
            }
        }
        Ok(shares.into_values().collect())
    }
}

/// A period entry of a delta (`{id, i, s, ev}`) as its key.
pub(crate) fn period_key(period: &Document) -> Option<PeriodKey> {
    Some(PeriodKey {
        interval: interval_of_name(period.get_str("i").ok()?)?,
        start: period.get_i64("s").ok()?,
    })
}

/// One partition's share of one period's buckets: what the query API keeps in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodShare {
    pub period: PeriodKey,
    pub partition: u32,
    /// The last stream entry of the newest record it sums: a share with a later one is newer.
    pub watermark: String,
    pub buckets: BTreeMap<String, BucketTotals>,
}

impl Store {
    /// Every partition's share of every hour and day period.
    pub async fn period_shares(&self) -> Result<Vec<PeriodShare>, StoreError> {
        self.shares_matching(doc! {}, |p| p.interval != RollupInterval::Minute).await
    }

    /// One partition's share of one period, named `<interval>|<start>|p<partition>` (as in
    /// change notices), if it has any records.
    pub async fn period_share(&self, id: &str) -> Result<Option<PeriodShare>, StoreError> {
        let Some((period_id, partition)) = id.rsplit_once("|p") else { return Ok(None) };
        let Ok(partition) = partition.parse::<u32>() else { return Ok(None) };
        let filter = doc! { "p": i64::from(partition), "pids": period_id };
        let found = self.shares_matching(filter, |p| p.id() == period_id).await?;
        Ok(found.into_iter().find(|s| s.partition == partition))
    }
}

impl Store {
    /// Every bucket of `interval` whose period starts at or after `from`, summed over
    /// partitions.
    pub async fn buckets_since(
        &self,
        interval: RollupInterval,
        from: i64,
    ) -> Result<BTreeMap<pulse_core::rollup::BucketKey, BucketTotals>, StoreError> {
        let mut out: BTreeMap<pulse_core::rollup::BucketKey, BucketTotals> = BTreeMap::new();
        for share in self.shares_matching(doc! {}, |p| p.interval == interval && p.start >= from).await? {
            for (event, totals) in share.buckets {
                out.entry(share.period.bucket(&event)).and_modify(|t| t.merge(&totals)).or_insert(totals);
            }
        }
        Ok(out)
    }
}
