//! One partition's processing loop, run while this process holds the partition's lease:
//! read (pending first), store, apply, acknowledge; retry with backoff on any failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pulse_core::buffer::BufferedEvent;
use pulse_core::rollup::StreamPosition;
use pulse_store::batch::STEAL_AFTER_MS;
use pulse_store::{
    Ballot, Batch, BatchRollups, BatchSteps, Compacted, CompactionDays, EventWrite, FailedEvent, LogState,
    LogTail, OpenRecord, PartitionLease, RecordPlan, Refusal, StoreError, StoredBatch, WriterMemory,
};
use tokio::sync::watch;
use tracing::Instrument;

use crate::failed::PoisonWatch;
use crate::lease::{PartitionLeaseKeys, lease_ttl};
use crate::metrics::ErrorLabel;
use crate::stream::{Entry, PartitionStream};
use crate::{Context, ProcessorError, StoreTurn};

const IDLE_MIN: Duration = Duration::from_millis(10);
const IDLE_MAX: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long giving a lease up may take before the writer leaves it to expire.
const RELEASE_WAIT: Duration = Duration::from_secs(2);
/// The most entries one read asks for.
const MAX_READ_ENTRIES: usize = 1000;
/// How often a partition's small event blocks are merged, when its writer finds nothing
/// to read (merging passes over a day's blocks, which a backlog's batches must not wait
/// behind)...
const COMPACT_EVERY: Duration = Duration::from_secs(60);
/// ...or at the latest, busy or not.
const COMPACT_LATEST: Duration = Duration::from_secs(600);
/// How often a partition's rollup log is compacted (it grows by a record per batch), when
/// its writer finds nothing to read...
const LOG_COMPACT_EVERY: Duration = Duration::from_secs(600);
/// ...or at the latest, busy or not...
const LOG_COMPACT_LATEST: Duration = Duration::from_secs(1800);
/// ...or sooner, once its log holds this many records since (counting those that writers
/// before this tenure left, as processors that restart often never reach the times above):
/// every start of a writer passes over the log (on FerretDB), so busy partitions keep
/// theirs short.
const LOG_COMPACT_RECORDS: u64 = 4096;

