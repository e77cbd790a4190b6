//! Every Redis key of a tenant, named in one place: ingest, the processor, the query API and
//! the operator (which deletes them) all take their names from [`TenantLayout`].
//!
//! Keys carry Redis Cluster hash tags: `{<tenant>:<partition>}` for a partition's keys,
//! which scripts update together (a stream, its backlog, its lease), and `{<tenant>}` for
//! the tenant's own. On a cluster each tag is one slot, so all of a tag's keys can be found
//! on one node ([`TenantLayout::hash_tags`]).

/// The key layout of one tenant (one pipeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantLayout<'a> {
    tenant: &'a str,
}

impl<'a> TenantLayout<'a> {
    pub fn of(tenant: &'a str) -> Self {
        TenantLayout { tenant }
    }

    /// The stream of one partition: `pulse:{<tenant>:<partition>}:events`.
    pub fn stream(&self, partition: u32) -> String {
        self.partition_key(partition, "events")
    }

    /// The count of unprocessed events of one partition, beside its stream (same hash tag,
    /// so a script updates both atomically, also on a Redis Cluster): ingest adds the events
    /// it appends, the processor subtracts the events it has stored and deleted.
    pub fn backlog(&self, partition: u32) -> String {
        self.partition_key(partition, "backlog")
    }

    /// The holder of a partition's lease (with a TTL).
    pub fn lease(&self, partition: u32) -> String {
        self.partition_key(partition, "lease")
    }

    /// The counter that makes a partition's fencing tokens.
    pub fn lease_counter(&self, partition: u32) -> String {
        self.partition_key(partition, "lease-counter")
    }

    /// The current fencing token of a partition's lease.
    pub fn lease_token(&self, partition: u32) -> String {
        self.partition_key(partition, "lease-token")
    }

    /// The tenant's shared rate-limit bucket.
    pub fn rate_limit(&self) -> String {
        self.tenant_key("rate-limit")
    }

    /// The processors alive, each with the expiry of its membership.
    pub fn processors(&self) -> String {
        self.tenant_key("processors")
    }

    /// While this key exists (a rebuild sets it), processors hold no partition.
    pub fn paused(&self) -> String {
        self.tenant_key("paused")
    }

    /// The change stream: period and block ids the processors wrote.
    pub fn rollup_changes(&self) -> String {
        self.tenant_key("rollup-changes")
    }

    /// A cached ad-hoc answer of `endpoint`, by a digest of its request.
    pub fn query_cache(&self, endpoint: &str, digest: &str) -> String {
        self.tenant_key(&format!("q:{endpoint}:{digest}"))
    }

    /// Every key of the tenant with a fixed name, for `partitions` partitions: all but the
    /// query cache's answers (which expire by themselves).
    pub fn fixed_keys(&self, partitions: u32) -> Vec<String> {
        let mut keys = vec![self.rate_limit(), self.processors(), self.paused(), self.rollup_changes()];
        for p in 0..partitions {
            keys.extend([
                self.stream(p),
                self.backlog(p),
                self.lease(p),
                self.lease_counter(p),
                self.lease_token(p),
            ]);
        }
        keys
    }

    /// The prefixes of every key of the tenant, one per hash tag (`pulse:{<tenant>}:` and
    /// `pulse:{<tenant>:<p>}:` for each partition), each with a key of that tag: on a Redis
    /// Cluster the key's slot holds all of the prefix's keys.
    pub fn hash_tags(&self, partitions: u32) -> Vec<(String, String)> {
        let mut tags = vec![(self.tenant_key(""), self.rate_limit())];
        tags.extend((0..partitions).map(|p| (self.partition_key(p, ""), self.stream(p))));
        tags
    }

    fn tenant_key(&self, name: &str) -> String {
        format!("pulse:{{{}}}:{name}", self.tenant)
    }

    fn partition_key(&self, partition: u32, name: &str) -> String {
        format!("pulse:{{{}:{partition}}}:{name}", self.tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partitions_keys_share_its_hash_tag_and_the_tenants_share_another() {
        let layout = TenantLayout::of("shop");
        assert_eq!(layout.stream(3), "pulse:{shop:3}:events");
        assert_eq!(layout.backlog(3), "pulse:{shop:3}:backlog");
        assert_eq!(layout.lease_token(3), "pulse:{shop:3}:lease-token");
        assert_eq!(layout.rate_limit(), "pulse:{shop}:rate-limit");
        assert_eq!(layout.rollup_changes(), "pulse:{shop}:rollup-changes");
        assert_eq!(layout.query_cache("trends", "ab12"), "pulse:{shop}:q:trends:ab12");
        let keys = layout.fixed_keys(2);
        assert_eq!(keys.len(), 4 + 2 * 5);
        let tags = layout.hash_tags(2);
        assert_eq!(tags.len(), 3);
        for key in keys.iter().chain([&layout.query_cache("funnels", "x")]) {
            let owners = tags.iter().filter(|(prefix, _)| key.starts_with(prefix.as_str())).count();
            assert_eq!(owners, 1, "{key} has exactly one hash tag of the tenant");
        }
        for (prefix, sample) in &tags {
            assert!(sample.starts_with(prefix.as_str()), "{sample} is a key of {prefix}");
        }
    }

    #[test]
    fn one_tenants_prefixes_never_cover_anothers_keys() {
        // A tenant whose name starts with another's: a tag ends at `}` or `:`, so neither
        // covers the other's keys.
        let a = TenantLayout::of("shop");
        let b = TenantLayout::of("shop-eu");
        for (prefix, _) in a.hash_tags(4) {
            assert!(b.fixed_keys(4).iter().all(|k| !k.starts_with(&prefix)), "{prefix}");
        }
    }
}
