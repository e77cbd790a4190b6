//! The CRDs against the local stack's real API server: they install and are structural,
//! `kubectl explain` teaches, every example applies and reads back as written, and every
//! manifest in tests/manifests/invalid is refused with a message naming the field.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;
use pulse_testkit::{KubeStack, unique_name};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

fn output_text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn kubectl(stack: &KubeStack, args: &[&str]) -> Output {
    stack.kubectl().expect("kubectl is built").args(args).output().expect("run kubectl")
}

/// The shared API server with the Pulse CRDs installed and established.
async fn stack() -> &'static KubeStack {
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let stack = KubeStack::shared_api_only().await.expect("start the API server");
    INSTALLED
        .get_or_init(|| async {
            let crds = repo().join("crds");
            let out = kubectl(stack, &["apply", "--server-side", "-f", crds.to_str().expect("utf-8 path")]);
            assert!(out.status.success(), "installing the CRDs failed: {}", output_text(&out));
            let client = stack.client().await.expect("client");
            let api: Api<CustomResourceDefinition> = Api::all(client);
            for name in ["analyticspipelines.pulse.dev", "funnels.pulse.dev"] {
                let established = kube::runtime::wait::conditions::is_crd_established();
                tokio::time::timeout(
                    Duration::from_secs(30),
                    kube::runtime::wait::await_condition(api.clone(), name, established),
                )
                .await
                .unwrap_or_else(|_| panic!("{name} was not established in 30s"))
                .expect("watch the CRD");
            }
        })
        .await;
    stack
}

async fn namespace(stack: &KubeStack) -> String {
    let name = unique_name("crds");
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).expect("namespace");
    let client = stack.client().await.expect("client");
    Api::<Namespace>::all(client).create(&PostParams::default(), &ns).await.expect("create namespace");
    name
}

