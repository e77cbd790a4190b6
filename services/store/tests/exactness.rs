//! The exactness rules against a real MongoDB-wire server: redelivery, different batch
//! boundaries on retry, duplicates, a crash between the raw insert and the rollups or in
//! the middle of a record of the rollup log, two writers of one partition at once, and the
//! rebuild, each leaving the rollups equal to a recount; with a writer that remembers, one
//! that restarts before every batch (and reads every period's user lists), and one whose memory is
//! too small.

use pulse_core::buffer::BufferedEvent;
use pulse_core::config::RollupInterval;
use pulse_core::property::PropertyPath;
use pulse_core::rollup::{StreamPosition, time_zone};
use pulse_store::recount::BucketTotals;
use std::collections::HashMap;

use pulse_store::{
    Ballot, BatchRollups, EventWrite, PartitionLease, RecordAttempt, Store, StoreError, WriterMemory,
};
use pulse_testkit::{FerretDb, unique_name};

const INTERVALS: [RollupInterval; 3] = [RollupInterval::Minute, RollupInterval::Hour, RollupInterval::Day];

fn event(id: &str, user: &str, name: &str, ts: i64, revenue: f64) -> BufferedEvent {
    BufferedEvent {
        event_id: id.to_string(),
        id_generated: false,
        event: name.to_string(),
        distinct_id: user.to_string(),
        timestamp: ts,
        received_at: ts,
        properties: serde_json::json!({ "revenue": revenue, "a.b": { "$c": 1 } })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    }
}

fn pos(n: u64) -> StreamPosition {
    StreamPosition { millis: 1_000 + n, sequence: 0 }
}

/// How long a writer's memory lives in a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tenure {
    /// Every batch as if its writer had just restarted: nothing remembered.
    Restarted,
    /// One memory per lease, kept across its batches, as a long-running writer has.
    Kept,
    /// Kept, but so small that it forgets periods all the time and learns them again.
    Forgetful,
}

/// Each scenario runs with all three.
const TENURES: [Tenure; 3] = [Tenure::Restarted, Tenure::Kept, Tenure::Forgetful];

struct Fixture {
    store: Store,
    numeric: Vec<PropertyPath>,
    tz: jiff::tz::TimeZone,
    tenure: Tenure,
    memories: std::sync::Mutex<HashMap<(u32, u64), WriterMemory>>,
}

impl Fixture {
    async fn new(ferret: &FerretDb, tenure: Tenure) -> Self {
        let client = ferret.client().await.expect("client");
        let store = Store::new(client.database(&unique_name("tenant")));
        store.ensure_schema().await.expect("schema");
        Fixture {
            store,
            numeric: vec!["revenue".parse().expect("path")],
            tz: time_zone("Europe/Berlin").expect("tz"),
            tenure,
            memories: Default::default(),
        }
    }

