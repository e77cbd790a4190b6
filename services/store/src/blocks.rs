//! Event blocks: a compact, deflated, columnar copy of the raw events, so that reading a
//! million events reads a thousand documents instead of a million.
//!
//! - `event_blocks_<yyyymmdd>`: `{_id, data: Binary}`, the events of one partition's batch
//!   and one UTC day (see [`codec`] for the encoding), one collection per day of the events:
//!   FerretDB 1.24 serves no read or delete by `_id` from an index (it scans the
//!   collection), so a day's collection bounds what compaction and reads of a time range
//!   pass over by the days they touch, not by the history kept, and retention drops whole
//!   days;
//! - `event_blocks_small_<yyyymmdd>`: the day's blocks of fewer than 1,000 events (a batch
//!   at a low rate, a backfill's share of a day; their ids end in `|s`), until compaction
//!   merges them: its find and delete then pass over these few small blocks, not over the
//!   day's big ones, which a day of a million events makes a thousand of;
//! - `event_block_index_<yyyymmdd>`: one small document per block with the same `_id`:
//!   partition `p`, event times `lo`/`hi` (epoch ms), distinct event `names`, events `n`,
//!   compressed `bytes`, the UTC `day` (its start, epoch ms) and the stream positions
//!   `first`/`last`; one collection per day too, as FerretDB scans a collection for every
//!   find: a read of a time range, a writer's compaction of the days it wrote to and
//!   retention pass over the entries of their days only, not over the history's. No
//!   secondary index: a day's entries are few (one per batch, small blocks merged).
//!
//! A block is written before its index entry, so a listed entry has its block unless
//! retention or compaction deleted it since; readers skip those. One event may be in
//! several blocks (a redelivered batch after a crash, a compaction interrupted): all its
//! copies are the raw-stored version, identical, and readers keep one per event id.

mod codec;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::IntoFuture;
use std::io::{Read, Write};
use std::ops::RangeInclusive;
use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use pulse_core::buffer::BufferedEvent;
use pulse_core::rollup::StreamPosition;
use tokio::sync::mpsc;

use crate::collections::{
    EVENT_BLOCK_INDEX_PREFIX, EVENT_BLOCKS_PREFIX, LEGACY_EVENT_BLOCK_INDEX, LEGACY_EVENT_BLOCKS,
    SMALL_EVENT_BLOCKS_PREFIX,
};
use crate::recount::event_of_document;
use crate::{Store, StoreError, is_duplicate};

const DAY_MS: i64 = 86_400_000;
/// A block's encoding is at most this (before deflate), far below the 16 MB document limit.
const MAX_ENCODED_BYTES: usize = 8 << 20;
/// Ids per delete (each delete is one pass over a day's blocks on FerretDB).
const DELETE_CHUNK: usize = 1_000;
/// Up to this many blocks of a day are read by `_id` one by one, more with one find: on
/// FerretDB 1.24 either passes over the day's blocks, so one find for all is cheapest.
const LOOKUPS_MAX: usize = 1;
/// Blocks being decoded at once.
const DECODES_IN_FLIGHT: usize = 4;
/// Blocks per cursor batch, and blocks read ahead of the decoding (about 25 KB each).
const CURSOR_BATCH: u32 = 64;
const READ_AHEAD: usize = 128;
/// Compaction merges a partition's blocks of one day holding fewer than this many events
/// (small blocks: their ids end in `|s` and they live in the day's collection of small
/// blocks, which compaction's find and delete pass over instead of the day's big one)...
const SMALL_BLOCK_EVENTS: i64 = 1_000;
/// Ends the id of a small block.
const SMALL_MARK: &str = "|s";
/// ...when at least this many exist...
const COMPACT_MIN_BLOCKS: usize = 8;
/// ...into blocks of at most about this many events...
const COMPACT_MAX_EVENTS: i64 = 10_000;
/// ...and of at most this many blocks (at a few events per second, every event is a block)...
const COMPACT_MAX_BLOCKS: usize = 500;
/// ...at most this many merged blocks per call, so a partition worker is not held long.
const COMPACT_MAX_MERGES: usize = 4;
/// Rebuild writes blocks of this many events (per partition and day).
const REBUILD_BLOCK_EVENTS: usize = 1_000;
/// Index entries moved at once out of the single index of older versions.
const MOVE_CHUNK: usize = 1_000;

/// A block's index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRef {
    pub id: String,
    pub partition: u32,
    /// The earliest and latest event time in the block, epoch ms.
    pub lo: i64,
    pub hi: i64,
    /// The distinct event names in the block.
    pub names: Vec<String>,
    pub events: u64,
}

/// The UTC days (since the epoch) whose blocks a partition's compaction passes over. Each
/// pass reads those days' index entries, so a writer that names the days it wrote blocks
/// to passes over them, not over the whole history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionDays {
    every: bool,
    days: BTreeSet<i64>,
}

impl CompactionDays {
    /// Every day with blocks: where a writer starts, as it cannot know which small blocks
    /// the writers before it left.
    pub fn every() -> Self {
        CompactionDays { every: true, days: BTreeSet::new() }
    }

    /// Adds the days of the blocks `ids` (as [`Store::write_event_blocks`] returns them).
    pub fn add_blocks(&mut self, ids: &[String]) {
        if !self.every {
            self.days.extend(ids.iter().filter_map(|id| block_day(id)));
        }
    }

    /// Adds the days of `other`.
    pub fn add(&mut self, other: CompactionDays) {
        if other.every {
            *self = other;
        } else if !self.every {
            self.days.extend(other.days);
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.every && self.days.is_empty()
    }
}

/// What a compaction did: the blocks it wrote, and the days it left small blocks in (it
/// merges at most a few blocks a call), for the next call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compacted {
    pub merged: Vec<String>,
    pub left: CompactionDays,
}

/// A block to write: one partition, one UTC day, a span of stream positions.
struct BlockWrite<'a> {
    partition: u32,
    day: i64,
    first: StreamPosition,
    last: StreamPosition,
    /// Appended to `<p>|<first>|<last>|<day>` (compaction and rebuild mark their blocks).
    suffix: String,
    /// Each event with the stream entry that stored it.
    events: Vec<(StreamPosition, &'a BufferedEvent)>,
}

