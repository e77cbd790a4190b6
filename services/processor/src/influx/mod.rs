//! The optional InfluxDB sink: copies the rollups to InfluxDB as time series
//! (schema in [`schema`], docs/influxdb.md), so existing InfluxDB and Grafana setups get
//! live event rates, unique users and numeric sums without glue code.
//!
//! It runs as its own task beside the partition workers and only reads what they wrote:
//! an InfluxDB outage never blocks or slows the pipeline. Every flush re-reads the recent
//! periods from MongoDB and writes the buckets whose numbers changed since they were last
//! written; a period's point has the period start as its time, so writing it again
//! overwrites it. A failed write leaves its buckets unwritten, and the next attempt (with
//! capped backoff) re-reads from the last successful flush's start, however long the
//! outage was (up to `backfill`): the sink catches up from the rollups, with no gap and
//! no double-counted point. `pulse_processor_influx_lag_seconds` is the time since the
//! start of the last successful flush: every rollup change older than that is in InfluxDB.
//!
//! Every processor replica runs the sink; their writes are the same points, so the cost
//! of more replicas is repeated (idempotent) writes, not wrong numbers.

pub mod funnels;
pub mod line;
pub mod schema;
pub mod source;
pub mod writer;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use pulse_core::config::{InfluxConfig, NamedFunnel};
use pulse_core::rollup::{BucketKey, bucket_start};
use tokio::sync::watch;

use crate::Context;
use crate::metrics::ErrorLabel;
use writer::{WriteError, Writer};

/// How often the full sweep over `backfill` runs (besides at start).
const SWEEP_EVERY_MS: i64 = 3_600_000;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the lag gauge is refreshed between flushes.
const LAG_TICK: Duration = Duration::from_millis(250);

/// Why a flush failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("reading the rollups: {0}")]
    Store(#[from] pulse_store::StoreError),
    #[error("{0}")]
    Write(#[from] WriteError),
    #[error("{0}")]
    Funnel(#[from] funnels::FunnelError),
}

impl SinkError {
    fn kind(&self) -> &'static str {
        match self {
            SinkError::Store(_) => "store",
            SinkError::Write(e) => e.kind(),
            SinkError::Funnel(_) => "funnel",
        }
    }
}

/// The sink's settings: where to write, and the funnels whose conversion it writes.
pub struct Sink {
    pub config: InfluxConfig,
    pub funnels: Vec<NamedFunnel>,
    /// The pipeline's session timeout (`query.sessionTimeout`), for same-session funnels.
    pub session_timeout: pulse_core::duration::DurationSpec,
}

/// What the sink has written: per bucket, a hash of its last written lines.
#[derive(Default)]
pub struct Written(HashMap<BucketKey, u64>);

impl Written {
    fn forget_before(&mut self, start: i64) {
        self.0.retain(|k, _| k.start >= start);
    }
}

/// Runs the sink until `stop` flips (at once when the pipeline has none).
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let Some(sink) = ctx.influx.as_ref() else { return };
    let config = &sink.config;
    let mut writer = match Writer::new(config) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "InfluxDB sink cannot start");
            return;
        }
    };
    let flush = Duration::from_secs(config.flush_interval.as_secs().max(1));
    let lookback = config.lookback.as_millis();
    let backfill = config.backfill.as_millis();
    let funnel_every = config.funnel_interval.as_millis();
    let mut written = Written::default();
    let started_at = now_ms();
    // The start of the last successful flush: every change before it is written.
    let mut synced_at: Option<i64> = None;
    let mut next_sweep = started_at;
    let mut backoff = FIRST_BACKOFF;
    // Funnels are recomputed when new events arrived, at most every `funnel_every`.
    let mut funnels_dirty = !sink.funnels.is_empty();
    let mut funnels_due = started_at;
    loop {
        let now = now_ms();
        let full = now >= next_sweep;
        let from = if full {
            now - backfill
        } else {
            (synced_at.unwrap_or(now).min(now) - lookback).max(now - backfill)
        };
        let wait = match flush_once(&ctx, &mut writer, &mut written, from).await {
            Ok(points) => {
                synced_at = Some(now);
                if full {
                    next_sweep = now + SWEEP_EVERY_MS;
                    written.forget_before(now - backfill - 86_400_000);
                }
                ctx.metrics.influx_points_written.inc_by(points as u64);
                backoff = FIRST_BACKOFF;
                funnels_dirty |= points > 0 && !sink.funnels.is_empty();
                if funnels_dirty && now >= funnels_due {
                    funnels_due = now + funnel_every;
                    match write_funnels(&ctx, sink, &mut writer, now).await {
                        Ok(points) => {
                            funnels_dirty = false;
                            ctx.metrics.influx_points_written.inc_by(points as u64);
                        }
                        Err(e) => {
                            ctx.metrics.influx_errors.get_or_create(&ErrorLabel { kind: e.kind() }).inc();
                            tracing::warn!(error = %e, "InfluxDB sink: funnel conversion not written, retried later");
                        }
                    }
                }
                flush
            }
            Err(e) => {
                ctx.metrics.influx_errors.get_or_create(&ErrorLabel { kind: e.kind() }).inc();
                tracing::warn!(error = %e, retry_in = ?backoff, "InfluxDB sink: flush failed");
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        // The lag gauge moves while waiting too, so a scrape sees the lag at that moment.
        let until = tokio::time::Instant::now() + wait;
        loop {
            ctx.metrics.influx_lag_seconds.set((now_ms() - synced_at.unwrap_or(started_at)) as f64 / 1000.0);
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(left.min(LAG_TICK)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// Recomputes and writes every declared funnel's recent conversion per day.
async fn write_funnels(
    ctx: &Context,
    sink: &Sink,
    writer: &mut Writer,
    now: i64,
) -> Result<usize, SinkError> {
    let mut lines = Vec::new();
    for funnel in &sink.funnels {
        let points =
            funnels::conversion_points(&ctx.store, &ctx.tenant, funnel, (&ctx.tz, sink.session_timeout), now)
                .await?;
        lines.extend(points.iter().filter_map(line::Point::encode));
    }
    writer.write(&lines).await?;
    Ok(lines.len())
}

/// Writes every bucket of the pipeline's intervals from `from` on that changed since it
/// was last written; returns the number of points written.
async fn flush_once(
    ctx: &Context,
    writer: &mut Writer,
    written: &mut Written,
    from: i64,
) -> Result<usize, SinkError> {
    let mut lines = Vec::new();
    let mut changed = Vec::new();
    for &interval in &ctx.intervals {
        let buckets =
            source::buckets_since(&ctx.store, interval, bucket_start(from, interval, &ctx.tz)).await?;
        for (key, totals) in buckets {
            let bucket_lines: Vec<String> = schema::points_of(&ctx.tenant, &key, &totals)
                .iter()
                .filter_map(line::Point::encode)
                .collect();
            let hash = hash_of(&bucket_lines);
            if written.0.get(&key) != Some(&hash) {
                lines.extend(bucket_lines);
                changed.push((key, hash));
            }
        }
    }
    writer.write(&lines).await?;
    written.0.extend(changed);
    Ok(lines.len())
}

fn hash_of(lines: &[String]) -> u64 {
    let mut h = DefaultHasher::new();
    lines.hash(&mut h);
    h.finish()
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
