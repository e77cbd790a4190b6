//! The ingest, processor and query Deployments: the one image, each with its binary,
//! requests and limits, probes, and a non-root pod with a read-only root filesystem.
//! An autoscaled Deployment leaves `replicas` out, so the autoscaler owns it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Capabilities as LinuxCapabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, HTTPGetAction, KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pulse_crds::AutoscalingSpec;

use super::config_map::config_digest;
use super::{
    Child, ChildKind, Component, REDIS_URL_KEY, Settings, config_map_name, keys_secret_name, metadata,
    selector_labels,
};
use crate::error::Error;
use crate::pipeline::config::paths;
use crate::pipeline::validate::ValidPipeline;

/// The UID the Pulse image runs as (a non-root "nonroot" user).
pub const RUN_AS_USER: i64 = 65_532;
const CONFIG_DIGEST_ANNOTATION: &str = "pulse.dev/config-digest";

/// How many pods a component runs: a fixed count, or an autoscaling range.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub component: Component,
    /// Set when fixed; None when autoscaled.
    pub replicas: Option<i32>,
    pub autoscaling: Option<AutoscalingSpec>,
}

impl Workload {
    /// The component's workload, or None when it is set to zero replicas (then it has no
    /// objects at all).
    pub fn of(view: &ValidPipeline, component: Component) -> Option<Workload> {
        let spec = &view.spec;
        let (replicas, autoscaling) = match component {
            Component::Ingest => (spec.ingest.replicas.unwrap_or(2), spec.ingest.autoscaling.clone()),
            Component::Processor => {
                (spec.processor.replicas.unwrap_or(1), spec.processor.autoscaling.clone())
            }
            Component::Query => (spec.query.replicas, None),
        };
        match autoscaling {
            Some(auto) => Some(Workload { component, replicas: None, autoscaling: Some(auto) }),
            None if replicas == 0 => None,
            None => Some(Workload { component, replicas: Some(replicas), autoscaling: None }),
        }
    }

    /// The fewest pods it runs.
    pub fn min_replicas(&self) -> i32 {
        self.replicas.or(self.autoscaling.as_ref().map(|a| a.min_replicas)).unwrap_or(0)
    }
}

fn quantity(s: &str) -> Quantity {
    Quantity(s.to_string())
}

/// Requests and limits: ingest is CPU-bound on JSON, the processor on JSON and MongoDB
/// round trips, query on aggregation and on its in-memory views (at most 512 MiB by
/// default, see pulse-query --max-view-memory-mib).
fn resources(component: Component) -> ResourceRequirements {
    let (cpu_request, memory_request, cpu_limit, memory_limit) = match component {
        Component::Ingest => ("250m", "128Mi", "1", "512Mi"),
        Component::Processor => ("250m", "256Mi", "1", "1Gi"),
        Component::Query => ("100m", "256Mi", "1", "1Gi"),
    };
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), quantity(cpu_request)),
            ("memory".to_string(), quantity(memory_request)),
        ])),
        limits: Some(BTreeMap::from([
            ("cpu".to_string(), quantity(cpu_limit)),
            ("memory".to_string(), quantity(memory_limit)),
        ])),
        ..ResourceRequirements::default()
    }
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn secret_volume(name: &str, secret: &str, items: &[(&str, &str)]) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            items: Some(
                items
                    .iter()
                    .map(|(key, path)| KeyToPath {
                        key: key.to_string(),
                        path: path.to_string(),
                        mode: None,
                        user: None,
                    })
                    .collect(),
            ),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// The volumes a component mounts: only the secrets it reads.