    fn rollups(&self) -> BatchRollups<'_> {
        BatchRollups { intervals: &INTERVALS, numeric: &self.numeric, tz: &self.tz }
    }

    /// What the processor does with one batch of one partition's entries.
    /// (As a redelivery: every scenario here may repeat entries.)
    async fn process(
        &self,
        lease: PartitionLease,
        batch: &[(StreamPosition, &BufferedEvent)],
    ) -> Result<(), StoreError> {
        self.process_as(lease, batch, true).await
    }

    async fn process_as(
        &self,
        lease: PartitionLease,
        batch: &[(StreamPosition, &BufferedEvent)],
        redelivered: bool,
    ) -> Result<(), StoreError> {
        let writes: Vec<EventWrite<'_>> = batch
            .iter()
            .map(|(p, e)| EventWrite { partition: lease.partition, position: *p, event: e })
            .collect();
        let flags = self.store.insert_events(&writes, redelivered).await?;
        let first: Vec<(StreamPosition, &BufferedEvent)> =
            batch.iter().zip(&flags).filter(|(_, f)| **f).map(|((p, e), _)| (*p, *e)).collect();
        let last = batch.last().map(|(p, _)| *p).unwrap_or_default();
        let start = batch.first().map(|(p, _)| *p).unwrap_or_default();
        self.store.write_event_blocks(lease.partition, start, last, &first).await?;
        self.apply(lease, last, &first).await
    }

    /// The rollups step alone, with the writer's memory as the tenure has it (kept after an
    /// error too: a memory drops what it knows when its next record does not follow).
    async fn apply(
        &self,
        lease: PartitionLease,
        last: StreamPosition,
        first: &[(StreamPosition, &BufferedEvent)],
    ) -> Result<(), StoreError> {
        let key = (lease.partition, lease.fence);
        let mut memory = match self.tenure {
            // A restarted writer reads the user lists of every period it touches.
            Tenure::Restarted => WriterMemory::default(),
            Tenure::Kept => self.memories().remove(&key).unwrap_or_default(),
            Tenure::Forgetful => {
                self.memories().remove(&key).unwrap_or_else(|| WriterMemory::with_capacity(4))
            }
        };
        let applied = self.store.apply_rollups(lease, last, first, &self.rollups(), &mut memory).await;
        if self.tenure != Tenure::Restarted {
            self.memories().insert(key, memory);
        }
        applied
    }

    fn memories(&self) -> std::sync::MutexGuard<'_, HashMap<(u32, u64), WriterMemory>> {
        self.memories.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn assert_exact(&self) {
        let recount = self.store.recount(&self.rollups()).await.expect("recount");
        let stored = self.store.stored_rollups().await.expect("stored");
        assert_eq!(recount.keys().collect::<Vec<_>>(), stored.keys().collect::<Vec<_>>(), "the same buckets");
        for (id, want) in &recount {
            let got: &BucketTotals = &stored[id];
            assert!(got.agrees_with(want), "bucket {id}: stored {got:?}, recount {want:?}");
        }
    }
}

fn sample() -> Vec<BufferedEvent> {
    sample_of_users(9)
}

/// 60 events of `users` users (user i % users), shuffled in time.
fn sample_of_users(users: usize) -> Vec<BufferedEvent> {
    let t0 = 1_790_000_000_000i64;
    (0..60)
        .map(|i| {
            let ts = t0 + ((i * 7919) % 50) as i64 * 47_000; // shuffled across minutes and hours
            event(
                &format!("e{i}"),
                &format!("u{}", i % users),
                if i % 3 == 0 { "purchase" } else { "view" },
                ts,
                i as f64 * 1.25,
            )
        })
        .collect()
}

#[tokio::test]
async fn redelivered_and_rebatched_entries_count_once() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    for tenure in TENURES {
        let f = Fixture::new(&ferret, tenure).await;
        let events = sample();
        let entries: Vec<(StreamPosition, &BufferedEvent)> =
            events.iter().enumerate().map(|(i, e)| (pos(i as u64 / 3), e)).collect();
        let lease = PartitionLease { partition: 0, fence: 1 };

        f.process(lease, &entries[..30]).await.expect("first batch");
        f.process(lease, &entries[..30]).await.expect("redelivered");
        // A retry that cuts batches differently: overlapping the applied range.
        f.process(lease, &entries[15..45]).await.expect("overlapping batch");
        f.process(lease, &entries[45..]).await.expect("rest");
        f.assert_exact().await;
    }
}

#[tokio::test]
async fn a_crash_after_the_raw_insert_is_repaired_by_the_redelivery() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    for tenure in TENURES {
        let f = Fixture::new(&ferret, tenure).await;
        let events = sample();
        let entries: Vec<(StreamPosition, &BufferedEvent)> =
            events.iter().enumerate().map(|(i, e)| (pos(i as u64), e)).collect();
        let lease = PartitionLease { partition: 2, fence: 1 };
        // The crash: raw events stored, rollups not applied.
        let writes: Vec<EventWrite<'_>> =
            entries[..40].iter().map(|(p, e)| EventWrite { partition: 2, position: *p, event: e }).collect();
        f.store.insert_events(&writes, false).await.expect("raw insert");
        // Redelivery with another batch size.
        f.process(lease, &entries[..20]).await.expect("redelivery 1");
        f.process(lease, &entries[20..]).await.expect("redelivery 2");
        f.assert_exact().await;
    }
}

/// Where a writer stops in the middle of a record of the log.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CrashAt {
    /// It took the record, stored raw events and blocks, and wrote its user lists.
    BeforeTheSeal,
    /// It sealed the record: only the delta is missing.
    BeforeTheDelta,
}

