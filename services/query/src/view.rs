//! The rollups held in memory, so pre-aggregated answers take a fraction of a millisecond
//! instead of a pass over the store (FerretDB serves no range query from an index).
//!
//! Kept current in two ways: every second, the period documents the processor has changed
//! since the last look, from the tenant's stream of rollup changes (see
//! `pulse_buffer::publish_changes`), are read again (`Store::period_share`), late and
//! backfilled periods included; every few minutes, and at start, every hour and day document is read (which
//! also covers a replica that fell further behind than the stream keeps). A share is only
//! ever replaced by one with the same or a later watermark, so an older read never undoes a
//! newer one. Until the first full read, queries go to the store.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pulse_buffer::{Connection, newest_rollup_change, read_rollup_changes};
use pulse_core::config::RollupInterval;
use pulse_store::recount::BucketTotals;
use pulse_store::{PeriodShare, Store, StoreError};

/// How often changed periods are read.
pub const CHANGES_EVERY: Duration = Duration::from_secs(1);
/// How often every period is read.
pub const FULL_EVERY: Duration = Duration::from_secs(300);

/// (interval, start, partition): the order ranges are read in.
type ShareKey = (u8, i64, u32);

fn rank(interval: RollupInterval) -> u8 {
    match interval {
        RollupInterval::Minute => 0,
        RollupInterval::Hour => 1,
        RollupInterval::Day => 2,
    }
}

/// The hour and day rollups of one pipeline, in memory.
pub struct RollupView {
    shares: RwLock<BTreeMap<ShareKey, PeriodShare>>,
    loaded: AtomicBool,
    tenant: String,
}

impl RollupView {
    pub fn new(tenant: &str) -> Self {
        RollupView {
            shares: RwLock::new(BTreeMap::new()),
            loaded: AtomicBool::new(false),
            tenant: tenant.to_string(),
        }
    }

    /// Whether a full read has happened (before it, queries go to the store).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// One event's buckets of `interval` starting in `[from, to)`, summed over partitions.
    pub fn series(
        &self,
        interval: RollupInterval,
        event: &str,
        from: i64,
        to: i64,
    ) -> BTreeMap<i64, BucketTotals> {
        let shares = self.shares.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut series: BTreeMap<i64, BucketTotals> = BTreeMap::new();
        for share in shares.range((rank(interval), from, 0)..(rank(interval), to, 0)).map(|(_, s)| s) {
            if let Some(b) = share.buckets.get(event) {
                series.entry(share.period.start).and_modify(|t| t.merge(b)).or_insert_with(|| b.clone());
            }
        }
        series
    }

    /// Every event's count over the periods of `interval` starting in `[from, to)`, summed
    /// over partitions.
    pub fn event_counts(&self, interval: RollupInterval, from: i64, to: i64) -> BTreeMap<String, u64> {
        let shares = self.shares.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for share in shares.range((rank(interval), from, 0)..(rank(interval), to, 0)).map(|(_, s)| s) {
            for (event, totals) in &share.buckets {
                *counts.entry(event.clone()).or_default() += totals.events;
            }
        }
        counts
    }

    /// Keeps each share unless the one held has a later watermark.
    fn merge(&self, read: Vec<PeriodShare>) {
        let mut shares = self.shares.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        for share in read {
            let key = (rank(share.period.interval), share.period.start, share.partition);
            match shares.get(&key) {
                Some(held) if held.watermark > share.watermark => {}
                _ => {
                    shares.insert(key, share);
                }
            }
        }
    }

    /// Reads every hour and day share.
    pub async fn load_all(&self, store: &Store) -> Result<usize, StoreError> {
        let read = store.period_shares().await?;
        let n = read.len();
        self.merge(read);
        self.loaded.store(true, Ordering::Release);
        Ok(n)
    }

    /// Reads the period documents changed since `after` (a change id), by `_id`; returns the
    /// newest change id read.
    pub async fn refresh_changed(
        &self,
        store: &Store,
        conn: &mut Connection,
        after: &str,
    ) -> Result<String, ViewError> {
        let mut after = after.to_string();
        loop {
            let (newest, ids) = read_rollup_changes(conn, &self.tenant, &after, 1_000).await?;
            let Some(newest) = newest else { return Ok(after) };
            let mut ids: Vec<String> = ids.into_iter().filter(|id| !id.starts_with("minute|")).collect();
            ids.sort_unstable();
            ids.dedup();
            let mut read = Vec::with_capacity(ids.len());
            for id in &ids {
                if let Some(share) = store.period_share(id).await? {
                    read.push(share);
                }
            }
            self.merge(read);
            after = newest;
        }
    }

    /// Keeps the view current until the task is dropped.
    pub async fn keep_current(&self, store: Store, mut conn: Connection) {
        let mut last_full: Option<Instant> = None;
        let mut after = String::new();
        loop {
            if last_full.is_none_or(|t| t.elapsed() >= FULL_EVERY) {
                let started = Instant::now();
                // The newest change first: what changes during the full read is read again.
                let full = async {
                    let newest = newest_rollup_change(&mut conn, &self.tenant).await?;
                    let n = self.load_all(&store).await?;
                    Ok::<_, ViewError>((newest, n))
                };
                match full.await {
                    Ok((newest, n)) => {
                        tracing::info!(shares = n, ms = started.elapsed().as_millis() as u64, "rollups read");
                        last_full = Some(Instant::now());
                        after = newest;
                    }
                    Err(e) => tracing::warn!(error = %e, "reading the rollups failed; retrying"),
                }
            } else {
                match self.refresh_changed(&store, &mut conn, &after).await {
                    Ok(newest) => after = newest,
                    Err(e) => tracing::debug!(error = %e, "reading changed rollups failed"),
                }
            }
            tokio::time::sleep(CHANGES_EVERY).await;
        }
    }
}

/// Why the view could not be refreshed.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}
