//! Prometheus metrics of the query API: answers by endpoint and where they came from,
//! refusals by reason, latency, and the ad-hoc queries running, waiting and coalesced.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// An answered query.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Answered {
    pub endpoint: &'static str,
    /// preaggregated, raw or cache.
    pub source: &'static str,
}

/// A refused query.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Refused {
    pub endpoint: &'static str,
    pub reason: &'static str,
}

/// An endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Endpoint {
    pub endpoint: &'static str,
}

/// Every metric of one query process.
pub struct Metrics {
    registry: Registry,
    pub answered: Family<Answered, Counter>,
    pub refused: Family<Refused, Counter>,
    pub seconds: Family<Endpoint, Histogram>,
    /// Ad-hoc queries computing now, and waiting for a turn (set when scraped).
    pub raw_queries_running: Gauge,
    pub raw_queries_waiting: Gauge,
    /// Queries answered by joining an identical one being computed.
    pub coalesced: Counter,
}

impl Metrics {
    pub fn new(tenant: &str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "pulse_query",
            [(std::borrow::Cow::Borrowed("tenant"), std::borrow::Cow::Owned(tenant.to_string()))].into_iter(),
        );
        let answered = Family::<Answered, Counter>::default();
        registry.register("answered", "Queries answered, by endpoint and source", answered.clone());
        let refused = Family::<Refused, Counter>::default();
        registry.register("refused", "Queries refused, by endpoint and reason", refused.clone());
        let seconds = Family::<Endpoint, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 20))
        });
        registry.register("request_duration_seconds", "Query latency", seconds.clone());
        let raw_queries_running = Gauge::default();
        registry.register(
            "raw_queries_running",
            "Ad-hoc queries reading raw events and computing now",
            raw_queries_running.clone(),
        );
        let raw_queries_waiting = Gauge::default();
        registry.register(
            "raw_queries_waiting",
            "Ad-hoc queries waiting for a turn",
            raw_queries_waiting.clone(),
        );
        let coalesced = Counter::default();
        registry.register(
            "coalesced",
            "Queries answered by an identical query computing at the same time",
            coalesced.clone(),
        );
        Metrics { registry, answered, refused, seconds, raw_queries_running, raw_queries_waiting, coalesced }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