/// Processes `partition`, whose lease (`fence`) was taken at `acquired`, until `stop` says
/// so or the lease is lost, then gives the lease up.
#[tracing::instrument(name = "partition", skip_all, fields(tenant = %ctx.tenant, partition = partition, fence = fence))]
pub async fn run(
    ctx: Arc<Context>,
    partition: u32,
    fence: u64,
    acquired: Instant,
    stop: watch::Receiver<bool>,
) {
    let lease = PartitionLease { partition, fence };
    let keys = PartitionLeaseKeys::new(&ctx.tenant, partition);
    let (lost_tx, lost) = watch::channel(false);
    let renewer = tokio::spawn(renew(Arc::clone(&ctx), partition, lost_tx).in_current_span());
    let stream = PartitionStream::new(&ctx.tenant, partition);
    tracing::info!(partition, fence, "partition acquired");
    let mut idle = IDLE_MIN;
    let mut backoff = Backoff::default();
    // What this tenure has stored and counted; a new lease starts without it.
    let mut state = WriterState::new(ctx.partitions, acquired);
    let mut read_size = ReadSize { entries: ctx.read_count };
    let mut conn = ctx.conn.clone();
    if let Err(e) = stream.ensure_group(&mut conn).await {
        tracing::warn!(partition, error = %e, "cannot create the consumer group yet");
    }
    let mut last_compaction = Instant::now();
    let mut last_log_compaction = Instant::now();
    // Compactions run beside the writer, so that batches keep their freshness while one
    // passes over history; one at a time per partition.
    let mut housekeeping: Option<tokio::task::JoinHandle<CompactionDays>> = None;
    let ending = || *stop.borrow() || *lost.borrow();
    // Waits end early when the process stops or the lease is lost.
    let (mut stopping, mut losing) = (stop.clone(), lost.clone());
    while !ending() {
        let mut caught_up = false;
        match step(&ctx, &stream, lease, &mut read_size, &mut state).await {
            Ok(0) => {
                backoff.reset();
                caught_up = true;
                unless_ending(tokio::time::sleep(idle), &mut stopping, &mut losing).await;
                idle = (idle * 2).min(IDLE_MAX);
            }
            Ok(_) => {
                backoff.reset();
                idle = IDLE_MIN;
            }
            Err(e) => {
                // A write whose outcome is unknown may have changed what the memory says.
                state.forget();
                ctx.metrics.errors.get_or_create(&ErrorLabel { kind: e.kind() }).inc();
                let wait = backoff.next();
                if matches!(&e, ProcessorError::Store(s) if s.damaged_catalogue()) {
                    tracing::error!(
                        partition,
                        error = %e,
                        retry_in = ?wait,
                        "FerretDB cannot create a collection its backend already has a table for (it stopped while \
                         creating it); the events wait in Redis until the repair in docs/operations.md, \
                         'A collection FerretDB cannot create', is run"
                    );
                } else {
                    tracing::warn!(partition, error = %e, retry_in = ?wait, "batch failed; retrying");
                }
                unless_ending(tokio::time::sleep(wait), &mut stopping, &mut losing).await;
                if ending() {
                    break;
                }
                if let Err(e) = stream.ensure_group(&mut conn).await {
                    tracing::debug!(partition, error = %e, "consumer group not ensured");
                }
            }
        }
        if let Some(task) = housekeeping.take_if(|task| task.is_finished()) {
            // A compaction that stopped midway may have left any day.
            state.compaction_days.add(task.await.unwrap_or_else(|_| CompactionDays::every()));
        }
        if housekeeping.is_some() || ending() {
            continue;
        }
        let blocks = due(last_compaction.elapsed(), caught_up, COMPACT_EVERY, COMPACT_LATEST)
            && !state.compaction_days.is_empty();
        let log = due(last_log_compaction.elapsed(), caught_up, LOG_COMPACT_EVERY, LOG_COMPACT_LATEST)
            || state.records_since_log_compaction >= LOG_COMPACT_RECORDS;
        if blocks {
            last_compaction = Instant::now();
        }
        if log {
            last_log_compaction = Instant::now();
            state.records_since_log_compaction = 0;
        }
        if blocks || log {
            let ctx = Arc::clone(&ctx);
            let days =
                if blocks { std::mem::take(&mut state.compaction_days) } else { CompactionDays::default() };
            housekeeping = Some(tokio::spawn(
                async move {
                    let _turn = ctx.compaction_turns.acquire().await.ok();
                    let left = if blocks { compact(&ctx, partition, days).await } else { days };
                    if log {
                        compact_log(&ctx, partition).await;
                    }
                    left
                }
                .in_current_span(),
            ));
        }
    }
    // A compaction stopped anywhere leaves everything readable as before.
    if let Some(task) = housekeeping {
        task.abort();
    }
    renewer.abort();
    // Bounded: with Redis gone, the lease expires by itself and the process must still stop.
    match tokio::time::timeout(RELEASE_WAIT, keys.release(&mut conn, &ctx.owner)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(partition, error = %e, "could not release the lease; it expires by itself")
        }
        Err(_) => tracing::warn!(partition, "Redis did not answer the lease release; it expires by itself"),
    }
    tracing::info!(partition, "partition released");
}

/// Whether a periodic task last run `since` ago is due: after `every` once the writer has
/// caught up with its stream, after `latest` in any case.
fn due(since: Duration, caught_up: bool, every: Duration, latest: Duration) -> bool {
    since >= latest || (caught_up && since >= every)
}

/// Runs `work` until it ends, the process stops or the lease is lost.
async fn unless_ending(
    work: impl std::future::Future<Output = ()>,
    stopping: &mut watch::Receiver<bool>,
    losing: &mut watch::Receiver<bool>,
) {
    tokio::select! {
        _ = work => {}
        _ = stopping.wait_for(|s| *s) => {}
        _ = losing.wait_for(|l| *l) => {}
    }
}

