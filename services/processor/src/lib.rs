//! The processor: reads the tenant's Redis stream partitions and writes raw events and
//! pre-aggregates to MongoDB, exactly once under redelivery, duplicates and crashes (the
//! rules are in pulse-store and docs/exactness.md). It scales out up to one processor per
//! partition; the crate is a library so tests can drive it, `main.rs` is the binary.

pub mod coordinator;
pub mod failed;
pub mod influx;
pub mod lease;
pub mod metrics;
pub mod profiles;
pub mod rebuild;
pub mod replay;
pub mod settings;
pub mod stream;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use jiff::tz::TimeZone;
use pulse_buffer::Connection;
use pulse_core::config::{ConfigError, PipelineConfig, RollupInterval};
use pulse_core::duration::DurationSpec;
use pulse_core::property::PropertyPath;
use pulse_store::{Store, StoreError};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Why the processor could not start, or a batch failed (batches are retried).
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Config { path: PathBuf, source: ConfigError },
    #[error("{0}")]
    TimeZone(#[from] pulse_core::rollup::UnknownTimeZone),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Rebuild(String),
    #[error("a batch's store writes took longer than {0:?}: retried")]
    StoreTimeout(Duration),
}

impl ProcessorError {
    /// The error's kind, as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            ProcessorError::Read { .. } | ProcessorError::Config { .. } | ProcessorError::TimeZone(_) => {
                "config"
            }
            ProcessorError::Redis(_) => "redis",
            ProcessorError::Store(StoreError::Moved(_)) => "moved",
            ProcessorError::Store(e) if e.damaged_catalogue() => "store_catalogue",
            ProcessorError::Store(_) | ProcessorError::StoreTimeout(_) => "store",
            ProcessorError::Rebuild(_) => "rebuild",
        }
    }
}

/// What every partition worker shares.
pub struct Context {
    pub tenant: String,
    pub partitions: u32,
    /// This process's identity in leases and the member list.
    pub owner: String,
    pub conn: Connection,
    pub store: Store,
    pub intervals: Vec<RollupInterval>,
    pub numeric: Vec<PropertyPath>,
    pub tz: TimeZone,
    pub retention: DurationSpec,
    pub ttl_index: bool,
    /// Stream entries read at once.
    pub read_count: usize,
    /// Most events stored and applied in one batch (the pipeline's processor.batchSize).
    pub batch_events: usize,
    pub metrics: Arc<Metrics>,
    /// The InfluxDB sink, when the pipeline has one.
    pub influx: Option<influx::Sink>,
    /// Turns to write a batch to the store: at most [`STORE_TURNS`] of this process's
    /// partitions write at once.
    pub store_turns: tokio::sync::Semaphore,
    /// Turns to compact: one partition's compactions at a time, beside its writers (a
    /// compaction passes over collections, which on FerretDB can take minutes).
    pub compaction_turns: tokio::sync::Semaphore,
    /// Event names the store took as rollup bucket names.
    pub known_names: failed::KnownNames,
    /// Every partition's rollup log as read for writers that start together (one pass over
    /// the log instead of one per partition), and when.
    start_logs: tokio::sync::Mutex<
        Option<(std::time::Instant, std::collections::HashMap<u32, pulse_store::LogState>)>,
    >,
    ready: AtomicBool,
}

impl Context {
    /// `partition`'s rollup log for a writer whose lease was taken at `acquired`: from one
    /// read of every partition's log, shared by the writers whose leases were taken before
    /// it began (a pass over the log can take seconds on FerretDB, and writers that start
    /// together each waited for the others' passes), but never one begun before the lease
    /// was taken (a rebuild, or another holder, may have written the log until then). Stale
    /// at worst as any read is, which costs a retry: a record is taken by inserting its
    /// ballot.
    pub async fn start_log(
        &self,
        partition: u32,
        acquired: std::time::Instant,
    ) -> Result<pulse_store::LogState, pulse_store::StoreError> {
        let mut logs = self.start_logs.lock().await;
        let usable = logs.as_ref().is_some_and(|(at, _)| *at >= acquired);
        if !usable {
            let at = std::time::Instant::now();
            *logs = Some((at, self.store.log_states().await?));
        }
        Ok(logs.as_ref().and_then(|(_, all)| all.get(&partition).cloned()).unwrap_or_default())
    }
}

/// How many batches one processor writes to the store at once. A store applies writes to
/// one collection largely one at a time (FerretDB's SQLite backend wholly), so with every
/// partition writing at once each batch only waits longer behind the others, and on
/// FerretDB the writers' lock contention costs throughput too (docs/operations.md). Two,
/// so one batch's reads and work overlap another's writes.
pub const STORE_TURNS: usize = 2;

/// A turn to write to the store, one of [`STORE_TURNS`]: what storing a batch requires, so
/// a caller takes it before the batch is final (see `worker::step`).
pub struct StoreTurn<'a> {
    _permit: Option<tokio::sync::SemaphorePermit<'a>>,
}

