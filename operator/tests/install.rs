//! The two ways to install Pulse are accepted by a real API server: the Helm chart
//! (charts/pulse) lints, renders with default values and with every option on, and what it
//! renders passes a server-side dry run; its RBAC is operator/deploy/rbac.yaml's, and the
//! operator runs a pipeline's whole life impersonating the chart's ServiceAccount. The
//! GitOps layout (examples/gitops) renders with `kubectl kustomize` and passes a
//! server-side dry run. This binary has its own control plane (it installs a CRD).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use pulse_crds::Funnel;
use pulse_testkit::{Binary, KubeStack, WorkDir, unique_name};
use support::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    repo().join("charts/pulse")
}

/// Runs helm with `args`, its caches in `home`; the stdout, or a panic with stderr.
fn helm(home: &Path, args: &[&str]) -> String {
    let out = helm_output(home, args);
    assert!(out.status.success(), "helm {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn helm_output(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(Binary::Helm.path().expect("helm (run `make env`)"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .args(args)
        .output()
        .expect("run helm")
}

/// Server-side dry run of `yaml`: the API server validates and admits every object
/// (schemas, defaults, RBAC escalation checks) and stores nothing.
fn dry_run(stack: &KubeStack, dir: &Path, name: &str, yaml: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, yaml).expect("write manifest");
    let out = stack
        .kubectl()
        .expect("kubectl")
        .args(["apply", "--server-side", "--dry-run=server", "-f"])
        .arg(&file)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "the API server refused {name}:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        yaml
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `kind` of each object of a multi-document YAML stream.
fn kinds(yaml: &str) -> Vec<String> {
    documents(yaml).iter().filter_map(|d| d["kind"].as_str().map(str::to_string)).collect()
}

fn documents(yaml: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| serde_yaml::Value::deserialize(d).ok())
        .filter(|v| !v.is_null())
        .collect()
}

fn cluster_role_rules(yaml: &str) -> serde_yaml::Value {
    documents(yaml)
        .into_iter()
        .find(|d| d["kind"] == "ClusterRole")
        .map(|d| d["rules"].clone())
        .expect("a ClusterRole")
}

async fn create_namespace(stack: &KubeStack, name: &str) {
    let client = stack.client().await.expect("client");
    let ns = serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).expect("ns");
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

#[test]
fn the_chart_lints_with_default_values_and_with_every_option() {
    let home = tempfile::tempdir().expect("temp dir");
    let chart = chart();
    let chart = chart.to_str().expect("path");
    let all = format!("{chart}/ci/all-options-values.yaml");
    helm(home.path(), &["lint", "--strict", chart]);
    helm(home.path(), &["lint", "--strict", chart, "-f", &all]);
}

