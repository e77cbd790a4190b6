//! What the operator's tests share: the control plane with Pulse's CRDs, a namespace per
//! test, the operator binary as a real process scoped to that namespace, and waiting.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use pulse_crds::AnalyticsPipeline;
use pulse_testkit::{FerretDb, KubeStack, RedisServer, WorkDir, unique_name};

pub const WAIT: Duration = Duration::from_secs(120);

/// The crate's CRD YAML files.
fn crd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

/// Applies `files` with the stack's kubectl and waits until they are established.
pub fn kubectl_apply(stack: &KubeStack, files: &[&Path]) {
    let mut cmd = stack.kubectl().expect("kubectl");
    cmd.arg("apply").arg("--server-side");
    for f in files {
        cmd.arg("-f").arg(f);
    }
    let out = cmd.output().expect("run kubectl");
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
}

pub fn kubectl(stack: &KubeStack, args: &[&str]) -> String {
    let out = stack.kubectl().expect("kubectl").args(args).output().expect("run kubectl");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The shared control plane of this test binary, with Pulse's CRDs installed.
pub async fn stack() -> &'static KubeStack {
    static CRDS: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let stack = KubeStack::shared().await.expect("start the control plane");
    CRDS.get_or_init(|| async {
        let dir = crd_dir();
        kubectl_apply(stack, &[&dir.join("analyticspipelines.yaml"), &dir.join("funnels.yaml")]);
        kubectl(
            stack,
            &[
                "wait",
                "--for=condition=Established",
                "crd/analyticspipelines.pulse.dev",
                "crd/funnels.pulse.dev",
            ],
        );
    })
    .await;
    stack
}

/// A fresh namespace.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = unique_name(prefix);
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

/// Creates a Secret with one key.
pub async fn secret(client: &Client, ns: &str, name: &str, key: &str, value: &str) {
    let s: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name }, "stringData": { key: value }
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .expect("create secret");
}

/// The operator binary running against `stack`, scoped to one namespace; killed on drop.
pub struct Operator {
    child: Option<Child>,
    pub metrics_port: u16,
    pub log: PathBuf,
    _dir: WorkDir,
}

impl Operator {
    pub fn start(stack: &KubeStack, namespace: &str, extra: &[&str]) -> Operator {
        Operator::start_with(stack.kubeconfig(), namespace, namespace, extra)
    }

    /// Runs with `kubeconfig` (e.g. one that impersonates the operator's ServiceAccount),
    /// its Lease in `lease_namespace`.
    pub fn start_with(kubeconfig: &Path, namespace: &str, lease_namespace: &str, extra: &[&str]) -> Operator {
        let dir = WorkDir::new("operator").expect("workdir");
        let log = dir.join(&format!("operator-{}.log", unique_name("run")));
        let metrics_port = free_port();
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_pulse-operator"))
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .arg("--namespace")
            .arg(namespace)
            .arg("--lease-namespace")
            .arg(lease_namespace)
            .arg("--lease-duration-secs")
            .arg("4")
            .arg("--metrics-address")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--image")
            .arg("pulse:test")
            .args(extra)
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start pulse-operator");
        Operator { child: Some(child), metrics_port, log, _dir: dir }
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        c.wait().ok()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The /metrics text, or None while it does not answer.
    pub async fn metrics(&self) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let response = reqwest::get(url).await.ok()?;
        response.text().await.ok()
    }

