//! HTTP ingest: accepts events over HTTP with the pipeline's write key, validates them, and
//! appends them to the tenant's Redis stream partitions, acknowledging (202) only once Redis
//! confirmed them. One process serves one pipeline, configured by its pipeline config.
//!
//! The crate is a library so tests run ingest in-process; `main.rs` is the binary.

pub mod api;
pub mod body;
pub mod buffer;
pub mod compat;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod service;
pub mod settings;

mod persistence;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pulse_core::config::{ConfigError, PipelineConfig};
use pulse_core::event::EventRules;
use tokio::net::TcpListener;

use crate::buffer::{Buffer, BufferSettings};
use crate::keys::{KeyError, KeyRing};
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::service::Ingest;
pub use crate::settings::Settings;
pub use pulse_serve::ConnectionLimits;

/// Why ingest could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot read the pipeline config {path}: {source}")]
    ReadConfig { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Config { path: PathBuf, source: ConfigError },
    #[error("cannot read the Redis URL file {path}: {source}")]
    ReadRedisUrl { path: PathBuf, source: std::io::Error },
    #[error("the Redis URL in {path} is invalid: {reason}")]
    RedisUrl { path: PathBuf, reason: String },
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// Loads the pipeline config and serves ingest on `listener` until `shutdown` resolves,
/// then stops accepting, finishes in-flight requests (up to the grace period) and returns.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), IngestError> {
    let ingest = prepare(&settings).await?;
    let tenant = ingest.tenant.clone();
    let app = api::router(ingest);
    tracing::info!(tenant = %tenant, "ingest serving");
    pulse_serve::serve(listener, app, settings.connections, shutdown, settings.shutdown_grace).await;
    Ok(())
}

/// Everything a request needs, built from the settings.
async fn prepare(settings: &Settings) -> Result<Arc<Ingest>, IngestError> {
    let path = &settings.config;
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| IngestError::ReadConfig { path: path.clone(), source })?;
    let config =
        PipelineConfig::parse(&text).map_err(|source| IngestError::Config { path: path.clone(), source })?;

    let url_file = &config.buffer.redis_url_file;
    let url = tokio::fs::read_to_string(url_file)
        .await
        .map_err(|source| IngestError::ReadRedisUrl { path: url_file.clone(), source })?
        .trim()
        .to_string();

    let keys = KeyRing::load(&config.keys.write_key_file)?;
    keys.watch(config.keys.write_key_file.clone(), "write");

    let metrics = Arc::new(Metrics::new(&config.tenant));
    let buffer = Buffer::start(
        BufferSettings {
            url,
            cluster: config.buffer.cluster,
            tenant: config.tenant.clone(),
            partitions: config.buffer.partitions,
            durability: config.buffer.durability,
            timeout: settings.redis_timeout,
            durability_check_interval: settings.durability_check_interval,
        },
        Arc::clone(&metrics),
    )
    // The URL itself may hold a password: name the file, not the URL.
    .map_err(|e| IngestError::RedisUrl { path: url_file.clone(), reason: e.to_string() })?;

    let limits = &config.ingest.limits;
    let to_usize = |n: i64| usize::try_from(n.max(1)).unwrap_or(usize::MAX);
    Ok(Arc::new(Ingest {
        rules: EventRules::new(limits, config.storage.retention.as_millis())
            .with_summed_properties(&config.rollups.numeric_properties),
        max_body_bytes: to_usize(limits.max_body_bytes),
        max_events_per_batch: to_usize(limits.max_events_per_batch.into()),
        high_water_mark: config.buffer.high_water_mark,
        partitions: config.buffer.partitions,
        rate_limiter: config.ingest.rate_limit.as_ref().map(|r| RateLimiter::new(&config.tenant, r)),
        tenant: config.tenant,
        keys,
        buffer,
        metrics,
    }))
}

/// The default time to finish in-flight requests after a shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