#[tokio::test]
async fn a_crash_in_the_middle_of_a_record_is_repaired_by_the_next_writer() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    for crash in [CrashAt::BeforeTheSeal, CrashAt::BeforeTheDelta] {
        for tenure in TENURES {
            let f = Fixture::new(&ferret, tenure).await;
            // Users new in the crashed batch, and users seen before and after it.
            let events = sample_of_users(45);
            let entries: Vec<(StreamPosition, &BufferedEvent)> =
                events.iter().enumerate().map(|(i, e)| (pos(i as u64), e)).collect();
            let lease = PartitionLease { partition: 3, fence: 1 };
            f.process(lease, &entries[..10]).await.expect("an earlier batch");
            // The crashed attempt at record 2: entries 10..40.
            let batch = &entries[10..40];
            let range = (pos(10), pos(39));
            assert!(f.store.take_ballot(3, 2, 0, Ballot::Begin, range, "old").await.expect("ballot"));
            let writes: Vec<EventWrite<'_>> =
                batch.iter().map(|(p, e)| EventWrite { partition: 3, position: *p, event: e }).collect();
            f.store.insert_events(&writes, false).await.expect("raw insert");
            f.store.write_event_blocks(3, pos(10), pos(39), batch).await.expect("blocks");
            let attempt = RecordAttempt { record: 2, redo: false };
            let mut memory = WriterMemory::default();
            f.store.rollup_delta(lease, attempt, batch, &f.rollups(), &mut memory).await.expect("user lists");
            if crash == CrashAt::BeforeTheDelta {
                assert!(f.store.take_ballot(3, 2, 1, Ballot::Seal, range, "old").await.expect("seal"));
            }
            // The next writer finds the record open and writes it again, then goes on.
            let next = PartitionLease { partition: 3, fence: 2 };
            f.process(next, batch).await.expect("the open record, again");
            f.process(next, &entries[25..50]).await.expect("a redelivery cut otherwise, and new entries");
            f.process(next, &entries[50..]).await.expect("the rest");
            // The crashed writer wakes up: its seal comes too late.
            if crash == CrashAt::BeforeTheSeal {
                let late = f.store.take_ballot(3, 2, 1, Ballot::Seal, range, "old").await.expect("late seal");
                assert!(!late, "{crash:?} {tenure:?}: the redo took the ballot the seal needs");
            }
            f.assert_exact().await;
        }
    }
}

#[tokio::test]
async fn duplicates_in_later_entries_and_in_one_entry_count_once() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    for tenure in TENURES {
        let f = Fixture::new(&ferret, tenure).await;
        let events = sample();
        let mut entries: Vec<(StreamPosition, &BufferedEvent)> =
            events.iter().enumerate().map(|(i, e)| (pos(i as u64), e)).collect();
        // A client retry: the same events again in later entries, and twice in one entry.
        for (i, e) in events.iter().take(10).enumerate() {
            entries.push((pos(100 + i as u64 / 2), e));
        }
        let lease = PartitionLease { partition: 1, fence: 1 };
        // First deliveries: duplicates are recognised without any lookup.
        f.process_as(lease, &entries[..35], false).await.expect("batch 1");
        f.process_as(lease, &entries[35..], false).await.expect("batch 2");
        f.assert_exact().await;
        let stored = f.store.stored_rollups().await.expect("stored");
        let total: u64 = stored.iter().filter(|(id, _)| id.starts_with("day|")).map(|(_, t)| t.events).sum();
        assert_eq!(total, 60, "60 distinct events, duplicates not counted");
    }
}

