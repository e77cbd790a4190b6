//! The Funnel controller on the local stack: validation against its pipeline, the funnel
//! in the pipeline config, Ready and the step count that `kubectl get funnels` shows.

mod common;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use pulse_core::config::PipelineConfig;
use pulse_crds::Funnel;

fn funnel_yaml(name: &str, pipeline: &str, steps: &[&str]) -> serde_json::Value {
    let steps: Vec<_> = steps.iter().map(|e| serde_json::json!({ "event": e })).collect();
    serde_json::json!({
        "apiVersion": "pulse.dev/v1alpha1",
        "kind": "Funnel",
        "metadata": { "name": name },
        "spec": { "pipelineRef": { "name": pipeline }, "steps": steps, "window": "1d" }
    })
}

async fn apply_funnel(api: &Api<Funnel>, value: &serde_json::Value) {
    let name = value["metadata"]["name"].as_str().expect("name");
    api.patch(name, &PatchParams::apply("test").force(), &Patch::Apply(value)).await.expect("apply funnel");
}

async fn funnel_ready(api: &Api<Funnel>, name: &str, reason: &str, operator: &Operator) -> Funnel {
    wait_for(&format!("funnel {name} {reason}"), WAIT, || async {
        let f = api.get(name).await.map_err(|e| e.to_string())?;
        let status = f.status.as_ref();
        let current = status.and_then(|s| s.observed_generation) == f.metadata.generation;
        let ready = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        match ready {
            Some(c) if c.reason == reason && current => Ok(f),
            other => Err(format!("{other:?}\n{}", operator.log_tail())),
        }
    })
    .await
}

async fn config_funnels(maps: &Api<ConfigMap>, pipeline: &str) -> Vec<(String, usize)> {
    let map = maps.get(&format!("{pipeline}-config")).await.expect("config map");
    let text = map.data.and_then(|d| d.get("pipeline.yaml").cloned()).unwrap_or_default();
    let config = PipelineConfig::parse(&text).expect("config");
    config.funnels.iter().map(|f| (f.name.clone(), f.definition.steps.len())).collect()
}

#[tokio::test]
async fn funnels_join_their_pipelines_config_and_show_their_steps() {
    let s = setup("funnels", &[]).await;
    apply_pipeline(&s.pipelines, &pipeline_yaml("web", &database(), "")).await;
    wait_ready(&s.pipelines, "web", &s.operator).await;
    let funnels: Api<Funnel> = Api::namespaced(s.client.clone(), &s.ns);
    let maps: Api<ConfigMap> = Api::namespaced(s.client.clone(), &s.ns);

    apply_funnel(&funnels, &funnel_yaml("signup", "web", &["visited", "signed_up", "paid"])).await;
    let f = funnel_ready(&funnels, "signup", "InPipelineConfig", &s.operator).await;
    assert_eq!(f.status.as_ref().and_then(|s| s.step_count), Some(3));
    assert_eq!(config_funnels(&maps, "web").await, [("signup".to_string(), 3)]);
    let table = kubectl(s.stack, &["-n", &s.ns, "get", "funnels"]);
    let row = table.lines().find(|l| l.starts_with("signup")).unwrap_or_default();
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&columns[..4], ["signup", "web", "3", "1d"], "{table}");
    assert!(columns.contains(&"True"), "{table}");

    // An edit reaches the config, and the funnel is Ready for the new version.
    apply_funnel(&funnels, &funnel_yaml("signup", "web", &["visited", "paid"])).await;
    let f = funnel_ready(&funnels, "signup", "InPipelineConfig", &s.operator).await;
    assert_eq!(f.status.as_ref().and_then(|s| s.step_count), Some(2));
    assert_eq!(config_funnels(&maps, "web").await, [("signup".to_string(), 2)]);

    // A funnel on a pipeline that does not exist yet waits for it.
    apply_funnel(&funnels, &funnel_yaml("early", "later", &["a", "b"])).await;
    let f = funnel_ready(&funnels, "early", "PipelineNotFound", &s.operator).await;
    let message = &f.status.as_ref().expect("status").conditions[0].message;
    assert!(message.contains("spec.pipelineRef.name"), "{message}");
    apply_pipeline(&s.pipelines, &pipeline_yaml("later", &database(), "")).await;
    funnel_ready(&funnels, "early", "InPipelineConfig", &s.operator).await;
    assert_eq!(config_funnels(&maps, "later").await, [("early".to_string(), 2)]);

    // A deleted funnel leaves its pipeline's config.
    funnels.delete("signup", &DeleteParams::default()).await.expect("delete funnel");
    wait_for("funnel removed from the config", WAIT, || async {
        let left = config_funnels(&maps, "web").await;
        if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) }
    })
    .await;
}
