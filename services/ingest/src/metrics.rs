//! Prometheus metrics of ingest: what was accepted and refused and why, and how long
//! requests and Redis took.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A refusal reason: an event error code or a request error code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

/// An HTTP endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Endpoint {
    pub endpoint: &'static str,
}

/// Every metric of one ingest process.
pub struct Metrics {
    registry: Registry,
    pub events_accepted: Counter,
    pub events_rejected: Family<Reason, Counter>,
    pub requests_rejected: Family<Reason, Counter>,
    pub request_seconds: Family<Endpoint, Histogram>,
    pub batch_events: Histogram,
    pub redis_seconds: Histogram,
    pub backlog_events: Gauge,
}

impl Metrics {
    pub fn new(tenant: &str) -> Self {
        let mut root = Registry::with_prefix_and_labels(
            "pulse_ingest",
            [(std::borrow::Cow::Borrowed("tenant"), std::borrow::Cow::Owned(tenant.to_string()))].into_iter(),
        );
        let metrics_registry = &mut root;
        let events_accepted = Counter::default();
        metrics_registry.register(
            "events_accepted",
            "Events acknowledged (durably in the buffer)",
            events_accepted.clone(),
        );
        let events_rejected = Family::<Reason, Counter>::default();
        metrics_registry.register("events_rejected", "Events refused, by reason", events_rejected.clone());
        let requests_rejected = Family::<Reason, Counter>::default();
        metrics_registry.register(
            "requests_rejected",
            "Whole requests refused, by reason",
            requests_rejected.clone(),
        );
        let request_seconds = Family::<Endpoint, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
        });
        metrics_registry.register("request_duration_seconds", "Request latency", request_seconds.clone());
        let batch_events = Histogram::new(exponential_buckets(1.0, 2.0, 15));
        metrics_registry.register("batch_events", "Events per request", batch_events.clone());
        let redis_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        metrics_registry.register(
            "redis_duration_seconds",
            "Latency of buffer writes",
            redis_seconds.clone(),
        );
        let backlog_events = Gauge::default();
        metrics_registry.register(
            "backlog_events",
            "Unprocessed events in the buffer, last seen",
            backlog_events.clone(),
        );
        Metrics {
            registry: root,
            events_accepted,
            events_rejected,
            requests_rejected,
            request_seconds,
            batch_events,
            redis_seconds,
            backlog_events,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
