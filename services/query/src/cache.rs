//! Ad-hoc answers cached in Redis for a short time, so a dashboard refreshing the same query
//! does not read raw events again. The key is the tenant, the endpoint and a hash of the
//! request as parsed (so whitespace and key order do not matter); a Redis failure only
//! costs the cache, never the answer.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use pulse_buffer::Connection;
use redis::AsyncCommands;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The query cache of one tenant.
#[derive(Clone)]
pub struct QueryCache {
    conn: Connection,
    tenant: String,
    ttl: Duration,
}

impl QueryCache {
    pub fn new(conn: Connection, tenant: &str, ttl: Duration) -> Self {
        QueryCache { conn, tenant: tenant.to_string(), ttl }
    }

    /// `pulse:{<tenant>}:q:<endpoint>:<hash>`: the tenant's hash tag keeps it with the
    /// tenant's other keys on a Redis Cluster.
    fn key(&self, endpoint: &str, request: &impl Serialize) -> String {
        // Two independent 64-bit hashes of the canonical JSON: collisions are negligible.
        let canonical = serde_json::to_string(request).unwrap_or_default();
        let hash = |seed: u64| {
            let mut h = DefaultHasher::new();
            seed.hash(&mut h);
            canonical.hash(&mut h);
            h.finish()
        };
        format!("pulse:{{{}}}:q:{endpoint}:{:016x}{:016x}", self.tenant, hash(1), hash(2))
    }

    /// The cached answer to `request`, if any.
    pub async fn get<T: DeserializeOwned>(&self, endpoint: &str, request: &impl Serialize) -> Option<T> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut conn = self.conn.clone();
        match conn.get::<_, Option<String>>(self.key(endpoint, request)).await {
            Ok(Some(text)) => serde_json::from_str(&text).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "query cache unavailable");
                None
            }
        }
    }

    /// Keeps `answer` for the cache's time to live.
    pub async fn put(&self, endpoint: &str, request: &impl Serialize, answer: &impl Serialize) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(text) = serde_json::to_string(answer) else { return };
        let mut conn = self.conn.clone();
        let secs = self.ttl.as_secs().max(1);
        if let Err(e) = conn.set_ex::<_, _, ()>(self.key(endpoint, request), text, secs).await {
            tracing::debug!(error = %e, "query cache unavailable");
        }
    }
}
