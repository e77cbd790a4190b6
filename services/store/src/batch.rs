//! A batch of one partition's stream entries, stored as one record of the partition's
//! rollup log: the one place that knows the order of a batch's writes (docs/exactness.md).
//!
//! 1. the record's first ballot (a writer that lost the record stops here);
//! 2. the raw events, one per id and UTC day (refusals handed to the writer);
//! 3. at once, as none reads another: their event blocks (before the entries are
//!    acknowledged, so none is missing), the user lists of the record's delta, and what the
//!    writer adds before the seal (the processor's profile changes: once the record is
//!    committed, its entries are only acknowledged);
//! 4. the seal (a writer that was overtaken in the meantime stops here), then the delta.
//!
//! The processor, the history loader and the tests that need stored data all go through
//! [`Store::store_batch`]; tools without a stream use [`Store::store_next_batch`] or, for
//! events already stored raw, [`Store::apply_rollups`].

use std::future::Future;
use std::time::{Duration, Instant};

use pulse_core::buffer::BufferedEvent;
use pulse_core::rollup::StreamPosition;

use crate::log::{Ballot, LogState};
use crate::memory::WriterMemory;
use crate::rollups::{BatchRollups, PartitionLease, RecordAttempt, RecordDelta};
use crate::{EventWrite, Refusal, Store, StoreError};

/// How long a record another writer began may go without progress before a writer does it
/// again: long enough for a live writer's batch, short next to a lease's lifetime.
pub const STEAL_AFTER_MS: i64 = 5_000;

/// Which record of the log a batch writes, and the ballot it takes first (none when the
/// record is sealed and only its delta is missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPlan {
    pub attempt: RecordAttempt,
    pub ballot: Option<u32>,
}

impl RecordPlan {
    /// The record a batch of entries `range` writes, given the log as the writer `tenure`
    /// knows it at `now` (ms): the next one, or the open one when the batch is its entries.
    /// Anything else is [`StoreError::Moved`]: entries the log counts already, a record of
    /// other entries, or one another writer is still at.
    pub fn for_batch(
        log: &LogState,
        range: (StreamPosition, StreamPosition),
        tenure: &str,
        now: i64,
    ) -> Result<Self, StoreError> {
        let Some(open) = &log.open else {
            if range.0 <= log.tail.last {
                return Err(StoreError::Moved(format!(
                    "entries up to {:?} of the rollup log",
                    log.tail.last
                )));
            }
            return Ok(RecordPlan {
                attempt: RecordAttempt { record: log.tail.record + 1, redo: false },
                ballot: Some(0),
            });
        };
        let record = format!("record {} of the rollup log", open.record);
        if (open.first, open.last) != range {
            return Err(StoreError::Moved(record));
        }
        let attempt = RecordAttempt { record: open.record, redo: true };
        if open.sealed {
            return Ok(RecordPlan { attempt, ballot: None });
        }
        if open.by != tenure && now - open.at < STEAL_AFTER_MS {
            // Another writer is at it (a lease that passed while it was paused): let it finish.
            return Err(StoreError::Moved(record));
        }
        Ok(RecordPlan { attempt, ballot: Some(open.ballot + 1) })
    }
}

/// A batch to store: a partition's entries `range` (first and last), their events in stream
/// order, and the writer's tenure (`<owner>#<fence>`), which its ballots carry.
#[derive(Clone, Copy)]
pub struct Batch<'a, 'e> {
    pub lease: PartitionLease,
    pub range: (StreamPosition, StreamPosition),
    pub events: &'a [EventWrite<'e>],
    /// The entries were delivered before (maybe partly stored): existing ids are looked up.
    pub redelivered: bool,
    pub tenure: &'a str,
}

/// What a writer decides in the middle of a batch.
pub trait BatchSteps {
    type Error: From<StoreError>;