/// Reads one batch (pending entries first) and processes it. Returns its entry count.
///
/// The batch is completed once the writer's turn to store has come: the events that reached
/// the partition while it waited go with it, instead of waiting a whole round of turns for
/// the next batch (docs/operations.md, capacity planning).
pub async fn step(
    ctx: &Context,
    stream: &PartitionStream,
    lease: PartitionLease,
    read_size: &mut ReadSize,
    state: &mut WriterState,
) -> Result<usize, ProcessorError> {
    let finished = finish_open_record(ctx, stream, lease, state).await?;
    if finished > 0 {
        return Ok(finished);
    }
    let mut conn = ctx.conn.clone();
    let mut entries = stream.read(&mut conn, true, read_size.entries).await?;
    let redelivered = !entries.is_empty();
    if entries.is_empty() {
        entries = stream.read(&mut conn, false, read_size.entries).await?;
    }
    if entries.is_empty() {
        return Ok(0);
    }
    let turn = StoreTurn::take(ctx).await;
    read_size.adapt(&entries, ctx.batch_events);
    if !redelivered {
        let more = top_up(&entries, ctx.batch_events);
        if more > 0 {
            entries.extend(stream.read(&mut conn, false, more).await?);
        }
    }
    process_read(ctx, stream, lease, entries, redelivered, state, &turn).await
}

/// Processes the entries of one read, in sub-batches, after acknowledging those the log
/// already counts. Returns how many entries it read.
pub async fn process_read(
    ctx: &Context,
    stream: &PartitionStream,
    lease: PartitionLease,
    mut entries: Vec<Entry>,
    redelivered: bool,
    state: &mut WriterState,
    turn: &StoreTurn<'_>,
) -> Result<usize, ProcessorError> {
    let log = state.log(ctx, lease.partition).await?;
    // Entries the log already counts (a crash between its commit and the acknowledgement)
    // are only acknowledged.
    let done = entries.iter().take_while(|e| e.position <= log.tail.last).count();
    if done > 0 {
        let acks: Vec<(String, u64)> = entries[..done].iter().map(|e| (e.id.clone(), events_in(e))).collect();
        stream.ack(&mut ctx.conn.clone(), &acks).await?;
    }
    let total = entries.len();
    entries.drain(..done);
    // Sub-batches of at most `batch_events` events (at least one entry each): a redelivered
    // batch costs a lookup per event, so its size must stay bounded.
    let mut start = 0;
    while start < entries.len() {
        let mut end = start;
        let mut events = 0;
        while end < entries.len() {
            let n = entries[end].events.as_ref().map(Vec::len).unwrap_or(0);
            if end > start && events + n > ctx.batch_events {
                break;
            }
            events += n;
            end += 1;
        }
        process(ctx, stream, lease, &entries[start..end], redelivered, state, turn).await?;
        start = end;
    }
    Ok(total)
}

/// Writes the record of the partition's log that a writer began and did not commit (it
/// died, or was paused and lost its lease), with exactly its entries. Returns how many
/// entries it had (0 when no record was open).
pub async fn finish_open_record(
    ctx: &Context,
    stream: &PartitionStream,
    lease: PartitionLease,
    state: &mut WriterState,
) -> Result<usize, ProcessorError> {
    let log = state.log(ctx, lease.partition).await?;
    let Some(open) = &log.open else { return Ok(0) };
    let mut conn = ctx.conn.clone();
    let entries = stream.range(&mut conn, open.first, open.last).await?;
    if entries.first().map(|e| e.position) != Some(open.first) {
        // Committed and acknowledged meanwhile by the writer that began it, or gone from
        // the buffer: the log read again tells which.
        state.forget();
        let log = state.log(ctx, lease.partition).await?;
        if log.open.as_ref().is_some_and(|o| o.record == open.record && o.ballot == open.ballot) {
            let remaining = entries.first().map(|e| e.position);
            abandon_open_record(ctx, lease, open, remaining, state).await?;
        }
        return Err(StoreError::Moved(format!("record {} of the rollup log", open.record)).into());
    }
    let turn = StoreTurn::take(ctx).await;
    process(ctx, stream, lease, &entries, true, state, &turn).await?;
    Ok(entries.len())
}

