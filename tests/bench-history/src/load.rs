//! One partition's share of the history, stored batch by batch through the processor's own
//! `store_entries`: the same raw inserts, event blocks, rollup updates and profile updates,
//! with the same writer memory, as the processor's batches.

use std::collections::VecDeque;
use std::time::Duration;

use pulse_core::buffer::BufferedEvent;
use pulse_core::rollup::StreamPosition;
use pulse_processor::StoreTurn;
use pulse_processor::stream::Entry;
use pulse_processor::worker::{WriterState, store_entries};
use pulse_processor::{Context, ProcessorError};
use pulse_store::PartitionLease;

/// Tries of one batch before the load gives up (store errors other than a timeout).
const TRIES: u32 = 5;

/// Why a partition's load stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("partition {partition}: a batch failed {TRIES} times, last: {source}")]
    Store {
        partition: u32,
        #[source]
        source: ProcessorError,
    },
}

/// What the partitions' loads did, added up.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoadStats {
    pub events: u64,
    pub batches: u64,
    /// Batches that ran past the processor's store timeout and were split in two.
    pub splits: u64,
    /// Batches retried after another store error.
    pub retries: u64,
}

impl LoadStats {
    pub fn add(&mut self, other: LoadStats) {
        self.events += other.events;
        self.batches += other.batches;
        self.splits += other.splits;
        self.retries += other.retries;
    }
}

/// A partition's writer: its lease, its tenure state, and the entries not stored yet.
pub struct PartitionLoad {
    pub lease: PartitionLease,
    state: WriterState,
    pending: Vec<Entry>,
    pending_events: usize,
    run_ms: u64,
    next_sequence: u64,
    /// The most entries a batch may have: halved when a batch ran past the store timeout
    /// (the store only slows as it fills), so later batches do not wait for it again.
    max_entries: usize,
}

impl PartitionLoad {
    /// `run_ms`: the run's start, epoch milliseconds (the positions' time).
    pub fn new(lease: PartitionLease, partitions: u32, run_ms: u64) -> Self {
        PartitionLoad {
            lease,
            state: WriterState::new(partitions, std::time::Instant::now()),
            pending: Vec::new(),
            pending_events: 0,
            run_ms,
            next_sequence: 0,
            max_entries: usize::MAX,
        }
    }

    /// Appends one request's events as a stream entry. Positions continue after everything
    /// the partition has stored, as a stream read now would: the run's start time and a
    /// counter (a later run, or the processor's later entries, come after it; a history
    /// loaded in several runs goes back in time, so its receive times cannot be positions).
    pub fn push(&mut self, events: Vec<BufferedEvent>) {
        let position = StreamPosition { millis: self.run_ms, sequence: self.next_sequence };
        self.next_sequence += 1;
        self.pending_events += events.len();
        self.pending.push(Entry {
            id: format!("{}-{}", position.millis, position.sequence),
            position,
            events: Ok(events),
        });
    }

    /// Takes the pending entries as batches of at most `batch_events` events (at least one
    /// entry each), cut as the processor cuts a read; a last partial batch only if `all`.
    pub fn take_batches(&mut self, batch_events: usize, all: bool) -> Vec<Vec<Entry>> {
        let mut batches = Vec::new();
        let mut current = Vec::new();
        let mut events = 0;
        let mut rest = std::mem::take(&mut self.pending).into_iter();
        for entry in rest.by_ref() {
            let n = entry.events.as_ref().map(Vec::len).unwrap_or(0);
            if !current.is_empty() && events + n > batch_events {
                batches.push(std::mem::take(&mut current));
                events = 0;
            }
            events += n;
            current.push(entry);
        }
        if all || events >= batch_events {
            if !current.is_empty() {
                batches.push(current);
            }
            self.pending_events = 0;
        } else {
            self.pending_events = events;
            self.pending = current;
        }
        batches
    }

    /// Stores `batches` in order. A batch that runs past the processor's store timeout is
    /// stored again as a redelivery, as the processor would retry it, and later batches are
    /// halved; other errors are retried with backoff.
    pub async fn store(&mut self, ctx: &Context, batches: Vec<Vec<Entry>>) -> Result<LoadStats, LoadError> {
        let mut stats = LoadStats::default();
        let mut queue: VecDeque<(Vec<Entry>, bool)> = batches.into_iter().map(|b| (b, false)).collect();
        while let Some((mut batch, mut redelivered)) = queue.pop_front() {
            if batch.len() > self.max_entries {
                let rest = batch.split_off(self.max_entries);
                queue.push_front((rest, redelivered));
            }
            let mut tries = 0;
            loop {
                tries += 1;
                // As the processor's writers, at most `STORE_TURNS` batches at once.
                let turn = StoreTurn::take(ctx).await;
                match store_entries(ctx, self.lease, &batch, redelivered, &mut self.state, &turn).await {
                    Ok(stored) => {
                        stats.events += stored.first.len() as u64;
                        stats.batches += 1;
                        break;
                    }
                    Err(ProcessorError::StoreTimeout(_)) if batch.len() > 1 => {
                        // The timed-out attempt may have begun the batch's record of the
                        // rollup log: the same entries finish it (a redo); later batches
                        // are smaller.
                        self.state.forget();
                        stats.splits += 1;
                        self.max_entries = batch.len() / 2;
                        redelivered = true;
                    }
                    Err(source) if tries >= TRIES => {
                        return Err(LoadError::Store { partition: self.lease.partition, source });
                    }
                    Err(e) => {
                        // The write's outcome is unknown: forget, and store it again as a
                        // redelivery (safe to repeat).
                        self.state.forget();
                        stats.retries += 1;
                        eprintln!("  partition {}: batch failed ({e}); retrying", self.lease.partition);
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(tries))).await;
                        redelivered = true;
                    }
                }
            }
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize) -> Vec<BufferedEvent> {
        (0..n)
            .map(|i| BufferedEvent {
                event_id: format!("e{i}"),
                id_generated: false,
                event: "page_viewed".into(),
                distinct_id: "u".into(),
                timestamp: 1,
                received_at: 1,
                properties: Default::default(),
            })
            .collect()
    }

    fn load() -> PartitionLoad {
        PartitionLoad::new(PartitionLease { partition: 0, fence: 1 }, 8, 1_000)
    }

    #[test]
    fn positions_only_grow() {
        let mut p = load();
        for _ in 0..3 {
            p.push(events(1));
        }
        let ids: Vec<&str> = p.pending.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["1000-0", "1000-1", "1000-2"]);
        assert!(p.pending.windows(2).all(|w| w[0].position < w[1].position));
    }

    #[test]
    fn batches_are_full_until_the_end() {
        let mut p = load();
        for _ in 0..7 {
            p.push(events(3));
        }
        let full = p.take_batches(10, false);
        assert_eq!(full.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3]);
        assert_eq!(p.pending.len(), 1);
        p.push(events(9));
        let rest = p.take_batches(10, true);
        assert_eq!(rest.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
        assert!(p.pending.is_empty());
    }
}
