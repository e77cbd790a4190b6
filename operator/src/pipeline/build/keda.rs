//! The processor's KEDA ScaledObject, used instead of an HPA when KEDA is installed: it
//! scales on the consumer group's lag of each partition's stream (one trigger per
//! partition; KEDA takes the largest). A password in the Redis URL reaches KEDA through a
//! TriggerAuthentication and a Secret of its own, since KEDA cannot read it from the URL.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use pulse_buffer::TenantLayout;
use pulse_core::buffer::CONSUMER_GROUP;
use pulse_crds::AutoscalingSpec;
use serde_json::json;

use super::{Child, ChildKind, Component, RedisAddress, metadata, redis_name};
use crate::error::Error;
use crate::pipeline::validate::ValidPipeline;

const PASSWORD_KEY: &str = "password";

/// The Secret of the password KEDA connects with: `<pipeline>-processor-keda`.
pub fn keda_secret_name(pipeline: &str) -> String {
    format!("{}-keda", Component::Processor.name(pipeline))
}

/// The ScaledObject, and its TriggerAuthentication and Secret when Redis has a password.
pub fn scaled_object(
    view: &ValidPipeline,
    auto: &AutoscalingSpec,
    address: Option<&RedisAddress>,
    password: Option<&str>,
) -> Result<Vec<Child>, Error> {
    let name = Component::Processor.name(&view.name);
    let managed = RedisAddress {
        address: format!("{}.{}.svc:6379", redis_name(&view.name), view.namespace),
        tls: false,
        database: 0,
        has_password: false,
    };
    let address = address.unwrap_or(&managed);
    let cluster = view.config.buffer.cluster;
    // Scale out when a partition's lag passes ten batches.
    let lag = (i64::from(view.spec.processor.batch_size) * 10).to_string();
    let auth = address.has_password && password.is_some();
    let triggers: Vec<_> = (0..view.config.buffer.partitions)
        .map(|partition| {
            let mut metadata = BTreeMap::from([
                ("stream".to_string(), TenantLayout::of(&view.tenant).stream(partition)),
                ("consumerGroup".to_string(), CONSUMER_GROUP.to_string()),
                ("lagCount".to_string(), lag.clone()),
                ("activationLagCount".to_string(), "0".to_string()),
                ("enableTLS".to_string(), address.tls.to_string()),
            ]);
            if cluster {
                metadata.insert("addresses".into(), address.address.clone());
            } else {
                metadata.insert("address".into(), address.address.clone());
                metadata.insert("databaseIndex".into(), address.database.to_string());
            }
            let mut trigger = json!({
                "type": if cluster { "redis-cluster-streams" } else { "redis-streams" },
                "name": format!("partition-{partition}"),
                "metadata": metadata,
            });
            if auth {
                trigger["authenticationRef"] = json!({ "name": name });
            }
            trigger
        })
        .collect();
    let meta = serde_json::to_value(metadata(view, name.clone(), "processor"))
        .map_err(|e| Error::serialization("ScaledObject metadata", e))?;
    let object = json!({
        "metadata": meta,
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": name },
            "minReplicaCount": auto.min_replicas,
            "maxReplicaCount": auto.max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "triggers": triggers,
        }
    });
    let mut children = vec![Child::new(ChildKind::ScaledObject, name.clone(), &object)?];
    if let (true, Some(password)) = (auth, password) {
        let secret_name = keda_secret_name(&view.name);
        let secret = Secret {
            metadata: metadata(view, secret_name.clone(), "processor"),
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(
                PASSWORD_KEY.to_string(),
                ByteString(password.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        };
        children.push(Child::new(ChildKind::Secret, secret_name.clone(), &secret)?);
        let trigger_auth = json!({
            "metadata": meta,
            "spec": { "secretTargetRef": [{ "parameter": "password", "name": secret_name, "key": PASSWORD_KEY }] }
        });
        children.push(Child::new(ChildKind::TriggerAuthentication, name, &trigger_auth)?);
    }
    Ok(children)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::build::fixtures;

    fn auto(view: &ValidPipeline) -> AutoscalingSpec {
        view.spec.processor.autoscaling.clone().expect("fixture autoscales the processor")
    }

    #[test]
    fn one_lag_trigger_per_partition_on_the_processors_group() {
        let view = fixtures::valid(fixtures::ACME);
        let address =
            RedisAddress { address: "redis.acme:6379".into(), tls: true, database: 2, has_password: false };
        let children = scaled_object(&view, &auto(&view), Some(&address), None).expect("build");
        assert_eq!(children.len(), 1);
        let so = &children[0].object;
        assert_eq!(so["spec"]["scaleTargetRef"]["name"], "acme-processor");
        assert_eq!(so["spec"]["maxReplicaCount"], 16);
        let triggers = so["spec"]["triggers"].as_array().expect("triggers");
        assert_eq!(triggers.len(), 16);
        assert_eq!(triggers[3]["type"], "redis-streams");
        assert_eq!(triggers[3]["metadata"]["stream"], "pulse:{acme:3}:events");
        assert_eq!(triggers[3]["metadata"]["consumerGroup"], CONSUMER_GROUP);
        assert_eq!(triggers[3]["metadata"]["address"], "redis.acme:6379");
        assert_eq!(triggers[3]["metadata"]["enableTLS"], "true");
        assert_eq!(triggers[3]["metadata"]["databaseIndex"], "2");
        assert_eq!(triggers[3]["metadata"]["lagCount"], "10000");
    }

    #[test]
    fn a_password_goes_through_a_trigger_authentication() {
        let view = fixtures::valid(fixtures::ACME);
        let address =
            RedisAddress { address: "redis.acme:6379".into(), tls: false, database: 0, has_password: true };
        let children = scaled_object(&view, &auto(&view), Some(&address), Some("s3cret")).expect("build");
        let kinds: Vec<_> = children.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [ChildKind::ScaledObject, ChildKind::Secret, ChildKind::TriggerAuthentication]);
        assert_eq!(children[0].object["spec"]["triggers"][0]["authenticationRef"]["name"], "acme-processor");
        assert_eq!(
            children[1].object["data"][PASSWORD_KEY],
            serde_json::to_value(ByteString(b"s3cret".to_vec())).expect("encode")
        );
        assert_eq!(children[2].object["spec"]["secretTargetRef"][0]["name"], "acme-processor-keda");
    }
}
