//! The write side of the tenant's Redis buffer: appends one entry per partition, counts the
//! backlog, and knows whether Redis is reachable and durable enough for the pipeline's mode.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::future::join_all;
use pulse_buffer::Connection;
use pulse_buffer::TenantLayout;
use pulse_core::config::Durability;
use redis::Value;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};

use crate::metrics::Metrics;

mod script;

use crate::persistence::{STRICT_SETTINGS, all_equal, aof_settled, config_pairs, strict_settings_hold};
use script::{AppendGroup, Appended, ScriptArg};

/// How often the backlog and Redis's health are checked.
const MONITOR_INTERVAL: Duration = Duration::from_millis(250);

/// Why events could not be buffered. Nothing of the request is acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BufferError {
    #[error("the buffer (Redis) is unreachable: {0}")]
    Unreachable(String),
    #[error("the buffer (Redis) did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    NotDurable(String),
    /// Not a fault: the backlog plus the request's events would pass the high-water mark.
    #[error(
        "the unprocessed backlog ({backlog} events) plus this request would pass the high-water mark of {mark}"
    )]
    Full { backlog: u64, mark: u64 },
}

/// One partition's part of a request: its stream entry and how many events it holds.
pub struct PartitionEntry {
    pub partition: u32,
    pub payload: Vec<u8>,
    pub events: u64,
}

/// How to reach the buffer.
#[derive(Debug, Clone)]
pub struct BufferSettings {
    pub url: String,
    pub cluster: bool,
    pub tenant: String,
    pub partitions: u32,
    pub durability: Durability,
    /// The longest a request waits on Redis before answering 503.
    pub timeout: Duration,
    /// How often the persistence settings of every master are verified (and after every
    /// failed health check, i.e. on reconnect).
    pub durability_check_interval: Duration,
}

/// The tenant's buffer, shared by all requests.
pub struct Buffer {
    settings: BufferSettings,
    connection: RwLock<Option<Connection>>,
    script: redis::Script,
    /// Redis answered the last health check (and, in strict mode, is durable enough).
    ready: AtomicBool,
    /// Why the buffer is not ready, for /readyz and 503 messages.
    not_ready_reason: RwLock<String>,
    backlog: AtomicU64,
    /// Each partition's backlog, as of the last check (a cluster's appends check against it).
    partition_backlogs: Vec<AtomicU64>,
    /// Fast mode warned that Redis has no append-only file (warn once per change).
    warned_without_aof: AtomicBool,
    /// Strict writes refused for weak settings so far: a monitor check that started
    /// before a refusal read stale settings and must not turn the buffer ready again.
    refusals: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Buffer {
    /// Creates the buffer and starts connecting in the background: ingest starts (and
    /// answers 503) while Redis is still down.
    pub fn start(settings: BufferSettings, metrics: Arc<Metrics>) -> Result<Arc<Self>, redis::RedisError> {
        let buffer = Arc::new(Buffer {
            connection: RwLock::new(None),
            script: redis::Script::new(pulse_buffer::APPEND_BELOW_MARK_SCRIPT),
            ready: AtomicBool::new(false),
            not_ready_reason: RwLock::new("not connected to Redis yet".to_string()),
            backlog: AtomicU64::new(0),
            partition_backlogs: (0..settings.partitions).map(|_| AtomicU64::new(0)).collect(),
            warned_without_aof: AtomicBool::new(false),
            refusals: AtomicU64::new(0),
            metrics,
            settings,
        });
        if !buffer.settings.cluster {
            let single = Connection::single_lazy(&buffer.settings.url, buffer.settings.timeout)?;
            *buffer.connection.write().unwrap_or_else(|p| p.into_inner()) = Some(single);
        }
        tokio::spawn(Arc::clone(&buffer).monitor());
        Ok(buffer)
    }

    /// Whether Redis is reachable (and durable enough for the pipeline's mode).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Why the buffer is not ready.
    pub fn not_ready_reason(&self) -> String {
        self.not_ready_reason.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The unprocessed events across partitions, as of the last check.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Acquire)
    }