/// Ends a record whose first entries are gone from the buffer (a stream trimmed by hand,
/// or Redis restarted without them) with an empty delta up to the entries still there, so
/// the partition moves on instead of waiting for entries that will not come back. Its
/// events that the writer which began it stored raw are in no rollup: the error says so,
/// and a rebuild recounts them.
async fn abandon_open_record(
    ctx: &Context,
    lease: PartitionLease,
    open: &OpenRecord,
    remaining: Option<StreamPosition>,
    state: &mut WriterState,
) -> Result<(), ProcessorError> {
    let (partition, record) = (lease.partition, open.record);
    let age = jiff::Timestamp::now().as_millisecond() - open.at;
    if age < STEAL_AFTER.as_millis() as i64 {
        return Ok(()); // give the writer that began it its time first
    }
    let tenure = format!("{}#{}", ctx.owner, lease.fence);
    let range = (open.first, open.last);
    let taken = |ballot| StoreError::Moved(format!("ballot {ballot} of record {record} of the rollup log"));
    // The next two ballots: the writer that began the record can no longer seal it.
    for (ballot, step) in [(open.ballot + 1, Ballot::Begin), (open.ballot + 2, Ballot::Seal)] {
        if !ctx.store.take_ballot(partition, record, ballot, step, range, &tenure).await? {
            return Err(taken(ballot).into());
        }
    }
    let last = remaining.map(StreamPosition::predecessor).unwrap_or(open.last);
    ctx.store.commit_record(partition, record, (open.first, last), Vec::new()).await?;
    state.forget();
    ctx.metrics.errors.get_or_create(&ErrorLabel { kind: "entries_lost" }).inc();
    tracing::error!(
        partition,
        record,
        first = %open.first.to_key(),
        last = %last.to_key(),
        "entries of an unfinished batch are gone from the buffer (trimmed, or lost by Redis): \
         the partition moves on; events of theirs already stored raw are in no rollup until \
         `pulse-processor rebuild`"
    );
    Ok(())
}

/// What one partition's writer carries from batch to batch while it holds the lease.
pub struct WriterState {
    /// Which users the partition's buckets counted, up to the last record this tenure knows.
    pub memory: WriterMemory,
    /// The refusals of the current batch's earlier tries.
    pub poison: PoisonWatch,
    /// The partition's rollup log as last read or written; read again after an error.
    log: Option<LogState>,
    /// Records the log holds since its last compaction: as the tenure's first read found
    /// them, plus those it committed.
    pub records_since_log_compaction: u64,
    /// Whether this tenure read the log already (its first read is shared with the
    /// writers starting with it).
    log_read: bool,
    /// When the tenure began.
    acquired: Instant,
    /// The days of blocks the next block compaction passes over: every day at first, then
    /// the days this tenure wrote blocks to since the last compaction, and those it left.
    pub compaction_days: CompactionDays,
}

impl WriterState {
    /// A writer's state at the start of a tenure, for one of `partitions` partitions, whose
    /// lease was taken at `acquired`.
    pub fn new(partitions: u32, acquired: Instant) -> Self {
        WriterState {
            memory: WriterMemory::for_one_of(partitions),
            poison: PoisonWatch::default(),
            log: None,
            records_since_log_compaction: 0,
            log_read: false,
            acquired,
            compaction_days: CompactionDays::every(),
        }
    }

    /// Drops what a write whose outcome is unknown may have made untrue: where the log ends.
    /// (The memory of users checks by itself that the next record follows what it knows.)
    pub fn forget(&mut self) {
        self.log = None;
    }

    /// The partition's log, read when not known.
    async fn log(&mut self, ctx: &Context, partition: u32) -> Result<LogState, ProcessorError> {
        if let Some(log) = &self.log {
            return Ok(log.clone());
        }
        let reading = Instant::now();
        let log = match self.log_read {
            true => ctx.store.log_state(partition).await?,
            false => {
                let log = ctx.start_log(partition, self.acquired).await?;
                self.records_since_log_compaction += log.records;
                log
            }
        };
        self.log_read = true;
        tracing::debug!(partition, ms = reading.elapsed().as_millis() as u64, "rollup log read");
        self.log = Some(log.clone());
        Ok(log)
    }
}

