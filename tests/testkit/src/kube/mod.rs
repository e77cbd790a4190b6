//! A local Kubernetes control plane: etcd and kube-apiserver, and on request the
//! controller-manager, the scheduler and kwok, which simulates a node and its pods.

mod nodes;
mod pki;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ports::free_port;
use crate::{Binary, Error, Result, ServerProcess, WorkDir};
use pki::Pki;

const ETCD_TIMEOUT: Duration = Duration::from_secs(30);
const APISERVER_TIMEOUT: Duration = Duration::from_secs(60);
const CONTROLLERS_TIMEOUT: Duration = Duration::from_secs(60);

/// Which parts of the control plane to run besides etcd and the API server.
#[derive(Debug, Clone, Copy, Default)]
pub struct KubeOptions {
    /// kube-controller-manager: garbage collection, Deployments -> ReplicaSets -> Pods,
    /// namespace deletion, service accounts, HPAs.
    pub controller_manager: bool,
    /// kube-scheduler and kwok with one simulated node, so pods get scheduled and become
    /// Ready and Deployments Available. Needs `controller_manager` to make pods at all.
    pub simulated_nodes: bool,
}

impl KubeOptions {
    /// etcd and the API server only: enough for CRDs, server-side apply and RBAC.
    pub fn api_only() -> Self {
        KubeOptions::default()
    }

    /// The whole control plane with a simulated node: Deployments become Available.
    pub fn full() -> Self {
        KubeOptions { controller_manager: true, simulated_nodes: true }
    }
}

/// A running local control plane. Dropping it stops every process and removes its dir.
#[derive(Debug)]
pub struct KubeStack {
    // Stopped in reverse order of start: clients before the API server before etcd.
    kwok: Option<ServerProcess>,
    scheduler: Option<ServerProcess>,
    controller_manager: Option<ServerProcess>,
    apiserver: ServerProcess,
    etcd: ServerProcess,
    server_url: String,
    kubeconfig: PathBuf,
    kubeconfig_yaml: String,
    dir: WorkDir,
}

impl KubeStack {
    /// Starts a control plane with `options` and waits until each part is ready.
    pub async fn start(options: KubeOptions) -> Result<Self> {
        let dir = WorkDir::new("kube")?;
        let pki = Pki::generate()?;
        let files = PkiFiles::write(&dir, &pki)?;

        let etcd_port = free_port()?;
        let etcd = start_etcd(&dir, etcd_port).await?;

        let secure_port = free_port()?;
        let server_url = format!("https://127.0.0.1:{secure_port}");
        let kubeconfig_yaml = kubeconfig_yaml(&server_url, &pki);
        let kubeconfig = dir.join("kubeconfig");
        write(&kubeconfig, &kubeconfig_yaml)?;
        let apiserver = start_apiserver(&dir, &files, etcd_port, secure_port, &kubeconfig_yaml).await?;

        let mut stack = KubeStack {
            kwok: None,
            scheduler: None,
            controller_manager: None,
            apiserver,
            etcd,
            server_url,
            kubeconfig,
            kubeconfig_yaml,
            dir,
        };
        if options.controller_manager {
            stack.controller_manager = Some(stack.start_controller_manager(&files).await?);
        }
        if options.simulated_nodes {
            stack.scheduler = Some(stack.start_scheduler().await?);
            stack.kwok = Some(nodes::start_kwok(&stack).await?);
        }
        Ok(stack)
    }

