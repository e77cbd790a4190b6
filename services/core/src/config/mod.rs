//! The pipeline config: the one document the operator renders into a ConfigMap and every
//! service reads once, at start. Nothing watches the file: pods carry the config's digest
//! as an annotation, so the operator's change of it rolls the Deployments. It holds the
//! tenant, its limits, the buffer and store addresses (secrets by file path: the key files
//! are re-read when they change, the Redis URL and MongoDB URI only at start), retention,
//! time zone and the declared funnels. A service can run from such a file by hand, with no
//! Kubernetes at all.

mod influx;
mod limits;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::DurationSpec;
use crate::funnel::FunnelDefinition;
use crate::property::PropertyPath;
use crate::validation::{Errors, FieldError};

pub use influx::InfluxConfig;
pub use limits::{Durability, IngestLimits, RateLimit, RollupInterval};

/// The most stream partitions of one pipeline.
pub const MAX_PARTITIONS: u32 = 256;

/// The pipeline config document, version [`crate::PIPELINE_CONFIG_VERSION`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineConfig {
    /// The document's format version; this build reads version 1.
    pub version: u32,
    /// The tenant: lowercase letters, digits and '-', at most 63 characters. Every Redis key
    /// and the MongoDB database of the pipeline belong to it.
    pub tenant: String,
    /// The IANA time zone days and weeks are counted in.
    #[serde(default = "utc")]
    pub timezone: String,
    /// Ingest settings.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// The Redis buffer.
    pub buffer: BufferConfig,
    /// MongoDB storage.
    pub storage: StorageConfig,
    /// Where the write and read keys are.
    pub keys: KeysConfig,
    /// Processor settings.
    #[serde(default)]
    pub processor: ProcessorConfig,
    /// Query settings.
    #[serde(default)]
    pub query: QueryConfig,
    /// Pre-aggregates to maintain.
    #[serde(default)]
    pub rollups: RollupsConfig,
    /// The declared funnels, by name.
    #[serde(default)]
    pub funnels: Vec<NamedFunnel>,
    /// The optional InfluxDB sink of rollups and funnel conversion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub influx: Option<InfluxConfig>,
}

fn utc() -> String {
    "UTC".to_string()
}

/// Ingest settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngestConfig {
    /// Input limits.
    #[serde(default)]
    pub limits: IngestLimits,
    /// The tenant's rate limit across all ingest pods; none when absent.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

/// The Redis buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BufferConfig {
    /// A file holding the Redis URL (a mounted Secret key).
    pub redis_url_file: PathBuf,
    /// Whether the URL points at a Redis Cluster.
    #[serde(default)]
    pub cluster: bool,
    /// Stream partitions, 1 to 256.
    pub partitions: u32,
    /// fast or strict.
    #[serde(default)]
    pub durability: Durability,
    /// The most unprocessed events before ingest answers 429.
    pub high_water_mark: u64,
}

/// MongoDB storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageConfig {
    /// A file holding the MongoDB connection string (a mounted Secret key).
    pub mongodb_uri_file: PathBuf,
    /// The tenant's database.
    pub database: String,
    /// How long raw events are kept.
    pub retention: DurationSpec,
}

/// Where the pipeline's keys are. Each file holds one key per line, so during a rotation
/// both the old and the new key are accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeysConfig {
    /// The write keys, accepted by ingest.
    pub write_key_file: PathBuf,
    /// The read keys, accepted by the query API.
    pub read_key_file: PathBuf,
}

/// Processor settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessorConfig {
    /// Most events read and written in one batch.
    pub batch_size: u32,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig { batch_size: 500 }
    }
}

/// Query settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryConfig {
    /// How long ad-hoc results are cached.
    pub cache_ttl: DurationSpec,
    /// The inactivity that ends a session (events without `$session_id`), for the
    /// session measures of trends; at most 1d (default 30m).
    #[serde(default = "default_session_timeout")]
    pub session_timeout: DurationSpec,
}

fn default_session_timeout() -> DurationSpec {
    crate::analytics::session::DEFAULT_TIMEOUT
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig { cache_ttl: DurationSpec::seconds(30), session_timeout: default_session_timeout() }
    }
}

/// Pre-aggregates to maintain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollupsConfig {
    /// Rollup intervals.
    pub intervals: Vec<RollupInterval>,
    /// Numeric properties to keep sum, min and max of.
    #[serde(default)]
    pub numeric_properties: Vec<PropertyPath>,
}

impl Default for RollupsConfig {
    fn default() -> Self {
        RollupsConfig {
            intervals: vec![RollupInterval::Minute, RollupInterval::Hour, RollupInterval::Day],
            numeric_properties: Vec::new(),
        }
    }
}

