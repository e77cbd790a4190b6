//! The Funnel controller on the local stack: validation against its pipeline, the funnel
//! in the pipeline config, Ready and the step count that `kubectl get funnels` shows.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use pulse_core::config::PipelineConfig;
use pulse_crds::Funnel;
use support::*;

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

/// Stores raw events and their block as the processor does: `(user, event, minutes ago)`.
async fn store_events(db: &str, events: &[(&str, &str, i64)]) {
    let client = ferret().await.client().await.expect("mongo");
    let store = pulse_store::Store::new(client.database(db));
    let now = mongodb::bson::DateTime::now().timestamp_millis();
    let events: Vec<pulse_core::buffer::BufferedEvent> = events
        .iter()
        .map(|(user, event, ago)| pulse_core::buffer::BufferedEvent {
            event_id: format!("{user}-{event}-{ago}"),
            id_generated: false,
            event: event.to_string(),
            distinct_id: user.to_string(),
            timestamp: now - ago * 60_000,
            received_at: now - ago * 60_000,
            properties: serde_json::Map::new(),
        })
        .collect();
    let position = pulse_core::rollup::StreamPosition { millis: now as u64, sequence: 0 };
    let writes: Vec<pulse_store::EventWrite<'_>> =
        events.iter().map(|event| pulse_store::EventWrite { partition: 0, position, event }).collect();
    store.insert_events(&writes, false).await.expect("insert events");
    let all: Vec<(pulse_core::rollup::StreamPosition, &pulse_core::buffer::BufferedEvent)> =
        events.iter().map(|e| (position, e)).collect();
    store.write_event_blocks(0, position, position, &all).await.expect("event blocks");
}

fn summary_of(f: &Funnel) -> Option<(i64, i64, String, k8s_openapi::jiff::Timestamp)> {
    f.status
        .as_ref()?
        .summary
        .as_ref()
        .map(|s| (s.entered, s.converted, s.conversion.clone(), s.updated_at.0))
}

#[tokio::test]
async fn a_funnels_conversion_summary_is_live_and_refreshed_at_most_once_a_minute() {
    let s = setup("summary", &[]).await;
    let db = database();
    apply_pipeline(&s.pipelines, &pipeline_yaml("shop", &db, "")).await;
    wait_ready(&s.pipelines, "shop", &s.operator).await;
    store_events(
        &db,
        &[
            ("u1", "visited", 60),
            ("u2", "visited", 60),
            ("u3", "visited", 50),
            ("u4", "visited", 40),
            ("u1", "paid", 30),
        ],
    )
    .await;
    let funnels: Api<Funnel> = Api::namespaced(s.client.clone(), &s.ns);
    apply_funnel(&funnels, &funnel_yaml("buy", "shop", &["visited", "paid"])).await;
    let first = wait_for("a first summary", WAIT, || async {
        let f = funnels.get("buy").await.map_err(|e| e.to_string())?;
        summary_of(&f).ok_or_else(|| s.operator.log_tail())
    })
    .await;
    assert_eq!((first.0, first.1, first.2.as_str()), (4, 1, "25.0%"));
    let table = kubectl(s.stack, &["-n", &s.ns, "get", "funnels", "buy"]);
    assert!(table.contains("25.0%"), "{table}");

    // Another conversion shows up on the next refresh, not before a minute has passed.
    store_events(&db, &[("u2", "paid", 1)]).await;
    let second = wait_for("a refreshed summary", Duration::from_secs(180), || async {
        let f = funnels.get("buy").await.map_err(|e| e.to_string())?;
        match summary_of(&f) {
            Some(s) if s.1 == 2 => Ok(s),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(second.2, "50.0%");
    assert!(second.3 > first.3, "the refreshed summary says when it was computed");

    // Reconciles do not set the pace of summaries: ten edits of the funnel (a reconcile
    // each, and one per status write) compute at most one per minute they span.
    let summaries = || s.operator.metric("pulse_operator_funnel_summaries_total", "");
    let reconciles = || s.operator.metric("pulse_operator_reconciles_total", "controller=\"funnel\"");
    let summaries_before = summaries().await;
    let burst = Instant::now();
    for touch in 0..10 {
        // One at a time, each reconciled before the next (queued ones would merge).
        let before = reconciles().await;
        let patch =
            serde_json::json!({ "metadata": { "annotations": { "pulse.test/touch": touch.to_string() } } });
        funnels.patch("buy", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("touch the funnel");
        wait_for("the edit's reconcile", WAIT, || async {
            let n = reconciles().await;
            if n > before { Ok(()) } else { Err(format!("{n} reconciles\n{}", s.operator.log_tail())) }
        })
        .await;
    }
    let minutes = burst.elapsed().as_secs() / 60;
    let computed = summaries().await - summaries_before;
    println!("{computed} summaries in {:.0} s of edits", burst.elapsed().as_secs_f64());
    assert!(
        computed <= (1 + minutes) as f64,
        "{computed} summaries computed in {} whole minutes of reconciles",
        minutes
    );
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
