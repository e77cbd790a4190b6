//! The operator's RBAC (deploy/rbac.yaml) is enough: the operator runs impersonating its
//! ServiceAccount through a pipeline's whole life, with a funnel, and is never forbidden.

mod support;

use std::path::Path;

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use pulse_crds::Funnel;
use pulse_testkit::unique_name;
use support::*;

const SERVICE_ACCOUNT: &str = "system:serviceaccount:pulse-system:pulse-operator";

/// The admin kubeconfig, impersonating the operator's ServiceAccount.
fn impersonating(admin: &Path, dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(admin).expect("read kubeconfig");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig YAML");
    let user = &mut config["users"][0]["user"];
    user["as"] = SERVICE_ACCOUNT.into();
    user["as-groups"] = serde_yaml::to_value([
        "system:serviceaccounts",
        "system:serviceaccounts:pulse-system",
        "system:authenticated",
    ])
    .expect("groups");
    let path = dir.join("operator-kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&config).expect("kubeconfig")).expect("write kubeconfig");
    path
}

#[tokio::test]
async fn the_operator_runs_a_pipelines_life_with_its_own_rbac() {
    let s = setup("rbac", &[]).await;
    drop(s.operator); // the admin operator of `setup`; this test runs its own
    let rbac = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rbac.yaml");
    kubectl_apply(s.stack, &[&rbac]);
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = impersonating(s.stack.kubeconfig(), dir.path());
    let lease = unique_name("lease");
    let operator = Operator::start_with(&kubeconfig, &s.ns, "pulse-system", &["--lease-name", &lease]);

    let spec = "  ingest:\n    autoscaling: { minReplicas: 2, maxReplicas: 4 }\n  deletionPolicy: Delete";
    apply_pipeline(&s.pipelines, &pipeline_yaml("guarded", &database(), spec)).await;
    let funnels: Api<Funnel> = Api::namespaced(s.client.clone(), &s.ns);
    let funnel = serde_json::json!({
        "apiVersion": "pulse.dev/v1alpha1", "kind": "Funnel", "metadata": { "name": "buy" },
        "spec": { "pipelineRef": { "name": "guarded" }, "steps": [{ "event": "a" }, { "event": "b" }] }
    });
    funnels.patch("buy", &PatchParams::apply("test").force(), &Patch::Apply(&funnel)).await.expect("funnel");
    wait_ready(&s.pipelines, "guarded", &operator).await;
    wait_for("funnel Ready", WAIT, || async {
        let f = funnels.get("buy").await.map_err(|e| e.to_string())?;
        let ready = f.status.as_ref().and_then(|st| st.conditions.first()).map(|c| c.status.clone());
        if ready.as_deref() == Some("True") { Ok(()) } else { Err(format!("{ready:?}")) }
    })
    .await;
    let events = kubectl(s.stack, &["-n", &s.ns, "get", "events", "-o", "jsonpath={.items[*].reason}"]);
    assert!(events.contains("Ready"), "the operator could not publish Events: {events}");

    s.pipelines.delete("guarded", &DeleteParams::default()).await.expect("delete");
    wait_for("pipeline deleted", WAIT, || async {
        match s.pipelines.get_opt("guarded").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err(operator.log_tail()),
        }
    })
    .await;
    let log = std::fs::read_to_string(&operator.log).unwrap_or_default();
    assert!(!log.contains("forbidden"), "the operator was forbidden something:\n{}", operator.log_tail());
}