#[tokio::test]
async fn two_partitions_share_buckets_and_two_writers_of_one_partition_count_once() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    for tenure in TENURES {
        let f = Fixture::new(&ferret, tenure).await;
        let events = sample();
        let (a, b): (Vec<_>, Vec<_>) = events.iter().partition(|e| e.distinct_id.as_str() < "u5");
        let a: Vec<(StreamPosition, &BufferedEvent)> =
            a.into_iter().enumerate().map(|(i, e)| (pos(i as u64), e)).collect();
        let b: Vec<(StreamPosition, &BufferedEvent)> =
            b.into_iter().enumerate().map(|(i, e)| (pos(i as u64), e)).collect();
        let (pa, pb) = (PartitionLease { partition: 0, fence: 5 }, PartitionLease { partition: 1, fence: 3 });
        let (ra, rb) = tokio::join!(f.process(pa, &a[..a.len() / 2]), f.process(pb, &b));
        ra.expect("partition 0");
        rb.expect("partition 1");
        // The lease of partition 0 moved on to token 6 while the old holder (5) still runs:
        // both write the same entries at the same time. One takes the record; the other is
        // told so, or finds the entries counted.
        let newer = PartitionLease { partition: 0, fence: 6 };
        let rest = &a[a.len() / 2..];
        let (old, new) = tokio::join!(f.process(pa, rest), f.process(newer, rest));
        assert!(old.is_ok() || new.is_ok(), "one of them wrote: {old:?} {new:?}");
        for r in [old, new] {
            assert!(matches!(r, Ok(()) | Err(StoreError::Moved(_))), "{r:?}");
        }
        // The one that was told tries again and finds nothing left to count.
        f.process(pa, rest).await.expect("the old holder's retry");
        f.process(newer, rest).await.expect("the new holder's retry");
        f.assert_exact().await;
    }
}

#[tokio::test]
async fn a_writer_whose_memory_fell_behind_the_log_does_not_count_a_user_twice() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    for tenure in TENURES {
        let f = Fixture::new(&ferret, tenure).await;
        // Each third of the entries brings a user new to the day and hour, who comes back
        // in the next third.
        let t0 = 1_790_000_000_000i64;
        let events: Vec<BufferedEvent> = (0..60)
            .map(|i| {
                event(&format!("e{i}"), &format!("u{}", (i / 20 + i % 2) % 4), "view", t0 + i as i64, 1.0)
            })
            .collect();
        let entries: Vec<(StreamPosition, &BufferedEvent)> =
            events.iter().enumerate().map(|(i, e)| (pos(i as u64), e)).collect();
        let (old, new) =
            (PartitionLease { partition: 4, fence: 1 }, PartitionLease { partition: 4, fence: 2 });
        f.process(old, &entries[..20]).await.expect("the old holder's record");
        // Another writer takes the next record (a lease that passed while the old one paused),
        // then the old one resumes with what it remembers of the log before.
        f.process(new, &entries[20..40]).await.expect("the new holder's record");
        f.process(old, &entries[40..]).await.expect("the old holder, resumed");
        f.assert_exact().await;
    }
}

#[tokio::test]
async fn rebuild_equals_recount_and_processing_continues_exactly() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    for tenure in TENURES {
        let f = Fixture::new(&ferret, tenure).await;
        let events = sample();
        let entries: Vec<(StreamPosition, &BufferedEvent)> =
            events.iter().enumerate().map(|(i, e)| (pos(i as u64), e)).collect();
        let lease = PartitionLease { partition: 0, fence: 1 };
        f.process(lease, &entries[..40]).await.expect("batch");
        // Corrupt a bucket (a record that counts 1,000 views more), then rebuild.
        let day = pulse_core::rollup::PeriodKey {
            interval: RollupInterval::Day,
            start: pulse_core::rollup::bucket_start(events[0].timestamp, RollupInterval::Day, &f.tz),
        };
        let bogus = mongodb::bson::doc! {
            "id": day.id(), "i": "day", "s": day.start, "ev": { "view": { "n": 1000_i64, "u": 0_i64 } },
        };
        f.store.commit_record(0, 99, (pos(0), pos(1)), vec![bogus]).await.expect("corrupt");
        let stored = f.store.stored_rollups().await.expect("stored");
        assert!(stored.get(&day.bucket("view").id()).is_some_and(|t| t.events >= 1000), "corrupted");
        let written = f.store.rebuild(&f.rollups(), &[(0, pos(39), 1)]).await.expect("rebuild");
        assert!(written > 0);
        // A rebuild ends every tenure (it takes every lease), and with it the memory.
        f.memories().clear();
        f.assert_exact().await;
        f.process(lease, &entries[40..]).await.expect("continue");
        f.assert_exact().await;
    }
}

