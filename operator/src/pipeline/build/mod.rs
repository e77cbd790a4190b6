//! What a pipeline becomes: pure builders from a validated pipeline to the objects the
//! operator applies. Nothing here talks to a server; each builder has unit tests beside it
//! that start from the YAML fixtures in `fixtures/`.

mod business;
mod config_map;
mod dashboard;
mod deployment;
mod hpa;
mod keda;
mod pdb;
mod redis;
mod secret;
mod service;

#[cfg(test)]
pub mod fixtures;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::ApiResource;
use serde::Serialize;

use crate::error::Error;
use crate::pipeline::validate::ValidPipeline;

pub use business::{EVENTS_MEASUREMENT, FUNNEL_MEASUREMENT, influx_queries};
pub use dashboard::dashboard_json;
pub use deployment::Workload;
pub use hpa::scales_on_requests;
pub use redis::managed_redis_url;
pub use secret::{Keys, READ_KEY, REDIS_URL_KEY, WRITE_KEY, generate_key};
pub use service::endpoint;

/// The label every child carries with its pipeline's name: children are found (and swept)
/// by it.
pub const PIPELINE_LABEL: &str = "pulse.dev/pipeline";
/// The label saying the operator manages an object; its watches select on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "pulse-operator";
const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// The operator's settings that the objects depend on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The one image holding every Pulse binary.
    pub image: String,
    /// The image of managed Redis.
    pub redis_image: String,
}

/// Optional APIs found in the cluster, which change what is built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// KEDA's ScaledObject: the processor scales on stream lag instead of an HPA.
    pub keda: bool,
    /// grafana-operator's GrafanaDashboard.
    pub grafana_operator: bool,
    /// A custom metrics API (custom.metrics.k8s.io): ingest may scale on requests/s.
    pub custom_metrics: bool,
}

/// The Redis address KEDA's scaler connects to, from the pipeline's Redis URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisAddress {
    /// host:port
    pub address: String,
    pub tls: bool,
    /// The database number of the URL.
    pub database: u32,
    /// Whether the URL carries a password (KEDA then reads it from a Secret).
    pub has_password: bool,
}

/// Everything the builders read.
pub struct BuildInput<'a> {
    pub view: &'a ValidPipeline,
    pub settings: &'a Settings,
    pub keys: &'a Keys,
    pub capabilities: Capabilities,
    /// The external Redis's address, for KEDA's scaler (managed Redis: None).
    pub redis_address: Option<RedisAddress>,
    /// The external Redis's password, for KEDA's scaler. Never logged.
    pub redis_password: Option<&'a str>,
}

/// A workload of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Ingest,
    Processor,
    Query,
}

impl Component {
    pub const ALL: [Component; 3] = [Component::Ingest, Component::Processor, Component::Query];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::Ingest => "ingest",
            Component::Processor => "processor",
            Component::Query => "query",
        }
    }

    /// The binary in the image.
    pub fn binary(self) -> &'static str {
        match self {
            Component::Ingest => "pulse-ingest",
            Component::Processor => "pulse-processor",
            Component::Query => "pulse-query",
        }
    }

    /// The HTTP port (API, health and metrics).
    pub fn port(self) -> i32 {
        match self {
            Component::Ingest => 8080,
            Component::Processor => 9090,
            Component::Query => 8081,
        }
    }

    /// The child's name: `<pipeline>-<component>`.
    pub fn name(self, pipeline: &str) -> String {
        format!("{pipeline}-{}", self.as_str())
    }
}

/// The names of the pipeline's other children.
pub fn config_map_name(pipeline: &str) -> String {
    format!("{pipeline}-config")
}
pub fn keys_secret_name(pipeline: &str) -> String {
    format!("{pipeline}-keys")
}
pub fn redis_name(pipeline: &str) -> String {
    format!("{pipeline}-redis")
}
pub fn dashboard_name(pipeline: &str) -> String {
    format!("{pipeline}-dashboard")
}

/// The labels of a child: the pipeline's, its component's and the operator's.
pub fn labels(view: &ValidPipeline, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(view, component);
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels.insert(PIPELINE_LABEL.into(), view.name.clone());
    labels
}

/// The labels that select a workload's pods (immutable in a Deployment, so few).
pub fn selector_labels(view: &ValidPipeline, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "pulse".to_string()),
        ("app.kubernetes.io/instance".to_string(), view.name.clone()),
        (COMPONENT_LABEL.to_string(), component.to_string()),
    ])
}