    /// The store refused these raw events (indexes into the batch's events), and stored the
    /// others: `Ok` goes on without them (stored nowhere, counted nowhere), an error stops
    /// the batch, to be tried again.
    fn refused(&mut self, refused: &[Refusal]) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The events the batch stored first, once their rollups are claimed and before the
    /// record is sealed.
    fn before_seal(
        &mut self,
        first: &[(StreamPosition, &BufferedEvent)],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The steps of a writer with nothing to add: a refusal stops the batch.
pub struct PlainSteps;

impl BatchSteps for PlainSteps {
    type Error = StoreError;

    async fn refused(&mut self, refused: &[Refusal]) -> Result<(), StoreError> {
        let detail = refused.first().map(|r| r.detail.clone()).unwrap_or_default();
        Err(StoreError::Refused { events: refused.len(), detail })
    }

    async fn before_seal(&mut self, _first: &[(StreamPosition, &BufferedEvent)]) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What a stored batch changed: the events its entries stored first (stream order), the
/// event blocks it wrote, and the period documents its record changed (as change notices
/// name them, `<interval>|<start>|p<partition>`).
#[derive(Debug)]
pub struct StoredBatch<'e> {
    pub first: Vec<(StreamPosition, &'e BufferedEvent)>,
    pub blocks: Vec<String>,
    pub periods: Vec<String>,
}

impl Store {
    /// Stores `batch` as the record `plan` says, in the order of the module docs. Safe to
    /// repeat with the same entries; after an error, the writer reads the log again.
    pub async fn store_batch<'e, S: BatchSteps>(
        &self,
        batch: &Batch<'_, 'e>,
        plan: RecordPlan,
        rollups: &BatchRollups<'_>,
        memory: &mut WriterMemory,
        steps: &mut S,
    ) -> Result<StoredBatch<'e>, S::Error> {
        let started = Instant::now();
        let partition = batch.lease.partition;
        self.begin_record(partition, plan, batch.range, batch.tenure).await?;
        let balloted = started.elapsed();
        // A redo looks up what earlier attempts of the record stored.
        let outcome =
            self.insert_events_or_refuse(batch.events, batch.redelivered || plan.attempt.redo).await?;
        if !outcome.refused.is_empty() {
            steps.refused(&outcome.refused).await?;
        }
        let inserted = started.elapsed();
        let first: Vec<(StreamPosition, &'e BufferedEvent)> = batch
            .events
            .iter()
            .zip(&outcome.flags)
            .filter(|(_, stored)| **stored)
            .map(|(w, _)| (w.position, w.event))
            .collect();
        // The blocks, the user lists and the writer's own writes wait on the store at once:
        // a batch's fixed cost is its round trips, and these three need only `first`.
        // Blocks hold exactly the raw-stored versions, so every copy of an event id in
        // blocks equals its raw document.
        let blocks = timed(self.write_event_blocks(partition, batch.range.0, batch.range.1, &first));
        let delta = timed(self.rollup_delta(batch.lease, plan.attempt, &first, rollups, memory));
        let before_seal = timed(steps.before_seal(&first));
        let ((blocks, blocks_took), (delta, claims_took), ((), before_seal_took)) =
            tokio::try_join!(from_store::<_, S>(blocks), from_store::<_, S>(delta), before_seal)?;
        let written = started.elapsed();
        self.seal_record(partition, plan, batch.range, batch.tenure, &delta, memory).await?;
        let recorded = started.elapsed();
        tracing::debug!(
            partition,
            events = batch.events.len(),
            ballot_ms = balloted.as_millis() as u64,
            insert_ms = (inserted - balloted).as_millis() as u64,
            blocks_ms = blocks_took.as_millis() as u64,
            claims_ms = claims_took.as_millis() as u64,
            before_seal_ms = before_seal_took.as_millis() as u64,
            written_ms = (written - inserted).as_millis() as u64,
            record_ms = (recorded - written).as_millis() as u64,
            "batch stored"
        );
        Ok(StoredBatch { first, blocks, periods: delta.period_doc_ids(partition) })
    }

    /// Stores `events` (one partition's, in stream order, positions after the log's end) as
    /// the partition's next record, with nothing to decide in between (a refusal is an
    /// error). For tools and tests that store events without a stream.
    pub async fn store_next_batch<'e>(
        &self,
        lease: PartitionLease,
        events: &[EventWrite<'e>],
        rollups: &BatchRollups<'_>,
        memory: &mut WriterMemory,
    ) -> Result<StoredBatch<'e>, StoreError> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(StoredBatch { first: Vec::new(), blocks: Vec::new(), periods: Vec::new() });
        };
        let tenure = format!("p{}#{}", lease.partition, lease.fence);
        let range = (first.position, last.position);
        let log = self.log_state(lease.partition).await?;
        let plan = RecordPlan::for_batch(&log, range, &tenure, jiff::Timestamp::now().as_millisecond())?;
        let batch = Batch { lease, range, events, redelivered: false, tenure: &tenure };
        self.store_batch(&batch, plan, rollups, memory, &mut PlainSteps).await
    }

    /// Applies a batch's events (those its entries stored first, in stream order, already
    /// in the event blocks) as the partition's next record of the rollup log, the way
    /// [`Store::store_batch`] does after its raw insert and blocks: takes the record (or
    /// redoes the one left open), claims users, seals and commits. Entries the log already
    /// counts change nothing. For tools and tests that drive the rules step by step.
    pub async fn apply_rollups(
        &self,
        lease: PartitionLease,
        last: StreamPosition,
        events: &[(StreamPosition, &BufferedEvent)],
        rollups: &BatchRollups<'_>,
        memory: &mut WriterMemory,
    ) -> Result<(), StoreError> {
        let partition = lease.partition;
        let log = self.log_state(partition).await?;
        if last <= log.tail.last {
            return Ok(());
        }
        // Entries the log counts already are skipped, as the processor acknowledges them.
        let counted = events.iter().take_while(|(p, _)| *p <= log.tail.last).count();
        let events = &events[counted..];
        let first = events.first().map(|(p, _)| *p).unwrap_or(last);
        let tenure = format!("p{partition}#{}", lease.fence);
        // An open record is redone whatever its writer (the caller is its writer's stand-in).
        let (plan, range) = match &log.open {
            Some(open) => {
                let attempt = RecordAttempt { record: open.record, redo: true };
                let ballot = (!open.sealed).then_some(open.ballot + 1);
                (RecordPlan { attempt, ballot }, (open.first, open.last))
            }
            None => (
                RecordPlan {
                    attempt: RecordAttempt { record: log.tail.record + 1, redo: false },
                    ballot: Some(0),
                },
                (first, last),
            ),
        };
        self.begin_record(partition, plan, range, &tenure).await?;
        let delta = self.rollup_delta(lease, plan.attempt, events, rollups, memory).await?;
        self.seal_record(partition, plan, range, &tenure, &delta, memory).await
    }

