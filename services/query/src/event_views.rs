//! The pre-aggregates of declared funnels, retention, lifecycle and stickiness, in memory: per-user results the
//! engines keep incrementally (`pulse_core::analytics::materialized`), so a declared funnel
//! or a retention table is a pass over users, not over events.
//!
//! Fed from the processor's event blocks (compressed copies of each batch's stored events,
//! see `pulse_store::blocks`): every block once at start, then every second the blocks the
//! processor announced on the tenant's changes stream since the last look, and every few
//! minutes any block not seen yet (a replica that fell further behind than the stream
//! keeps). The views ignore an event id they already hold, so a block read twice, or an
//! event in two blocks (a redelivered batch, a compaction), counts once. Until the first
//! full read, and for queries a view cannot answer exactly, queries go to raw events.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use jiff::tz::TimeZone;
use pulse_buffer::{Connection, newest_rollup_change, read_changes};
use pulse_core::analytics::funnel::{FunnelQuery, FunnelReport};
use pulse_core::analytics::lifecycle::{LifecycleQuery, LifecycleReport};
use pulse_core::analytics::materialized::{ActivityView, FunnelView, UserDay};
use pulse_core::analytics::retention::{RetentionQuery, RetentionReport};
use pulse_core::analytics::stickiness::{StickinessQuery, StickinessReport};
use pulse_core::analytics::{AnalyticsError, AnalyticsEvent, Limits};
use pulse_core::buffer::BufferedEvent;
use pulse_core::config::NamedFunnel;
use pulse_store::{Store, StoreError};

use crate::view::ViewError;

/// How often announced blocks are read.
pub const CHANGES_EVERY: Duration = Duration::from_secs(1);
/// How often the block index is read for blocks not seen yet.
pub const FULL_EVERY: Duration = Duration::from_secs(300);
/// About how many events are added to the views at once.
const ADD_EVERY: usize = 100_000;

/// The views of one pipeline.
pub struct EventViews {
    tenant: String,
    state: RwLock<Views>,
    loaded: AtomicBool,
    /// The most memory the views may take, in bytes; past it they stop (a warning, and
    /// raw-event answers).
    max_bytes: u64,
}

struct Views {
    activity: ActivityView,
    /// By declared funnel name.
    funnels: BTreeMap<String, FunnelView>,
    /// Blocks already added.
    blocks: HashSet<String>,
    /// Events added (repeats included).
    events: u64,
    /// Set when the views stopped growing, and why.
    stopped: Option<String>,
}

impl Views {
    fn heap_bytes(&self) -> usize {
        self.activity.heap_bytes() + self.funnels.values().map(FunnelView::heap_bytes).sum::<usize>()
    }
}

impl EventViews {
    /// Views for the pipeline's declared funnels and its retention.
    pub fn new(
        tenant: &str,
        funnels: &[NamedFunnel],
        tz: &TimeZone,
        max_bytes: u64,
    ) -> Result<Self, AnalyticsError> {
        let funnels = funnels
            .iter()
            .map(|f| Ok((f.name.clone(), FunnelView::new(f.definition.clone(), tz.clone())?)))
            .collect::<Result<_, AnalyticsError>>()?;
        Ok(EventViews {
            tenant: tenant.to_string(),
            state: RwLock::new(Views {
                activity: ActivityView::new(tz.clone()),
                funnels,
                blocks: HashSet::new(),
                events: 0,
                stopped: None,
            }),
            loaded: AtomicBool::new(false),
            max_bytes,
        })
    }