impl Store {
    /// Writes the events, each with the stream entry that stored it, as blocks; returns the
    /// block ids written (or already there).
    pub async fn write_event_blocks(
        &self,
        partition: u32,
        first: StreamPosition,
        last: StreamPosition,
        events: &[(StreamPosition, &BufferedEvent)],
    ) -> Result<Vec<String>, StoreError> {
        // One block per UTC day, one day after the other (as the raw events: writes at once
        // wait on each other's locks on FerretDB/SQLite).
        let mut ids = Vec::new();
        for (day, events) in by_day(events.iter().copied()) {
            ids.extend(
                self.write_block(BlockWrite { partition, day, first, last, suffix: String::new(), events })
                    .await?,
            );
        }
        Ok(ids)
    }

    /// Index entries of blocks that may hold an event named one of `names` (any when None)
    /// with a time in [from, to).
    pub async fn event_block_refs(
        &self,
        names: Option<&[String]>,
        from: i64,
        to: i64,
    ) -> Result<Vec<BlockRef>, StoreError> {
        let filter = block_filter(names, from, to);
        let mut refs = Vec::new();
        for index in self.index_collections(days_between(from, to)).await? {
            let mut cursor = self.db.collection::<Document>(&index).find(filter.clone()).await?;
            while let Some(d) = cursor.try_next().await? {
                refs.push(block_ref_of(&d)?);
            }
        }
        refs.sort_by(|a, b| a.id.cmp(&b.id));
        // An entry being moved out of the older versions' index is in both.
        refs.dedup_by(|a, b| a.id == b.id);
        Ok(refs)
    }

    /// The time of the oldest event any block holds (epoch ms), None without blocks.
    pub async fn oldest_event_time(&self) -> Result<Option<i64>, StoreError> {
        let mut oldest: Option<i64> = None;
        // Days oldest first, the older versions' index last: the first day with an entry
        // holds the oldest event, unless that index holds an older one.
        for index in self.index_collections(i64::MIN..=i64::MAX).await? {
            if oldest.is_some() && index != LEGACY_EVENT_BLOCK_INDEX {
                continue;
            }
            let found = self
                .db
                .collection::<Document>(&index)
                .find_one(doc! {})
                .sort(doc! { "lo": 1 })
                .projection(doc! { "lo": 1 })
                .await?;
            if let Some(lo) = found.map(|d| int(d.get("lo"))) {
                oldest = Some(oldest.map_or(lo, |o| o.min(lo)));
            }
        }
        Ok(oldest)
    }

    /// One block's events, None when it is gone (deleted by retention or compaction).
    pub async fn read_event_block(&self, id: &str) -> Result<Option<Vec<BufferedEvent>>, StoreError> {
        match self.spawn_read(vec![id.to_string()], Arc::new(|_: &str, _: i64| true)).recv().await {
            Some(block) => Ok(Some(block?.events)),
            None => Ok(None),
        }
    }

    /// Several blocks' events, by block id; blocks that are gone are absent. A day's blocks
    /// are read with one find, far faster than one [`Self::read_event_block`] each on
    /// FerretDB 1.24, where each of those passes over the day's blocks.
    pub async fn read_event_blocks(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, Vec<BufferedEvent>)>, StoreError> {
        self.stream_event_blocks(ids.to_vec()).try_collect().await
    }

