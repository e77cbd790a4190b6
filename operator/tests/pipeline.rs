//! The pipeline controller on the local stack (API server, controller-manager, scheduler,
//! kwok), with real Redis and FerretDB: children, owner references, availability, streams
//! and indexes, spec changes, sweeping, deletion per deletionPolicy, idleness, autoscaler
//! ownership of replicas, invalid specs and pause.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use mongodb::bson::doc;
use pulse_testkit::RedisServer;
use support::*;

async fn groups_of(redis: &RedisServer, key: &str) -> Result<Vec<String>, String> {
    let mut conn = redis.connection().await.map_err(|e| e.to_string())?;
    let groups: Vec<std::collections::HashMap<String, redis::Value>> =
        redis::cmd("XINFO").arg("GROUPS").arg(key).query_async(&mut conn).await.map_err(|e| e.to_string())?;
    Ok(groups
        .iter()
        .filter_map(|g| match g.get("name") {
            Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .collect())
}

async fn keys_of(redis: &RedisServer, pattern: &str) -> Vec<String> {
    let mut conn = redis.connection().await.expect("redis connection");
    redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await.expect("KEYS")
}

async fn index_names(db: &str, collection: &str) -> Vec<String> {
    let client = ferret().await.client().await.expect("mongo client");
    client
        .database(db)
        .collection::<mongodb::bson::Document>(collection)
        .list_index_names()
        .await
        .unwrap_or_default()
}

async fn databases() -> Vec<String> {
    let client = ferret().await.client().await.expect("mongo client");
    client.list_database_names().await.expect("list databases")
}

fn is_available(d: &Deployment) -> bool {
    d.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
        c.iter().any(|c| c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True"))
    })
}

fn owned_by(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, uid: &str) -> bool {
    meta.owner_references.iter().flatten().any(|o| o.uid == uid && o.controller == Some(true))
}

const AUTOSCALED: &str = r#"  ingest:
    autoscaling: { minReplicas: 2, maxReplicas: 5 }
  processor:
    replicas: 1"#;

#[tokio::test]
async fn a_pipeline_gets_every_child_follows_its_spec_and_retains_data_when_deleted() {
    let s = setup("lifecycle", &[]).await;
    let db = database();
    let p = apply_pipeline(&s.pipelines, &pipeline_yaml("shop", &db, AUTOSCALED)).await;
    let uid = p.metadata.uid.clone().expect("uid");
    let ready = wait_ready(&s.pipelines, "shop", &s.operator).await;
    let status = ready.status.as_ref().expect("status");
    assert_eq!(status.observed_generation, ready.metadata.generation);
    assert_eq!(status.keys_secret.as_deref(), Some("shop-keys"));
    // The status is the operator's by server-side apply: it owns each field it writes, and
    // drops what it no longer writes.
    let status_manager = ready.metadata.managed_fields.iter().flatten().find(|m| {
        m.subresource.as_deref() == Some("status") && m.manager.as_deref() == Some("pulse-operator")
    });
    assert_eq!(
        status_manager.and_then(|m| m.operation.as_deref()),
        Some("Apply"),
        "{:?}",
        ready.metadata.managed_fields
    );
    assert_eq!(
        status.ingest_endpoint.as_deref(),
        Some(format!("http://shop-ingest.{}.svc:8080", s.ns).as_str())
    );
    for type_ in [
        "BufferReady",
        "StorageReady",
        "IngestAvailable",
        "ProcessorAvailable",
        "QueryAvailable",
        "DashboardsReady",
    ] {
        assert_eq!(condition(&ready, type_).map(|c| c.0), Some("True".to_string()), "{type_}");
    }

    // Every child exists, owned by the pipeline; Deployments are Available.
    let deployments: Api<Deployment> = Api::namespaced(s.client.clone(), &s.ns);
    for name in ["shop-ingest", "shop-processor", "shop-query"] {
        let d = deployments.get(name).await.expect(name);
        assert!(owned_by(&d.metadata, &uid), "{name} owner");
        assert!(is_available(&d), "{name} available");
    }
    // The autoscaled ingest leaves replicas to its HPA; the fixed processor states them.
    let ingest = deployments.get("shop-ingest").await.expect("ingest");
    let ours: Vec<_> = ingest
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|f| f.manager.as_deref() == Some("pulse-operator"))
        .collect();
    let fields = serde_json::to_string(&ours).expect("managed fields");
    assert!(!fields.contains("\"f:replicas\""), "the operator must not own ingest's replicas: {fields}");
    let services: Api<Service> = Api::namespaced(s.client.clone(), &s.ns);
    for name in ["shop-ingest", "shop-processor", "shop-query"] {
        assert!(owned_by(&services.get(name).await.expect(name).metadata, &uid));
    }
    let maps: Api<ConfigMap> = Api::namespaced(s.client.clone(), &s.ns);
    let config = maps.get("shop-config").await.expect("config map");
    assert!(owned_by(&config.metadata, &uid));
    let text = config.data.as_ref().and_then(|d| d.get("pipeline.yaml")).expect("config text");
    let parsed = pulse_core::config::PipelineConfig::parse(text).expect("the services accept the config");
    assert_eq!((parsed.tenant.as_str(), parsed.buffer.partitions), ("shop", 4));
    let dashboard = maps.get("shop-dashboard").await.expect("dashboard");
    assert_eq!(
        dashboard.metadata.labels.as_ref().and_then(|l| l.get("grafana_dashboard")).map(String::as_str),
        Some("1")
    );
    let keys = Api::<Secret>::namespaced(s.client.clone(), &s.ns).get("shop-keys").await.expect("keys");
    assert!(owned_by(&keys.metadata, &uid));
    let data = keys.data.expect("keys data");
    assert!(data["write-key"].0.starts_with(b"pk_w_") && data["read-key"].0.starts_with(b"pk_r_"));
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(s.client.clone(), &s.ns);
    let hpa = hpas.get("shop-ingest").await.expect("ingest HPA");
    assert_eq!(hpa.spec.max_replicas, 5);
    assert!(hpas.get_opt("shop-processor").await.expect("get").is_none(), "a fixed processor has no HPA");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(s.client.clone(), &s.ns);
    assert!(owned_by(&pdbs.get("shop-ingest").await.expect("ingest PDB").metadata, &uid));

    // External state: a stream with the processors' group per partition, and indexes.
    for partition in 0..4 {
        let groups =
            groups_of(&s.redis, &format!("pulse:{{shop:{partition}}}:events")).await.expect("XINFO GROUPS");
        assert_eq!(groups, ["pulse-processor"]);
    }
    // Raw events, blocks and their index entries: collections per UTC day, made by their
    // first insert, with no secondary index (each would cost every insert); profile
    // changes: by user and by partition.
    let collections =
        ferret().await.client().await.expect("mongo").database(&db).list_collection_names().await;
    let collections = collections.expect("collections");
    assert!(!collections.iter().any(|c| c.starts_with("events")), "{collections:?}");
    assert!(!collections.iter().any(|c| c.starts_with("event_block")), "{collections:?}");
    let indexes = index_names(&db, "profile_changes").await;
    assert!(indexes.iter().any(|i| i.starts_with("u_1")), "{indexes:?}");

    // Change the spec: children follow.
    let changed =
        AUTOSCALED.replace("maxReplicas: 5", "maxReplicas: 7") + "\n  rollups: { intervals: [hour] }";
    let changed = pipeline_yaml("shop", &db, &changed).replace("partitions: 4", "partitions: 6");
    apply_pipeline(&s.pipelines, &changed).await;
    wait_ready(&s.pipelines, "shop", &s.operator).await;
    assert_eq!(hpas.get("shop-ingest").await.expect("HPA").spec.max_replicas, 7);
    let text =
        maps.get("shop-config").await.expect("config").data.and_then(|d| d.get("pipeline.yaml").cloned());
    let parsed = pulse_core::config::PipelineConfig::parse(&text.unwrap_or_default()).expect("config");
    assert_eq!(parsed.buffer.partitions, 6);
    assert_eq!(
        groups_of(&s.redis, "pulse:{shop:5}:events").await.expect("new partition"),
        ["pulse-processor"]
    );

    // Remove parts: their children are swept.
    let fewer = format!("{AUTOSCALED}\n  query: {{ replicas: 0 }}\n  dashboards: {{ enabled: false }}");
    let fewer = pipeline_yaml("shop", &db, &fewer).replace("partitions: 4", "partitions: 6");
    apply_pipeline(&s.pipelines, &fewer).await;
    let after = wait_ready(&s.pipelines, "shop", &s.operator).await;
    assert_eq!(condition(&after, "QueryAvailable").map(|c| c.1), Some("ScaledToZero".into()));
    wait_for("query and dashboard swept", WAIT, || async {
        let gone = deployments.get_opt("shop-query").await.map_err(|e| e.to_string())?.is_none()
            && services.get_opt("shop-query").await.map_err(|e| e.to_string())?.is_none()
            && maps.get_opt("shop-dashboard").await.map_err(|e| e.to_string())?.is_none();
        if gone { Ok(()) } else { Err("still there".into()) }
    })
    .await;

    // Delete with Retain: the children go, the data stays.
    s.pipelines.delete("shop", &DeleteParams::default()).await.expect("delete");
    wait_for("pipeline gone", WAIT, || async {
        match s.pipelines.get_opt("shop").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still there".into()),
        }
    })
    .await;
    wait_for("children garbage-collected", WAIT, || async {
        let left = deployments
            .list(&ListParams::default().labels("pulse.dev/pipeline=shop"))
            .await
            .map_err(|e| e.to_string())?;
        let maps_left = maps
            .list(&ListParams::default().labels("pulse.dev/pipeline=shop"))
            .await
            .map_err(|e| e.to_string())?;
        if left.items.is_empty() && maps_left.items.is_empty() {
            Ok(())
        } else {
            Err(format!("{} deployments left", left.items.len()))
        }
    })
    .await;
    assert_eq!(groups_of(&s.redis, "pulse:{shop:0}:events").await.expect("retained"), ["pulse-processor"]);
    assert!(databases().await.contains(&db), "Retain keeps the database");
    // ...and its schema (the raw events' collection has no index on FerretDB: it is made
    // by the first event).
    assert!(!index_names(&db, "profile_changes").await.is_empty());
}