fn volumes(view: &ValidPipeline, component: Component) -> (Vec<Volume>, Vec<VolumeMount>) {
    let config = Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map_name(&view.name),
            items: Some(vec![KeyToPath {
                key: paths::CONFIG_KEY.into(),
                path: paths::CONFIG_KEY.into(),
                mode: None,
                user: None,
            }]),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    };
    let redis = match view.spec.buffer.redis.external.as_ref() {
        Some(external) => secret_volume(
            "redis",
            &external.url_secret_ref.name,
            &[(external.url_secret_ref.key.as_str(), "url")],
        ),
        None => secret_volume("redis", &keys_secret_name(&view.name), &[(REDIS_URL_KEY, "url")]),
    };
    let uri = &view.spec.storage.mongodb.uri_secret_ref;
    let mongodb = secret_volume("mongodb", &uri.name, &[(uri.key.as_str(), "uri")]);
    let keys = secret_volume(
        "keys",
        &keys_secret_name(&view.name),
        &[(super::WRITE_KEY, super::WRITE_KEY), (super::READ_KEY, super::READ_KEY)],
    );
    // The root filesystem is read-only; /tmp is the one writable place.
    let tmp =
        Volume { name: "tmp".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() };
    let mut volumes = vec![config, redis, tmp];
    let mut mounts = vec![mount("config", paths::CONFIG_DIR), mount("redis", paths::REDIS_DIR)];
    mounts.push(VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..VolumeMount::default() });
    if matches!(component, Component::Processor | Component::Query) {
        volumes.push(mongodb);
        mounts.push(mount("mongodb", paths::MONGODB_DIR));
    }
    if matches!(component, Component::Ingest | Component::Query) {
        volumes.push(keys);
        mounts.push(mount("keys", paths::KEYS_DIR));
    }
    // The InfluxDB sink's credentials, for the processor only.
    if let (Component::Processor, Some(influx)) = (component, view.spec.influx.as_ref()) {
        for (volume, secret, file, dir) in [
            ("influx-username", &influx.username_secret_ref, "username", paths::INFLUX_USERNAME_DIR),
            ("influx-password", &influx.password_secret_ref, "password", paths::INFLUX_PASSWORD_DIR),
        ] {
            if let Some(secret) = secret {
                volumes.push(secret_volume(volume, &secret.name, &[(secret.key.as_str(), file)]));
                mounts.push(mount(volume, dir));
            }
        }
    }
    (volumes, mounts)
}