/// A declared funnel: the `Funnel` resource's name and definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamedFunnel {
    /// The funnel's name, unique in the pipeline.
    pub name: String,
    /// The definition.
    #[serde(flatten)]
    pub definition: FunnelDefinition,
}

/// Why a pipeline config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the pipeline config is not valid JSON or YAML: {0}")]
    Parse(String),
    #[error("the pipeline config is invalid: {}", list(.0))]
    Invalid(Vec<FieldError>),
}

fn list(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl PipelineConfig {
    /// Parses a config document, JSON or YAML, and validates it.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let trimmed = text.trim_start();
        let config: PipelineConfig = if trimmed.starts_with('{') {
            serde_json::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?
        } else {
            serde_yaml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?
        };
        config.validate().map_err(ConfigError::Invalid)?;
        Ok(config)
    }

    /// Checks what the types cannot: the version, the tenant's form, partition bounds,
    /// limits and funnels.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        if self.version != crate::PIPELINE_CONFIG_VERSION {
            errors.add(
                "version",
                format!("this build reads version {}, not {}", crate::PIPELINE_CONFIG_VERSION, self.version),
            );
        }
        if !is_tenant_id(&self.tenant) {
            errors.add(
                "tenant",
                "1-63 lowercase letters, digits and '-', starting and ending with a letter or digit",
            );
        }
        if !(1..=MAX_PARTITIONS).contains(&self.buffer.partitions) {
            errors.add("buffer.partitions", format!("1 to {MAX_PARTITIONS}"));
        }
        if self.buffer.high_water_mark == 0 {
            errors.add("buffer.highWaterMark", "must be positive");
        }
        self.ingest.limits.validate_into("ingest.limits", &mut errors);
        if self.query.session_timeout.as_secs() > crate::analytics::session::MAX_TIMEOUT_SECS {
            errors.add("query.sessionTimeout", format!("at most 1d, not {}", self.query.session_timeout));
        }
        let mut names = std::collections::HashSet::new();
        for (i, funnel) in self.funnels.iter().enumerate() {
            if !names.insert(&funnel.name) {
                errors.add(format!("funnels[{i}].name"), format!("{} is declared twice", funnel.name));
            }
            if let Err(problems) = funnel.definition.validate() {
                for p in problems {
                    errors.add(format!("funnels[{i}].{}", p.field), p.reason);
                }
            }
        }
        if let Some(influx) = &self.influx {
            influx.validate_into("influx", &mut errors);
        }
        errors.into_result()
    }
}

/// Whether `s` is a valid tenant id (a DNS label).
pub fn is_tenant_id(s: &str) -> bool {
    let bytes = s.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
version: 1
tenant: acme
buffer:
  redisUrlFile: /var/run/pulse/redis/url
  partitions: 8
  highWaterMark: 1000000
storage:
  mongodbUriFile: /var/run/pulse/mongodb/uri
  database: pulse_acme
  retention: 365d
keys:
  writeKeyFile: /var/run/pulse/keys/write-key
  readKeyFile: /var/run/pulse/keys/read-key
funnels:
  - name: signup
    steps: [{ event: visited }, { event: signed_up }]
"#;

    #[test]
    fn parses_yaml_with_defaults() {
        let config = PipelineConfig::parse(EXAMPLE).expect("valid config");
        assert_eq!(config.tenant, "acme");
        assert_eq!(config.ingest.limits.max_events_per_batch, 1000);
        assert_eq!(config.buffer.durability, Durability::Fast);
        assert_eq!(config.funnels[0].definition.steps.len(), 2);
    }

    #[test]
    fn json_round_trips() {
        let config = PipelineConfig::parse(EXAMPLE).expect("valid config");
        let json = serde_json::to_string(&config).expect("serialize");
        assert_eq!(PipelineConfig::parse(&json).expect("parse json"), config);
    }

    #[test]
    fn reports_every_problem_with_its_field() {
        let bad =
            EXAMPLE.replace("tenant: acme", "tenant: Acme_Corp").replace("partitions: 8", "partitions: 0");
        let err = PipelineConfig::parse(&bad).expect_err("invalid");
        let message = err.to_string();
        assert!(message.contains("tenant:") && message.contains("buffer.partitions:"), "{message}");
    }

    #[test]
    fn refuses_unknown_fields_and_versions() {
        let typo = EXAMPLE.replace("highWaterMark", "highWatermark");
        assert!(matches!(PipelineConfig::parse(&typo), Err(ConfigError::Parse(_))));
        let future = EXAMPLE.replace("version: 1", "version: 2");
        assert!(PipelineConfig::parse(&future).expect_err("version 2").to_string().contains("version"));
    }
}