#[tokio::test]
async fn delete_policy_drops_the_data_and_cleanup_tolerates_data_already_gone() {
    let s = setup("delete", &[]).await;
    let db = database();
    let yaml = pipeline_yaml("gone", &db, "  deletionPolicy: Delete");
    apply_pipeline(&s.pipelines, &yaml).await;
    wait_ready(&s.pipelines, "gone", &s.operator).await;
    // Some data: a buffered entry and a stored event.
    let mut conn = s.redis.connection().await.expect("redis");
    let _: String = redis::cmd("XADD")
        .arg("pulse:{gone:1}:events")
        .arg("*")
        .arg("events")
        .arg("[]")
        .query_async(&mut conn)
        .await
        .expect("XADD");
    let mongo = ferret().await.client().await.expect("mongo");
    mongo.database(&db).collection("events").insert_one(doc! { "_id": "e1" }).await.expect("insert");
    assert!(!keys_of(&s.redis, "pulse:{gone*").await.is_empty());

    s.pipelines.delete("gone", &DeleteParams::default()).await.expect("delete");
    wait_for("pipeline gone", WAIT, || async {
        match s.pipelines.get_opt("gone").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err(s.operator.log_tail()),
        }
    })
    .await;
    assert_eq!(keys_of(&s.redis, "pulse:{gone*").await, Vec::<String>::new());
    assert!(!databases().await.contains(&db), "Delete drops the database");

    // A second pipeline whose data someone already removed: deletion still completes.
    let db2 = database();
    apply_pipeline(&s.pipelines, &pipeline_yaml("again", &db2, "  deletionPolicy: Delete")).await;
    wait_ready(&s.pipelines, "again", &s.operator).await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.expect("FLUSHALL");
    mongo.database(&db2).drop().await.expect("drop");
    s.pipelines.delete("again", &DeleteParams::default()).await.expect("delete");
    wait_for("pipeline with data already gone deleted", WAIT, || async {
        match s.pipelines.get_opt("again").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err(s.operator.log_tail()),
        }
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_store_blocks_deletion_only_until_the_cleanup_deadline() {
    let mut s = setup("deadline", &["--cleanup-deadline-secs", "8"]).await;
    let db = database();
    apply_pipeline(&s.pipelines, &pipeline_yaml("stuck", &db, "  deletionPolicy: Delete")).await;
    wait_ready(&s.pipelines, "stuck", &s.operator).await;
    s.redis.kill();
    s.pipelines.delete("stuck", &DeleteParams::default()).await.expect("delete");
    // Still there while cleanup retries...
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(s.pipelines.get_opt("stuck").await.expect("get").is_some(), "cleanup must retry an outage first");
    // ...then given up with a Warning Event, and the pipeline goes.
    wait_for("pipeline deleted after the deadline", WAIT, || async {
        match s.pipelines.get_opt("stuck").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err(s.operator.log_tail()),
        }
    })
    .await;
    let events = kubectl(s.stack, &["-n", &s.ns, "get", "events", "-o", "jsonpath={.items[*].reason}"]);
    assert!(events.contains("CleanupAbandoned"), "{events}");
}