pub fn deployment(view: &ValidPipeline, workload: &Workload, settings: &Settings) -> Result<Child, Error> {
    let component = workload.component;
    let name = component.name(&view.name);
    let (volumes, volume_mounts) = volumes(view, component);
    let port = component.port();
    let container = Container {
        name: component.as_str().into(),
        image: Some(settings.image.clone()),
        command: Some(vec![component.binary().into()]),
        env: Some(vec![
            EnvVar {
                name: "PULSE_CONFIG".into(),
                value: Some(paths::CONFIG_FILE.into()),
                ..EnvVar::default()
            },
            EnvVar {
                name: "PULSE_LISTEN".into(),
                value: Some(format!("0.0.0.0:{port}")),
                ..EnvVar::default()
            },
            EnvVar { name: "PULSE_LOG_FORMAT".into(), value: Some("json".into()), ..EnvVar::default() },
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        resources: Some(resources(component)),
        readiness_probe: Some(probe("/readyz", 5, 2)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(LinuxCapabilities { drop: Some(vec!["ALL".into()]), add: None }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(volume_mounts),
        ..Container::default()
    };
    let mut pod_labels = super::labels(view, component.as_str());
    pod_labels.remove(super::MANAGED_BY_LABEL);
    let object = Deployment {
        metadata: metadata(view, name.clone(), component.as_str()),
        spec: DeploymentSpec {
            replicas: workload.replicas,
            selector: LabelSelector {
                match_labels: Some(selector_labels(view, component.as_str())),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_DIGEST_ANNOTATION.to_string(),
                        config_digest(&view.config_text),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        fs_group: Some(RUN_AS_USER),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    };
    Child::new(ChildKind::Deployment, name, &object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::build::fixtures;

    fn build(yaml: &str, component: Component) -> serde_json::Value {
        let view = fixtures::valid(yaml);
        let workload = Workload::of(&view, component).expect("workload");
        deployment(&view, &workload, &fixtures::settings()).expect("build").object
    }

    #[test]
    fn an_autoscaled_deployment_leaves_replicas_to_the_autoscaler() {
        let ingest = build(fixtures::ACME, Component::Ingest);
        assert!(ingest["spec"].get("replicas").is_none(), "{}", ingest["spec"]);
        let fixed = build(fixtures::GLOBEX, Component::Ingest);
        assert_eq!(fixed["spec"]["replicas"], 2);
    }

    #[test]
    fn pods_run_the_one_image_non_root_read_only_with_probes_and_limits() {
        let d = build(fixtures::ACME, Component::Processor);
        let pod = &d["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "pulse:test");
        assert_eq!(c["command"][0], "pulse-processor");
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert!(
            c["resources"]["limits"]["memory"].is_string() && c["resources"]["requests"]["cpu"].is_string()
        );
        let env: Vec<_> = c["env"].as_array().expect("env").iter().map(|e| e["name"].clone()).collect();
        assert!(env.contains(&"PULSE_CONFIG".into()));
    }

    #[test]
    fn each_component_mounts_only_the_secrets_it_reads() {
        let mounts = |c| -> Vec<String> {
            build(fixtures::ACME, c)["spec"]["template"]["spec"]["volumes"]
                .as_array()
                .expect("volumes")
                .iter()
                .map(|v| v["name"].as_str().unwrap_or_default().to_string())
                .collect()
        };
        let ingest = mounts(Component::Ingest);
        assert!(ingest.contains(&"keys".into()) && !ingest.contains(&"mongodb".into()), "{ingest:?}");
        let processor = mounts(Component::Processor);
        assert!(
            processor.contains(&"mongodb".into()) && !processor.contains(&"keys".into()),
            "{processor:?}"
        );
    }

    #[test]
    fn the_processor_alone_mounts_the_influx_credentials() {
        let yaml = fixtures::acme_with_influx();
        let volumes = |c| {
            build(&yaml, c)["spec"]["template"]["spec"]["volumes"].as_array().cloned().unwrap_or_default()
        };
        let processor = volumes(Component::Processor);
        let password = processor.iter().find(|v| v["name"] == "influx-password").expect("password volume");
        assert_eq!(password["secret"]["secretName"], "acme-influx");
        assert_eq!(password["secret"]["items"][0]["key"], "token");
        assert_eq!(password["secret"]["items"][0]["path"], "password");
        assert!(processor.iter().any(|v| v["name"] == "influx-username"));
        assert!(!volumes(Component::Ingest).iter().any(|v| v["name"] == "influx-username"));
    }

    #[test]
    fn external_redis_comes_from_the_users_secret_and_managed_from_the_keys_secret() {
        let volume = |yaml| {
            build(yaml, Component::Processor)["spec"]["template"]["spec"]["volumes"]
                .as_array()
                .expect("volumes")
                .iter()
                .find(|v| v["name"] == "redis")
                .cloned()
                .expect("redis volume")
        };
        let external = volume(fixtures::ACME);
        assert_eq!(external["secret"]["secretName"], "acme-redis");
        assert_eq!(external["secret"]["items"][0]["key"], "url");
        assert_eq!(volume(fixtures::GLOBEX)["secret"]["secretName"], "globex-keys");
    }

    #[test]
    fn a_config_change_changes_the_pod_template() {
        let before = build(fixtures::ACME, Component::Ingest);
        let changed = fixtures::ACME.replace("batchSize: 1000", "batchSize: 900");
        let after = build(&changed, Component::Ingest);
        let digest = |d: &serde_json::Value| {
            d["spec"]["template"]["metadata"]["annotations"][CONFIG_DIGEST_ANNOTATION].clone()
        };
        assert_ne!(digest(&before), digest(&after));
    }

    #[test]
    fn zero_fixed_replicas_means_no_workload() {
        let view = fixtures::valid(fixtures::GLOBEX);
        assert!(Workload::of(&view, Component::Query).is_none());
        assert_eq!(Workload::of(&view, Component::Processor).map(|w| w.min_replicas()), Some(1));
    }
}
