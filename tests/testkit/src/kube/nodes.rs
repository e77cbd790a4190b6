//! One simulated node, run by kwok: it reports Ready, keeps its lease, and moves the pods
//! bound to it to Running and Ready (and away when deleted), as a kubelet would.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::PostParams;

use super::KubeStack;
use crate::ports::free_port;
use crate::{Binary, Error, Result, ServerProcess};

/// The name of the simulated node.
pub(crate) const NODE_NAME: &str = "kwok-node-0";
const KWOK_TIMEOUT: Duration = Duration::from_secs(60);

/// What kwok does to nodes and pods. kwok has no built-in default, so the testkit states
/// the least a Deployment needs to become Available: a Ready node, Running and Ready pods,
/// and deleted pods removed.
const STAGES: &str = r#"apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pulse-node-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - type: Ready
        status: "True"
        reason: KubeletReady
        message: "simulated by kwok"
        lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $now | Quote }}
      addresses:
      - type: InternalIP
        address: {{ NodeIP | Quote }}
      - type: Hostname
        address: {{ NodeName | Quote }}
      allocatable: {cpu: "64", memory: 256Gi, pods: "500"}
      capacity: {cpu: "64", memory: 256Gi, pods: "500"}
      nodeInfo:
        architecture: amd64
        operatingSystem: linux
        kubeletVersion: simulated
        containerRuntimeVersion: simulated
        kernelVersion: simulated
        kubeProxyVersion: simulated
        machineID: ""
        bootID: ""
        osImage: ""
        systemUUID: ""
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pulse-pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Pending']
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: PodScheduled, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        ready: true
        started: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      {{ with NodeIPsWith .spec.nodeName }}
      hostIP: {{ index . 0 | Quote }}
      {{ end }}
      {{ with PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pulse-pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    delete: true
"#;

/// Starts of kwok tried before giving up: kwok 0.8 now and then dies in its own start-up
/// ("fatal error: concurrent map writes"), which a second start does not meet.
const KWOK_STARTS: u32 = 3;

/// Starts kwok for nodes annotated `kwok.x-k8s.io/node: fake`, registers one such node and
/// waits until it is Ready. A kwok that exits before that is started again (each start
/// logs to its own file).
pub(crate) async fn start_kwok(stack: &KubeStack) -> Result<ServerProcess> {
    let mut start = 1;
    loop {
        match start_kwok_once(stack, start).await {
            Err(Error::Exited { .. }) if start < KWOK_STARTS => start += 1,
            started => return started,
        }
    }
}

async fn start_kwok_once(stack: &KubeStack, start: u32) -> Result<ServerProcess> {
    let config = stack.dir.join("kwok-stages.yaml");
    std::fs::write(&config, STAGES).map_err(|e| Error::io(format!("writing {}", config.display()), e))?;
    let port = free_port()?;
    let mut command = Command::new(Binary::Kwok.path()?);
    command
        .arg(format!("--config={}", config.display()))
        .arg(format!("--kubeconfig={}", stack.kubeconfig.display()))
        .arg("--manage-all-nodes=false")
        .arg("--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake")
        .arg("--cidr=10.244.0.0/16")
        .arg("--node-ip=10.0.0.2")
        .arg("--node-lease-duration-seconds=40")
        .arg(format!("--server-address=127.0.0.1:{port}"));
    // kwok reads ~/.kwok; keep it in the stack's dir.
    command.env("HOME", stack.dir.path());
    let log = if start == 1 { "kwok.log".to_string() } else { format!("kwok-{start}.log") };
    let mut process = ServerProcess::spawn("kwok", command, &stack.dir.join(&log))?;

    let nodes: Api<Node> = Api::all(stack.client().await?);
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "annotations": { "kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0" },
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
    }))
    .map_err(|e| Error::client("building the simulated node", e))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        // Registered by an earlier start.
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(Error::client("registering the simulated node", e)),
    }

    process
        .wait_ready(KWOK_TIMEOUT, || {
            let nodes = nodes.clone();
            async move {
                let node = nodes.get(NODE_NAME).await.map_err(|e| e.to_string())?;
                let ready = node
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                if ready { Ok(()) } else { Err(format!("node {NODE_NAME} not Ready yet")) }
            }
        })
        .await?;
    Ok(process)
}