#[tokio::test]
async fn an_idle_ready_pipeline_writes_nothing_and_reconciles_nothing() {
    let s = setup("idle", &[]).await;
    // Fixed replicas: no autoscaler changes anything either, so every write would be the
    // operator's.
    let fixed = "  ingest: { replicas: 2 }\n  processor: { replicas: 1 }";
    apply_pipeline(&s.pipelines, &pipeline_yaml("calm", &database(), fixed)).await;
    wait_ready(&s.pipelines, "calm", &s.operator).await;
    // Let the rollout settle (controllers still update Deployment and PDB status for a
    // moment after Ready): the same versions 5 s apart.
    let before = wait_for("objects to settle", WAIT, || async {
        let a = resource_versions(s.stack, &s.ns, "calm");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let b = resource_versions(s.stack, &s.ns, "calm");
        if a == b { Ok(b) } else { Err(format!("{a:?} -> {b:?}")) }
    })
    .await;
    let reconciles = s.operator.metric("pulse_operator_reconciles_total", "controller=\"pipeline\"").await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = resource_versions(s.stack, &s.ns, "calm");
    let reconciles_after =
        s.operator.metric("pulse_operator_reconciles_total", "controller=\"pipeline\"").await;
    let changed: Vec<_> = after.iter().filter(|v| !before.contains(v)).collect();
    println!(
        "idle 30 s: {} objects, {} written, reconciles {reconciles} -> {reconciles_after}",
        before.len(),
        changed.len()
    );
    assert!(before.len() >= 10, "{before:?}");
    assert_eq!(changed, Vec::<&String>::new(), "objects written while idle");
    assert_eq!(reconciles, reconciles_after, "reconciles while idle");
}

