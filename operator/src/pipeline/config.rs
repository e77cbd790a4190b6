//! The translation of an `AnalyticsPipeline` (and its Funnels) into the pipeline config,
//! the document every service reads. Pure: the same spec and funnels give the same text.

use pulse_core::config::{
    BufferConfig, InfluxConfig, IngestConfig, KeysConfig, NamedFunnel, PipelineConfig, ProcessorConfig,
    QueryConfig, RollupsConfig, StorageConfig,
};
use pulse_crds::AnalyticsPipelineSpec;

/// Where each pod finds its files: the config from the ConfigMap, secrets from Secrets.
pub mod paths {
    pub const CONFIG_DIR: &str = "/etc/pulse";
    pub const CONFIG_FILE: &str = "/etc/pulse/pipeline.yaml";
    pub const CONFIG_KEY: &str = "pipeline.yaml";
    pub const REDIS_DIR: &str = "/var/run/pulse/redis";
    pub const REDIS_URL_FILE: &str = "/var/run/pulse/redis/url";
    pub const MONGODB_DIR: &str = "/var/run/pulse/mongodb";
    pub const MONGODB_URI_FILE: &str = "/var/run/pulse/mongodb/uri";
    pub const KEYS_DIR: &str = "/var/run/pulse/keys";
    pub const WRITE_KEY_FILE: &str = "/var/run/pulse/keys/write-key";
    pub const READ_KEY_FILE: &str = "/var/run/pulse/keys/read-key";
    pub const INFLUX_USERNAME_DIR: &str = "/var/run/pulse/influx-username";
    pub const INFLUX_USERNAME_FILE: &str = "/var/run/pulse/influx-username/username";
    pub const INFLUX_PASSWORD_DIR: &str = "/var/run/pulse/influx-password";
    pub const INFLUX_PASSWORD_FILE: &str = "/var/run/pulse/influx-password/password";
}

/// The pipeline config of `spec` for `tenant`, with `funnels` sorted by name. Negative
/// numbers cannot come from the API server (the schema has minimums); they become 0 and
/// the config's own validation names the field.
pub fn pipeline_config(
    tenant: &str,
    spec: &AnalyticsPipelineSpec,
    mut funnels: Vec<NamedFunnel>,
) -> PipelineConfig {
    funnels.sort_by(|a, b| a.name.cmp(&b.name));
    let cluster = spec.buffer.redis.external.as_ref().is_some_and(|e| e.cluster);
    PipelineConfig {
        version: pulse_core::PIPELINE_CONFIG_VERSION,
        tenant: tenant.to_string(),
        timezone: spec.timezone.clone(),
        ingest: IngestConfig {
            limits: spec.ingest.limits.clone(),
            rate_limit: spec.ingest.rate_limit.clone(),
        },
        buffer: BufferConfig {
            redis_url_file: paths::REDIS_URL_FILE.into(),
            cluster,
            partitions: u32::try_from(spec.buffer.partitions).unwrap_or(0),
            durability: spec.buffer.durability,
            high_water_mark: u64::try_from(spec.buffer.high_water_mark).unwrap_or(0),
        },
        storage: StorageConfig {
            mongodb_uri_file: paths::MONGODB_URI_FILE.into(),
            database: spec.storage.database.clone(),
            retention: spec.storage.retention,
        },
        keys: KeysConfig {
            write_key_file: paths::WRITE_KEY_FILE.into(),
            read_key_file: paths::READ_KEY_FILE.into(),
        },
        processor: ProcessorConfig { batch_size: u32::try_from(spec.processor.batch_size).unwrap_or(0) },
        query: QueryConfig { cache_ttl: spec.query.cache_ttl, session_timeout: spec.query.session_timeout },
        rollups: RollupsConfig {
            intervals: spec.rollups.intervals.clone(),
            numeric_properties: spec.rollups.numeric_properties.clone(),
        },
        funnels,
        influx: spec.influx.as_ref().map(influx_config),
    }
}