    /// As [`Self::read_event_blocks`], a block at a time as each is decoded (in no
    /// particular order), so that memory holds a few blocks, not all: for reading many.
    /// On FerretDB 1.24 every call scans the collections of the days its blocks are in, so
    /// one call for all the ids is much faster than one per chunk of them.
    pub fn stream_event_blocks(
        &self,
        ids: Vec<String>,
    ) -> impl futures::Stream<Item = Result<(String, Vec<BufferedEvent>), StoreError>> + Send + 'static {
        let all: Keep = Arc::new(|_: &str, _: i64| true);
        futures::stream::unfold(self.spawn_read(ids, all), |mut rx| async move {
            rx.recv().await.map(|block| (block.map(|b| (b.id, b.events)), rx))
        })
    }

    /// The events named one of `names` (every event when `None`) with a time in
    /// `[from, to)`, one per event id, in no particular order, read from the event blocks.
    /// More than `max` is [`StoreError::TooManyEvents`]: never a silently shortened answer.
    pub async fn events_between(
        &self,
        names: Option<&[String]>,
        from: i64,
        to: i64,
        max: usize,
    ) -> Result<Vec<BufferedEvent>, StoreError> {
        let wanted: Option<HashSet<String>> = names.map(|n| n.iter().cloned().collect());
        let keep: Keep = Arc::new(move |name: &str, ts: i64| {
            ts >= from && ts < to && wanted.as_ref().is_none_or(|w| w.contains(name))
        });
        let filter = block_filter(names, from, to);
        let mut seen: Distinct = Distinct::default();
        let mut out: Vec<BufferedEvent> = Vec::new();
        self.read_listed(filter, days_between(from, to), keep, |block| {
            for e in block.events {
                if seen.is_new(&out, &e.event_id) {
                    if out.len() == max {
                        return Err(StoreError::TooManyEvents { limit: max });
                    }
                    out.push(e);
                }
            }
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Every event of `partition` with a time in `[from, to)`, with the stream entry that
    /// stored it, read from the event blocks; copies of an event (see the module docs) are
    /// all returned, alike. For a writer that must find what its rollups counted.
    pub async fn partition_events_between(
        &self,
        partition: u32,
        from: i64,
        to: i64,
    ) -> Result<Vec<(StreamPosition, BufferedEvent)>, StoreError> {
        let keep: Keep = Arc::new(move |_: &str, ts: i64| ts >= from && ts < to);
        let mut filter = block_filter(None, from, to);
        filter.insert("p", i64::from(partition));
        let mut out = Vec::new();
        self.read_listed(filter, days_between(from, to), keep, |block| {
            out.extend(block.positions.into_iter().zip(block.events));
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Reads every block whose index entry matches `filter`, handing each to `each` as it
    /// is decoded (the events `keep` accepts). A block found gone may have been merged into
    /// a new one by compaction, which is indexed before the old ones are deleted: then the
    /// index is listed again and the new blocks read.
    async fn read_listed(
        &self,
        filter: Document,
        days: RangeInclusive<i64>,
        keep: Keep,
        mut each: impl FnMut(Block) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut read: HashSet<String> = HashSet::new();
        for _ in 0..4 {
            let todo: Vec<String> = self
                .block_ids(filter.clone(), days.clone())
                .await?
                .into_iter()
                .filter(|id| !read.contains(id))
                .collect();
            if todo.is_empty() {
                break;
            }
            read.extend(todo.iter().cloned());
            let wanted = todo.len();
            let mut found = 0;
            let mut blocks = self.spawn_read(todo, Arc::clone(&keep));
            while let Some(block) = blocks.recv().await {
                found += 1;
                each(block?)?;
            }
            if found == wanted {
                break;
            }
        }
        Ok(())
    }

    /// Merges a partition's small blocks of the UTC days `days`: per day, when at least 8
    /// blocks hold fewer than 1,000 events each, they become blocks of up to about 10,000
    /// events, at most 4 a call. A day's merges read their blocks with one find and delete
    /// them with one delete, after the merged blocks and their entries are written, so a
    /// crash in between leaves copies, which readers drop. Returns the merged blocks' ids
    /// and the days it left small blocks in.
    pub async fn compact_event_blocks(
        &self,
        partition: u32,
        days: CompactionDays,
    ) -> Result<Compacted, StoreError> {
        let mut indexes: Vec<(i64, String)> = Vec::new();
        for name in self.db.list_collection_names().await? {
            if let Some(day) = collection_day(&name, EVENT_BLOCK_INDEX_PREFIX)
                && (days.every || days.days.contains(&day))
            {
                indexes.push((day, name));
            }
        }
        indexes.sort();
        let mut done = Compacted::default();
        for (at, (day, index)) in indexes.iter().enumerate() {
            // (A merge too big for one document writes two, so this counts blocks written.)
            let room = COMPACT_MAX_MERGES.saturating_sub(done.merged.len());
            if room == 0 {
                // The days not passed over yet wait for the next call.
                done.left.days.extend(indexes[at..].iter().map(|(day, _)| *day));
                break;
            }
            let mut groups = merge_groups(self.small_blocks(index, partition).await?);
            if groups.len() > room {
                // This day's other merges wait for the next call.
                groups.truncate(room);
                done.left.days.insert(*day);
            }
            done.merged.extend(self.merge_blocks(partition, *day, &groups).await?);
        }
        Ok(done)
    }

    /// The entries of `partition`'s small blocks in the day's `index`.
    async fn small_blocks(&self, index: &str, partition: u32) -> Result<Vec<SmallBlock>, StoreError> {
        let filter = doc! { "p": i64::from(partition), "n": { "$lt": SMALL_BLOCK_EVENTS } };
        let mut cursor = self.db.collection::<Document>(index).find(filter).await?;
        let mut blocks = Vec::new();
        while let Some(d) = cursor.try_next().await? {
            blocks.push(SmallBlock {
                id: d.get_str("_id").unwrap_or_default().to_string(),
                n: int(d.get("n")),
                first: position(&d, "first"),
                last: position(&d, "last"),
            });
        }
        Ok(blocks)
    }

    /// Replaces every block with blocks written from the raw events (1,000 events per
    /// partition and UTC day each), so events stored before blocks existed are read too.
    /// The new blocks are written before the old ones are deleted: readers see copies in
    /// between, never a gap. Run it while no processor writes (the rebuild command holds
    /// every lease). Returns the ids of the blocks written.
    pub async fn rebuild_event_blocks(&self) -> Result<Vec<String>, StoreError> {
        let old = self.block_ids(doc! {}, i64::MIN..=i64::MAX).await?;
        // Marks this rebuild's ids, so they never collide with an earlier rebuild's.
        let suffix = format!("|r{}", jiff::Timestamp::now().as_millisecond());
        let mut pending: BTreeMap<(u32, i64), Vec<(StreamPosition, BufferedEvent)>> = BTreeMap::new();
        let mut written = Vec::new();
        for collection in self.raw_event_collections().await? {
            let mut cursor = self.db.collection::<Document>(&collection).find(doc! {}).await?;
            while let Some(d) = cursor.try_next().await? {
                let partition = u32::try_from(int(d.get("src_p"))).unwrap_or(0);
                let event = event_of_document(&d);
                let key = (partition, day_of(event.timestamp));
                let buffer = pending.entry(key).or_default();
                buffer.push((position(&d, "src"), event));
                if buffer.len() == REBUILD_BLOCK_EVENTS {
                    let full = pending.remove(&key).unwrap_or_default();
                    written.extend(self.write_rebuilt(key, &suffix, full).await?);
                }
            }
        }
        for (key, events) in pending {
            written.extend(self.write_rebuilt(key, &suffix, events).await?);
        }
        let new: HashSet<&String> = written.iter().collect();
        let stale: Vec<String> = old.into_iter().filter(|id| !new.contains(id)).collect();
        self.delete_blocks(&stale).await?;
        // Every block and entry is now in its day's collection.
        self.db.collection::<Document>(LEGACY_EVENT_BLOCKS).drop().await?;
        self.db.collection::<Document>(LEGACY_EVENT_BLOCK_INDEX).drop().await?;
        Ok(written)
    }

    /// Whether an event block holds an event from before `cutoff`, a UTC day's start
    /// (an index of an earlier day is there, or the older versions' index lists one).
    pub(crate) async fn holds_events_before(&self, cutoff: i64) -> Result<bool, StoreError> {
        // Days first: the older versions' index, if any, is last.
        match self.index_collections(i64::MIN..=day_of(cutoff) - 1).await?.first() {
            None => Ok(false),
            Some(index) if index != LEGACY_EVENT_BLOCK_INDEX => Ok(true),
            Some(index) => {
                let found = self
                    .db
                    .collection::<Document>(index)
                    .find_one(doc! { "lo": { "$lt": cutoff } })
                    .projection(doc! { "_id": 1 })
                    .await?;
                Ok(found.is_some())
            }
        }
    }

    /// Deletes the blocks whose events are older than `cutoff` (a UTC day's start; a block
    /// holds one day's events): the days' blocks and index entries go by whole
    /// collections, then what the older versions' collections hold of them. Returns the
    /// number of blocks deleted.
    pub(crate) async fn delete_expired_blocks(&self, cutoff: i64) -> Result<u64, StoreError> {
        let cutoff_day = day_of(cutoff);
        let mut deleted = 0;
        // First what the older versions' collections hold, found through the entries that
        // dropping the days' collections would lose.
        if self.legacy_block_collections().await?.any() {
            let expired = self.block_ids(doc! { "hi": { "$lt": cutoff } }, i64::MIN..=cutoff_day - 1).await?;
            self.delete_blocks(&expired).await?;
            deleted += expired.len() as u64;
        }
        for name in self.db.list_collection_names().await? {
            let blocks = [EVENT_BLOCKS_PREFIX, SMALL_EVENT_BLOCKS_PREFIX]
                .iter()
                .any(|prefix| collection_day(&name, prefix).is_some_and(|day| day < cutoff_day));
            let index = collection_day(&name, EVENT_BLOCK_INDEX_PREFIX).is_some_and(|day| day < cutoff_day);
            if index {
                deleted += self.db.collection::<Document>(&name).estimated_document_count().await?;
            }
            if blocks || index {
                self.db.collection::<Document>(&name).drop().await?;
            }
        }
        Ok(deleted)
    }

    /// Moves the entries of the single index older versions kept into their days'
    /// collections, a chunk at a time (inserted, then deleted there), and drops it once
    /// empty. Readers read it while it exists, so they miss no block meanwhile; processes
    /// moving at once both insert (an entry already there is success) and delete. Returns
    /// the number of entries moved.
    pub(crate) async fn move_legacy_block_index(&self) -> Result<u64, StoreError> {
        if !self.holds_legacy_index().await? {
            return Ok(0);
        }
        let legacy = self.db.collection::<Document>(LEGACY_EVENT_BLOCK_INDEX);
        let mut moved = 0;
        loop {
            let chunk: Vec<Document> =
                legacy.find(doc! {}).limit(MOVE_CHUNK as i64).await?.try_collect().await?;
            if chunk.is_empty() {
                break;
            }
            let ids: Vec<String> =
                chunk.iter().map(|d| d.get_str("_id").unwrap_or_default().to_string()).collect();
            let mut days: BTreeMap<String, Vec<Document>> = BTreeMap::new();
            for d in chunk {
                days.entry(index_collection(d.get_str("_id").unwrap_or_default())).or_default().push(d);
            }
            for (index, entries) in days {
                crate::insert_new(&self.db.collection(&index), entries).await?;
            }
            legacy.delete_many(doc! { "_id": { "$in": &ids } }).await?;
            moved += ids.len() as u64;
            tracing::info!(moved, "moving the event block index into one collection per day");
        }
        if legacy.estimated_document_count().await? == 0 {
            legacy.drop().await?;
        }
        Ok(moved)
    }

    async fn write_rebuilt(
        &self,
        (partition, day): (u32, i64),
        suffix: &str,
        events: Vec<(StreamPosition, BufferedEvent)>,
    ) -> Result<Vec<String>, StoreError> {
        let first = events.iter().map(|(p, _)| *p).min().unwrap_or_default();
        let last = events.iter().map(|(p, _)| *p).max().unwrap_or_default();
        let events = events.iter().map(|(p, e)| (*p, e)).collect();
        self.write_block(BlockWrite { partition, day, first, last, suffix: suffix.to_string(), events }).await
    }

    /// Merges each of `groups` (small blocks of one partition and UTC day) into one block:
    /// reads them all with one find, writes the merged blocks, then deletes the old ones
    /// with one delete. Returns the merged blocks' ids.
    async fn merge_blocks(
        &self,
        partition: u32,
        day: i64,
        groups: &[Vec<SmallBlock>],
    ) -> Result<Vec<String>, StoreError> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let group_of: BTreeMap<&str, usize> = groups
            .iter()
            .enumerate()
            .flat_map(|(g, group)| group.iter().map(move |b| (b.id.as_str(), g)))
            .collect();
        let all: Keep = Arc::new(|_: &str, _: i64| true);
        let mut seen = vec![HashSet::new(); groups.len()];
        let mut events: Vec<Vec<(StreamPosition, BufferedEvent)>> = vec![Vec::new(); groups.len()];
        let mut blocks = self.spawn_read(group_of.keys().map(|id| id.to_string()).collect(), all);
        while let Some(block) = blocks.recv().await {
            let block = block?;
            let Some(&g) = group_of.get(block.id.as_str()) else { continue };
            events[g].extend(
                block
                    .positions
                    .into_iter()
                    .zip(block.events)
                    .filter(|(_, e)| seen[g].insert(e.event_id.clone())),
            );
        }
        let mut merged = Vec::new();
        let mut stale = Vec::new();
        for (group, mut events) in groups.iter().zip(events) {
            let old = group.iter().map(|b| b.id.clone());
            if events.is_empty() {
                stale.extend(old);
                continue;
            }
            // Blocks come in no particular order: sort, so the merged block is the same each time.
            events.sort_by(|(_, a), (_, b)| (a.timestamp, &a.event_id).cmp(&(b.timestamp, &b.event_id)));
            let mut ids: Vec<&str> = events.iter().map(|(_, e)| e.event_id.as_str()).collect();
            ids.sort_unstable();
            // The content's hash in the id: an interrupted compaction that runs again over
            // other blocks never meets an existing id with other events in it.
            let block = BlockWrite {
                partition,
                day,
                first: group.iter().map(|b| b.first).min().unwrap_or_default(),
                last: group.iter().map(|b| b.last).max().unwrap_or_default(),
                suffix: format!("|c{:016x}", fnv1a(&ids)),
                events: events.iter().map(|(p, e)| (*p, e)).collect(),
            };
            let written = self.write_block(block).await?;
            stale.extend(old.filter(|id| !written.contains(id)));
            merged.extend(written);
        }
        self.delete_blocks(&stale).await?;
        Ok(merged)
    }

    /// Writes one day's block (more than one if its encoding is too big), block first,
    /// then its entry; an existing id is success (the same batch, delivered again).
    fn write_block<'a>(
        &'a self,
        block: BlockWrite<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let encoded = codec::encode(&block.events);
            if encoded.len() > MAX_ENCODED_BYTES && block.events.len() > 1 {
                let (a, b) = block.events.split_at(block.events.len() / 2);
                let mut ids = Vec::new();
                for (half, events) in [("a", a), ("b", b)] {
                    let suffix = format!("{}{half}", block.suffix);
                    ids.extend(
                        self.write_block(BlockWrite { suffix, events: events.to_vec(), ..block }).await?,
                    );
                }
                return Ok(ids);
            }
            let mut id = format!(
                "{:04}|{}|{}|{}{}",
                block.partition,
                block.first.to_key(),
                block.last.to_key(),
                day_label(block.day),
                block.suffix
            );
            if (block.events.len() as i64) < SMALL_BLOCK_EVENTS {
                id.push_str(SMALL_MARK);
            }
            let data = deflate(&encoded)?;
            let bytes = data.len() as i64;
            let binary = Binary { subtype: BinarySubtype::Generic, bytes: data };
            insert_once(self.db.collection(&block_collection(&id)), doc! { "_id": &id, "data": binary })
                .await?;
            let mut names: Vec<&str> = block.events.iter().map(|(_, e)| e.event.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            let entry = doc! {
                "_id": &id,
                "p": i64::from(block.partition),
                "lo": block.events.iter().map(|(_, e)| e.timestamp).min().unwrap_or_default(),
                "hi": block.events.iter().map(|(_, e)| e.timestamp).max().unwrap_or_default(),
                "names": names,
                "n": block.events.len() as i64,
                "bytes": bytes,
                "day": block.day * DAY_MS,
                "first": block.first.to_key(),
                "last": block.last.to_key(),
            };
            insert_once(self.db.collection(&index_collection(&id)), entry).await?;
            Ok(vec![id])
        })
    }

    /// Reads the blocks `ids` that exist in a task of its own, decoding the events `keep`
    /// accepts on blocking threads, a few blocks at once: the blocks arrive on the receiver
    /// in no particular order, an error as the last item. Dropping the receiver stops it,
    /// wherever it is.
    fn spawn_read(&self, ids: Vec<String>, keep: Keep) -> mpsc::Receiver<Result<Block, StoreError>> {
        let (tx, rx) = mpsc::channel(DECODES_IN_FLIGHT);
        let store = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                // The reader is gone (a query that failed or was refused): stop at once,
                // even mid-find, so no store cursor outlives the query that opened it.
                () = tx.closed() => {}
                read = store.read_blocks(ids, keep, &tx) => {
                    if let Err(e) = read {
                        let _ = tx.send(Err(e)).await;
                    }
                }
            }
        });
        rx
    }

    /// [`Self::spawn_read`]'s work, a day's collection at a time; returns early when the
    /// receiver is gone. Blocks a day lacks are looked for where an older version kept
    /// them all, while that collection exists.
    async fn read_blocks(
        &self,
        ids: Vec<String>,
        keep: Keep,
        out: &mpsc::Sender<Result<Block, StoreError>>,
    ) -> Result<(), StoreError> {
        let mut missing = Vec::new();
        for (collection, ids) in by_collection(ids) {
            let Some(found) = self.read_blocks_in(&collection, &ids, &keep, out).await? else {
                return Ok(());
            };
            missing.extend(ids.into_iter().filter(|id| !found.contains(id)));
        }
        if !missing.is_empty() && self.holds_legacy_blocks().await? {
            self.read_blocks_in(LEGACY_EVENT_BLOCKS, &missing, &keep, out).await?;
        }
        Ok(())
    }

    /// Reads the blocks `ids` that `collection` holds; returns their ids, or None when the
    /// receiver is gone.
    async fn read_blocks_in(
        &self,
        collection: &str,
        ids: &[String],
        keep: &Keep,
        out: &mpsc::Sender<Result<Block, StoreError>>,
    ) -> Result<Option<HashSet<String>>, StoreError> {
        let blocks = self.db.collection::<Document>(collection);
        let mut found = HashSet::new();
        let mut decoding = FuturesUnordered::new();
        if ids.len() <= LOOKUPS_MAX {
            // By `_id`, the lookup MongoDB serves from its index.
            let lookups: Vec<_> =
                ids.iter().map(|id| blocks.find_one(doc! { "_id": id }).into_future()).collect();
            for d in futures::future::try_join_all(lookups).await?.into_iter().flatten() {
                decoding.push(decode_task(d, Arc::clone(keep)));
            }
            while let Some(block) = decoding.next().await {
                let block = joined(block)?;
                found.insert(block.id.clone());
                if out.send(Ok(block)).await.is_err() {
                    return Ok(None);
                }
            }
            return Ok(Some(found));
        }
        // Many blocks: one find. MongoDB serves `$in` on `_id` from its index; FerretDB 1.24
        // scans the collection (a day's blocks), at about 0.7 ms a block, as it does for a
        // lookup of one `_id`. A task drains the cursor ahead of the
        // decoding, so the server prepares the next batch while this one is decoded.
        let mut cursor = blocks.find(doc! { "_id": { "$in": ids } }).batch_size(CURSOR_BATCH).await?;
        let (tx, mut rx) = mpsc::channel(READ_AHEAD);
        let reader = tokio::spawn(async move {
            loop {
                let next = cursor.try_next().await.transpose();
                let stop = !matches!(next, Some(Ok(_)));
                if let Some(next) = next
                    && tx.send(next).await.is_err()
                {
                    return;
                }
                if stop {
                    return;
                }
            }
        });
        // Stops the reader when this returns early (an error, too many events).
        let _abort = AbortOnDrop(reader);
        let mut more = true;
        loop {
            while more && decoding.len() < DECODES_IN_FLIGHT {
                match rx.recv().await.transpose()? {
                    Some(d) => decoding.push(decode_task(d, Arc::clone(keep))),
                    None => more = false,
                }
            }
            let Some(block) = decoding.next().await else { break };
            let block = joined(block)?;
            found.insert(block.id.clone());
            if out.send(Ok(block)).await.is_err() {
                return Ok(None);
            }
        }
        Ok(Some(found))
    }

    /// Which of the single collections older versions kept are still there: the blocks'
    /// (until `pulse-processor rebuild` rewrites them by day and drops it) and the index's
    /// (until [`Self::move_legacy_block_index`] empties it).
    async fn legacy_block_collections(&self) -> Result<LegacyCollections, StoreError> {
        let names = self.db.list_collection_names().await?;
        Ok(LegacyCollections {
            blocks: names.iter().any(|name| name == LEGACY_EVENT_BLOCKS),
            index: names.iter().any(|name| name == LEGACY_EVENT_BLOCK_INDEX),
        })
    }

    async fn holds_legacy_blocks(&self) -> Result<bool, StoreError> {
        Ok(self.legacy_block_collections().await?.blocks)
    }

    async fn holds_legacy_index(&self) -> Result<bool, StoreError> {
        Ok(self.legacy_block_collections().await?.index)
    }

    /// The index collections of the UTC days `days` that exist, oldest first, and the
    /// older versions' single index last while it exists.
    async fn index_collections(&self, days: RangeInclusive<i64>) -> Result<Vec<String>, StoreError> {
        let mut found: Vec<(i64, String)> = Vec::new();
        let mut legacy = false;
        for name in self.db.list_collection_names().await? {
            if name == LEGACY_EVENT_BLOCK_INDEX {
                legacy = true;
            } else if let Some(day) = collection_day(&name, EVENT_BLOCK_INDEX_PREFIX)
                && days.contains(&day)
            {
                found.push((day, name));
            }
        }
        found.sort();
        let mut names: Vec<String> = found.into_iter().map(|(_, name)| name).collect();
        if legacy {
            names.push(LEGACY_EVENT_BLOCK_INDEX.to_string());
        }
        Ok(names)
    }

    /// The ids of the blocks of the days `days` whose entries match `filter`.
    async fn block_ids(
        &self,
        filter: Document,
        days: RangeInclusive<i64>,
    ) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        for index in self.index_collections(days).await? {
            let mut cursor = self
                .db
                .collection::<Document>(&index)
                .find(filter.clone())
                .projection(doc! { "_id": 1 })
                .await?;
            while let Some(d) = cursor.try_next().await? {
                ids.push(d.get_str("_id").unwrap_or_default().to_string());
            }
        }
        // An entry being moved out of the older versions' index is in both.
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Deletes blocks, then their entries (a crash in between leaves entries without
    /// blocks, which readers skip and the next call deletes). One delete per day and
    /// thousand ids: FerretDB scans a collection for every delete, by `_id` too, so one
    /// pass over a day's blocks deletes them all.
    async fn delete_blocks(&self, ids: &[String]) -> Result<(), StoreError> {
        let LegacyCollections { blocks: legacy_blocks, index: legacy_index } =
            self.legacy_block_collections().await?;
        let days = by_collection(ids.to_vec());
        for (collection, ids) in &days {
            for chunk in ids.chunks(DELETE_CHUNK) {
                let filter = doc! { "_id": { "$in": chunk } };
                self.db.collection::<Document>(collection).delete_many(filter.clone()).await?;
                if legacy_blocks {
                    self.db.collection::<Document>(LEGACY_EVENT_BLOCKS).delete_many(filter).await?;
                }
            }
        }
        for ids in days.values() {
            for chunk in ids.chunks(DELETE_CHUNK) {
                let filter = doc! { "_id": { "$in": chunk } };
                self.db
                    .collection::<Document>(&index_collection(&chunk[0]))
                    .delete_many(filter.clone())
                    .await?;
                if legacy_index {
                    self.db.collection::<Document>(LEGACY_EVENT_BLOCK_INDEX).delete_many(filter).await?;
                }
            }
        }
        Ok(())
    }
}

