//! Proves the local control plane is real: namespaces, ConfigMaps and Deployments through
//! the API server, RBAC that denies an unknown user, kubectl, and with the controllers and
//! kwok a Deployment that becomes Available.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ListParams, PostParams};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Client};
use pulse_testkit::{KubeOptions, KubeStack, unique_name};

const WAIT: Duration = Duration::from_secs(90);

async fn namespace(client: &Client) -> String {
    let name = unique_name("smoke");
    let ns: Namespace = serde_json::from_value(serde_json::json!({ "metadata": { "name": name } }))
        .expect("namespace object");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "main", "image": "pulse:test" }] }
            }
        }
    }))
    .expect("deployment object")
}

fn is_available() -> impl Condition<Deployment> {
    |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref()).and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
            c.iter().any(|c| c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True"))
        })
    }
}

#[tokio::test]
async fn config_maps_round_trip_through_the_api_server() {
    let stack = KubeStack::shared().await.expect("start the control plane");
    let client = stack.client().await.expect("client");
    let ns = namespace(&client).await;
    let maps: Api<ConfigMap> = Api::namespaced(client, &ns);
    let map: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "pipeline-config" },
        "data": { "tenant": "acme" }
    }))
    .expect("configmap object");
    maps.create(&PostParams::default(), &map).await.expect("create configmap");
    let back = maps.get("pipeline-config").await.expect("get configmap");
    assert_eq!(back.data.expect("data")["tenant"], "acme");
}

#[tokio::test]
async fn a_deployment_becomes_available_on_the_simulated_node() {
    let stack = KubeStack::shared().await.expect("start the control plane");
    let client = stack.client().await.expect("client");
    let ns = namespace(&client).await;
    let deployments: Api<Deployment> = Api::namespaced(client, &ns);
    deployments.create(&PostParams::default(), &deployment("ingest", 2)).await.expect("create deployment");
    tokio::time::timeout(WAIT, await_condition(deployments.clone(), "ingest", is_available()))
        .await
        .expect("the deployment became Available in time")
        .expect("watch the deployment");
    let status = deployments.get("ingest").await.expect("get").status.expect("status");
    assert_eq!(status.ready_replicas, Some(2));
}

#[tokio::test]
async fn rbac_denies_a_user_without_roles() {
    let stack = KubeStack::shared().await.expect("start the control plane");
    let admin = stack.client().await.expect("client");
    let ns = namespace(&admin).await;

    let kubeconfig = kube::config::Kubeconfig::read_from(stack.kubeconfig()).expect("read kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("load kubeconfig");
    config.auth_info.impersonate = Some("nobody".to_string());
    let nobody = Client::try_from(config).expect("impersonating client");
    let err = Api::<ConfigMap>::namespaced(nobody, &ns)
        .list(&ListParams::default())
        .await
        .expect_err("a user without roles is denied");
    match err {
        kube::Error::Api(status) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden, got {other}"),
    }
}

#[tokio::test]
async fn kubectl_talks_to_the_stack() {
    let stack = KubeStack::shared().await.expect("start the control plane");
    let client = stack.client().await.expect("client");
    let ns = namespace(&client).await;
    let output = stack
        .kubectl()
        .expect("kubectl is built")
        .args(["get", "namespace", &ns, "-o", "jsonpath={.metadata.name}"])
        .output()
        .expect("run kubectl");
    assert!(output.status.success(), "kubectl failed: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), ns);

    let version =
        stack.kubectl().expect("kubectl").args(["version", "-o", "json"]).output().expect("run kubectl");
    let version: serde_json::Value = serde_json::from_slice(&version.stdout).expect("version json");
    assert_eq!(version["serverVersion"]["gitVersion"], "v1.37.2");
}

#[tokio::test]
async fn without_nodes_a_deployment_gets_its_replica_set_but_no_ready_pods() {
    let options = KubeOptions { controller_manager: true, simulated_nodes: false };
    let stack = KubeStack::start(options).await.expect("start the control plane without nodes");
    let client = stack.client().await.expect("client");
    let ns = namespace(&client).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments.create(&PostParams::default(), &deployment("query", 1)).await.expect("create deployment");
    let sets: Api<ReplicaSet> = Api::namespaced(client, &ns);
    let has_replica_set = |list: &[ReplicaSet]| {
        list.iter().any(|rs| rs.metadata.name.as_deref().is_some_and(|n| n.starts_with("query-")))
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = sets.list(&ListParams::default()).await.expect("list replica sets");
        if has_replica_set(&list.items) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no ReplicaSet for the deployment");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = deployments.get("query").await.expect("get").status.unwrap_or_default();
    assert_eq!(status.ready_replicas.unwrap_or(0), 0, "no node, so no ready pod");
}
