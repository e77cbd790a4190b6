//! The rollups held in memory, so pre-aggregated answers take a fraction of a millisecond
//! instead of a pass over the store (FerretDB serves no range query from an index).
//!
//! Kept current in two ways: every second, the period documents the processor is most
//! likely writing (the hours from two hours ago to the next, the days from yesterday to
//! tomorrow, every partition) are read by `_id`; every few minutes, and at start, every
//! hour and day document is read. A share is only ever replaced by one with the same or a
//! later watermark, so an older read never undoes a newer one. Late events more than two
//! hours old therefore show up within the full refresh's period; until the first full
//! read, queries go to the store.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use pulse_core::config::RollupInterval;
use pulse_core::rollup::{PeriodKey, bucket_start};
use pulse_store::recount::BucketTotals;
use pulse_store::{PeriodShare, Store, StoreError};

/// How often the recent periods are read.
pub const RECENT_EVERY: Duration = Duration::from_secs(1);
/// How often every period is read.
pub const FULL_EVERY: Duration = Duration::from_secs(300);
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

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
    partitions: u32,
    intervals: Vec<RollupInterval>,
    tz: TimeZone,
}

impl RollupView {
    pub fn new(partitions: u32, intervals: &[RollupInterval], tz: TimeZone) -> Self {
        RollupView {
            shares: RwLock::new(BTreeMap::new()),
            loaded: AtomicBool::new(false),
            partitions,
            intervals: intervals.iter().copied().filter(|i| *i != RollupInterval::Minute).collect(),
            tz,
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

    /// Reads the shares of the periods being written now, by `_id`.
    pub async fn refresh_recent(&self, store: &Store, now: i64) -> Result<(), StoreError> {
        let mut read = Vec::new();
        for &interval in &self.intervals {
            let (step, before, after) = match interval {
                RollupInterval::Hour => (HOUR_MS, 2, 1),
                _ => (DAY_MS, 1, 1),
            };
            // Whole periods in the pipeline's zone (a DST day is 23 or 25 hours).
            let mut starts: Vec<i64> =
                (-before..=after).map(|k| bucket_start(now + k * step, interval, &self.tz)).collect();
            starts.dedup();
            for start in starts {
                for partition in 0..self.partitions {
                    if let Some(share) = store.period_share(PeriodKey { interval, start }, partition).await? {
                        read.push(share);
                    }
                }
            }
        }
        self.merge(read);
        Ok(())
    }

    /// Keeps the view current until the task is dropped.
    pub async fn keep_current(&self, store: Store) {
        let mut last_full: Option<Instant> = None;
        loop {
            if last_full.is_none_or(|t| t.elapsed() >= FULL_EVERY) {
                let started = Instant::now();
                match self.load_all(&store).await {
                    Ok(n) => {
                        tracing::info!(shares = n, ms = started.elapsed().as_millis() as u64, "rollups read");
                        last_full = Some(Instant::now());
                    }
                    Err(e) => tracing::warn!(error = %e, "reading the rollups failed; retrying"),
                }
            } else if let Err(e) = self.refresh_recent(&store, jiff::Timestamp::now().as_millisecond()).await
            {
                tracing::debug!(error = %e, "reading recent rollups failed");
            }
            tokio::time::sleep(RECENT_EVERY).await;
        }
    }
}