    /// Takes the plan's first ballot of its record: a record another writer took over
    /// since is [`StoreError::Moved`].
    async fn begin_record(
        &self,
        partition: u32,
        plan: RecordPlan,
        range: (StreamPosition, StreamPosition),
        tenure: &str,
    ) -> Result<(), StoreError> {
        match plan.ballot {
            Some(ballot)
                if !self
                    .take_ballot(partition, plan.attempt.record, ballot, Ballot::Begin, range, tenure)
                    .await? =>
            {
                Err(taken(plan.attempt.record, ballot))
            }
            _ => Ok(()),
        }
    }

    /// Seals the attempt (unless it was sealed already), commits the record with its delta,
    /// and tells `memory` the users it counted.
    async fn seal_record(
        &self,
        partition: u32,
        plan: RecordPlan,
        range: (StreamPosition, StreamPosition),
        tenure: &str,
        delta: &RecordDelta,
        memory: &mut WriterMemory,
    ) -> Result<(), StoreError> {
        let record = plan.attempt.record;
        if let Some(ballot) = plan.ballot
            && !self.take_ballot(partition, record, ballot + 1, Ballot::Seal, range, tenure).await?
        {
            return Err(taken(record, ballot + 1));
        }
        self.commit_record(partition, record, range, delta.periods.clone()).await?;
        delta.remember(memory);
        Ok(())
    }
}

/// Runs a step of a batch and says how long it took (the steps of a batch overlap).
async fn timed<T, E>(step: impl Future<Output = Result<T, E>>) -> Result<(T, Duration), E> {
    let started = Instant::now();
    let done = step.await?;
    Ok((done, started.elapsed()))
}

/// A store step's outcome in the writer's error type.
async fn from_store<T, S: BatchSteps>(
    step: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, S::Error> {
    Ok(step.await?)
}

fn taken(record: u64, ballot: u32) -> StoreError {
    StoreError::Moved(format!("ballot {ballot} of record {record} of the rollup log"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{LogTail, OpenRecord};

    fn pos(millis: u64) -> StreamPosition {
        StreamPosition { millis, sequence: 0 }
    }

    #[test]
    fn a_batch_writes_the_next_record_or_redoes_the_open_one_with_its_entries() {
        let tail = LogTail { record: 7, last: pos(100) };
        let log = LogState { tail, open: None, records: 7 };
        let next = RecordPlan::for_batch(&log, (pos(101), pos(150)), "a#1", 0).expect("next");
        assert_eq!(next, RecordPlan { attempt: RecordAttempt { record: 8, redo: false }, ballot: Some(0) });
        assert!(matches!(
            RecordPlan::for_batch(&log, (pos(90), pos(150)), "a#1", 0),
            Err(StoreError::Moved(_))
        ));

        let open = OpenRecord {
            record: 8,
            first: pos(101),
            last: pos(150),
            ballot: 2,
            sealed: false,
            by: "b#2".into(),
            at: 1_000,
        };
        let log = LogState { tail, open: Some(open.clone()), records: 7 };
        let redo = RecordAttempt { record: 8, redo: true };
        // Another writer's fresh attempt is left to it; a stale one, or one's own, is redone.
        assert!(matches!(
            RecordPlan::for_batch(&log, (pos(101), pos(150)), "a#1", 1_000 + 4_999),
            Err(StoreError::Moved(_))
        ));
        let stolen = RecordPlan::for_batch(&log, (pos(101), pos(150)), "a#1", 1_000 + STEAL_AFTER_MS);
        assert_eq!(stolen.expect("stale"), RecordPlan { attempt: redo, ballot: Some(3) });
        let own = RecordPlan::for_batch(&log, (pos(101), pos(150)), "b#2", 1_000);
        assert_eq!(own.expect("own"), RecordPlan { attempt: redo, ballot: Some(3) });
        // Other entries than the open record's are not this record.
        assert!(matches!(
            RecordPlan::for_batch(&log, (pos(101), pos(149)), "b#2", 1_000),
            Err(StoreError::Moved(_))
        ));
        // A sealed record only misses its delta: no ballot.
        let sealed = LogState { tail, open: Some(OpenRecord { sealed: true, ..open }), records: 7 };
        let plan = RecordPlan::for_batch(&sealed, (pos(101), pos(150)), "a#1", 0).expect("sealed");
        assert_eq!(plan, RecordPlan { attempt: redo, ballot: None });
    }
}