/// How long a record another writer began may go without progress before this writer
/// does it again (the store's rule for a batch's record, [`RecordPlan::for_batch`]).
pub const STEAL_AFTER: Duration = Duration::from_millis(STEAL_AFTER_MS as u64);

/// Stores a batch's events, applies them, and acknowledges the entries. Safe to repeat.
/// `redelivered`: the entries come from the pending list (delivered before, maybe partly
/// stored), so existing events must be looked up.
#[tracing::instrument(name = "batch", skip_all, fields(entries = entries.len(), redelivered = redelivered))]
pub async fn process(
    ctx: &Context,
    stream: &PartitionStream,
    lease: PartitionLease,
    entries: &[Entry],
    redelivered: bool,
    state: &mut WriterState,
    turn: &StoreTurn<'_>,
) -> Result<(), ProcessorError> {
    let started = Instant::now();
    // A record must start right after the one before it: entries a paused writer read
    // earlier (still pending) come first, or they would fall under the log's end uncounted.
    let log = state.log(ctx, lease.partition).await?;
    if let (None, Some(first)) = (&log.open, entries.first())
        && first.position > log.tail.last
        && stream.holds_entries_between(&mut ctx.conn.clone(), log.tail.last, first.position).await?
    {
        state.forget();
        return Err(StoreError::Moved(format!(
            "the record after the log's end (entries before {} are pending)",
            first.id
        ))
        .into());
    }
    let stored = store_entries(ctx, lease, entries, redelivered, state, turn).await?;
    let first = &stored.first;
    let written: usize = entries.iter().map(|e| e.events.as_ref().map(Vec::len).unwrap_or(0)).sum();

    // Query replicas re-read the period documents this batch touched and read its blocks
    // (also when it was a redelivery that changed nothing: a repeated notice costs a read).
    let mut conn = ctx.conn.clone();
    pulse_buffer::publish_changes(&mut conn, &ctx.tenant, &stored.periods, &stored.blocks).await?;
    let acks: Vec<(String, u64)> = entries.iter().map(|e| (e.id.clone(), events_in(e))).collect();
    stream.ack(&mut conn, &acks).await?;

    let now = jiff::Timestamp::now().as_millisecond();
    for (_, e) in first {
        ctx.metrics.freshness_seconds.observe((now - e.received_at).max(0) as f64 / 1000.0);
    }
    if let Some(newest) = first.iter().map(|(_, e)| e.received_at).max() {
        ctx.metrics.newest_applied.set(newest / 1000);
    }
    ctx.metrics.events_stored.inc_by(first.len() as u64);
    ctx.metrics.events_duplicate.inc_by(written.saturating_sub(first.len()) as u64);
    ctx.metrics.batches.inc();
    ctx.metrics.batch_seconds.observe(started.elapsed().as_secs_f64());
    Ok(())
}

/// Stores one batch of a partition's stream entries exactly as the processor does (failed
/// events set aside, raw events, event blocks, rollups, profiles) without touching the
/// stream: the caller acknowledges, and holds a store turn. Safe to repeat; after an
/// error, `state.forget()`.
pub async fn store_entries<'e>(
    ctx: &Context,
    lease: PartitionLease,
    entries: &'e [Entry],
    redelivered: bool,
    state: &mut WriterState,
    _turn: &StoreTurn<'_>,
) -> Result<StoredBatch<'e>, ProcessorError> {
    let (Some(first_entry), Some(last_entry)) = (entries.first(), entries.last()) else {
        return Ok(StoredBatch { first: Vec::new(), blocks: Vec::new(), periods: Vec::new() });
    };
    let range = (first_entry.position, last_entry.position);
    let tenure = format!("{}#{}", ctx.owner, lease.fence);
    let log = state.log(ctx, lease.partition).await?;
    let plan = match RecordPlan::for_batch(&log, range, &tenure, jiff::Timestamp::now().as_millisecond()) {
        Ok(plan) => plan,
        Err(e) => {
            state.forget();
            return Err(e.into());
        }
    };
    let stored = write_record(ctx, lease, entries, redelivered, state, plan, &tenure).await;
    match &stored {
        Ok(stored) => {
            let tail = LogTail { record: plan.attempt.record, last: range.1 };
            state.log = Some(LogState { tail, open: None, records: log.records + 1 });
            state.records_since_log_compaction += 1;
            state.compaction_days.add_blocks(&stored.blocks);
        }
        Err(_) => state.forget(),
    }
    stored
}