/// The InfluxDB sink: credentials as files of the mounted Secret keys.
fn influx_config(spec: &pulse_crds::InfluxSpec) -> InfluxConfig {
    let mut config = InfluxConfig::new(&spec.url, &spec.database);
    config.retention_policy = spec.retention_policy.clone();
    config.username_file = spec.username_secret_ref.as_ref().map(|_| paths::INFLUX_USERNAME_FILE.into());
    config.password_file = spec.password_secret_ref.as_ref().map(|_| paths::INFLUX_PASSWORD_FILE.into());
    config.flush_interval = spec.flush_interval;
    config.lookback = spec.lookback;
    // A lookback longer than the default sweep: the sweep goes at least as far back.
    if config.backfill.as_secs() < config.lookback.as_secs() {
        config.backfill = config.lookback;
    }
    config
}

/// The config as the YAML text of the ConfigMap.
pub fn render(config: &PipelineConfig) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::build::fixtures;

    #[test]
    fn the_example_pipeline_becomes_a_valid_config_that_round_trips() {
        let pipeline = fixtures::pipeline(fixtures::ACME);
        let config = pipeline_config("acme", &pipeline.spec, vec![fixtures::named_funnel("signup")]);
        config.validate().expect("valid config");
        assert_eq!(config.buffer.partitions, 16);
        assert_eq!(config.buffer.high_water_mark, 5_000_000);
        assert_eq!(config.storage.database, "pulse_acme");
        assert_eq!(config.timezone, "America/New_York");
        assert_eq!(config.ingest.rate_limit.as_ref().map(|r| r.events_per_second), Some(20_000));
        assert_eq!(config.processor.batch_size, 1000);
        assert_eq!(config.rollups.numeric_properties.len(), 2);
        let text = render(&config).expect("render");
        assert_eq!(PipelineConfig::parse(&text).expect("services parse it"), config);
    }

    #[test]
    fn the_influx_sink_reads_its_credentials_from_the_mounted_secret_files() {
        let plain = fixtures::pipeline(fixtures::ACME);
        assert_eq!(pipeline_config("acme", &plain.spec, vec![]).influx, None);
        let pipeline = fixtures::pipeline(&fixtures::acme_with_influx());
        let config = pipeline_config("acme", &pipeline.spec, vec![]);
        config.validate().expect("valid config");
        let influx = config.influx.expect("influx on");
        assert_eq!(influx.url, "http://influxdb.monitoring:8086");
        assert_eq!(influx.retention_policy.as_deref(), Some("autogen"));
        assert_eq!(influx.username_file.as_deref(), Some(std::path::Path::new(paths::INFLUX_USERNAME_FILE)));
        assert_eq!(influx.password_file.as_deref(), Some(std::path::Path::new(paths::INFLUX_PASSWORD_FILE)));
    }

    #[test]
    fn funnels_are_sorted_so_the_text_is_stable() {
        let pipeline = fixtures::pipeline(fixtures::ACME);
        let a = pipeline_config(
            "acme",
            &pipeline.spec,
            vec![fixtures::named_funnel("b"), fixtures::named_funnel("a")],
        );
        let b = pipeline_config(
            "acme",
            &pipeline.spec,
            vec![fixtures::named_funnel("a"), fixtures::named_funnel("b")],
        );
        assert_eq!(render(&a).expect("render"), render(&b).expect("render"));
        assert_eq!(a.funnels[0].name, "a");
    }

    #[test]
    fn a_cluster_url_is_marked_and_managed_redis_is_not() {
        let mut pipeline = fixtures::pipeline(fixtures::ACME);
        assert!(!pipeline_config("acme", &pipeline.spec, vec![]).buffer.cluster);
        if let Some(external) = pipeline.spec.buffer.redis.external.as_mut() {
            external.cluster = true;
        }
        assert!(pipeline_config("acme", &pipeline.spec, vec![]).buffer.cluster);
        let managed = fixtures::pipeline(fixtures::GLOBEX);
        assert!(!pipeline_config("globex", &managed.spec, vec![]).buffer.cluster);
    }
}