    /// One full control plane shared by every test of this test binary; each test works in
    /// its own namespace. It stops when the test process exits.
    pub async fn shared() -> Result<&'static KubeStack> {
        static SHARED: tokio::sync::OnceCell<KubeStack> = tokio::sync::OnceCell::const_new();
        SHARED.get_or_try_init(|| KubeStack::start(KubeOptions::full())).await
    }

    /// One API server (etcd and kube-apiserver only) shared by every test of this test
    /// binary, for tests of CRDs, validation and server-side apply that need no pods.
    pub async fn shared_api_only() -> Result<&'static KubeStack> {
        static SHARED: tokio::sync::OnceCell<KubeStack> = tokio::sync::OnceCell::const_new();
        SHARED.get_or_try_init(|| KubeStack::start(KubeOptions::api_only())).await
    }

    /// An admin client (member of `system:masters`) for the current tokio runtime.
    pub async fn client(&self) -> Result<kube::Client> {
        client_from_yaml(&self.kubeconfig_yaml).await
    }

    /// The admin kubeconfig file, for kubectl, helm and the operator.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// A `kubectl` command (the stack's own build) pointed at this API server.
    pub fn kubectl(&self) -> Result<Command> {
        let mut command = Command::new(Binary::Kubectl.path()?);
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        Ok(command)
    }

    /// The dir holding the stack's data, certificates and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The API server process, e.g. to read its log.
    pub fn apiserver(&self) -> &ServerProcess {
        &self.apiserver
    }

    /// The etcd process.
    pub fn etcd(&self) -> &ServerProcess {
        &self.etcd
    }

    async fn start_controller_manager(&self, files: &PkiFiles) -> Result<ServerProcess> {
        let port = free_port()?;
        let mut command = Command::new(Binary::KubeControllerManager.path()?);
        command
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--authentication-kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--authorization-kubeconfig={}", self.kubeconfig.display()))
            .arg("--leader-elect=false")
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", self.dir.join("controller-manager-certs").display()))
            .arg(format!("--service-account-private-key-file={}", files.service_account_key.display()))
            .arg(format!("--root-ca-file={}", files.ca_cert.display()))
            .arg("--use-service-account-credentials=false")
            // Fast garbage collection and namespace cleanup keep tests short.
            .arg("--concurrent-gc-syncs=10")
            .arg("--namespace-sync-period=10s");
        let mut process = ServerProcess::spawn(
            "kube-controller-manager",
            command,
            &self.dir.join("kube-controller-manager.log"),
        )?;
        // The service-account controller creating `default/default` shows the controllers
        // run and reach the API server.
        let client = self.client().await?;
        let accounts: Api<ServiceAccount> = Api::namespaced(client, "default");
        process
            .wait_ready(CONTROLLERS_TIMEOUT, || {
                let accounts = accounts.clone();
                async move {
                    match accounts.get_opt("default").await {
                        Ok(Some(_)) => Ok(()),
                        Ok(None) => Err("no default service account yet".to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            })
            .await?;
        Ok(process)
    }

    async fn start_scheduler(&self) -> Result<ServerProcess> {
        let port = free_port()?;
        let mut command = Command::new(Binary::KubeScheduler.path()?);
        command
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--authentication-kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--authorization-kubeconfig={}", self.kubeconfig.display()))
            .arg("--leader-elect=false")
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", self.dir.join("scheduler-certs").display()));
        let mut process =
            ServerProcess::spawn("kube-scheduler", command, &self.dir.join("kube-scheduler.log"))?;
        // The scheduler serves its health port once it has loaded its config and clients.
        process.wait_ready(CONTROLLERS_TIMEOUT, || tcp_open(port)).await?;
        Ok(process)
    }
}

/// The PKI written to files, as the Kubernetes binaries read it.
struct PkiFiles {
    ca_cert: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    service_account_key: PathBuf,
    service_account_public_key: PathBuf,
}

impl PkiFiles {
    fn write(dir: &WorkDir, pki: &Pki) -> Result<Self> {
        let files = PkiFiles {
            ca_cert: dir.join("ca.crt"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            service_account_key: dir.join("sa.key"),
            service_account_public_key: dir.join("sa.pub"),
        };
        write(&files.ca_cert, &pki.ca_cert)?;
        write(&files.serving_cert, &pki.serving_cert)?;
        write(&files.serving_key, &pki.serving_key)?;
        write(&files.service_account_key, &pki.service_account_key)?;
        write(&files.service_account_public_key, &pki.service_account_public_key)?;
        Ok(files)
    }
}

async fn start_etcd(dir: &WorkDir, client_port: u16) -> Result<ServerProcess> {
    let peer_port = free_port()?;
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let mut command = Command::new(Binary::Etcd.path()?);
    command
        .arg("--name=pulse-test")
        .arg(format!("--data-dir={}", dir.join("etcd").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=pulse-test={peer_url}"))
        // Test data is thrown away; fsync would only slow every write.
        .arg("--unsafe-no-fsync")
        .arg("--log-level=warn");
    let mut process = ServerProcess::spawn("etcd", command, &dir.join("etcd.log"))?;
    process
        .wait_ready(ETCD_TIMEOUT, || async move {
            let body = http_get(client_port, "/health").await?;
            if body.contains("\"health\":\"true\"") { Ok(()) } else { Err(body) }
        })
        .await?;
    Ok(process)
}

async fn start_apiserver(
    dir: &WorkDir,
    files: &PkiFiles,
    etcd_port: u16,
    secure_port: u16,
    kubeconfig_yaml: &str,
) -> Result<ServerProcess> {
    let mut command = Command::new(Binary::KubeApiserver.path()?);
    command
        .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
        .arg("--bind-address=127.0.0.1")
        .arg("--advertise-address=127.0.0.1")
        // The reconciler of the `kubernetes` Service refuses a loopback address, and
        // nothing here needs that Service's endpoints.
        .arg("--endpoint-reconciler-type=none")
        .arg(format!("--secure-port={secure_port}"))
        .arg(format!("--cert-dir={}", dir.join("apiserver-certs").display()))
        .arg(format!("--tls-cert-file={}", files.serving_cert.display()))
        .arg(format!("--tls-private-key-file={}", files.serving_key.display()))
        .arg(format!("--client-ca-file={}", files.ca_cert.display()))
        .arg("--authorization-mode=RBAC")
        .arg(format!("--service-account-key-file={}", files.service_account_public_key.display()))
        .arg(format!("--service-account-signing-key-file={}", files.service_account_key.display()))
        .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
        .arg("--service-cluster-ip-range=10.0.0.0/24")
        .arg("--allow-privileged=true")
        // No kubelet mounts tokens here, so pods must not require one (as envtest does).
        .arg("--disable-admission-plugins=ServiceAccount")
        .arg("--profiling=false");
    let mut process = ServerProcess::spawn("kube-apiserver", command, &dir.join("kube-apiserver.log"))?;
    let client = client_from_yaml(kubeconfig_yaml).await?;
    process
        .wait_ready(APISERVER_TIMEOUT, || {
            let client = client.clone();
            async move {
                let request = http::Request::get("/readyz").body(Vec::new()).map_err(|e| e.to_string())?;
                match client.request_text(request).await {
                    Ok(body) if body.trim() == "ok" => Ok(()),
                    Ok(body) => Err(body),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await?;
    Ok(process)
}

fn kubeconfig_yaml(server_url: &str, pki: &Pki) -> String {
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: pulse-test
  cluster:
    server: {server_url}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: pulse-test
  context:
    cluster: pulse-test
    user: {user}
current-context: pulse-test
",
        ca = b64(&pki.ca_cert),
        user = pki::ADMIN_USER,
        cert = b64(&pki.admin_cert),
        key = b64(&pki.admin_key),
    )
}

async fn client_from_yaml(yaml: &str) -> Result<kube::Client> {
    let kubeconfig =
        Kubeconfig::from_yaml(yaml).map_err(|e| Error::client("parsing the test kubeconfig", e))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::client("loading the test kubeconfig", e))?;
    kube::Client::try_from(config).map_err(|e| Error::client("creating a Kubernetes client", e))
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// A plain HTTP/1.0 GET on loopback, for health endpoints of servers without TLS.
async fn http_get(port: u16, path: &str) -> std::result::Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.map_err(|e| e.to_string())?;
    Ok(response)
}

async fn tcp_open(port: u16) -> std::result::Result<(), String> {
    tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map(|_| ()).map_err(|e| e.to_string())
}