#[tokio::test]
async fn the_autoscalers_replica_count_survives_reconciles() {
    let s = setup("hpa", &[]).await;
    let db = database();
    apply_pipeline(&s.pipelines, &pipeline_yaml("scaled", &db, AUTOSCALED)).await;
    wait_ready(&s.pipelines, "scaled", &s.operator).await;
    let deployments: Api<Deployment> = Api::namespaced(s.client.clone(), &s.ns);
    // What the HPA does: set replicas through the scale subresource.
    let scale = serde_json::json!({ "spec": { "replicas": 4 } });
    deployments
        .patch_scale("scaled-ingest", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .expect("scale");
    // A spec change: a reconcile that re-applies the Deployment (its pod template changes).
    let changed = pipeline_yaml("scaled", &db, &format!("{AUTOSCALED}\n    batchSize: 700"));
    apply_pipeline(&s.pipelines, &changed).await;
    let ready = wait_ready(&s.pipelines, "scaled", &s.operator).await;
    assert_eq!(ready.spec.processor.batch_size, 700);
    let d = deployments.get("scaled-ingest").await.expect("ingest");
    assert_eq!(d.spec.replicas, Some(4), "the operator reset the autoscaler's replicas");
}

#[tokio::test]
async fn an_invalid_spec_gets_a_condition_and_a_warning_and_is_not_retried() {
    let s = setup("invalid", &[]).await;
    // A dotted name cannot be a tenant id.
    apply_pipeline(&s.pipelines, &pipeline_yaml("bad.name", &database(), "")).await;
    let p = wait_for("InvalidSpec", WAIT, || async {
        let p = s.pipelines.get("bad.name").await.map_err(|e| e.to_string())?;
        match condition(&p, "Ready") {
            Some((st, reason)) if st == "False" && reason == "InvalidSpec" => Ok(p),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let message = &p.status.as_ref().expect("status").conditions[0].message;
    assert!(message.contains("metadata.name"), "{message}");
    let events = kubectl(
        s.stack,
        &["-n", &s.ns, "get", "events", "-o", "jsonpath={range .items[*]}{.type}/{.reason}{\"\\n\"}{end}"],
    );
    assert!(events.contains("Warning/InvalidSpec"), "{events}");
    let errors = s.operator.metric("pulse_operator_reconcile_errors_total", "reason=\"InvalidSpec\"").await;
    // The status write itself comes back as one more (writeless) reconcile; after that,
    // nothing: no retry loop, no backoff requeue.
    let reconciles = wait_for("reconciles to settle", WAIT, || async {
        let a = s.operator.metric("pulse_operator_reconciles_total", "controller=\"pipeline\"").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let b = s.operator.metric("pulse_operator_reconciles_total", "controller=\"pipeline\"").await;
        if a == b { Ok(b) } else { Err(format!("{a} -> {b}")) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        s.operator.metric("pulse_operator_reconciles_total", "controller=\"pipeline\"").await,
        reconciles,
        "retried in a loop"
    );
    assert!(errors >= 1.0);

    // A missing Secret is transient: once it exists, the pipeline becomes Ready.
    let yaml = pipeline_yaml("late", &database(), "").replace("name: mongodb", "name: mongodb-late");
    apply_pipeline(&s.pipelines, &yaml).await;
    wait_for("MissingSecret", WAIT, || async {
        let p = s.pipelines.get("late").await.map_err(|e| e.to_string())?;
        match condition(&p, "Ready") {
            Some((_, reason)) if reason == "MissingSecret" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    secret(&s.client, &s.ns, "mongodb-late", "uri", &ferret().await.uri()).await;
    wait_ready(&s.pipelines, "late", &s.operator).await;
}

#[tokio::test]
async fn a_paused_pipeline_changes_nothing_until_resumed() {
    let s = setup("paused", &[]).await;
    let db = database();
    let fixed = "  ingest: { replicas: 2 }";
    apply_pipeline(&s.pipelines, &pipeline_yaml("nap", &db, fixed)).await;
    wait_ready(&s.pipelines, "nap", &s.operator).await;
    let deployments: Api<Deployment> = Api::namespaced(s.client.clone(), &s.ns);
    let paused = pipeline_yaml("nap", &db, "  ingest: { replicas: 3 }\n  paused: true");
    apply_pipeline(&s.pipelines, &paused).await;
    wait_for("Paused condition", WAIT, || async {
        let p = s.pipelines.get("nap").await.map_err(|e| e.to_string())?;
        match condition(&p, "Paused") {
            Some((st, _)) if st == "True" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        deployments.get("nap-ingest").await.expect("ingest").spec.replicas,
        Some(2),
        "paused changed a child"
    );
    let resumed = pipeline_yaml("nap", &db, "  ingest: { replicas: 3 }\n  paused: false");
    apply_pipeline(&s.pipelines, &resumed).await;
    let ready = wait_ready(&s.pipelines, "nap", &s.operator).await;
    assert_eq!(condition(&ready, "Paused").map(|c| c.0), Some("False".into()));
    assert_eq!(deployments.get("nap-ingest").await.expect("ingest").spec.replicas, Some(3));
}

#[tokio::test]
async fn a_deleted_child_comes_back() {
    let s = setup("heal", &[]).await;
    apply_pipeline(&s.pipelines, &pipeline_yaml("mend", &database(), "")).await;
    wait_ready(&s.pipelines, "mend", &s.operator).await;
    let deployments: Api<Deployment> = Api::namespaced(s.client.clone(), &s.ns);
    let maps: Api<ConfigMap> = Api::namespaced(s.client.clone(), &s.ns);
    let old = deployments.get("mend-processor").await.expect("processor").metadata.uid;
    deployments.delete("mend-processor", &DeleteParams::default()).await.expect("delete deployment");
    maps.delete("mend-config", &DeleteParams::default()).await.expect("delete config map");
    wait_for("children recreated", WAIT, || async {
        let d = deployments.get_opt("mend-processor").await.map_err(|e| e.to_string())?;
        let m = maps.get_opt("mend-config").await.map_err(|e| e.to_string())?;
        match (d, m) {
            (Some(d), Some(_)) if d.metadata.uid != old => Ok(()),
            _ => Err("not yet".into()),
        }
    })
    .await;
    wait_ready(&s.pipelines, "mend", &s.operator).await;
}

fn example(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(path)
}

/// Points an example's Secret at the test's servers.
async fn point_secret(client: &kube::Client, ns: &str, name: &str, key: &str, value: &str) {
    let patch = serde_json::json!({ "stringData": { key: value } });
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch secret");
}

#[tokio::test]
async fn the_examples_become_pipelines() {
    let s = setup("examples", &[]).await;
    let apply =
        |path: &str| kubectl(s.stack, &["-n", &s.ns, "apply", "-f", example(path).to_str().expect("path")]);
    apply("pipelines/acme-secrets.yaml");
    point_secret(&s.client, &s.ns, "acme-redis", "url", &s.redis.url()).await;
    point_secret(&s.client, &s.ns, "acme-mongodb", "uri", &ferret().await.uri()).await;
    apply("pipelines/acme-external.yaml");
    apply("funnels");
    wait_ready(&s.pipelines, "acme", &s.operator).await;
    let funnels: Api<pulse_crds::Funnel> = Api::namespaced(s.client.clone(), &s.ns);
    for name in ["activation", "checkout", "signup"] {
        wait_for(&format!("funnel {name} Ready"), WAIT, || async {
            let f = funnels.get(name).await.map_err(|e| e.to_string())?;
            let c = f
                .status
                .as_ref()
                .and_then(|st| st.conditions.first())
                .map(|c| (c.status.clone(), c.reason.clone()));
            if c.as_ref().is_some_and(|c| c.0 == "True") { Ok(()) } else { Err(format!("{c:?}")) }
        })
        .await;
    }

    // Managed Redis: a StatefulSet whose volume claim follows deletionPolicy. The local
    // stack has no volume provisioner, so its pod never runs and BufferReady says so.
    apply("pipelines/globex-managed.yaml");
    point_secret(&s.client, &s.ns, "globex-mongodb", "uri", &ferret().await.uri()).await;
    let p = wait_for("globex waiting on its Redis", WAIT, || async {
        let p = s.pipelines.get("globex").await.map_err(|e| e.to_string())?;
        match (condition(&p, "BufferReady"), condition(&p, "StorageReady")) {
            (Some(b), Some(st)) if b.1 == "RedisStarting" && st.0 == "True" => Ok(p),
            other => Err(format!("{other:?}\n{}", s.operator.log_tail())),
        }
    })
    .await;
    assert_eq!(condition(&p, "Ready").map(|c| c.0), Some("False".into()));
    let sets: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::namespaced(s.client.clone(), &s.ns);
    let sts = sets.get("globex-redis").await.expect("StatefulSet");
    let spec = sts.spec;
    assert_eq!(
        spec.persistent_volume_claim_retention_policy.and_then(|p| p.when_deleted).as_deref(),
        Some("Delete")
    );
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(s.client.clone(), &s.ns);
    wait_for("the Redis volume claim", WAIT, || async {
        let c = claims.get_opt("data-globex-redis-0").await.map_err(|e| e.to_string())?;
        let size = c.and_then(|c| c.spec?.resources?.requests?.get("storage").map(|q| q.0.clone()));
        if size.as_deref() == Some("5Gi") { Ok(()) } else { Err(format!("{size:?}")) }
    })
    .await;
    let keys = Api::<Secret>::namespaced(s.client.clone(), &s.ns).get("globex-keys").await.expect("keys");
    let url = keys
        .data
        .and_then(|d| d.get("redis-url").cloned())
        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
    assert_eq!(url, Some(format!("redis://globex-redis.{}.svc:6379/0", s.ns)));
}
