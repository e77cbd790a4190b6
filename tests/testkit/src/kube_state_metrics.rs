use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::ports::free_port;
use crate::{Binary, Error, Result, ServerProcess, WorkDir};

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// kube-state-metrics (built by `make env`) against a local control plane, on a free
/// loopback port: the `kube_deployment_*` and `kube_pod_*` series of the given namespaces,
/// for a [`crate::Prometheus`] to scrape at [`Self::address`].
#[derive(Debug)]
pub struct KubeStateMetrics {
    process: ServerProcess,
    port: u16,
    _dir: WorkDir,
}

impl KubeStateMetrics {
    /// Starts it with `kubeconfig`, watching Deployments and Pods of `namespaces`, and waits
    /// until its `/metrics` answers.
    pub async fn start(kubeconfig: &Path, namespaces: &[&str]) -> Result<Self> {
        let dir = WorkDir::new("kube-state-metrics")?;
        let port = free_port()?;
        let telemetry = free_port()?;
        let mut command = Command::new(Binary::KubeStateMetrics.path()?);
        command
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--host=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg("--telemetry-host=127.0.0.1")
            .arg(format!("--telemetry-port={telemetry}"))
            .arg("--resources=deployments,pods")
            .arg(format!("--namespaces={}", namespaces.join(",")));
        let mut process =
            ServerProcess::spawn("kube-state-metrics", command, &dir.join("kube-state-metrics.log"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::client("building an HTTP client", e))?;
        let url = format!("http://127.0.0.1:{port}/metrics");
        process
            .wait_ready(START_TIMEOUT, || {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let r = http.get(&url).send().await.map_err(|e| e.to_string())?;
                    if r.status().is_success() { Ok(()) } else { Err(format!("/metrics: {}", r.status())) }
                }
            })
            .await?;
        Ok(KubeStateMetrics { process, port, _dir: dir })
    }

    /// `127.0.0.1:<port>`, the scrape target.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server process, e.g. for its log.
    pub fn process_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}