#[test]
fn the_chart_refuses_bad_values_with_the_field_and_the_reason() {
    let home = tempfile::tempdir().expect("temp dir");
    let chart = chart();
    let chart = chart.to_str().expect("path");
    for (set, expected) in [
        ("operator.replicas=0", "/operator/replicas"),
        ("operator.unknown=1", "additional properties 'unknown' not allowed"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("serviceMonitor.interval=soon", "/serviceMonitor/interval"),
        (
            "operator.leaderElection.enabled=false,operator.replicas=2",
            "needs operator.leaderElection.enabled",
        ),
    ] {
        let out = helm_output(home.path(), &["template", "t", chart, "--set", set]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(stderr.contains(expected), "--set {set}: expected {expected:?} in:\n{stderr}");
    }
}

#[test]
fn the_charts_crds_and_rbac_are_the_generated_crds_and_the_operators_rules() {
    for file in ["analyticspipelines.yaml", "funnels.yaml"] {
        let generated = std::fs::read_to_string(repo().join("crds").join(file)).expect("crds/");
        let in_chart = std::fs::read_to_string(chart().join("crds").join(file)).expect("chart crds/");
        assert!(generated == in_chart, "charts/pulse/crds/{file} differs from crds/{file}: run `make crds`");
    }
    let home = tempfile::tempdir().expect("temp dir");
    let rendered = helm(home.path(), &["template", "t", chart().to_str().expect("path")]);
    let deploy = std::fs::read_to_string(repo().join("operator/deploy/rbac.yaml")).expect("rbac.yaml");
    assert_eq!(cluster_role_rules(&rendered), cluster_role_rules(&deploy));
}

#[tokio::test]
async fn what_the_chart_renders_is_accepted_by_the_api_server() {
    let stack = stack().await;
    let client = stack.client().await.expect("client");
    // The all-options render holds a ServiceMonitor: its CRD (a schema is enough).
    let service_monitor: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "servicemonitors.monitoring.coreos.com" },
        "spec": {
            "group": "monitoring.coreos.com",
            "names": { "kind": "ServiceMonitor", "plural": "servicemonitors", "singular": "servicemonitor" },
            "scope": "Namespaced",
            "versions": [{ "name": "v1", "served": true, "storage": true, "schema": { "openAPIV3Schema": {
                "type": "object", "x-kubernetes-preserve-unknown-fields": true } } }]
        }
    }))
    .expect("crd");
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &service_monitor)
        .await
        .expect("create CRD");
    kubectl(stack, &["wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com"]);
    // And a PrometheusRule.
    let prometheus_rule: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "prometheusrules.monitoring.coreos.com" },
        "spec": {
            "group": "monitoring.coreos.com",
            "names": { "kind": "PrometheusRule", "plural": "prometheusrules", "singular": "prometheusrule" },
            "scope": "Namespaced",
            "versions": [{ "name": "v1", "served": true, "storage": true, "schema": { "openAPIV3Schema": {
                "type": "object", "x-kubernetes-preserve-unknown-fields": true } } }]
        }
    }))
    .expect("crd");
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &prometheus_rule)
        .await
        .expect("create CRD");
    kubectl(stack, &["wait", "--for=condition=Established", "crd/prometheusrules.monitoring.coreos.com"]);

    let release_ns = namespace(&client, "release").await;
    let (team_a, team_b) = (namespace(&client, "team-a").await, namespace(&client, "team-b").await);
    let home = WorkDir::new("chart").expect("workdir");
    let chart = chart();
    let chart = chart.to_str().expect("path");

    let default = helm(home.path(), &["template", "default", chart, "-n", &release_ns]);
    assert_eq!(
        kinds(&default),
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment"
        ]
    );
    let out = dry_run(stack, home.path(), "default.yaml", &default);
    assert!(out.contains("deployment.apps/default-pulse serverside-applied (server dry run)"), "{out}");

    let all_values = format!("{chart}/ci/all-options-values.yaml");
    let namespaces = format!("operator.watchNamespaces={{{team_a},{team_b}}}");
    let all = helm(
        home.path(),
        &["template", "everything", chart, "-n", &release_ns, "-f", &all_values, "--set", &namespaces],
    );
    let mut rendered = kinds(&all);
    rendered.sort();
    assert_eq!(
        rendered,
        [
            "ClusterRole",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor"
        ]
    );
    assert!(all.contains(&format!("- --namespace={team_a}")), "the operator is not scoped:\n{all}");
    let out = dry_run(stack, home.path(), "all-options.yaml", &all);
    assert!(
        out.contains("servicemonitor.monitoring.coreos.com/everything-pulse serverside-applied"),
        "{out}"
    );
    assert!(
        out.contains("prometheusrule.monitoring.coreos.com/everything-pulse serverside-applied"),
        "{out}"
    );
    // The PrometheusRule carries every alert of the plain rules file.
    let rules =
        std::fs::read_to_string(repo().join("charts/pulse/rules/pulse-rules.yaml")).expect("rules file");
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(all.contains(&format!("alert: {alert}")), "{alert} is not in the PrometheusRule");
    }
}

/// The admin kubeconfig, impersonating `service_account` (namespace/name).
fn impersonating(admin: &Path, dir: &Path, namespace: &str, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(admin).expect("read kubeconfig");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig YAML");
    let user = &mut config["users"][0]["user"];
    user["as"] = format!("system:serviceaccount:{namespace}:{name}").into();
    user["as-groups"] = serde_yaml::to_value([
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".to_string(),
    ])
    .expect("groups");
    let path = dir.join("chart-operator-kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&config).expect("kubeconfig")).expect("write kubeconfig");
    path
}

#[tokio::test]
async fn the_operator_runs_a_pipelines_life_with_exactly_the_charts_rbac() {
    let s = setup("chart-rbac", &[]).await;
    drop(s.operator); // the admin operator of `setup`; this test runs its own
    let release_ns = unique_name("pulse-system");
    let release = unique_name("rel");
    let home = WorkDir::new("chart").expect("workdir");
    let chart = chart();
    // Installed for real, scoped to the test's namespace: the least-privilege form, where
    // the ClusterRole is bound only in the watched namespace.
    let watch = format!("operator.watchNamespaces={{{}}}", s.ns);
    helm(
        home.path(),
        &[
            "install",
            &release,
            chart.to_str().expect("path"),
            "--kubeconfig",
            s.stack.kubeconfig().to_str().expect("path"),
            "-n",
            &release_ns,
            "--create-namespace",
            "--set",
            &watch,
        ],
    );
    let fullname = format!("{release}-pulse");
    let kubeconfig = impersonating(s.stack.kubeconfig(), home.path(), &release_ns, &fullname);
    let operator = Operator::start_with(&kubeconfig, &s.ns, &release_ns, &["--lease-name", &fullname]);

    let spec = "  ingest:\n    autoscaling: { minReplicas: 2, maxReplicas: 4 }\n  deletionPolicy: Delete";
    apply_pipeline(&s.pipelines, &pipeline_yaml("charted", &database(), spec)).await;
    let funnels: Api<Funnel> = Api::namespaced(s.client.clone(), &s.ns);
    let funnel = serde_json::json!({
        "apiVersion": "pulse.dev/v1alpha1", "kind": "Funnel", "metadata": { "name": "buy" },
        "spec": { "pipelineRef": { "name": "charted" }, "steps": [{ "event": "a" }, { "event": "b" }] }
    });
    funnels.patch("buy", &PatchParams::apply("test").force(), &Patch::Apply(&funnel)).await.expect("funnel");
    wait_ready(&s.pipelines, "charted", &operator).await;
    wait_for("funnel Ready", WAIT, || async {
        let f = funnels.get("buy").await.map_err(|e| e.to_string())?;
        let ready = f.status.as_ref().and_then(|st| st.conditions.first()).map(|c| c.status.clone());
        if ready.as_deref() == Some("True") { Ok(()) } else { Err(format!("{ready:?}")) }
    })
    .await;
    let lease = kubectl(s.stack, &["-n", &release_ns, "get", "lease", &fullname, "-o", "name"]);
    assert!(lease.contains(&fullname), "no leader Lease in the release namespace: {lease}");

    s.pipelines.delete("charted", &DeleteParams::default()).await.expect("delete");
    wait_for("pipeline deleted", WAIT, || async {
        match s.pipelines.get_opt("charted").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err(operator.log_tail()),
        }
    })
    .await;
    let log = std::fs::read_to_string(&operator.log).unwrap_or_default();
    assert!(!log.contains("forbidden"), "the operator was forbidden something:\n{}", operator.log_tail());
    // Outside its watched namespace the chart grants nothing.
    let other = namespace(&s.client, "unwatched").await;
    let can = Command::new(Binary::Kubectl.path().expect("kubectl"))
        .env("KUBECONFIG", &kubeconfig)
        .args(["auth", "can-i", "list", "analyticspipelines.pulse.dev", "-n", &other])
        .output()
        .expect("kubectl auth can-i");
    assert_eq!(String::from_utf8_lossy(&can.stdout).trim(), "no");
}

