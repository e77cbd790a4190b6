//! Prometheus metrics of the query API: answers by endpoint and where they came from,
//! refusals by reason, and latency.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
        Metrics { registry, answered, refused, seconds }
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
