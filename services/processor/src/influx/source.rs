//! Reads the rollups the sink copies: every event's bucket of one interval from a start
//! on, summed over the partitions' period documents (layout in pulse-store's `rollups`).

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use pulse_core::config::RollupInterval;
use pulse_core::rollup::{BucketKey, PeriodKey, counts_users, decode_key, interval_name};
use pulse_store::Store;
use pulse_store::collections::ROLLUPS;
use pulse_store::recount::{BucketTotals, totals_of};

/// Every bucket of `interval` whose period starts at or after `from` (epoch ms).
pub async fn buckets_since(
    store: &Store,
    interval: RollupInterval,
    from: i64,
) -> Result<BTreeMap<BucketKey, BucketTotals>, mongodb::error::Error> {
    // `_id` is `<interval>|<start, 15 digits>|p<n>`: a range of ids is a range of time,
    // and `~` sorts after every digit.
    let filter = doc! { "_id": {
        "$gte": PeriodKey { interval, start: from }.id(),
        "$lt": format!("{}|~", interval_name(interval)),
    } };
    let mut cursor = store
        .database()
        .collection::<Document>(ROLLUPS)
        .find(filter)
        .projection(doc! { "start": 1, "ev": 1 })
        .await?;
    let mut out: BTreeMap<BucketKey, BucketTotals> = BTreeMap::new();
    while let Some(d) = cursor.try_next().await? {
        let start = d.get_i64("start").unwrap_or_default();
        let Ok(events) = d.get_document("ev") else { continue };
        for (name, bucket) in events {
            let Some(bucket) = bucket.as_document() else { continue };
            let share = totals_of(bucket, counts_users(interval));
            out.entry(BucketKey { event: decode_key(name), interval, start })
                .and_modify(|t| t.merge(&share))
                .or_insert(share);
        }
    }
    Ok(out)
}