/// Writes a batch as the record `plan` says: the ballot, the raw events, blocks and user
/// lists, profiles, the seal, then the delta.
async fn write_record<'e>(
    ctx: &Context,
    lease: PartitionLease,
    entries: &'e [Entry],
    redelivered: bool,
    state: &mut WriterState,
    plan: RecordPlan,
    tenure: &str,
) -> Result<StoredBatch<'e>, ProcessorError> {
    let WriterState { memory, poison, .. } = state;
    let mut writes = Vec::new();
    // Where each write sits in the buffer (entry, index), to name it if it fails.
    let mut origins = Vec::new();
    let mut undecodable = Vec::new();
    for entry in entries {
        match &entry.events {
            Ok(events) => {
                writes.extend(events.iter().map(|event| EventWrite {
                    partition: lease.partition,
                    position: entry.position,
                    event,
                }));
                origins.extend((0..events.len()).map(|i| (entry.id.as_str(), i)));
            }
            // Not something a retry fixes: set aside, visible, and move on.
            Err(e) => {
                undecodable.push(FailedEvent::undecodable(lease.partition, &entry.id, &e.raw, &e.reason))
            }
        }
    }
    crate::failed::set_aside(ctx, &undecodable).await?;
    // Events whose name the store refuses in a rollup update path are set aside before
    // anything of them is written: raw events, blocks and rollups then agree.
    let probing = Instant::now();
    let refused = crate::failed::refused_names(ctx, &writes, &origins).await?;
    tracing::debug!(
        partition = lease.partition,
        ms = probing.elapsed().as_millis() as u64,
        "event names probed"
    );
    if !refused.is_empty() {
        let failed: Vec<FailedEvent> = refused.iter().map(|(_, f)| f.clone()).collect();
        if !poison.confirmed(&failed) {
            return Err(StoreError::Refused { events: failed.len(), detail: failed[0].detail.clone() }.into());
        }
        crate::failed::set_aside(ctx, &failed).await?;
        // The rest keep their stream order (profiles fold in it).
        let skip: std::collections::HashSet<usize> = refused.iter().map(|(i, _)| *i).collect();
        (writes, origins) = writes
            .into_iter()
            .zip(origins)
            .enumerate()
            .filter(|(i, _)| !skip.contains(i))
            .map(|(_, kept)| kept)
            .unzip();
    }
    let range = (
        entries.first().map(|e| e.position).unwrap_or_default(),
        entries.last().map(|e| e.position).unwrap_or_default(),
    );
    let batch = Batch { lease, range, events: &writes, redelivered, tenure };
    let rollups = BatchRollups { intervals: &ctx.intervals, numeric: &ctx.numeric, tz: &ctx.tz };
    let last_entry = (entries.last().map(|e| e.id.as_str()).unwrap_or_default(), range.1);
    let mut steps = WriterSteps { ctx, lease, last_entry, origins: &origins, events: &writes, poison };
    let store = ctx.store.store_batch(&batch, plan, &rollups, memory, &mut steps);
    let stored = tokio::time::timeout(crate::STORE_TIMEOUT, store).await;
    let stored = stored.map_err(|_| ProcessorError::StoreTimeout(crate::STORE_TIMEOUT))??;
    // Every refusal of this batch is behind it.
    poison.clear();
    Ok(stored)
}

/// What the processor decides in the middle of a batch's store writes: raw events the
/// store keeps refusing are set aside, and the users' profile changes are applied before
/// the seal (once the record is committed, its entries are only acknowledged, so a profile
/// change refused on this try must be retried with them).
struct WriterSteps<'a, 'e> {
    ctx: &'a Context,
    lease: PartitionLease,
    /// The batch's last entry, and its position.
    last_entry: (&'a str, StreamPosition),
    /// Where each event sits in the buffer (entry, index), to name it if it fails.
    origins: &'a [(&'a str, usize)],
    events: &'a [EventWrite<'e>],
    poison: &'a mut PoisonWatch,
}

