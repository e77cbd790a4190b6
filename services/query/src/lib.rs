//! The query API: answers trend, funnel, retention and cohort queries over HTTP with the
//! pipeline's read key, from the rollups the processor maintains where they can answer,
//! from the declared funnels' and retention's in-memory views of the event blocks, and
//! otherwise from raw events (computed by the engines of `pulse_core::analytics`,
//! cached in Redis for a short time). One process serves one pipeline, configured by its
//! pipeline config; it reads only that tenant's database.
//!
//! The crate is a library so tests run it in-process; `main.rs` is the binary.

pub mod admission;
pub mod api;
pub mod cache;
pub mod discovery;
pub mod engagement;
pub mod error;
pub mod event_views;
pub mod failed;
pub mod inflight;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod paths;
pub mod people;
pub mod persons;
pub mod preaggregated;
pub mod profiles;
pub mod request;
pub mod settings;
pub mod source;
pub mod view;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pulse_core::analytics::Limits;
use pulse_core::config::{ConfigError, PipelineConfig};
use pulse_core::rollup::time_zone;
use pulse_keys::{KeyError, KeyRing};
use pulse_store::{Store, StoreError};
use tokio::net::TcpListener;

use crate::admission::RawQueryLimit;
use crate::api::Api;
use crate::cache::QueryCache;
use crate::event_views::EventViews;
use crate::metrics::Metrics;
pub use crate::settings::Settings;
use crate::view::RollupView;
pub use pulse_serve::ConnectionLimits;

/// How long a Redis command of the cache may take.
const CACHE_TIMEOUT: Duration = Duration::from_millis(500);

/// Why the query API could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum QueryServiceError {
    #[error("cannot read the pipeline config {path}: {source}")]
    ReadConfig { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Config { path: PathBuf, source: ConfigError },
    #[error("cannot read {path}: {source}")]
    ReadSecret { path: PathBuf, source: std::io::Error },
    #[error("the Redis URL in {path} is invalid: {reason}")]
    RedisUrl { path: PathBuf, reason: String },
    #[error("the MongoDB URI in {path} cannot be used: {source}")]
    Store { path: PathBuf, source: StoreError },
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("the pipeline's time zone: {0}")]
    TimeZone(String),
    #[error("a declared funnel: {0}")]
    Funnel(String),
}

/// Loads the pipeline config and serves the API on `listener` until `shutdown` resolves,
/// then finishes in-flight requests (up to the grace period) and returns.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), QueryServiceError> {
    let api = prepare(&settings).await?;
    tracing::info!(tenant = %api.tenant, "query API serving");
    let app = api::router(api);
    pulse_serve::serve(listener, app, settings.connections, shutdown, settings.shutdown_grace).await;
    Ok(())
}

/// Everything a request needs, built from the settings.
pub async fn prepare(settings: &Settings) -> Result<Arc<Api>, QueryServiceError> {
    let path = &settings.config;
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| QueryServiceError::ReadConfig { path: path.clone(), source })?;
    let config = PipelineConfig::parse(&text)
        .map_err(|source| QueryServiceError::Config { path: path.clone(), source })?;
    let secret = |path: &PathBuf| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|source| QueryServiceError::ReadSecret { path: path.clone(), source })
    };

    let url_file = &config.buffer.redis_url_file;
    let conn = pulse_buffer::Connection::open(&secret(url_file)?, config.buffer.cluster, CACHE_TIMEOUT)
        .await
        // The URL may hold a password: name the file, not the URL.
        .map_err(|e| QueryServiceError::RedisUrl { path: url_file.clone(), reason: e.to_string() })?;
    let uri_file = &config.storage.mongodb_uri_file;
    let store = Store::connect(&secret(uri_file)?, &config.storage.database)
        .await
        .map_err(|source| QueryServiceError::Store { path: uri_file.clone(), source })?;

    let keys = KeyRing::load(&config.keys.read_key_file)?;
    keys.watch(config.keys.read_key_file.clone(), "read");
    let tz = time_zone(&config.timezone).map_err(|e| QueryServiceError::TimeZone(e.to_string()))?;
    let ttl = Duration::from_millis(config.query.cache_ttl.as_millis().max(0) as u64);
    let view = Arc::new(RollupView::new(&config.tenant));
    let (kept, reader, changes) = (Arc::clone(&view), store.clone(), conn.clone());
    tokio::spawn(async move { kept.keep_current(reader, changes).await });
    let views = EventViews::new(&config.tenant, &config.funnels, &tz, settings.max_view_memory)
        .map(Arc::new)
        .map_err(|e| QueryServiceError::Funnel(e.to_string()))?;
    tokio::spawn(Arc::clone(&views).keep_current(store.clone(), conn.clone()));
    Ok(Arc::new(Api {
        cache: QueryCache::new(conn, &config.tenant, ttl),
        metrics: Metrics::new(&config.tenant),
        tenant: config.tenant,
        store,
        keys,
        tz,
        partitions: config.buffer.partitions,
        retention_ms: config.storage.retention.as_millis(),
        max_future_ms: config.ingest.limits.max_future_skew.as_millis(),
        session_timeout: config.query.session_timeout,
        limits: Limits { max_events: settings.max_events, ..Limits::default() },
        intervals: config.rollups.intervals,
        numeric: config.rollups.numeric_properties,
        funnels: config.funnels,
        view,
        views,
        raw_queries: RawQueryLimit::new(
            settings.max_raw_queries,
            settings.raw_query_queue,
            settings.raw_query_wait,
        ),
        in_flight: Default::default(),
    }))
}