/// The owner reference that makes the pipeline the child's controller, so the garbage
/// collector removes the child with the pipeline.
pub fn owner_reference(view: &ValidPipeline) -> OwnerReference {
    OwnerReference {
        api_version: format!("{}/{}", pulse_crds::GROUP, pulse_crds::VERSION),
        kind: "AnalyticsPipeline".into(),
        name: view.name.clone(),
        uid: view.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The metadata of a child named `name`.
pub fn metadata(view: &ValidPipeline, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(view.namespace.clone()),
        labels: Some(labels(view, component)),
        owner_references: Some(vec![owner_reference(view)]),
        ..ObjectMeta::default()
    }
}

/// The kinds of children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChildKind {
    ConfigMap,
    Secret,
    Service,
    Deployment,
    StatefulSet,
    HorizontalPodAutoscaler,
    PodDisruptionBudget,
    ScaledObject,
    TriggerAuthentication,
    GrafanaDashboard,
}

impl ChildKind {
    pub const ALL: [ChildKind; 10] = [
        ChildKind::ConfigMap,
        ChildKind::Secret,
        ChildKind::Service,
        ChildKind::Deployment,
        ChildKind::StatefulSet,
        ChildKind::HorizontalPodAutoscaler,
        ChildKind::PodDisruptionBudget,
        ChildKind::ScaledObject,
        ChildKind::TriggerAuthentication,
        ChildKind::GrafanaDashboard,
    ];

    /// group, version, kind, plural
    fn gvkp(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            ChildKind::ConfigMap => ("", "v1", "ConfigMap", "configmaps"),
            ChildKind::Secret => ("", "v1", "Secret", "secrets"),
            ChildKind::Service => ("", "v1", "Service", "services"),
            ChildKind::Deployment => ("apps", "v1", "Deployment", "deployments"),
            ChildKind::StatefulSet => ("apps", "v1", "StatefulSet", "statefulsets"),
            ChildKind::HorizontalPodAutoscaler => {
                ("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
            }
            ChildKind::PodDisruptionBudget => ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets"),
            ChildKind::ScaledObject => ("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects"),
            ChildKind::TriggerAuthentication => {
                ("keda.sh", "v1alpha1", "TriggerAuthentication", "triggerauthentications")
            }
            ChildKind::GrafanaDashboard => {
                ("grafana.integreatly.org", "v1beta1", "GrafanaDashboard", "grafanadashboards")
            }
        }
    }

    pub fn api_resource(self) -> ApiResource {
        let (group, version, kind, plural) = self.gvkp();
        let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version,
            kind: kind.into(),
            plural: plural.into(),
        }
    }

    pub fn kind(self) -> &'static str {
        self.gvkp().2
    }

    /// Whether the kind exists only when an optional API is installed.
    pub fn is_available(self, capabilities: Capabilities) -> bool {
        match self {
            ChildKind::ScaledObject | ChildKind::TriggerAuthentication => capabilities.keda,
            ChildKind::GrafanaDashboard => capabilities.grafana_operator,
            _ => true,
        }
    }
}

/// One desired child: its kind, name and the object to apply (with apiVersion and kind).
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    pub kind: ChildKind,
    pub name: String,
    pub object: serde_json::Value,
}

impl Child {
    /// A child from a typed object, adding its apiVersion and kind.
    pub fn new(kind: ChildKind, name: String, object: &impl Serialize) -> Result<Self, Error> {
        let mut value = serde_json::to_value(object).map_err(|e| Error::serialization(kind.kind(), e))?;
        let resource = kind.api_resource();
        if let Some(map) = value.as_object_mut() {
            map.insert("apiVersion".into(), resource.api_version.into());
            map.insert("kind".into(), resource.kind.into());
        }
        Ok(Child { kind, name, object: value })
    }
}

