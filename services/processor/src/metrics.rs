//! Prometheus metrics of the processor.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Upper bounds of the freshness histogram, in seconds.
const FRESHNESS_BUCKETS: [f64; 16] =
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0];
use prometheus_client::registry::Registry;

/// A partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub partition: u32,
}

/// An error kind, from [`crate::ProcessorError::kind`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub kind: &'static str,
}

/// Why an event was set aside, from `pulse_store::FailureReason::as_str`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Every metric of one processor.
pub struct Metrics {
    registry: Registry,
    /// Events stored for the first time.
    pub events_stored: Counter,
    /// Events that were duplicates of stored ones.
    pub events_duplicate: Counter,
    pub batches: Counter,
    pub errors: Family<ErrorLabel, Counter>,
    /// Acknowledged events set aside as failed (stored nowhere, listed), by reason.
    pub failed_events: Family<ReasonLabel, Counter>,
    /// Accepted by ingest -> applied to the rollups, per event.
    pub freshness_seconds: Histogram,
    /// The receive time (epoch s) of the newest applied event.
    pub newest_applied: Gauge,
    pub backlog_events: Family<PartitionLabel, Gauge>,
    pub partitions_owned: Gauge,
    pub batch_seconds: Histogram,
    /// InfluxDB sink: time since the start of its last successful flush.
    pub influx_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub influx_points_written: Counter,
    pub influx_errors: Family<ErrorLabel, Counter>,
}

impl Metrics {
    pub fn new(tenant: &str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "pulse_processor",
            [(std::borrow::Cow::Borrowed("tenant"), std::borrow::Cow::Owned(tenant.to_string()))].into_iter(),
        );
        let m = Metrics {
            registry: Registry::default(),
            events_stored: Counter::default(),
            events_duplicate: Counter::default(),
            batches: Counter::default(),
            errors: Family::default(),
            failed_events: Family::default(),
            // Bounds at the 1 s freshness target and around it, so its p99 reads exactly.
            freshness_seconds: Histogram::new(FRESHNESS_BUCKETS),
            newest_applied: Gauge::default(),
            backlog_events: Family::default(),
            partitions_owned: Gauge::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
            influx_lag_seconds: Gauge::default(),
            influx_points_written: Counter::default(),
            influx_errors: Family::default(),
        };
        registry.register("events_stored", "Events stored for the first time", m.events_stored.clone());
        registry.register(
            "events_duplicate",
            "Events that duplicated a stored event id",
            m.events_duplicate.clone(),
        );
        registry.register("batches", "Batches applied", m.batches.clone());
        registry.register("errors", "Errors, by kind (each is retried with backoff)", m.errors.clone());
        registry.register(
            "failed_events",
            "Acknowledged events the store refused on every try (or entries that were not events), set aside in failed_events, by reason",
            m.failed_events.clone(),
        );
        registry.register(
            "freshness_seconds",
            "Ingest receive time to rollup applied",
            m.freshness_seconds.clone(),
        );
        registry.register(
            "newest_applied_received_at_seconds",
            "Receive time of the newest applied event",
            m.newest_applied.clone(),
        );
        registry.register("backlog_events", "Unprocessed events per partition", m.backlog_events.clone());
        registry.register(
            "partitions_owned",
            "Partitions this processor holds the lease of",
            m.partitions_owned.clone(),
        );
        registry.register(
            "batch_duration_seconds",
            "Time to store and apply one batch",
            m.batch_seconds.clone(),
        );
        registry.register(
            "influx_lag_seconds",
            "InfluxDB sink: time since the start of its last successful flush (rollup changes older than this are written)",
            m.influx_lag_seconds.clone(),
        );
        registry.register(
            "influx_points_written",
            "InfluxDB sink: points written",
            m.influx_points_written.clone(),
        );
        registry.register(
            "influx_errors",
            "InfluxDB sink: failed flushes, by kind (retried with backoff)",
            m.influx_errors.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
