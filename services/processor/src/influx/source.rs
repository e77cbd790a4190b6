//! Reads the rollups the sink copies: every event's bucket of one interval from a start
//! on, summed over the partitions' period documents (layout in pulse-store's `rollups`).

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use pulse_core::config::RollupInterval;
use pulse_core::rollup::{BucketKey, NumericStat, PeriodKey, counts_users, decode_key, interval_name};
use pulse_store::Store;
use pulse_store::collections::ROLLUPS;
use pulse_store::recount::BucketTotals;

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
        let start = int(d.get("start")) as i64;
        let Ok(events) = d.get_document("ev") else { continue };
        for (name, bucket) in events {
            let Some(bucket) = bucket.as_document() else { continue };
            let share = totals(bucket, counts_users(interval));
            out.entry(BucketKey { event: decode_key(name), interval, start })
                .and_modify(|t| t.merge(&share))
                .or_insert(share);
        }
    }
    Ok(out)
}

/// A partition's share of a bucket: `{ n, u, num: { <path>: { sum, count, min, max } } }`.
fn totals(bucket: &Document, users: bool) -> BucketTotals {
    let mut numeric = BTreeMap::new();
    if let Ok(num) = bucket.get_document("num") {
        for (path, stat) in num {
            if let Some(s) = stat.as_document() {
                numeric.insert(
                    path.clone(),
                    NumericStat {
                        sum: float(s.get("sum")),
                        min: float(s.get("min")),
                        max: float(s.get("max")),
                        count: int(s.get("count")),
                    },
                );
            }
        }
    }
    BucketTotals { events: int(bucket.get("n")), users: users.then(|| int(bucket.get("u"))), numeric }
}

fn int(v: Option<&Bson>) -> u64 {
    match v {
        Some(Bson::Int64(n)) => *n as u64,
        Some(Bson::Int32(n)) => *n as u64,
        Some(Bson::Double(n)) => *n as u64,
        _ => 0,
    }
}

fn float(v: Option<&Bson>) -> f64 {
    match v {
        Some(Bson::Double(n)) => *n,
        Some(Bson::Int64(n)) => *n as f64,
        Some(Bson::Int32(n)) => f64::from(*n),
        _ => 0.0,
    }
}