/// Every key and value of `written` appears in `read` (which may add defaults).
fn assert_written_subset(written: &Value, read: &Value, path: &str) {
    match (written, read) {
        (Value::Object(w), Value::Object(r)) => {
            for (key, value) in w {
                let got =
                    r.get(key).unwrap_or_else(|| panic!("{path}.{key} was written but did not read back"));
                assert_written_subset(value, got, &format!("{path}.{key}"));
            }
        }
        (Value::Array(w), Value::Array(r)) => {
            assert_eq!(w.len(), r.len(), "{path} has a different length");
            for (i, (w, r)) in w.iter().zip(r).enumerate() {
                assert_written_subset(w, r, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(written, read, "{path} reads back differently"),
    }
}

fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.split("\n---\n")
        .filter(|doc| doc.lines().any(|l| !l.trim().is_empty() && !l.starts_with('#')))
        .map(|doc| serde_yaml::from_str(doc).unwrap_or_else(|e| panic!("parse {}: {e}", path.display())))
        .collect()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn the_crds_are_established_and_structural() {
    let stack = stack().await;
    let api: Api<CustomResourceDefinition> = Api::all(stack.client().await.expect("client"));
    for name in ["analyticspipelines.pulse.dev", "funnels.pulse.dev"] {
        let crd = api.get(name).await.expect("get CRD");
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        let is = |t: &str, s: &str| conditions.iter().any(|c| c.type_ == t && c.status == s);
        assert!(is("Established", "True"), "{name} is established: {conditions:?}");
        assert!(is("NamesAccepted", "True"), "{name} names are accepted: {conditions:?}");
        assert!(!is("NonStructuralSchema", "True"), "{name} has a structural schema: {conditions:?}");
        let names = crd.spec.names;
        assert_eq!(names.categories, Some(vec!["pulse".to_string()]), "{name} is in the pulse category");
    }
}

#[tokio::test]
async fn kubectl_explain_shows_the_field_docs() {
    let stack = stack().await;
    let expectations = [
        ("analyticspipeline.spec.buffer", "buffer accepted events until they are stored"),
        ("analyticspipeline.spec.buffer.partitions", "May grow, never shrink"),
        ("analyticspipeline.spec.ingest.limits", "never cut"),
        ("funnel.spec.exclusions", "void a conversion"),
        ("funnel.spec.window", "366d"),
    ];
    for (field, text) in expectations {
        // The API server publishes a new CRD's OpenAPI a moment after it is established.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let out = kubectl(stack, &["explain", field]);
            let shown = output_text(&out);
            if out.status.success() && shown.contains(text) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "kubectl explain {field} lacks {text:?}:\n{shown}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn every_example_applies_and_reads_back_as_written() {
    let stack = stack().await;
    let ns = namespace(stack).await;
    let mut applied = 0;
    for dir in ["examples/pipelines", "examples/funnels"] {
        for file in files_in(&repo().join(dir)) {
            let out =
                kubectl(stack, &["apply", "--server-side", "-n", &ns, "-f", file.to_str().expect("utf-8")]);
            assert!(out.status.success(), "{} does not apply: {}", file.display(), output_text(&out));
            for written in yaml_documents(&file) {
                let kind = written["kind"].as_str().expect("kind");
                let name = written["metadata"]["name"].as_str().expect("name");
                let out = kubectl(stack, &["get", "-n", &ns, kind, name, "-o", "json"]);
                assert!(out.status.success(), "get {kind}/{name}: {}", output_text(&out));
                let read: Value = serde_json::from_slice(&out.stdout).expect("json");
                let field = if kind == "Secret" { "stringData" } else { "spec" };
                if field == "spec" {
                    assert_written_subset(&written["spec"], &read["spec"], &format!("{kind}/{name}.spec"));
                }
                applied += 1;
            }
        }
    }
    assert!(applied >= 7, "two pipelines, three funnels and their secrets: applied {applied}");

    // `kubectl get pulse` lists both kinds through the category.
    let out = kubectl(stack, &["get", "pulse", "-n", &ns]);
    let listed = output_text(&out);
    for name in [
        "analyticspipeline.pulse.dev/acme",
        "analyticspipeline.pulse.dev/globex",
        "funnel.pulse.dev/checkout",
    ] {
        assert!(listed.contains(name), "kubectl get pulse lists {name}:\n{listed}");
    }
    let out = kubectl(stack, &["get", "funnels", "-n", &ns]);
    let table = output_text(&out);
    for column in ["PIPELINE", "STEPS", "WINDOW", "CONVERSION", "READY", "AGE"] {
        assert!(table.contains(column), "funnels show a {column} column:\n{table}");
    }
}

#[tokio::test]
async fn every_invalid_manifest_is_refused_with_the_field_named() {
    let stack = stack().await;
    let files = files_in(&repo().join("tests/manifests/invalid"));
    assert!(files.len() >= 15, "at least 15 invalid manifests, found {}", files.len());
    let scratch = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read manifest");
        let expects: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# expect: ")).collect();
        assert!(!expects.is_empty(), "{} says what it expects", file.display());
        let ns = namespace(stack).await;
        let documents: Vec<&str> = text.split("\n---\n").collect();
        let (setup, refused) = documents.split_at(documents.len() - 1);
        for (i, doc) in setup.iter().enumerate() {
            let path = scratch.path().join(format!("setup-{i}.yaml"));
            std::fs::write(&path, doc).expect("write setup");
            let out =
                kubectl(stack, &["apply", "--server-side", "-n", &ns, "-f", path.to_str().expect("utf-8")]);
            assert!(
                out.status.success(),
                "{}: the valid first document must apply: {}",
                file.display(),
                output_text(&out)
            );
        }
        let path = scratch.path().join("refused.yaml");
        std::fs::write(&path, refused[0]).expect("write manifest");
        let out = kubectl(stack, &["apply", "--server-side", "-n", &ns, "-f", path.to_str().expect("utf-8")]);
        let message = output_text(&out);
        let name = file.file_name().expect("file name").to_string_lossy().to_string();
        if out.status.success() {
            failures.push(format!("{name}: was accepted"));
        } else if let Some(missing) = expects.iter().find(|e| !message.contains(*e)) {
            failures.push(format!("{name}: the error lacks {missing:?}:\n{message}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid manifests misbehaved:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
