//! The operator's Prometheus metrics: reconciles, errors by reason, durations, leadership,
//! and each funnel's conversion (for the dashboards).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabels {
    pub namespace: String,
    pub pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunnelLabels {
    pub namespace: String,
    pub pipeline: String,
    pub funnel: String,
}

/// The metrics, cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Family<ControllerLabels, Histogram>,
    pub leader: Gauge,
    pub funnel_conversion: Family<FunnelLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Funnel summaries computed (each reads the funnel's events: bounded per funnel).
    pub funnel_summaries: Counter,
    /// 1 while a pipeline's status says Ready, 0 while not; no series while it is paused
    /// or after it is deleted (for the PulsePipelineNotReady alert).
    pub pipeline_ready: Family<PipelineLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pulse_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register("reconciles", "Reconciles run, by controller", reconciles.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by controller and reason",
            errors.clone(),
        );
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register("reconcile_duration_seconds", "Time per reconcile", duration.clone());
        let leader = Gauge::default();
        registry.register("leader", "1 while this process holds the leader Lease", leader.clone());
        let funnel_conversion = Family::default();
        registry.register(
            "funnel_conversion_ratio",
            "Converted over entered of each Funnel's status summary",
            funnel_conversion.clone(),
        );
        let funnel_summaries = Counter::default();
        registry.register(
            "funnel_summaries",
            "Funnel conversion summaries computed, at most one per Funnel a minute",
            funnel_summaries.clone(),
        );
        let pipeline_ready = Family::default();
        registry.register(
            "pipeline_ready",
            "1 while the AnalyticsPipeline's Ready condition is True, 0 while it is not (absent while paused)",
            pipeline_ready.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            reconciles,
            errors,
            duration,
            leader,
            funnel_conversion,
            funnel_summaries,
            pipeline_ready,
        }
    }

    /// Records whether a pipeline is Ready; `None` (paused, deleted) removes its series.
    pub fn set_pipeline_ready(&self, namespace: &str, pipeline: &str, ready: Option<bool>) {
        let labels = PipelineLabels { namespace: namespace.to_string(), pipeline: pipeline.to_string() };
        match ready {
            Some(ready) => {
                self.pipeline_ready.get_or_create(&labels).set(i64::from(ready));
            }
            None => {
                self.pipeline_ready.remove(&labels);
            }
        }
    }

    /// Counts one reconcile of `controller` that took `elapsed`, failed with `error`.
    pub fn observe(&self, controller: &'static str, elapsed: Duration, error: Option<&'static str>) {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        if let Some(reason) = error {
            self.errors.get_or_create(&ErrorLabels { controller, reason }).inc();
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_and_errors_are_counted_by_label() {
        let m = Metrics::new();
        m.observe("pipeline", Duration::from_millis(3), None);
        m.observe("pipeline", Duration::from_millis(3), Some("KubeApi"));
        let text = m.encode();
        assert!(text.contains("pulse_operator_reconciles_total{controller=\"pipeline\"} 2"), "{text}");
        assert!(
            text.contains(
                "pulse_operator_reconcile_errors_total{controller=\"pipeline\",reason=\"KubeApi\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_pipelines_readiness_is_one_or_zero_and_gone_once_paused() {
        let m = Metrics::new();
        m.set_pipeline_ready("shop", "web", Some(false));
        assert!(m.encode().contains("pulse_operator_pipeline_ready{namespace=\"shop\",pipeline=\"web\"} 0"));
        m.set_pipeline_ready("shop", "web", Some(true));
        assert!(m.encode().contains("pulse_operator_pipeline_ready{namespace=\"shop\",pipeline=\"web\"} 1"));
        m.set_pipeline_ready("shop", "web", None);
        assert!(!m.encode().contains("pipeline=\"web\""));
    }
}
