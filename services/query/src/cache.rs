//! Ad-hoc answers cached in Redis for a short time, so a dashboard refreshing the same query
//! does not read raw events again. The key is the tenant, the endpoint and a hash of the
//! request as parsed (so whitespace and key order do not matter); a Redis failure only
//! costs the cache, never the answer.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use pulse_buffer::{Connection, TenantLayout};
use redis::AsyncCommands;
use serde::Serialize;

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

    /// `pulse:{<tenant>}:q:<endpoint>:<hash>` ([`TenantLayout::query_cache`]).
    pub fn key(&self, endpoint: &str, request: &impl Serialize) -> String {
        // Two independent 64-bit hashes of the canonical JSON: collisions are negligible.
        let canonical = serde_json::to_string(request).unwrap_or_default();
        let hash = |seed: u64| {
            let mut h = DefaultHasher::new();
            seed.hash(&mut h);
            canonical.hash(&mut h);
            h.finish()
        };
        TenantLayout::of(&self.tenant).query_cache(endpoint, &format!("{:016x}{:016x}", hash(1), hash(2)))
    }

    /// The cached answer (its JSON text) under `key`, if any.
    pub async fn get(&self, key: &str) -> Option<String> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut conn = self.conn.clone();
        match conn.get::<_, Option<String>>(key).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(error = %e, "query cache unavailable");
                None
            }
        }
    }

    /// Keeps `answer` (JSON text) under `key` for the cache's time to live.
    pub async fn put(&self, key: &str, answer: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let mut conn = self.conn.clone();
        let secs = self.ttl.as_secs().max(1);
        if let Err(e) = conn.set_ex::<_, _, ()>(key, answer, secs).await {
            tracing::debug!(error = %e, "query cache unavailable");
        }
    }
}
