//! Optional APIs change what a pipeline becomes: with KEDA's CRDs installed (a schema is
//! enough) the processor scales by a ScaledObject on stream lag instead of an HPA, and with
//! grafana-operator's CRD the dashboard is also a GrafanaDashboard; with a custom metrics
//! API registered, ingest's HPA also scales on requests per second. This binary has its own
//! control plane, since CRDs are cluster-wide.

mod support;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use support::*;

fn crd(group: &str, kind: &str, plural: &str, version: &str) -> CustomResourceDefinition {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": format!("{plural}.{group}") },
        "spec": {
            "group": group,
            "names": { "kind": kind, "plural": plural, "singular": kind.to_lowercase() },
            "scope": "Namespaced",
            "versions": [{
                "name": version, "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } }
            }]
        }
    }))
    .expect("crd")
}

#[tokio::test]
async fn with_keda_and_grafana_operator_installed_their_objects_are_used() {
    let stack = stack().await;
    let client = stack.client().await.expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for c in [
        crd("keda.sh", "ScaledObject", "scaledobjects", "v1alpha1"),
        crd("keda.sh", "TriggerAuthentication", "triggerauthentications", "v1alpha1"),
        crd("grafana.integreatly.org", "GrafanaDashboard", "grafanadashboards", "v1beta1"),
    ] {
        crds.create(&PostParams::default(), &c).await.expect("create CRD");
    }
    kubectl(
        stack,
        &[
            "wait",
            "--for=condition=Established",
            "crd/scaledobjects.keda.sh",
            "crd/grafanadashboards.grafana.integreatly.org",
        ],
    );

    // The operator asks discovery whether custom.metrics.k8s.io is served. A real one is an
    // aggregated API (e.g. prometheus-adapter); a CRD in that group (allowed with the
    // api-approved annotation) makes discovery list it just the same.
    let mut metrics_crd = crd("custom.metrics.k8s.io", "MetricValue", "metricvalues", "v1beta1");
    metrics_crd.metadata.annotations =
        Some([("api-approved.kubernetes.io".to_string(), "unapproved, test only".to_string())].into());
    crds.create(&PostParams::default(), &metrics_crd).await.expect("create the custom metrics CRD");
    kubectl(stack, &["wait", "--for=condition=Established", "crd/metricvalues.custom.metrics.k8s.io"]);

    let s = setup("optional", &[]).await;
    let spec = "  ingest:\n    autoscaling: { minReplicas: 1, maxReplicas: 3, targetRequestsPerSecond: 200 }\n  processor:\n    autoscaling: { minReplicas: 1, maxReplicas: 4 }";
    apply_pipeline(&s.pipelines, &pipeline_yaml("lag", &database(), spec)).await;
    let ready = wait_ready(&s.pipelines, "lag", &s.operator).await;
    let processor = ready
        .status
        .as_ref()
        .and_then(|st| st.conditions.iter().find(|c| c.type_ == "ProcessorAvailable"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(processor.contains("KEDA"), "{processor}");

    let resource = |group: &str, version: &str, kind: &str, plural: &str| ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    };
    let scaled: Api<DynamicObject> = Api::namespaced_with(
        s.client.clone(),
        &s.ns,
        &resource("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects"),
    );
    let so = scaled.get("lag-processor").await.expect("ScaledObject");
    assert_eq!(so.data["spec"]["scaleTargetRef"]["name"], "lag-processor");
    assert_eq!(so.data["spec"]["maxReplicaCount"], 4);
    let triggers = so.data["spec"]["triggers"].as_array().expect("triggers");
    assert_eq!(triggers.len(), 4, "one per partition");
    assert_eq!(triggers[0]["type"], "redis-streams");
    assert_eq!(triggers[0]["metadata"]["address"], format!("127.0.0.1:{}", s.redis.port()));
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(s.client.clone(), &s.ns);
    assert!(
        hpas.get_opt("lag-processor").await.expect("get").is_none(),
        "never both an HPA and a ScaledObject"
    );
    let ingest = hpas.get("lag-ingest").await.expect("ingest keeps its HPA");
    let metrics = ingest.spec.metrics.unwrap_or_default();
    let pods: Vec<_> =
        metrics.iter().filter_map(|m| m.pods.as_ref()).map(|p| p.metric.name.clone()).collect();
    assert_eq!(
        pods,
        ["pulse_ingest_requests_per_second"],
        "with a custom metrics API ingest scales on requests too"
    );

    let dashboards: Api<DynamicObject> = Api::namespaced_with(
        s.client.clone(),
        &s.ns,
        &resource("grafana.integreatly.org", "v1beta1", "GrafanaDashboard", "grafanadashboards"),
    );
    let gd = dashboards.get("lag").await.expect("GrafanaDashboard");
    let json: serde_json::Value =
        serde_json::from_str(gd.data["spec"]["json"].as_str().expect("json")).expect("dashboard JSON");
    assert!(json["panels"].as_array().is_some_and(|p| p.len() >= 8));
}