impl<'a> StoreTurn<'a> {
    /// Waits for a turn; turns come in the order they were asked for.
    pub async fn take(ctx: &'a Context) -> StoreTurn<'a> {
        // The semaphore is never closed, so the turn always comes.
        StoreTurn { _permit: ctx.store_turns.acquire().await.ok() }
    }
}

/// The longest a batch's store writes may take before they are abandoned and the batch
/// retried (it is safe to repeat): a write that hangs must not hold a turn for ever.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(60);

impl Context {
    fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether Redis and MongoDB answered the last checks.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Reads a secret file (a mounted Secret key) without ever logging its content.
async fn read_secret(path: &Path) -> Result<String, ProcessorError> {
    tokio::fs::read_to_string(path)
        .await
        .map(|s| s.trim().to_string())
        .map_err(|source| ProcessorError::Read { path: path.to_path_buf(), source })
}

/// Loads the config and connects to Redis and MongoDB (retrying with backoff until both
/// answer), and ensures the store's schema.
pub async fn connect(config_path: &Path, owner: String) -> Result<Arc<Context>, ProcessorError> {
    let text = tokio::fs::read_to_string(config_path)
        .await
        .map_err(|source| ProcessorError::Read { path: config_path.to_path_buf(), source })?;
    let config = PipelineConfig::parse(&text)
        .map_err(|source| ProcessorError::Config { path: config_path.to_path_buf(), source })?;
    let tz = pulse_core::rollup::time_zone(&config.timezone)?;
    let config_funnels = config.funnels.clone();
    let redis_url = read_secret(&config.buffer.redis_url_file).await?;
    let mongo_uri = read_secret(&config.storage.mongodb_uri_file).await?;

    let mut wait = Duration::from_millis(200);
    let (conn, store, ttl_index) = loop {
        let attempt = async {
            let conn = Connection::open(&redis_url, config.buffer.cluster, Duration::from_secs(5)).await?;
            let store = Store::connect(&mongo_uri, &config.storage.database).await?;
            let schema = store.ensure_schema().await?;
            Ok::<_, ProcessorError>((conn, store, schema.ttl_index))
        };
        match attempt.await {
            Ok(connected) => break connected,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?wait, "cannot reach Redis or MongoDB yet");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    };
    Ok(Arc::new(Context {
        metrics: Arc::new(Metrics::new(&config.tenant)),
        tenant: config.tenant,
        partitions: config.buffer.partitions,
        owner,
        conn,
        store,
        intervals: config.rollups.intervals,
        numeric: config.rollups.numeric_properties,
        tz,
        retention: config.storage.retention,
        ttl_index,
        read_count: (config.processor.batch_size as usize / 50).clamp(1, 200),
        batch_events: (config.processor.batch_size as usize).max(1),
        influx: config.influx.map(|influx| influx::Sink {
            config: influx,
            funnels: config_funnels,
            session_timeout: config.query.session_timeout,
        }),
        store_turns: tokio::sync::Semaphore::new(STORE_TURNS),
        compaction_turns: tokio::sync::Semaphore::new(1),
        known_names: failed::KnownNames::default(),
        start_logs: tokio::sync::Mutex::new(None),
        ready: AtomicBool::new(false),
    }))
}

/// How long the processor takes at most to stop once asked: under the 30 s the operator
/// gives its pods (`terminationGracePeriodSeconds`) before they are killed, as ingest's and
/// query's default `--shutdown-grace-secs`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

/// What the end of a shutdown keeps, after the current batches had their time, for giving
/// leases up (2 s), leaving the processor list (2 s) and closing the HTTP server (1 s).
const SHUTDOWN_GOODBYE: Duration = Duration::from_secs(5);

/// Processes partitions and serves health and metrics on `listener` until `shutdown`
/// resolves; then finishes the current batches, releases the leases and returns, within
/// [`SHUTDOWN_GRACE`] whatever Redis and the store do (a batch that cannot finish in time
/// is abandoned, as a crash would leave it, and redone by the partition's next holder).
pub async fn run(
    ctx: Arc<Context>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ProcessorError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let http_stop = stop_rx.clone();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::clone(&ctx));
    // Health and metrics requests end quickly: a second of grace, so that a client that
    // holds its connection open does not hold the process.
    let server = tokio::spawn(pulse_serve::serve(
        listener,
        app,
        pulse_serve::ConnectionLimits::default(),
        async move {
            let mut stop = http_stop;
            let _ = stop.wait_for(|s| *s).await;
        },
        Duration::from_secs(1),
    ));
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    if ctx.influx.is_some() {
        tokio::spawn(influx::run(Arc::clone(&ctx), stop_rx.clone()));
    }
    let drain = SHUTDOWN_GRACE.saturating_sub(SHUTDOWN_GOODBYE);
    coordinator::run(ctx, stop_rx, drain).await;
    let _ = server.await;
    Ok(())
}

async fn readyz(State(ctx): State<Arc<Context>>) -> impl IntoResponse {
    if ctx.is_ready() { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready") }
}

async fn metrics(State(ctx): State<Arc<Context>>) -> impl IntoResponse {
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], ctx.metrics.encode())
}
