//! Dereference: read what the spec points at (the Secrets it names, the pipeline's keys,
//! its Funnels) and which optional APIs the cluster serves. The only I/O before building.

use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use pulse_core::config::NamedFunnel;
use pulse_crds::{AnalyticsPipeline, Funnel, SecretKeyRef};

use crate::context::Context;
use crate::error::Error;
use crate::pipeline::build::{
    Capabilities, Keys, READ_KEY, RedisAddress, WRITE_KEY, generate_key, keys_secret_name,
};

/// What a pipeline's spec points at, read.
pub struct Dereferenced {
    /// The valid Funnels of this pipeline (invalid ones are reported on the Funnel).
    pub funnels: Vec<NamedFunnel>,
    /// The external Redis URL (None for managed Redis). Never logged.
    pub redis_url: Option<String>,
    pub mongodb_uri: String,
    pub keys: Keys,
    pub capabilities: Capabilities,
}

impl std::fmt::Debug for Dereferenced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dereferenced").field("funnels", &self.funnels.len()).finish_non_exhaustive()
    }
}

/// Reads a key of a Secret; `field` names the spec field for the error.
pub async fn secret_value(secrets: &Api<Secret>, r: &SecretKeyRef, field: &str) -> Result<String, Error> {
    let secret = secrets
        .get_opt(&r.name)
        .await
        .map_err(Error::kube(format!("reading Secret {}", r.name)))?
        .ok_or_else(|| Error::MissingSecret(format!("{field}: Secret {:?} not found", r.name)))?;
    let bytes = secret.data.as_ref().and_then(|d| d.get(&r.key)).ok_or_else(|| {
        Error::MissingSecret(format!("{field}: Secret {:?} has no key {:?}", r.name, r.key))
    })?;
    String::from_utf8(bytes.0.clone()).map(|s| s.trim().to_string()).map_err(|_| {
        Error::MissingSecret(format!("{field}: Secret {:?} key {:?} is not UTF-8", r.name, r.key))
    })
}

pub async fn dereference(pipeline: &AnalyticsPipeline, ctx: &Context) -> Result<Dereferenced, Error> {
    let namespace = pipeline.namespace().unwrap_or_default();
    let name = pipeline.name_any();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let redis_url = match pipeline.spec.buffer.redis.external.as_ref() {
        Some(external) => Some(
            secret_value(&secrets, &external.url_secret_ref, "spec.buffer.redis.external.urlSecretRef")
                .await?,
        ),
        None => None,
    };
    let mongodb_uri = secret_value(
        &secrets,
        &pipeline.spec.storage.mongodb.uri_secret_ref,
        "spec.storage.mongodb.uriSecretRef",
    )
    .await?;
    let existing =
        secrets.get_opt(&keys_secret_name(&name)).await.map_err(Error::kube("reading the keys Secret"))?;
    let key = |k: &str| {
        existing
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(k))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .filter(|s| !s.trim().is_empty())
    };
    // Keys are generated once; whatever the Secret holds (e.g. two keys during a
    // rotation) is kept as it is.
    let keys = Keys {
        write: key(WRITE_KEY).unwrap_or_else(|| generate_key("pk_w")),
        read: key(READ_KEY).unwrap_or_else(|| generate_key("pk_r")),
    };
    let funnels = funnels_of(&ctx.client, &namespace, &name).await?;
    let capabilities = ctx.capabilities().await.map_err(Error::kube("discovering API groups"))?;
    Ok(Dereferenced { funnels, redis_url, mongodb_uri, keys, capabilities })
}

/// The Funnels referring to pipeline `name` whose definitions are valid, not being deleted.
pub async fn funnels_of(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Vec<NamedFunnel>, Error> {
    let funnels: Api<Funnel> = Api::namespaced(client.clone(), namespace);
    let list = funnels.list(&ListParams::default()).await.map_err(Error::kube("listing Funnels"))?;
    Ok(list
        .items
        .into_iter()
        .filter(|f| f.spec.pipeline_ref.name == name && f.metadata.deletion_timestamp.is_none())
        .filter(|f| f.spec.definition.validate().is_ok())
        .map(|f| NamedFunnel { name: f.name_any(), definition: f.spec.definition })
        .collect())
}

/// The host:port, TLS, database and password of a Redis URL, for KEDA's scaler.
pub fn redis_address(url: &str) -> Option<(RedisAddress, Option<String>)> {
    let (scheme, rest) = url.split_once("://")?;
    let tls = match scheme {
        "redis" => false,
        "rediss" => true,
        _ => return None,
    };
    let (userinfo, hostpart) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (hostport, path) = hostpart.split_once('/').unwrap_or((hostpart, ""));
    let hostport = hostport.split('?').next().unwrap_or(hostport);
    let address = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:6379") };
    let database = path.split('?').next().filter(|s| !s.is_empty()).map_or(Some(0), |d| d.parse().ok())?;
    let password =
        userinfo.map(|u| u.split_once(':').map_or(u, |(_, p)| p).to_string()).filter(|p| !p.is_empty());
    Some((RedisAddress { address, tls, database, has_password: password.is_some() }, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_become_keda_addresses() {
        let (a, p) = redis_address("redis://:s3cret@redis.acme.internal:6380/2").expect("parse");
        assert_eq!(a.address, "redis.acme.internal:6380");
        assert_eq!((a.tls, a.database, a.has_password), (false, 2, true));
        assert_eq!(p.as_deref(), Some("s3cret"));
        let (a, p) = redis_address("rediss://redis.acme").expect("parse");
        assert_eq!((a.address.as_str(), a.tls, a.database, p), ("redis.acme:6379", true, 0, None));
        assert!(redis_address("http://x").is_none());
        assert!(redis_address("redis://x/notanumber").is_none());
    }
}