    /// Whether every block stored at start has been added.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Views> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn usable(&self) -> Option<std::sync::RwLockReadGuard<'_, Views>> {
        let views = self.read();
        (self.is_loaded() && views.stopped.is_none()).then_some(views)
    }

    /// The declared funnel `name` over `query`, when its view can answer exactly.
    pub fn funnel(
        &self,
        name: &str,
        query: &FunnelQuery,
        limits: &Limits,
    ) -> Result<Option<FunnelReport>, AnalyticsError> {
        let Some(views) = self.usable() else { return Ok(None) };
        match views.funnels.get(name) {
            Some(view) => view.report(query, limits),
            None => Ok(None),
        }
    }

    /// The retention table of `query`, when the activity view can answer exactly.
    pub fn retention(
        &self,
        query: &RetentionQuery,
        limits: &Limits,
    ) -> Result<Option<RetentionReport>, AnalyticsError> {
        let Some(views) = self.usable() else { return Ok(None) };
        views.activity.retention(query, limits)
    }

    /// The lifecycle of `query`, when the activity view can answer exactly.
    pub fn lifecycle(
        &self,
        query: &LifecycleQuery,
        limits: &Limits,
    ) -> Result<Option<LifecycleReport>, AnalyticsError> {
        let Some(views) = self.usable() else { return Ok(None) };
        views.activity.lifecycle(query, limits)
    }

    /// The stickiness of `query`, when the activity view can answer exactly.
    pub fn stickiness(
        &self,
        query: &StickinessQuery,
        limits: &Limits,
    ) -> Result<Option<StickinessReport>, AnalyticsError> {
        let Some(views) = self.usable() else { return Ok(None) };
        views.activity.stickiness(query, limits)
    }

    /// The local days with events of `distinct_id`, newest first: None when the views cannot
    /// tell (not loaded yet, or stopped past their memory bound), `Some(None)` for a user
    /// they have not seen.
    pub fn user_days(&self, distinct_id: &str) -> Option<Option<Vec<UserDay>>> {
        let views = self.usable()?;
        Some(views.activity.user_days(distinct_id))
    }

    /// (users, events) held by the activity view.
    pub fn size(&self) -> (usize, usize) {
        let views = self.read();
        (views.activity.users(), views.activity.events())
    }

    /// Reads the blocks of `ids` not added yet and adds their events; returns how many
    /// blocks were added.
    async fn add_blocks(self: &Arc<Self>, store: &Store, ids: Vec<String>) -> Result<usize, StoreError> {
        let new: Vec<String> = {
            let views = self.read();
            if views.stopped.is_some() {
                return Ok(0);
            }
            let mut seen = HashSet::new();
            ids.into_iter().filter(|id| !views.blocks.contains(id) && seen.insert(id.clone())).collect()
        };
        let mut added = 0;
        // One stream for all of them (on FerretDB every find of many ids scans the
        // collection once), added some 100,000 events at a time: memory holds a few blocks.
        let mut blocks = std::pin::pin!(store.stream_event_blocks(new));
        let mut batch: Vec<(String, Vec<BufferedEvent>)> = Vec::new();
        let mut events = 0;
        loop {
            let next = blocks.try_next().await?;
            let done = next.is_none();
            if let Some((id, block)) = next {
                events += block.len();
                batch.push((id, block));
            }
            if !batch.is_empty() && (events >= ADD_EVERY || done) {
                let (this, read) = (Arc::clone(self), std::mem::take(&mut batch));
                events = 0;
                added += tokio::task::spawn_blocking(move || this.add_read(read)).await.unwrap_or(0);
            }
            if done {
                break;
            }
        }
        Ok(added)
    }

    /// Adds blocks' events (CPU work: run off the async threads).
    fn add_read(&self, read: Vec<(String, Vec<BufferedEvent>)>) -> usize {
        let mut views = self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut added = 0;
        for (id, events) in read {
            let events: Vec<AnalyticsEvent> = events.into_iter().map(AnalyticsEvent::from).collect();
            if views.stopped.is_some() {
                break;
            }
            views.events += events.len() as u64;
            views.activity.add(&events);
            for view in views.funnels.values_mut() {
                view.add(&events);
            }
            views.blocks.insert(id);
            added += 1;
        }
        let bytes = views.heap_bytes();
        if views.stopped.is_none() && bytes as u64 > self.max_bytes {
            let why = format!(
                "the views outgrew --max-view-memory-mib ({} MiB at {} events): declared funnels and retention are answered from raw events",
                bytes >> 20,
                views.events
            );
            tracing::warn!(tenant = %self.tenant, reason = %why, "pre-aggregated views stopped");
            views.stopped = Some(why);
            views.funnels.clear();
            views.activity = ActivityView::new(TimeZone::UTC);
        }
        added
    }

    /// Adds every stored block not added yet.
    pub async fn load_all(self: &Arc<Self>, store: &Store) -> Result<usize, StoreError> {
        let refs = store.event_block_refs(None, i64::MIN / 2, i64::MAX / 2).await?;
        let added = self.add_blocks(store, refs.into_iter().map(|r| r.id).collect()).await?;
        self.loaded.store(true, Ordering::Release);
        Ok(added)
    }

    /// Adds the blocks announced since `after` (a change id); returns the newest change id
    /// read.
    async fn add_announced(
        self: &Arc<Self>,
        store: &Store,
        conn: &mut Connection,
        after: &str,
    ) -> Result<String, ViewError> {
        let mut after = after.to_string();
        loop {
            let changes = read_changes(conn, &self.tenant, &after, 1_000).await?;
            let Some(newest) = changes.newest else { return Ok(after) };
            self.add_blocks(store, changes.blocks).await?;
            after = newest;
        }
    }

    /// Keeps the views current until the task is dropped.
    pub async fn keep_current(self: Arc<Self>, store: Store, mut conn: Connection) {
        let mut last_full: Option<Instant> = None;
        let mut after = String::new();
        loop {
            if last_full.is_none_or(|t| t.elapsed() >= FULL_EVERY) {
                let started = Instant::now();
                // The newest change first: blocks announced during the full read are read
                // again after it (and skipped, being added).
                let full = async {
                    let newest = newest_rollup_change(&mut conn, &self.tenant).await?;
                    let n = self.load_all(&store).await?;
                    Ok::<_, ViewError>((newest, n))
                };
                match full.await {
                    Ok((newest, blocks)) => {
                        let (users, events) = self.size();
                        tracing::info!(
                            blocks,
                            users,
                            events,
                            ms = started.elapsed().as_millis() as u64,
                            "event blocks read into the funnel and retention views"
                        );
                        last_full = Some(Instant::now());
                        after = newest;
                    }
                    Err(e) => tracing::warn!(error = %e, "reading the event blocks failed; retrying"),
                }
            } else {
                match self.add_announced(&store, &mut conn, &after).await {
                    Ok(newest) => after = newest,
                    Err(e) => tracing::debug!(error = %e, "reading announced event blocks failed"),
                }
            }
            tokio::time::sleep(CHANGES_EVERY).await;
        }
    }
}