impl BatchSteps for WriterSteps<'_, '_> {
    type Error = ProcessorError;

    async fn refused(&mut self, refused: &[Refusal]) -> Result<(), ProcessorError> {
        let failed: Vec<FailedEvent> = refused
            .iter()
            .map(|r| {
                let (entry, index) = self.origins[r.index];
                FailedEvent::refused(
                    self.lease.partition,
                    entry,
                    index,
                    self.events[r.index].event,
                    &r.detail,
                )
            })
            .collect();
        // Refused events are flagged false: stored nowhere, counted nowhere. The batch goes
        // on without them only once the refusals held over several tries.
        if !self.poison.confirmed(&failed) {
            return Err(
                StoreError::Refused { events: failed.len(), detail: refused[0].detail.clone() }.into()
            );
        }
        crate::failed::set_aside(self.ctx, &failed).await
    }

    async fn before_seal(
        &mut self,
        first: &[(StreamPosition, &BufferedEvent)],
    ) -> Result<(), ProcessorError> {
        let events: Vec<&BufferedEvent> = first.iter().map(|(_, e)| *e).collect();
        crate::profiles::apply(self.ctx, self.lease, self.last_entry, &events, self.poison).await
    }
}

/// Merges the partition's small event blocks of the days `days` (low rates make small
/// batches) and announces the merged blocks; returns the days left for the next round. A
/// failure leaves them all: blocks stay readable meanwhile.
async fn compact(ctx: &Context, partition: u32, days: CompactionDays) -> CompactionDays {
    let Compacted { merged, left } = match ctx.store.compact_event_blocks(partition, days.clone()).await {
        Ok(compacted) => compacted,
        Err(e) => {
            ctx.metrics.errors.get_or_create(&ErrorLabel { kind: "compaction" }).inc();
            tracing::warn!(partition, error = %e, "event block compaction failed; retrying later");
            return days;
        }
    };
    if merged.is_empty() {
        return left;
    }
    tracing::debug!(partition, blocks = merged.len(), "small event blocks merged");
    let mut conn = ctx.conn.clone();
    if let Err(e) = pulse_buffer::publish_changes(&mut conn, &ctx.tenant, &[], &merged).await {
        tracing::warn!(partition, error = %e, "merged blocks not announced; readers find them in the index");
    }
    left
}

/// Merges the partition's rollup log into a new version (and drops expired periods), and
/// folds each user's profile changes into one. A failure waits for the next round: both
/// stay readable meanwhile.
async fn compact_log(ctx: &Context, partition: u32) {
    let now = jiff::Timestamp::now().as_millisecond();
    match ctx.store.compact_rollup_log(partition, now).await {
        Ok(done) if done.records_merged > 0 => tracing::debug!(
            partition,
            version = done.version,
            records = done.records_merged,
            expired_periods = done.periods_dropped,
            "rollup log compacted"
        ),
        Ok(_) => {}
        Err(e) => {
            ctx.metrics.errors.get_or_create(&ErrorLabel { kind: "compaction" }).inc();
            tracing::warn!(partition, error = %e, "rollup log compaction failed; retrying later");
        }
    }
    match ctx.store.compact_profile_changes(partition).await {
        Ok(done) if done.users > 0 => {
            tracing::debug!(partition, users = done.users, changes = done.replaced, "profile changes folded")
        }
        Ok(_) => {}
        Err(e) => {
            ctx.metrics.errors.get_or_create(&ErrorLabel { kind: "compaction" }).inc();
            tracing::warn!(partition, error = %e, "profile changes not folded; retrying later");
        }
    }
}

/// How many entries to read at once, so that a read holds about a batch of events: an entry
/// holds one ingest request's events for the partition, from one to thousands, and every
/// batch costs a fixed number of bucket updates however few events it has.
pub struct ReadSize {
    pub entries: usize,
}