#[tokio::test]
async fn ensure_schema_is_idempotent() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let client = ferret.client().await.expect("client");
    let store = Store::new(client.database(&unique_name("tenant")));
    for _ in 0..3 {
        store.ensure_schema().await.expect("schema");
    }
    store.ping().await.expect("the server still answers");
}

#[tokio::test]
async fn the_plain_ts_index_of_an_earlier_version_is_dropped_where_the_server_has_no_ttl() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let client = ferret.client().await.expect("client");
    let store = Store::new(client.database(&unique_name("tenant")));
    let events = store.database().collection::<mongodb::bson::Document>("events");
    events
        .create_index(mongodb::IndexModel::builder().keys(mongodb::bson::doc! { "ts": 1 }).build())
        .await
        .expect("an earlier version's index");
    let report = store.ensure_schema().await.expect("schema");
    let names = events.list_index_names().await.expect("indexes");
    if report.ttl_index {
        assert!(names.contains(&"ts_ttl".to_string()) || names.contains(&"ts_1".to_string()), "{names:?}");
    } else {
        assert_eq!(names, ["_id_"], "FerretDB keeps no index on ts: it serves no read there");
    }
    // Again: nothing left to drop, nothing created.
    store.ensure_schema().await.expect("schema again");
    store.ping().await.expect("the server still answers");
}

#[tokio::test]
async fn compaction_keeps_every_sum_and_drops_expired_minutes() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let f = Fixture::new(&ferret, Tenure::Kept).await;
    let events = sample_of_users(20);
    let entries: Vec<(StreamPosition, &BufferedEvent)> =
        events.iter().enumerate().map(|(i, e)| (pos(i as u64), e)).collect();
    let lease = PartitionLease { partition: 0, fence: 1 };
    for batch in entries[..40].chunks(5) {
        f.process(lease, batch).await.expect("batch");
    }
    let before = f.store.stored_rollups().await.expect("stored");
    let t0 = events.iter().map(|e| e.timestamp).min().unwrap_or_default();
    let done = f.store.compact_rollup_log(0, t0).await.expect("compaction");
    assert_eq!(done.records_merged, 7, "every record but the newest: {done:?}");
    assert_eq!(f.store.stored_rollups().await.expect("stored"), before, "the same sums");
    assert_eq!(f.store.log_state(0).await.expect("log").tail.last, pos(39), "the log's end is kept");
    let ballots = f
        .store
        .database()
        .collection::<mongodb::bson::Document>("rollup_log")
        .count_documents(mongodb::bson::doc! { "_id": { "$gte": "b|p0|", "$lt": "b|p0|~" } })
        .await
        .expect("ballots");
    assert_eq!(ballots, 2, "only the newest record's ballot and seal are left");
    // A compaction interrupted before its marker changes nothing readers see.
    f.store
        .database()
        .collection::<mongodb::bson::Document>("rollup_versions")
        .insert_one(mongodb::bson::doc! { "_id": "c|p0|20260101|000000000099", "p": 0_i64, "b": 99_i64,
        "periods": [{ "id": "day|x", "i": "day", "s": t0, "ev": { "view": { "n": 1000_i64 } } }] })
        .await
        .expect("a version without its marker");
    assert_eq!(
        f.store.stored_rollups().await.expect("stored"),
        before,
        "a version without marker is not read"
    );
    for batch in entries[40..].chunks(5) {
        f.process(lease, batch).await.expect("batch after the compaction");
    }
    f.assert_exact().await;
    // Fifteen days later, minute periods are past their retention; hours and days stay.
    let later = t0 + 15 * 86_400_000;
    let done = f.store.compact_rollup_log(0, later).await.expect("second compaction");
    assert!(done.periods_dropped > 0, "{done:?}");
    let stored = f.store.stored_rollups().await.expect("stored");
    let recount = f.store.recount(&f.rollups()).await.expect("recount");
    // Only the newest record, which stays a record, still holds minutes.
    let newest: Vec<String> = entries[55..]
        .iter()
        .map(|(_, e)| {
            let start = pulse_core::rollup::bucket_start(e.timestamp, RollupInterval::Minute, &f.tz);
            pulse_core::rollup::PeriodKey { interval: RollupInterval::Minute, start }.bucket(&e.event).id()
        })
        .collect();
    let minutes: Vec<&String> = stored.keys().filter(|k| k.starts_with("minute|")).collect();
    assert!(minutes.iter().all(|k| newest.contains(k)), "minutes dropped: {minutes:?}");
    for (id, want) in recount.iter().filter(|(id, _)| !id.starts_with("minute|")) {
        assert!(stored.get(id).is_some_and(|got| got.agrees_with(want)), "bucket {id}");
    }
}