#[tokio::test]
async fn the_gitops_tenants_render_and_are_accepted_by_the_api_server() {
    let stack = stack().await;
    let dir = WorkDir::new("gitops").expect("workdir");
    for (tenant, funnels) in [("acme", 3), ("globex", 2)] {
        let overlay = repo().join("examples/gitops/tenants").join(tenant);
        let yaml = kubectl(stack, &["kustomize", overlay.to_str().expect("path")]);
        let docs = documents(&yaml);
        let pipeline = docs.iter().find(|d| d["kind"] == "AnalyticsPipeline").expect("a pipeline");
        assert_eq!(pipeline["metadata"]["name"], tenant);
        assert_eq!(pipeline["metadata"]["namespace"], tenant);
        assert_eq!(
            pipeline["spec"]["storage"]["database"].as_str(),
            Some(format!("pulse_{tenant}").as_str())
        );
        let refs: Vec<_> = docs
            .iter()
            .filter(|d| d["kind"] == "Funnel")
            .map(|d| d["spec"]["pipelineRef"]["name"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(refs, vec![tenant.to_string(); funnels], "every funnel points at its tenant's pipeline");
        // The namespace exists for the dry run of what goes in it (a dry run creates nothing).
        create_namespace(stack, tenant).await;
        let out = dry_run(stack, dir.path(), &format!("{tenant}.yaml"), &yaml);
        assert!(out.contains(&format!("analyticspipeline.pulse.dev/{tenant} serverside-applied")), "{out}");
    }
    // The pipeline `make demo` applies (in a namespace of its own).
    let demo =
        std::fs::read_to_string(repo().join("examples/demo/acme.yaml")).expect("examples/demo/acme.yaml");
    let ns = unique_name("demo");
    create_namespace(stack, &ns).await;
    let demo =
        demo.replace("metadata:\n  name: acme\n", &format!("metadata:\n  name: acme\n  namespace: {ns}\n"));
    let out = dry_run(stack, dir.path(), "demo.yaml", &demo);
    assert!(out.contains("analyticspipeline.pulse.dev/acme serverside-applied"), "{out}");
}

/// The image cannot be built here (no container runtime); what can be checked is that the
/// Dockerfile ships exactly the workspace's service binaries, under the names the operator's
/// Deployments run, with a non-root user.
#[test]
fn the_dockerfile_ships_every_binary_under_the_names_the_operator_runs() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let mut shipped: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY --from=build"))
        .filter_map(|l| l.rsplit("/usr/local/bin/").next())
        .collect();
    shipped.sort_unstable();
    let mut binaries = Vec::new();
    for dir in ["operator", "services/ingest", "services/processor", "services/query"] {
        let manifest = std::fs::read_to_string(repo().join(dir).join("Cargo.toml")).expect("Cargo.toml");
        let name = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("package name");
        assert!(repo().join(dir).join("src/main.rs").exists(), "{dir} has no binary");
        assert!(dockerfile.contains(&format!("-p {name}")), "the Dockerfile does not build {name}");
        binaries.push(name.to_string());
    }
    binaries.sort_unstable();
    assert_eq!(shipped, binaries);
    let builder = std::fs::read_to_string(repo().join("operator/src/pipeline/build/mod.rs")).expect("build");
    for component in ["pulse-ingest", "pulse-processor", "pulse-query"] {
        assert!(builder.contains(&format!("\"{component}\"")), "the operator does not run {component}");
    }
    assert!(dockerfile.contains("USER 65532:65532"), "the image must run as the operator's RUN_AS_USER");
}