    /// The sum of one metric's samples whose labels contain `labels`.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = self.metrics().await.unwrap_or_default();
        sum_metric(&text, name, labels)
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn sum_metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `check` until it gives Some, or panics after `timeout` with `what` and the last
/// observation.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if started.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A pipeline's condition of `type_`, as (status, reason).
pub fn condition(p: &AnalyticsPipeline, type_: &str) -> Option<(String, String)> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Waits until the pipeline is Ready at its current generation.
pub async fn wait_ready(api: &Api<AnalyticsPipeline>, name: &str, operator: &Operator) -> AnalyticsPipeline {
    wait_for(&format!("pipeline {name} Ready"), WAIT, || async {
        let p = api.get(name).await.map_err(|e| e.to_string())?;
        let current = p.status.as_ref().and_then(|s| s.observed_generation) == p.metadata.generation;
        match condition(&p, "Ready") {
            Some((s, _)) if s == "True" && current => Ok(p),
            _ => Err(format!(
                "status {:?}\noperator log:\n{}",
                p.status.as_ref().map(|s| &s.conditions),
                operator.log_tail()
            )),
        }
    })
    .await
}

/// Applies a pipeline (server-side, as kubectl would) from YAML.
pub async fn apply_pipeline(api: &Api<AnalyticsPipeline>, yaml: &str) -> AnalyticsPipeline {
    let value: serde_json::Value = serde_yaml::from_str(yaml).expect("pipeline YAML");
    let name = value["metadata"]["name"].as_str().expect("name").to_string();
    api.patch(&name, &PatchParams::apply("test").force(), &Patch::Apply(&value))
        .await
        .expect("apply pipeline")
}

/// A pipeline on external Redis and MongoDB, from Secrets `redis` and `mongodb`.
pub fn pipeline_yaml(name: &str, database: &str, extra_spec: &str) -> String {
    format!(
        r#"
apiVersion: pulse.dev/v1alpha1
kind: AnalyticsPipeline
metadata:
  name: {name}
spec:
  buffer:
    redis:
      external:
        urlSecretRef: {{ name: redis, key: url }}
    partitions: 4
  storage:
    mongodb:
      uriSecretRef: {{ name: mongodb, key: uri }}
    database: {database}
{extra_spec}
"#
    )
}

/// The resourceVersion of every object labelled with the pipeline, and the pipeline's own.
pub fn resource_versions(stack: &KubeStack, ns: &str, pipeline: &str) -> Vec<String> {
    let kinds = "analyticspipelines,deployments,services,configmaps,secrets,horizontalpodautoscalers,poddisruptionbudgets,statefulsets";
    let mut out: Vec<String> = kubectl(
        stack,
        &[
            "-n",
            ns,
            "get",
            kinds,
            "-l",
            &format!("pulse.dev/pipeline={pipeline}"),
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.resourceVersion}{\"\\n\"}{end}",
        ],
    )
    .lines()
    .map(str::to_string)
    .collect();
    out.extend(
        kubectl(
            stack,
            &[
                "-n",
                ns,
                "get",
                "analyticspipeline",
                pipeline,
                "-o",
                "jsonpath={.kind}/{.metadata.name}={.metadata.resourceVersion}",
            ],
        )
        .lines()
        .map(str::to_string),
    );
    out.sort();
    out
}

pub fn name_of<K: ResourceExt>(k: &K) -> String {
    k.name_any()
}

pub async fn ferret() -> &'static FerretDb {
    static FERRET: tokio::sync::OnceCell<FerretDb> = tokio::sync::OnceCell::const_new();
    FERRET.get_or_init(|| async { FerretDb::start().await.expect("start FerretDB") }).await
}

/// A namespace with the `redis` and `mongodb` Secrets, and an operator scoped to it.
pub struct Setup {
    pub stack: &'static KubeStack,
    pub client: kube::Client,
    pub ns: String,
    pub redis: RedisServer,
    pub operator: Operator,
    pub pipelines: Api<AnalyticsPipeline>,
}

pub async fn setup(prefix: &str, operator_args: &[&str]) -> Setup {
    let stack = stack().await;
    let client = stack.client().await.expect("client");
    let ns = namespace(&client, prefix).await;
    let redis = RedisServer::start().await.expect("start Redis");
    secret(&client, &ns, "redis", "url", &redis.url()).await;
    secret(&client, &ns, "mongodb", "uri", &ferret().await.uri()).await;
    let operator = Operator::start(stack, &ns, operator_args);
    let pipelines = Api::namespaced(client.clone(), &ns);
    Setup { stack, client, ns, redis, operator, pipelines }
}

pub fn database() -> String {
    unique_name("db").replace('-', "_")
}
