//! Reads the rollups the sink copies: every event's bucket of one interval from a start
//! on, summed over the partitions' rollup logs (layout in pulse-store's `log`).

use std::collections::BTreeMap;

use pulse_core::config::RollupInterval;
use pulse_core::rollup::BucketKey;
use pulse_store::recount::BucketTotals;
use pulse_store::{Store, StoreError};

/// Every bucket of `interval` whose period starts at or after `from` (epoch ms).
pub async fn buckets_since(
    store: &Store,
    interval: RollupInterval,
    from: i64,
) -> Result<BTreeMap<BucketKey, BucketTotals>, StoreError> {
    store.buckets_since(interval, from).await
}
