//! A pipeline config and its secret files, written as the operator mounts them in a pod
//! (the URLs and keys in files of their own, the config naming the files), for tests that
//! run a service or a binary without Kubernetes.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// What a test's pipeline config says; the rest of the config is the services' defaults.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    pub tenant: String,
    pub redis_url: String,
    pub mongodb_uri: String,
    /// The store database: `pulse_<tenant>` (dashes as underscores) by default.
    pub database: String,
    pub partitions: u32,
    /// Whether the Redis is a cluster.
    pub cluster: bool,
    pub high_water_mark: u64,
    /// `buffer.durability` (`fast`, `safe`, `strict`), the services' default when none.
    pub durability: Option<String>,
    pub timezone: String,
    /// How long raw events are kept, as the config writes it (`30d`).
    pub retention: String,
    pub write_key: String,
    pub read_key: String,
    /// More top-level YAML, appended as it is (e.g. `"query:\n  sessionTimeout: 10m\n"`).
    pub extra: String,
}

impl PipelineSpec {
    /// A pipeline of `tenant` on these servers: 2 partitions, a standalone Redis, UTC, 30 days
    /// kept, keys made from the tenant.
    pub fn new(tenant: &str, redis_url: &str, mongodb_uri: &str) -> Self {
        PipelineSpec {
            tenant: tenant.to_string(),
            redis_url: redis_url.to_string(),
            mongodb_uri: mongodb_uri.to_string(),
            database: format!("pulse_{}", tenant.replace('-', "_")),
            partitions: 2,
            cluster: false,
            high_water_mark: 1_000_000,
            durability: None,
            timezone: "UTC".to_string(),
            retention: "30d".to_string(),
            write_key: format!("wk-{tenant}"),
            read_key: format!("rk-{tenant}"),
            extra: String::new(),
        }
    }

    /// The config's YAML, naming the secret files in `dir`.
    pub fn yaml(&self, dir: &Path) -> String {
        let file = |name: &str| dir.join(name).display().to_string();
        format!(
            "version: 1\ntenant: {tenant}\ntimezone: {timezone}\n\
             buffer:\n  redisUrlFile: {redis}\n  cluster: {cluster}\n  partitions: {partitions}\n  highWaterMark: {hwm}\n{durability}\
             storage:\n  mongodbUriFile: {mongo}\n  database: {database}\n  retention: {retention}\n\
             keys:\n  writeKeyFile: {write}\n  readKeyFile: {read}\n{extra}",
            tenant = self.tenant,
            timezone = self.timezone,
            redis = file("redis-url"),
            cluster = self.cluster,
            partitions = self.partitions,
            hwm = self.high_water_mark,
            durability = self.durability.as_ref().map(|d| format!("  durability: {d}\n")).unwrap_or_default(),
            retention = self.retention,
            mongo = file("mongodb-uri"),
            database = self.database,
            write = file("write-key"),
            read = file("read-key"),
            extra = self.extra,
        )
    }
}

/// A written pipeline config (`pipeline.yaml`) and its secret files, in a temp dir removed
/// on drop.
pub struct PipelineFiles {
    pub spec: PipelineSpec,
    pub config: PathBuf,
    dir: tempfile::TempDir,
}

impl PipelineFiles {
    pub fn write(spec: PipelineSpec) -> Result<Self> {
        let dir = tempfile::tempdir()
            .map_err(|source| Error::Io { context: "a temp dir for a pipeline config".into(), source })?;
        let write = |name: &str, contents: &str| -> Result<PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, contents)
                .map_err(|source| Error::Io { context: format!("writing {}", path.display()), source })?;
            Ok(path)
        };
        write("redis-url", &spec.redis_url)?;
        write("mongodb-uri", &spec.mongodb_uri)?;
        write("write-key", &spec.write_key)?;
        write("read-key", &spec.read_key)?;
        let config = write("pipeline.yaml", &spec.yaml(dir.path()))?;
        Ok(PipelineFiles { spec, config, dir })
    }

    /// The temp dir holding the files (a place for the test's own logs too).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