#[tokio::test]
async fn compaction_rewrites_only_the_days_its_records_touch() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let f = Fixture::new(&ferret, Tenure::Kept).await;
    let t0 = 1_790_000_000_000i64;
    // Three days of history, then a batch on the middle day only.
    let events: Vec<BufferedEvent> = (0..52)
        .map(|i| {
            let day = if i < 40 { i % 3 } else { 1 };
            event(&format!("e{i}"), &format!("u{}", i % 5), "view", t0 + day * 86_400_000 + i, 1.0)
        })
        .collect();
    let entries: Vec<(StreamPosition, &BufferedEvent)> =
        events.iter().enumerate().map(|(i, e)| (pos(i as u64), e)).collect();
    let lease = PartitionLease { partition: 0, fence: 1 };
    for batch in entries[..40].chunks(10) {
        f.process(lease, batch).await.expect("batch");
    }
    f.process(lease, &entries[40..44]).await.expect("a batch on one day");
    assert_eq!(f.store.log_state(0).await.expect("log").records, 5, "records a starting writer passes over");
    // Every record but the newest (entries 40..44) merges. Versions are by UTC day of the
    // periods' starts: an event day in Berlin touches its UTC day (minutes, hours) and the
    // one before (its day period starts at 22:00 or 23:00 UTC), so three days touch four.
    let done = f.store.compact_rollup_log(0, t0).await.expect("compaction");
    assert_eq!((done.records_merged, done.days_written), (4, 4), "{done:?}");
    assert_eq!(f.store.log_state(0).await.expect("log").records, 1, "the newest stays a record");
    f.process(lease, &entries[44..46]).await.expect("a batch on one day");
    f.process(lease, &entries[46..48]).await.expect("a batch on one day");
    let done = f.store.compact_rollup_log(0, t0).await.expect("compaction");
    assert_eq!((done.records_merged, done.days_written), (2, 2), "only the middle day's two: {done:?}");
    f.assert_exact().await;
    f.process(lease, &entries[..4]).await.expect("nothing new");
    let done = f.store.compact_rollup_log(0, t0).await.expect("nothing to merge");
    assert_eq!(done.records_merged, 0, "{done:?}");
    f.assert_exact().await;
    // Seventeen days on, the minutes of every day have expired (the last day's a day after
    // the first's): the days that hold some are written again without them, whether records
    // touch them or not.
    f.process(lease, &entries[48..50]).await.expect("a batch on one day");
    f.process(lease, &entries[50..]).await.expect("a batch on one day");
    let later = t0 + 17 * 86_400_000;
    let done = f.store.compact_rollup_log(0, later).await.expect("compaction");
    assert_eq!((done.records_merged, done.days_written), (2, 3), "the three days with minutes: {done:?}");
    assert!(done.periods_dropped > 0, "{done:?}");
    let stored = f.store.stored_rollups().await.expect("stored");
    let recount = f.store.recount(&f.rollups()).await.expect("recount");
    let newest_minute = entries[50..].iter().map(|(_, e)| {
        let start = pulse_core::rollup::bucket_start(e.timestamp, RollupInterval::Minute, &f.tz);
        pulse_core::rollup::PeriodKey { interval: RollupInterval::Minute, start }.bucket(&e.event).id()
    });
    let newest_minute: Vec<String> = newest_minute.collect();
    assert!(
        stored.keys().filter(|k| k.starts_with("minute|")).all(|k| newest_minute.contains(k)),
        "{stored:?}"
    );
    for (id, want) in recount.iter().filter(|(id, _)| !id.starts_with("minute|")) {
        assert_eq!(stored.get(id), Some(want), "{id}");
    }
}
