//! Reads for the query API: rollup buckets by time range, through their ids (bucket ids
//! sort by interval and time). Events by name and time are read from the event blocks
//! ([`crate::blocks`], `Store::events_between`).

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use pulse_core::config::RollupInterval;
use pulse_core::rollup::{PeriodKey, counts_users, decode_key, encode_key};

use crate::collections::ROLLUPS;
use crate::recount::{BucketTotals, totals_of};
use crate::{Store, StoreError};

impl Store {
    /// One event's buckets of `interval` starting in `[from, to)`, by start, summed over
    /// partitions. Periods without the event are absent.
    pub async fn rollup_series(
        &self,
        interval: RollupInterval,
        event: &str,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<i64, BucketTotals>, StoreError> {
        let field = format!("ev.{}", encode_key(event));
        let filter = id_range(interval, from, to);
        let mut cursor = self
            .db
            .collection::<Document>(ROLLUPS)
            .find(filter)
            .projection(doc! { "start": 1, &field: 1 })
            .await?;
        let mut series: BTreeMap<i64, BucketTotals> = BTreeMap::new();
        while let Some(d) = cursor.try_next().await? {
            let Ok(bucket) = d.get_document("ev").and_then(|ev| ev.get_document(encode_key(event))) else {
                continue;
            };
            let start = d.get_i64("start").unwrap_or_default();
            let share = totals_of(bucket, counts_users(interval));
            series.entry(start).and_modify(|t| t.merge(&share)).or_insert(share);
        }
        Ok(series)
    }

    /// Every event name with a day bucket starting in `[from, to)`, and its event count.
    pub async fn event_names(&self, from: i64, to: i64) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut cursor = self
            .db
            .collection::<Document>(ROLLUPS)
            .find(id_range(RollupInterval::Day, from, to))
            .projection(doc! { "ev": 1 })
            .await?;
        let mut names: BTreeMap<String, u64> = BTreeMap::new();
        while let Some(d) = cursor.try_next().await? {
            let Ok(events) = d.get_document("ev") else { continue };
            for (name, bucket) in events {
                let n = bucket.as_document().map(|b| totals_of(b, false).events).unwrap_or(0);
                *names.entry(decode_key(name)).or_default() += n;
            }
        }
        Ok(names)
    }
}

/// The period documents of `interval` starting in `[from, to)`: an `_id` range.
fn id_range(interval: RollupInterval, from: i64, to: i64) -> Document {
    let bound = |t: i64| PeriodKey { interval, start: t }.id();
    doc! { "_id": { "$gte": bound(from), "$lt": bound(to) } }
}

/// One partition's share of one period, as stored: every event's bucket of the period.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodShare {
    pub period: PeriodKey,
    pub partition: u32,
    /// The stream position of the last entry applied (shares only grow with it).
    pub watermark: String,
    /// By event name.
    pub buckets: BTreeMap<String, BucketTotals>,
}

impl Store {
    /// Every hour and day period share (minute shares are not read: queries do not use
    /// them). A full pass over the rollups.
    pub async fn period_shares(&self) -> Result<Vec<PeriodShare>, StoreError> {
        let filter = doc! { "interval": { "$in": ["hour", "day"] } };
        let mut cursor = self.db.collection::<Document>(ROLLUPS).find(filter).await?;
        let mut out = Vec::new();
        while let Some(d) = cursor.try_next().await? {
            if let Some(share) = share_of(&d) {
                out.push(share);
            }
        }
        Ok(out)
    }

    /// One period share, by its document's `_id` (`<interval>|<start>|p<n>`).
    pub async fn period_share(&self, id: &str) -> Result<Option<PeriodShare>, StoreError> {
        let found = self.db.collection::<Document>(ROLLUPS).find_one(doc! { "_id": id }).await?;
        Ok(found.as_ref().and_then(share_of))
    }
}

fn share_of(d: &Document) -> Option<PeriodShare> {
    let interval = pulse_core::rollup::interval_of_name(d.get_str("interval").ok()?)?;
    let period = PeriodKey { interval, start: d.get_i64("start").ok()? };
    let partition = u32::try_from(d.get_i64("p").ok()?).ok()?;
    let buckets = d
        .get_document("ev")
        .map(|ev| {
            ev.iter()
                .filter_map(|(name, b)| {
                    Some((decode_key(name), totals_of(b.as_document()?, counts_users(interval))))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(PeriodShare {
        period,
        partition,
        watermark: d.get_str("wm").unwrap_or_default().to_string(),
        buckets,
    })
}