type Keep = Arc<dyn Fn(&str, i64) -> bool + Send + Sync>;

/// The single collections of blocks and of index entries that older versions kept.
#[derive(Debug, Clone, Copy)]
struct LegacyCollections {
    blocks: bool,
    index: bool,
}

impl LegacyCollections {
    fn any(self) -> bool {
        self.blocks || self.index
    }
}

/// The index entries of blocks that may hold an event named one of `names` (any when
/// None) with a time in [from, to).
fn block_filter(names: Option<&[String]>, from: i64, to: i64) -> Document {
    let mut filter = doc! { "lo": { "$lt": to }, "hi": { "$gte": from } };
    if let Some(names) = names {
        filter.insert("names", doc! { "$in": names });
    }
    filter
}

/// Which event ids were seen, by a hash into the events kept (cheaper than a set of the
/// ids themselves at a million events); ids whose hash is taken by another id go in `other`.
#[derive(Default)]
struct Distinct<S = std::hash::RandomState> {
    first: std::collections::HashMap<u64, usize>,
    other: HashSet<String>,
    hasher: S,
}

impl<S: std::hash::BuildHasher> Distinct<S> {
    /// Whether `id` is new; if so, it must be pushed onto `kept` next.
    fn is_new(&mut self, kept: &[BufferedEvent], id: &str) -> bool {
        use std::collections::hash_map::Entry;
        match self.first.entry(self.hasher.hash_one(id)) {
            Entry::Vacant(slot) => {
                slot.insert(kept.len());
                true
            }
            Entry::Occupied(at) => kept[*at.get()].event_id != id && self.other.insert(id.to_string()),
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Decodes a block document's events on a blocking thread.
fn decode_task(mut d: Document, keep: Keep) -> tokio::task::JoinHandle<Result<Block, StoreError>> {
    tokio::task::spawn_blocking(move || {
        let id = d.get_str("_id").unwrap_or_default().to_string();
        let data = match d.remove("data") {
            Some(Bson::Binary(b)) => b.bytes,
            _ => return Err(StoreError::Block(format!("block {id} has no data"))),
        };
        let encoded = inflate(&data).map_err(|e| StoreError::Block(format!("block {id}: {e}")))?;
        let decoded = codec::decode(&encoded, |name, ts| keep(name, ts))
            .map_err(|e| StoreError::Block(format!("block {id}: {e}")))?;
        // A version 1 block (written before blocks kept positions) has none: its events are
        // placed at the last entry in its id, the right place for a batch's own block.
        let positions =
            decoded.positions.unwrap_or_else(|| vec![last_of_block_id(&id); decoded.events.len()]);
        Ok(Block { id, events: decoded.events, positions })
    })
}

/// A block's id, and its events with the stream entry that stored each.
struct Block {
    id: String,
    events: Vec<BufferedEvent>,
    positions: Vec<StreamPosition>,
}

/// The last stream position in a block id (`<p>|<first>|<last>|<day>...`).
fn last_of_block_id(id: &str) -> StreamPosition {
    id.split('|').nth(2).and_then(StreamPosition::from_key).unwrap_or_default()
}

fn joined(result: Result<Result<Block, StoreError>, tokio::task::JoinError>) -> Result<Block, StoreError> {
    result.map_err(|e| StoreError::Block(format!("block decoding stopped: {e}")))?
}

/// A partition's small blocks of one day cut into runs to merge, in stream order: each of
/// at least two blocks, up to about 10,000 events or 500 blocks; none when fewer than 8.
fn merge_groups(mut blocks: Vec<SmallBlock>) -> Vec<Vec<SmallBlock>> {
    if blocks.len() < COMPACT_MIN_BLOCKS {
        return Vec::new();
    }
    blocks.sort_by_key(|b| (b.first, b.last));
    let mut group: Vec<SmallBlock> = Vec::new();
    let mut groups = Vec::new();
    for b in blocks {
        let events = group.iter().map(|g| g.n).sum::<i64>() + b.n;
        if group.len() > 1 && (events > COMPACT_MAX_EVENTS || group.len() == COMPACT_MAX_BLOCKS) {
            groups.push(std::mem::take(&mut group));
        }
        group.push(b);
    }
    if group.len() > 1 {
        groups.push(group);
    }
    groups
}

struct SmallBlock {
    id: String,
    n: i64,
    first: StreamPosition,
    last: StreamPosition,
}

/// Events grouped by the UTC day of their time, in their order within each day.
fn by_day<'a>(
    events: impl Iterator<Item = (StreamPosition, &'a BufferedEvent)>,
) -> BTreeMap<i64, Vec<(StreamPosition, &'a BufferedEvent)>> {
    let mut days: BTreeMap<i64, Vec<(StreamPosition, &BufferedEvent)>> = BTreeMap::new();
    for (position, e) in events {
        days.entry(day_of(e.timestamp)).or_default().push((position, e));
    }
    days
}

fn day_of(ts: i64) -> i64 {
    ts.div_euclid(DAY_MS)
}

/// `2026-11-24` for day 20416 (days since the epoch).
fn day_label(day: i64) -> String {
    match jiff::Timestamp::from_millisecond(day.saturating_mul(DAY_MS)) {
        Ok(t) => t.strftime("%Y-%m-%d").to_string(),
        Err(_) => format!("d{day}"),
    }
}

/// The collection of block `id` (`<p>|<first>|<last>|<day label>[a|b...][|suffix][|s]`):
/// its day's, `event_blocks_<yyyymmdd>`, or for a small block (`|s`) the day's collection
/// of small blocks, `event_blocks_small_<yyyymmdd>`.
pub fn block_collection(id: &str) -> String {
    let prefix = if is_small(id) { SMALL_EVENT_BLOCKS_PREFIX } else { EVENT_BLOCKS_PREFIX };
    format!("{prefix}{}", day_digits(id))
}

/// Whether block `id` is one of fewer than [`SMALL_BLOCK_EVENTS`] events, kept apart.
fn is_small(id: &str) -> bool {
    id.ends_with(SMALL_MARK)
}

/// The index collection of block `id`'s entry: its day's, `event_block_index_<yyyymmdd>`.
fn index_collection(id: &str) -> String {
    format!("{EVENT_BLOCK_INDEX_PREFIX}{}", day_digits(id))
}

/// `20261124` for a block id of 2026-11-24.
fn day_digits(id: &str) -> String {
    id.split('|').nth(3).unwrap_or_default().trim_end_matches(['a', 'b']).replace('-', "")
}

/// The UTC day of block `id`.
fn block_day(id: &str) -> Option<i64> {
    digits_day(&day_digits(id))
}

/// The UTC day of a day's collection, `<prefix><yyyymmdd>`.
fn collection_day(name: &str, prefix: &str) -> Option<i64> {
    digits_day(name.strip_prefix(prefix)?)
}

/// The UTC day of `20261124`.
fn digits_day(digits: &str) -> Option<i64> {
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = jiff::civil::Date::strptime("%Y%m%d", digits).ok()?;
    Some(i64::from(date.since(jiff::civil::date(1970, 1, 1)).ok()?.get_days()))
}

/// The UTC days with events of times in `[from, to)`.
fn days_between(from: i64, to: i64) -> RangeInclusive<i64> {
    day_of(from)..=day_of(to.saturating_sub(1))
}

/// Block ids grouped by their collection.
fn by_collection(ids: Vec<String>) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in ids {
        groups.entry(block_collection(&id)).or_default().push(id);
    }
    groups
}

fn block_ref_of(d: &Document) -> Result<BlockRef, StoreError> {
    let id = d.get_str("_id").map_err(|_| StoreError::Block("a block entry without an _id".to_string()))?;
    Ok(BlockRef {
        id: id.to_string(),
        partition: u32::try_from(int(d.get("p"))).unwrap_or(0),
        lo: int(d.get("lo")),
        hi: int(d.get("hi")),
        names: d
            .get_array("names")
            .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        events: u64::try_from(int(d.get("n"))).unwrap_or(0),
    })
}

fn int(v: Option<&Bson>) -> i64 {
    match v {
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Double(n)) => *n as i64,
        _ => 0,
    }
}

fn position(d: &Document, field: &str) -> StreamPosition {
    d.get_str(field).ok().and_then(StreamPosition::from_key).unwrap_or_default()
}

async fn insert_once(collection: mongodb::Collection<Document>, d: Document) -> Result<(), StoreError> {
    match collection.insert_one(d).await {
        Ok(_) => Ok(()),
        Err(e) if is_duplicate(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn deflate(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .map_err(|e| StoreError::Block(format!("deflate: {e}")))
}

fn inflate(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() * 6);
    flate2::read::DeflateDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

/// FNV-1a over the ids: stable across builds (std's hasher is not).
fn fnv1a(ids: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for id in ids {
        for b in id.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_keeps_one_event_per_id_even_when_hashes_collide() {
        /// Every id hashes alike: every id after the first is a collision.
        #[derive(Default)]
        struct Same;
        impl std::hash::Hasher for Same {
            fn finish(&self) -> u64 {
                7
            }
            fn write(&mut self, _: &[u8]) {}
        }
        let mut seen: Distinct<std::hash::BuildHasherDefault<Same>> = Distinct::default();
        let mut kept: Vec<BufferedEvent> = Vec::new();
        for id in ["a", "b", "a", "c", "b", "c", "d"] {
            if seen.is_new(&kept, id) {
                kept.push(BufferedEvent {
                    event_id: id.to_string(),
                    id_generated: false,
                    event: "e".to_string(),
                    distinct_id: "u".to_string(),
                    timestamp: 0,
                    received_at: 0,
                    properties: Default::default(),
                });
            }
        }
        let ids: Vec<&str> = kept.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
    }

    #[test]
    fn compaction_days_are_the_days_of_the_blocks_written_or_every_day() {
        let id = |day: &str| format!("0002|1-0|9-0|{day}");
        let mut days = CompactionDays::default();
        assert!(days.is_empty());
        days.add_blocks(&[id("2026-11-24"), id("2026-11-24b"), format!("{}|c0123", id("1970-01-02"))]);
        days.add_blocks(&["not a block id".to_string()]);
        assert_eq!(days.days, BTreeSet::from([1, day_of(1_795_478_400_000)]));
        assert!(!days.every);
        days.add(CompactionDays::every());
        assert_eq!(days, CompactionDays::every());
        days.add_blocks(&[id("2026-11-25")]);
        assert_eq!(days, CompactionDays::every(), "every day already");
        assert_eq!(collection_day("event_block_index_19700101", EVENT_BLOCK_INDEX_PREFIX), Some(0));
        assert_eq!(collection_day("event_blocks_19691231", EVENT_BLOCKS_PREFIX), Some(-1));
        assert_eq!(collection_day("event_block_index", EVENT_BLOCK_INDEX_PREFIX), None);
        assert_eq!(collection_day("event_block_index_2026112", EVENT_BLOCK_INDEX_PREFIX), None);
        assert_eq!(days_between(DAY_MS, 2 * DAY_MS), 1..=1);
        assert!(days_between(DAY_MS, DAY_MS).is_empty());
    }

    #[test]
    fn small_blocks_live_in_their_days_collection_of_small_blocks() {
        let id = "0002|1-0|9-0|2026-11-24";
        assert_eq!(block_collection(id), "event_blocks_20261124");
        assert_eq!(block_collection(&format!("{id}|s")), "event_blocks_small_20261124");
        assert_eq!(block_collection(&format!("{id}a|s")), "event_blocks_small_20261124");
        assert_eq!(block_collection(&format!("{id}|c0123|s")), "event_blocks_small_20261124");
        assert_eq!(block_day(&format!("{id}|c0123|s")), block_day(id));
        assert_eq!(collection_day("event_blocks_small_20261124", SMALL_EVENT_BLOCKS_PREFIX), block_day(id));
        assert_eq!(collection_day("event_blocks_small_20261124", EVENT_BLOCKS_PREFIX), None);
        assert_eq!(collection_day("event_blocks_20261124", SMALL_EVENT_BLOCKS_PREFIX), None);
    }

    #[test]
    fn small_blocks_merge_in_stream_order_in_runs_of_bounded_size() {
        let block = |k: u64, n: i64| SmallBlock {
            id: format!("b{k}"),
            n,
            first: StreamPosition { millis: k, sequence: 0 },
            last: StreamPosition { millis: k, sequence: 9 },
        };
        assert!(merge_groups((0..7).map(|k| block(k, 10)).collect()).is_empty(), "too few to merge");
        // Out of order, 3,000 events each: runs of three (9,000), then a last pair.
        let groups = merge_groups(
            [4, 0, 3, 1, 2].iter().map(|&k| block(k, 3_000)).chain((5..8).map(|k| block(k, 999))).collect(),
        );
        let ids: Vec<Vec<&str>> = groups.iter().map(|g| g.iter().map(|b| b.id.as_str()).collect()).collect();
        assert_eq!(ids, [vec!["b0", "b1", "b2"], vec!["b3", "b4", "b5", "b6", "b7"]]);
        // Tiny blocks: at most 500 a run, and a lone block left over is not a merge.
        let groups = merge_groups((0..1_001).map(|k| block(k, 1)).collect());
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), [500, 500]);
    }

    #[test]
    fn days_are_utc_and_labelled_as_dates() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_label(day_of(1_764_000_000_000)), "2025-11-24");
        assert_eq!(day_label(-1), "1969-12-31");
    }
}
