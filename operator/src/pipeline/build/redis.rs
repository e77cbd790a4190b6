//! Managed Redis: a one-pod StatefulSet with an append-only file on a persistent volume,
//! and its headless Service. The volume follows the pipeline's deletionPolicy through the
//! StatefulSet's PVC retention policy: Retain keeps it after the pipeline is deleted,
//! Delete removes it with the StatefulSet.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Capabilities as LinuxCapabilities, Container, ContainerPort, ExecAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SecurityContext, Service, ServicePort, ServiceSpec, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use pulse_core::config::Durability;
use pulse_crds::{DeletionPolicy, ManagedRedis};

use super::{Child, ChildKind, Settings, metadata, redis_name, selector_labels};
use crate::error::Error;
use crate::pipeline::validate::ValidPipeline;

const PORT: i32 = 6379;
const REDIS_USER: i64 = 999;

/// The URL the services reach managed Redis at.
pub fn managed_redis_url(view: &ValidPipeline) -> String {
    format!("redis://{}.{}.svc:{PORT}/0", redis_name(&view.name), view.namespace)
}

pub fn service(view: &ValidPipeline) -> Result<Child, Error> {
    let name = redis_name(&view.name);
    let object = Service {
        metadata: metadata(view, name.clone(), "redis"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector_labels(view, "redis")),
            ports: Some(vec![ServicePort {
                name: Some("redis".into()),
                port: PORT,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    Child::new(ChildKind::Service, name, &object)
}

/// Redis's `maxmemory` from a Kubernetes quantity ("2Gi" -> "2gb"), a little under the
/// container limit so Redis refuses writes (ingest then answers 503) before it is killed.
fn maxmemory(memory: &str) -> String {
    let (number, unit) = memory.split_at(memory.len().saturating_sub(2));
    let mib: u64 = number.parse::<u64>().unwrap_or(0) * if unit == "Gi" { 1024 } else { 1 };
    format!("{}mb", mib * 9 / 10)
}

pub fn stateful_set(
    view: &ValidPipeline,
    managed: &ManagedRedis,
    settings: &Settings,
) -> Result<Child, Error> {
    let name = redis_name(&view.name);
    let appendfsync = match view.spec.buffer.durability {
        Durability::Fast => "everysec",
        Durability::Strict => "always",
    };
    let container = Container {
        name: "redis".into(),
        image: Some(settings.redis_image.clone()),
        args: Some(
            [
                "--appendonly",
                "yes",
                "--appendfsync",
                appendfsync,
                "--dir",
                "/data",
                "--maxmemory",
                &maxmemory(&managed.memory),
                // Never evict: the buffer holds unprocessed events; ingest applies
                // backpressure instead.
                "--maxmemory-policy",
                "noeviction",
                "--save",
                "",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ports: Some(vec![ContainerPort {
            name: Some("redis".into()),
            container_port: PORT,
            ..ContainerPort::default()
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("100m".into())),
                ("memory".to_string(), Quantity(managed.memory.clone())),
            ])),
            limits: Some(BTreeMap::from([("memory".to_string(), Quantity(managed.memory.clone()))])),
            ..ResourceRequirements::default()
        }),
        readiness_probe: Some(Probe {
            exec: Some(ExecAction { command: Some(vec!["redis-cli".into(), "ping".into()]) }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(LinuxCapabilities { drop: Some(vec!["ALL".into()]), add: None }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let when = match view.spec.deletion_policy {
        DeletionPolicy::Retain => "Retain",
        DeletionPolicy::Delete => "Delete",
    };
    let object = StatefulSet {
        metadata: metadata(view, name.clone(), "redis"),
        spec: StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name.clone()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(view, "redis")),
                ..LabelSelector::default()
            },
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(when.into()),
                when_scaled: Some("Retain".into()),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(selector_labels(view, "redis")),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(REDIS_USER),
                        fs_group: Some(REDIS_USER),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta { name: Some("data".into()), ..ObjectMeta::default() },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: managed.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_string(),
                            Quantity(managed.storage.clone()),
                        )])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    };
    Child::new(ChildKind::StatefulSet, name, &object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::build::fixtures;

    fn build(yaml: &str) -> serde_json::Value {
        let view = fixtures::valid(yaml);
        let managed = view.spec.buffer.redis.managed.clone().expect("managed");
        stateful_set(&view, &managed, &fixtures::settings()).expect("build").object
    }

    #[test]
    fn managed_redis_keeps_an_append_only_file_on_a_volume() {
        let sts = build(fixtures::GLOBEX);
        let args: Vec<_> = sts["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().unwrap_or_default().to_string())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("--appendonly yes --appendfsync everysec"), "{joined}");
        assert!(joined.contains("--maxmemory 1843mb --maxmemory-policy noeviction"), "{joined}");
        let claim = &sts["spec"]["volumeClaimTemplates"][0]["spec"];
        assert_eq!(claim["resources"]["requests"]["storage"], "5Gi");
        assert_eq!(claim["storageClassName"], "fast");
        // deletionPolicy: Delete removes the volume with the pipeline.
        assert_eq!(sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"], "Delete");
    }

    #[test]
    fn strict_durability_fsyncs_always_and_retain_keeps_the_volume() {
        let yaml = fixtures::GLOBEX
            .replace("partitions: 8", "partitions: 8\n    durability: strict")
            .replace("deletionPolicy: Delete", "deletionPolicy: Retain");
        let sts = build(&yaml);
        assert!(sts["spec"]["template"]["spec"]["containers"][0]["args"].to_string().contains("\"always\""));
        assert_eq!(sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"], "Retain");
    }

    #[test]
    fn maxmemory_leaves_headroom_under_the_limit() {
        assert_eq!(maxmemory("1Gi"), "921mb");
        assert_eq!(maxmemory("512Mi"), "460mb");
    }
}