    /// Appends the request's entries if the tenant's backlog plus their events stays within
    /// `mark`, checked and appended in one script so parallel requests cannot pass the mark
    /// together. On a single Redis one script sums every partition's backlog and appends
    /// every entry, or none. On a Redis Cluster a script can only touch one partition (one
    /// hash slot): each entry is checked against its own partition's exact count plus the
    /// other partitions' counts as last read (every 250 ms, and this pod's own appends at
    /// once) and the request's events for them, so concurrent requests on different
    /// partitions may pass the mark by what those partitions took since.
    ///
    /// On any failure nothing may be acknowledged; entries that did land are harmless
    /// duplicates when the client retries.
    pub async fn append(&self, entries: Vec<PartitionEntry>, mark: u64) -> Result<(), BufferError> {
        let Some(connection) = self.connection() else {
            return Err(BufferError::Unreachable(self.not_ready_reason()));
        };
        let started = Instant::now();
        let groups = self.groups(&entries, mark);
        let writes = groups.iter().map(|group| {
            let connection = connection.clone();
            async move {
                if self.settings.durability == Durability::Strict {
                    self.append_verified(connection, group).await
                } else {
                    self.append_fast(connection, group).await
                }
            }
        });
        let results = tokio::time::timeout(self.settings.timeout, join_all(writes))
            .await
            .map_err(|_| BufferError::Timeout(self.settings.timeout))?;
        self.metrics.redis_seconds.observe(started.elapsed().as_secs_f64());
        let mut first_error = None;
        for (group, result) in groups.iter().zip(results) {
            match result {
                Ok(Appended::Yes { backlog }) => self.note_appended(group, backlog),
                Ok(Appended::Full { backlog }) => {
                    first_error.get_or_insert(BufferError::Full { backlog, mark });
                }
                Err(e) => {
                    if let BufferError::NotDurable(reason) = &e {
                        // Refuse at once what follows, until the monitor sees the settings restored.
                        self.refusals.fetch_add(1, Ordering::AcqRel);
                        self.set_not_ready(reason.clone());
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The scripts a request's entries take: one for all of them on a single Redis, one
    /// per entry on a cluster.
    fn groups<'a>(&self, entries: &'a [PartitionEntry], mark: u64) -> Vec<AppendGroup<'a>> {
        let tenant = &self.settings.tenant;
        if !self.settings.cluster {
            return vec![AppendGroup {
                counted: (0..self.settings.partitions).map(|p| TenantLayout::of(tenant).backlog(p)).collect(),
                slots: entries.iter().map(|e| e.partition as usize).collect(),
                entries: entries.iter().collect(),
                mark,
            }];
        }
        let known = self.partition_backlogs();
        let total: u64 = known.iter().sum();
        let request: u64 = entries.iter().map(|e| e.events).sum();
        entries
            .iter()
            .map(|entry| {
                let own = known.get(entry.partition as usize).copied().unwrap_or(0);
                // What the other partitions hold, and the request's events for them.
                let elsewhere = total.saturating_sub(own) + (request - entry.events);
                AppendGroup {
                    counted: vec![TenantLayout::of(tenant).backlog(entry.partition)],
                    slots: vec![0],
                    entries: vec![entry],
                    mark: mark.saturating_sub(elsewhere),
                }
            })
            .collect()
    }

    fn note_appended(&self, group: &AppendGroup<'_>, backlog: u64) {
        for entry in &group.entries {
            if let Some(count) = self.partition_backlogs.get(entry.partition as usize) {
                count.fetch_add(entry.events, Ordering::AcqRel);
            }
        }
        if self.settings.cluster {
            let added: u64 = group.entries.iter().map(|e| e.events).sum();
            self.backlog.fetch_add(added, Ordering::AcqRel);
        } else {
            self.backlog.store(backlog, Ordering::Release);
        }
    }

    fn partition_backlogs(&self) -> Vec<u64> {
        self.partition_backlogs.iter().map(|c| c.load(Ordering::Acquire)).collect()
    }

    /// Fast mode: the append script, one round trip.
    async fn append_fast(
        &self,
        mut connection: Connection,
        group: &AppendGroup<'_>,
    ) -> Result<Appended, BufferError> {
        let tenant = &self.settings.tenant;
        let mut invocation = self.script.prepare_invoke();
        for key in &group.counted {
            invocation.key(key);
        }
        for entry in &group.entries {
            invocation.key(TenantLayout::of(tenant).stream(entry.partition));
        }
        for arg in group.args() {
            match arg {
                ScriptArg::Number(n) => invocation.arg(n),
                ScriptArg::Bytes(b) => invocation.arg(b),
            };
        }
        let reply: Value = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| BufferError::Unreachable(e.to_string()))?;
        Appended::of(&reply)
    }

    /// Strict mode: the append script and a read of the persistence settings in one
    /// MULTI/EXEC. EXEC runs them with nothing in between, so the entries were written
    /// under the settings read, and Redis with `appendfsync always` fsyncs them before
    /// answering. A periodic check alone would acknowledge writes made between a weakening
    /// and the next check. (Scripts cannot run CONFIG; MULTI can.) When the settings are
    /// weaker the entries are in the stream but not acknowledged: a retry with the same
    /// event ids is deduplicated.
    async fn append_verified(
        &self,
        mut connection: Connection,
        group: &AppendGroup<'_>,
    ) -> Result<Appended, BufferError> {
        let tenant = &self.settings.tenant;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (name, _) in STRICT_SETTINGS {
            pipe.cmd("CONFIG").arg("GET").arg(name);
        }
        let eval = pipe
            .cmd("EVAL")
            .arg(pulse_buffer::APPEND_BELOW_MARK_SCRIPT)
            .arg(group.counted.len() + group.entries.len())
            .arg(&group.counted);
        for entry in &group.entries {
            eval.arg(TenantLayout::of(tenant).stream(entry.partition));
        }
        for arg in group.args() {
            match arg {
                ScriptArg::Number(n) => eval.arg(n),
                ScriptArg::Bytes(b) => eval.arg(b),
            };
        }
        let replies: Vec<Value> =
            pipe.query_async(&mut connection).await.map_err(|e| BufferError::Unreachable(e.to_string()))?;
        let Some((appended, config)) = replies.split_last() else {
            return Err(BufferError::Unreachable("EXEC answered nothing".to_string()));
        };
        let settings: Vec<(String, String)> =
            config.iter().flat_map(|reply| config_pairs(reply, "append")).collect();
        strict_settings_hold(&settings).map_err(BufferError::NotDurable)?;
        Appended::of(appended)
    }

    /// Takes `events` tokens from the tenant's shared rate-limit bucket.
    pub async fn take_tokens(
        &self,
        limiter: &crate::rate_limit::RateLimiter,
        events: u64,
    ) -> Result<crate::rate_limit::Decision, BufferError> {
        let mut connection =
            self.connection().ok_or_else(|| BufferError::Unreachable(self.not_ready_reason()))?;
        tokio::time::timeout(self.settings.timeout, limiter.take(&mut connection, events))
            .await
            .map_err(|_| BufferError::Timeout(self.settings.timeout))?
            .map_err(|e| BufferError::Unreachable(e.to_string()))
    }

    fn connection(&self) -> Option<Connection> {
        self.connection.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_not_ready(&self, reason: String) {
        let was_ready = self.ready.swap(false, Ordering::AcqRel);
        let mut current = self.not_ready_reason.write().unwrap_or_else(|p| p.into_inner());
        if was_ready || *current != reason {
            tracing::warn!(reason = %reason, "buffer not ready");
        }
        *current = reason;
    }

    /// Connects (cluster), and refreshes the backlog and readiness every
    /// [`MONITOR_INTERVAL`] for as long as the process runs. Persistence settings are
    /// verified every `durability_check_interval`, and again before the buffer is ready
    /// after any failure (a reconnect may reach a Redis restarted with other settings).
    async fn monitor(self: Arc<Self>) {
        let mut verified_at: Option<Instant> = None;
        let mut backoff = MONITOR_INTERVAL;
        loop {
            if self.connection().is_none() {
                match self.connect_cluster().await {
                    Ok(c) => *self.connection.write().unwrap_or_else(|p| p.into_inner()) = Some(c),
                    Err(e) => {
                        self.set_not_ready(format!("cannot connect to the Redis Cluster: {e}"));
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            backoff = MONITOR_INTERVAL;
            let due = !self.is_ready()
                || verified_at.is_none_or(|at| at.elapsed() >= self.settings.durability_check_interval);
            let refusals = self.refusals.load(Ordering::Acquire);
            let checked = match self.check().await {
                Ok(()) if !due => Ok(()),
                Ok(()) => {
                    let started = Instant::now();
                    self.check_durability().await.map(|()| verified_at = Some(started))
                }
                Err(reason) => Err(reason),
            };
            match checked {
                Ok(()) if self.refusals.load(Ordering::Acquire) != refusals => {
                    // A write saw weak settings while this check ran: check again next time.
                    verified_at = None;
                }
                Ok(()) => {
                    if !self.ready.swap(true, Ordering::AcqRel) {
                        tracing::info!("buffer ready");
                    }
                }
                Err(reason) => {
                    verified_at = None;
                    self.set_not_ready(reason);
                }
            }
            tokio::time::sleep(MONITOR_INTERVAL).await;
        }
    }

    async fn connect_cluster(&self) -> Result<Connection, redis::RedisError> {
        Connection::cluster(&self.settings.url, self.settings.timeout).await
    }

    /// Reads every partition's backlog count; an error means Redis is not usable.
    async fn check(&self) -> Result<(), String> {
        let connection = self.connection().ok_or("not connected")?;
        let tenant = &self.settings.tenant;
        let reads = (0..self.settings.partitions).map(|p| {
            let mut connection = connection.clone();
            let key = TenantLayout::of(tenant).backlog(p);
            async move { redis::cmd("GET").arg(key).query_async::<Option<u64>>(&mut connection).await }
        });
        let results = tokio::time::timeout(self.settings.timeout, join_all(reads))
            .await
            .map_err(|_| format!("Redis did not answer within {:?}", self.settings.timeout))?;
        let mut total = 0u64;
        for (partition, result) in results.into_iter().enumerate() {
            let count = result.map_err(|e| format!("Redis is unreachable: {e}"))?.unwrap_or(0);
            if let Some(known) = self.partition_backlogs.get(partition) {
                known.store(count, Ordering::Release);
            }
            total += count;
        }
        self.backlog.store(total, Ordering::Release);
        self.metrics.backlog_events.set(i64::try_from(total).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Strict mode needs every acknowledged event on disk: Redis must run with
    /// `appendonly yes` and `appendfsync always` (on every master of a cluster). Fast mode
    /// only warns when Redis has no append-only file at all.
    async fn check_durability(&self) -> Result<(), String> {
        let mut connection = self.connection().ok_or("not connected")?;
        let settings = match self.config_get(&mut connection, "append*").await {
            Ok(settings) => settings,
            Err(e) if self.settings.durability == Durability::Fast => {
                tracing::warn!(error = %e, "cannot read Redis persistence settings; assuming AOF everysec");
                return Ok(());
            }
            Err(e) => {
                return Err(format!("strict durability cannot verify Redis persistence (CONFIG GET): {e}"));
            }
        };
        match self.settings.durability {
            Durability::Strict => {
                strict_settings_hold(&settings)?;
                if !self.is_ready() {
                    self.check_aof_settled(&mut connection).await?;
                }
                Ok(())
            }
            Durability::Fast => {
                let without_aof = !all_equal(&settings, "appendonly", "yes");
                if without_aof && !self.warned_without_aof.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        "Redis runs without an append-only file: a Redis crash loses acknowledged events"
                    );
                }
                self.warned_without_aof.store(without_aof, Ordering::Release);
                Ok(())
            }
        }
    }

    /// Strict mode becomes ready only once no AOF rewrite runs (the first one after
    /// `appendonly yes` is what makes new entries crash-safe) and the last AOF write succeeded.
    async fn check_aof_settled(&self, connection: &mut Connection) -> Result<(), String> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg("persistence");
        let value = self.on_every_master(connection, cmd).await.map_err(|e| {
            format!("strict durability cannot verify Redis persistence (INFO persistence): {e}")
        })?;
        aof_settled(&value)
    }

    /// Runs `cmd` on the server, or on every master of a cluster.
    async fn on_every_master(
        &self,
        connection: &mut Connection,
        cmd: redis::Cmd,
    ) -> redis::RedisResult<Value> {
        match connection {
            Connection::Single(c) => cmd.query_async::<Value>(c).await,
            Connection::Cluster(c) => {
                c.route_command(cmd, RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)))
                    .await
            }
        }
    }

    /// CONFIG GET on the server, or on every master of a cluster, as (name, value) pairs.
    async fn config_get(
        &self,
        connection: &mut Connection,
        pattern: &str,
    ) -> Result<Vec<(String, String)>, String> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg(pattern);
        let value = self.on_every_master(connection, cmd).await.map_err(|e| e.to_string())?;
        Ok(config_pairs(&value, pattern.trim_end_matches('*')))
    }
}