/// Every child the pipeline should have now, in apply order (config and keys before the
/// workloads that mount them).
pub fn build(input: &BuildInput<'_>) -> Result<Vec<Child>, Error> {
    let view = input.view;
    let mut children = vec![config_map::config_map(view)?];
    children.push(secret::keys_secret(view, input.keys)?);
    if let Some(managed) = view.spec.buffer.redis.managed.as_ref() {
        children.push(redis::service(view)?);
        children.push(redis::stateful_set(view, managed, input.settings)?);
    }
    for component in Component::ALL {
        let Some(workload) = deployment::Workload::of(view, component) else { continue };
        children.push(service::service(view, component)?);
        let keda =
            component == Component::Processor && input.capabilities.keda && workload.autoscaling.is_some();
        children.push(deployment::deployment(view, &workload, input.settings)?);
        if let Some(pdb) = pdb::pod_disruption_budget(view, &workload)? {
            children.push(pdb);
        }
        if let Some(auto) = workload.autoscaling.as_ref() {
            if keda {
                children.extend(keda::scaled_object(
                    view,
                    auto,
                    input.redis_address.as_ref(),
                    input.redis_password,
                )?);
            } else {
                children.push(hpa::horizontal_pod_autoscaler(view, component, auto, input.capabilities)?);
            }
        }
    }
    if view.spec.dashboards.enabled {
        children.push(dashboard::config_map(view)?);
        if input.capabilities.grafana_operator {
            children.push(dashboard::grafana_dashboard(view)?);
        }
    }
    Ok(children)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds_and_names(children: &[Child]) -> Vec<(ChildKind, String)> {
        let mut v: Vec<_> = children.iter().map(|c| (c.kind, c.name.clone())).collect();
        v.sort();
        v
    }

    #[test]
    fn an_external_autoscaled_pipeline_has_hpas_and_dashboards() {
        let view = fixtures::valid(fixtures::ACME);
        let (settings, keys) = (fixtures::settings(), fixtures::keys());
        let children =
            build(&fixtures::input(&view, &settings, &keys, Capabilities::default())).expect("build");
        let names = kinds_and_names(&children);
        for expected in [
            (ChildKind::ConfigMap, "acme-config"),
            (ChildKind::ConfigMap, "acme-dashboard"),
            (ChildKind::Secret, "acme-keys"),
            (ChildKind::Deployment, "acme-ingest"),
            (ChildKind::Deployment, "acme-processor"),
            (ChildKind::Deployment, "acme-query"),
            (ChildKind::Service, "acme-query"),
            (ChildKind::HorizontalPodAutoscaler, "acme-ingest"),
            (ChildKind::HorizontalPodAutoscaler, "acme-processor"),
            (ChildKind::PodDisruptionBudget, "acme-ingest"),
        ] {
            assert!(
                names.contains(&(expected.0, expected.1.to_string())),
                "{expected:?} missing from {names:?}"
            );
        }
        assert!(!names.iter().any(|(k, _)| *k == ChildKind::StatefulSet || *k == ChildKind::ScaledObject));
        for child in &children {
            let owner = &child.object["metadata"]["ownerReferences"][0];
            assert_eq!(owner["uid"], "1f0c1d2e-0000-4000-8000-000000000001", "{}", child.name);
            assert_eq!(child.object["metadata"]["labels"][PIPELINE_LABEL], "acme");
            assert!(child.object["apiVersion"].is_string() && child.object["kind"].is_string());
        }
    }

    #[test]
    fn with_keda_the_processor_gets_a_scaled_object_and_no_hpa() {
        let view = fixtures::valid(fixtures::ACME);
        let (settings, keys) = (fixtures::settings(), fixtures::keys());
        let capabilities = Capabilities { keda: true, grafana_operator: true, custom_metrics: false };
        let children = build(&fixtures::input(&view, &settings, &keys, capabilities)).expect("build");
        let names = kinds_and_names(&children);
        assert!(names.contains(&(ChildKind::ScaledObject, "acme-processor".into())), "{names:?}");
        assert!(!names.contains(&(ChildKind::HorizontalPodAutoscaler, "acme-processor".into())));
        assert!(names.contains(&(ChildKind::HorizontalPodAutoscaler, "acme-ingest".into())));
        assert!(names.contains(&(ChildKind::GrafanaDashboard, "acme".into())), "{names:?}");
    }

    #[test]
    fn a_managed_fixed_pipeline_has_redis_and_no_autoscalers() {
        let view = fixtures::valid(fixtures::GLOBEX);
        let (settings, keys) = (fixtures::settings(), fixtures::keys());
        let capabilities = Capabilities { keda: true, grafana_operator: true, custom_metrics: true };
        let children = build(&fixtures::input(&view, &settings, &keys, capabilities)).expect("build");
        let names = kinds_and_names(&children);
        assert!(names.contains(&(ChildKind::StatefulSet, "globex-redis".into())));
        assert!(names.contains(&(ChildKind::Service, "globex-redis".into())));
        assert!(!names.iter().any(|(k, _)| matches!(
            k,
            ChildKind::HorizontalPodAutoscaler | ChildKind::ScaledObject | ChildKind::GrafanaDashboard
        )));
        // query.replicas: 0 means no query workload at all, and dashboards are off.
        assert!(!names.iter().any(|(_, n)| n == "globex-query" || n == "globex-dashboard"), "{names:?}");
    }
}