impl ReadSize {
    /// Sizes the next read from the events per entry of this one, aiming a little under a
    /// batch: a read just over it would be split into a full batch and a small one, which
    /// costs as many period updates as a full one.
    fn adapt(&mut self, entries: &[Entry], batch_events: usize) {
        self.entries = (batch_events * 9 / 10 / events_per_entry(entries)).clamp(1, MAX_READ_ENTRIES);
    }
}

/// How many more entries to read so that `entries` hold about a batch, aiming a little
/// under it as [`ReadSize::adapt`] does; none when they hold that already.
fn top_up(entries: &[Entry], batch_events: usize) -> usize {
    let held = entries.iter().map(events_in).sum::<u64>() as usize;
    let room = (batch_events * 9 / 10).saturating_sub(held);
    (room / events_per_entry(entries)).min(MAX_READ_ENTRIES)
}

/// The events an entry of `entries` holds on average (at least one).
fn events_per_entry(entries: &[Entry]) -> usize {
    let events = entries.iter().map(events_in).sum::<u64>() as usize;
    (events / entries.len().max(1)).max(1)
}

/// Renews the lease every third of its lifetime; reports loss when it is taken or when no
/// renewal succeeded for a whole lifetime (Redis unreachable: the lease has expired).
async fn renew(ctx: Arc<Context>, partition: u32, lost: watch::Sender<bool>) {
    let keys = PartitionLeaseKeys::new(&ctx.tenant, partition);
    let mut conn = ctx.conn.clone();
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(lease_ttl() / 3).await;
        match keys.renew(&mut conn, &ctx.owner).await {
            Ok(true) => last_ok = Instant::now(),
            Ok(false) => {
                let _ = lost.send(true);
                return;
            }
            Err(e) => {
                tracing::warn!(partition, error = %e, "lease renewal failed");
                if last_ok.elapsed() >= lease_ttl() {
                    let _ = lost.send(true);
                    return;
                }
            }
        }
    }
}

/// Exponential backoff from 100 ms to 5 s.
#[derive(Default)]
struct Backoff {
    attempts: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        self.attempts = self.attempts.saturating_add(1);
        (Duration::from_millis(100) * 2u32.saturating_pow(self.attempts.min(10) - 1)).min(BACKOFF_MAX)
    }

    fn reset(&mut self) {
        self.attempts = 0;
    }
}

/// How many events an entry holds (none when undecodable).
fn events_in(entry: &Entry) -> u64 {
    entry.events.as_ref().map(|v| v.len() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compactions_wait_for_a_caught_up_writer_but_not_forever() {
        let (every, latest) = (Duration::from_secs(60), Duration::from_secs(600));
        assert!(!due(Duration::from_secs(59), true, every, latest), "not yet");
        assert!(due(Duration::from_secs(60), true, every, latest), "caught up: due");
        assert!(!due(Duration::from_secs(300), false, every, latest), "a backlog waits first");
        assert!(due(Duration::from_secs(600), false, every, latest), "but not past the latest");
    }

    fn entries(count: usize, events_each: usize) -> Vec<Entry> {
        let event = BufferedEvent {
            event_id: "e".into(),
            id_generated: false,
            event: "view".into(),
            distinct_id: "u".into(),
            timestamp: 0,
            received_at: 0,
            properties: Default::default(),
        };
        (0..count)
            .map(|i| Entry {
                id: format!("1-{i}"),
                position: StreamPosition::default(),
                events: Ok(vec![event.clone(); events_each]),
            })
            .collect()
    }

    #[test]
    fn a_batch_is_topped_up_to_a_little_under_its_size() {
        // 10 entries of 100 events, batches of 2,000: 800 more events make 1,800.
        assert_eq!(top_up(&entries(10, 100), 2_000), 8);
        assert_eq!(top_up(&entries(18, 100), 2_000), 0, "full enough");
        assert_eq!(top_up(&entries(3, 1_000), 2_000), 0, "over a batch already");
        // Entries of no event (undecodable) hold no room, and the next are taken as one each.
        assert_eq!(top_up(&entries(5, 0), 10), 9);
        assert_eq!(top_up(&entries(1, 1), 1_000_000), MAX_READ_ENTRIES, "a read stays bounded");
    }
}
