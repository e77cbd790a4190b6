//! A HorizontalPodAutoscaler per autoscaled Deployment: on CPU, and for ingest also on
//! requests per second per pod when the spec asks and a custom metrics API is served.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricIdentifier,
    MetricSpec, MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use pulse_crds::AutoscalingSpec;

use super::{Capabilities, Child, ChildKind, Component, metadata};
use crate::error::Error;
use crate::pipeline::validate::ValidPipeline;

/// The pods metric ingest scales on, as a custom metrics API (e.g. prometheus-adapter)
/// serves it from `rate(pulse_ingest_request_duration_seconds_count[1m])`.
pub const REQUESTS_METRIC: &str = "pulse_ingest_requests_per_second";

/// Whether the HPA of `component` scales on requests per second too.
pub fn scales_on_requests(component: Component, auto: &AutoscalingSpec, capabilities: Capabilities) -> bool {
    component == Component::Ingest && auto.target_requests_per_second.is_some() && capabilities.custom_metrics
}

pub fn horizontal_pod_autoscaler(
    view: &ValidPipeline,
    component: Component,
    auto: &AutoscalingSpec,
    capabilities: Capabilities,
) -> Result<Child, Error> {
    let name = component.name(&view.name);
    let mut metrics = vec![MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: "cpu".into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(auto.target_cpu_utilization_percentage),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }];
    if let Some(rps) =
        auto.target_requests_per_second.filter(|_| scales_on_requests(component, auto, capabilities))
    {
        metrics.push(MetricSpec {
            type_: "Pods".into(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier { name: REQUESTS_METRIC.into(), selector: None },
                target: MetricTarget {
                    type_: "AverageValue".into(),
                    average_value: Some(Quantity(rps.to_string())),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    }
    let object = HorizontalPodAutoscaler {
        metadata: metadata(view, name.clone(), component.as_str()),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: name.clone(),
            },
            min_replicas: Some(auto.min_replicas),
            max_replicas: auto.max_replicas,
            metrics: Some(metrics),
            ..HorizontalPodAutoscalerSpec::default()
        },
        ..HorizontalPodAutoscaler::default()
    };
    Child::new(ChildKind::HorizontalPodAutoscaler, name, &object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::build::fixtures;

    fn ingest_auto(view: &ValidPipeline) -> AutoscalingSpec {
        view.spec.ingest.autoscaling.clone().expect("fixture autoscales ingest")
    }

    #[test]
    fn cpu_alone_without_a_custom_metrics_api() {
        let view = fixtures::valid(fixtures::ACME);
        let hpa =
            horizontal_pod_autoscaler(&view, Component::Ingest, &ingest_auto(&view), Capabilities::default())
                .expect("build")
                .object;
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "acme-ingest");
        assert_eq!(hpa["spec"]["minReplicas"], 2);
        assert_eq!(hpa["spec"]["maxReplicas"], 10);
        let metrics = hpa["spec"]["metrics"].as_array().expect("metrics");
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[0]["resource"]["target"]["averageUtilization"], 70);
    }

    #[test]
    fn requests_per_second_when_asked_and_served() {
        let view = fixtures::valid(fixtures::ACME);
        let capabilities = Capabilities { custom_metrics: true, ..Capabilities::default() };
        let hpa = horizontal_pod_autoscaler(&view, Component::Ingest, &ingest_auto(&view), capabilities)
            .expect("build")
            .object;
        let metrics = hpa["spec"]["metrics"].as_array().expect("metrics");
        assert_eq!(metrics.len(), 2);
        assert_eq!(metrics[1]["pods"]["metric"]["name"], REQUESTS_METRIC);
        assert_eq!(metrics[1]["pods"]["target"]["averageValue"], "500");
    }
}
