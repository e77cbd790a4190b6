//! The Secret holding the pipeline's generated write and read keys (and, for managed
//! Redis, its URL). Keys are generated once: the operator never replaces a key that is
//! there, so a rotation is an edit of this Secret (see docs/operator.md).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rand::Rng;

use super::{Child, ChildKind, keys_secret_name, managed_redis_url, metadata};
use crate::error::Error;
use crate::pipeline::validate::ValidPipeline;

pub const WRITE_KEY: &str = "write-key";
pub const READ_KEY: &str = "read-key";
pub const REDIS_URL_KEY: &str = "redis-url";

/// The pipeline's keys. Debug never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub write: String,
    pub read: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys { .. }")
    }
}

/// A new random key: a prefix saying what it is, then 32 random bytes in hex.
pub fn generate_key(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}_{hex}")
}

pub fn keys_secret(view: &ValidPipeline, keys: &Keys) -> Result<Child, Error> {
    let name = keys_secret_name(&view.name);
    let mut data = BTreeMap::from([
        (WRITE_KEY.to_string(), keys.write.clone()),
        (READ_KEY.to_string(), keys.read.clone()),
    ]);
    if view.spec.buffer.redis.managed.is_some() {
        data.insert(REDIS_URL_KEY.to_string(), managed_redis_url(view));
    }
    let object = Secret {
        metadata: metadata(view, name.clone(), "keys"),
        type_: Some("Opaque".into()),
        // `data`, not `stringData`: the server stores `data`, so applying the same keys
        // again is a no-op and writes nothing.
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v.into_bytes()))).collect()),
        ..Secret::default()
    };
    Child::new(ChildKind::Secret, name, &object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::build::fixtures;

    #[test]
    fn the_secret_holds_both_keys_and_managed_redis_its_url() {
        let keys = fixtures::keys();
        let acme = keys_secret(&fixtures::valid(fixtures::ACME), &keys).expect("build");
        let encoded = |s: &str| serde_json::to_value(ByteString(s.as_bytes().to_vec())).expect("encode");
        assert_eq!(acme.object["data"][WRITE_KEY], encoded("pk_w_test"));
        assert_eq!(acme.object["data"][READ_KEY], encoded("pk_r_test"));
        assert!(acme.object["data"].get(REDIS_URL_KEY).is_none());
        let globex = keys_secret(&fixtures::valid(fixtures::GLOBEX), &keys).expect("build");
        assert_eq!(globex.object["data"][REDIS_URL_KEY], encoded("redis://globex-redis.team-g.svc:6379/0"));
    }

    #[test]
    fn keys_are_random_and_never_printed() {
        let (a, b) = (generate_key("pk_w"), generate_key("pk_w"));
        assert_ne!(a, b);
        assert!(a.starts_with("pk_w_") && a.len() == 5 + 64, "{a}");
        let keys = Keys { write: a.clone(), read: b };
        assert!(!format!("{keys:?}").contains(&a));
    }
}
