//! Raw events: inserted once by id, whatever the redeliveries and duplicates.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use pulse_core::buffer::BufferedEvent;
use pulse_core::rollup::StreamPosition;

use crate::collections::{EVENTS_PREFIX, LEGACY_EVENTS};
use crate::documents::document_of_json;
use crate::{Store, StoreError};

/// Event ids looked up per find when a redelivered batch meets ids already stored.
const LOOKUP_CHUNK: usize = 1_000;

/// One event to store, with the stream entry it came from.
pub struct EventWrite<'a> {
    pub partition: u32,
    pub position: StreamPosition,
    pub event: &'a BufferedEvent,
}

/// For each event written, whether this stream entry is the one that stored it: true for
/// a first delivery and for a redelivery of the same entry; false for a duplicate (the same
/// event id stored by an earlier entry, or earlier in the same batch).
pub type StoredFlags = Vec<bool>;

fn source(partition: u32, position: StreamPosition) -> (i64, String) {
    (i64::from(partition), position.to_key())
}

fn raw_document(write: &EventWrite<'_>) -> Document {
    let e = write.event;
    let (src_p, src) = source(write.partition, write.position);
    let mut doc = doc! {
        "_id": &e.event_id,
        "event": &e.event,
        "distinct_id": &e.distinct_id,
        "ts": DateTime::from_millis(e.timestamp),
        "received_at": DateTime::from_millis(e.received_at),
        "properties": document_of_json(&e.properties),
        "src_p": src_p,
        "src": src,
    };
    if e.id_generated {
        doc.insert("id_generated", true);
    }
    doc
}

/// The outcome of inserting a batch's raw events.
#[derive(Debug)]
pub struct InsertOutcome {
    pub flags: StoredFlags,
    /// Events the store refused as documents (not transiently), by position in the writes:
    /// stored nowhere, flagged false.
    pub refused: Vec<Refusal>,
}

/// An event document the store refused, and what it said.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub index: usize,
    pub detail: String,
}

impl Store {
    /// Inserts the events (unordered; existing ids are left alone) and tells which ones
    /// this batch's entries stored. Idempotent: a redelivered batch gets the same flags.
    /// A document the store refuses is an error ([`StoreError::Refused`]).
    pub async fn insert_events(
        &self,
        writes: &[EventWrite<'_>],
        redelivered: bool,
    ) -> Result<StoredFlags, StoreError> {
        let outcome = self.insert_events_or_refuse(writes, redelivered).await?;
        match outcome.refused.first() {
            None => Ok(outcome.flags),
            Some(r) => Err(StoreError::Refused { events: outcome.refused.len(), detail: r.detail.clone() }),
        }
    }

    /// As [`Store::insert_events`], but a document the store refuses (whatever no validation
    /// foresaw) does not fail the batch: the other events are stored, and the refused ones
    /// are reported, flagged false. Transient failures are still errors, to be retried.
    ///
    /// `redelivered` says the entries were delivered before (read from the pending list):
    /// only then can an existing id have been stored by these very entries, so only then
    /// are existing ids looked up; on a first delivery an existing id is a duplicate.
    pub async fn insert_events_or_refuse(
        &self,
        writes: &[EventWrite<'_>],
        redelivered: bool,
    ) -> Result<InsertOutcome, StoreError> {
        let mut flags = vec![false; writes.len()];
        let mut refused = Vec::new();
        // Each UTC day's events go to that day's collection, where their ids are unique.
        let mut days: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut seen = HashSet::new();
        for (i, w) in writes.iter().enumerate() {
            let collection = raw_collection(w.event.timestamp);
            // A second copy of an id on the same day in the same batch is a duplicate of
            // the first.
            flags[i] = seen.insert((w.event.event_id.as_str(), collection.clone()));
            days.entry(collection).or_default().push(i);
        }
        // One day after the other: FerretDB on SQLite writes one transaction at a time, and
        // a backfill's days inserted at once wait on each other's locks, storing fewer
        // events a second than one after the other (docs/operations.md).
        for (collection, all) in days {
            refused.extend(self.insert_day(&collection, writes, &all, &mut flags, redelivered).await?);
        }
        refused.sort_by_key(|r| r.index);
        Ok(InsertOutcome { flags, refused })
    }
}

impl Store {
    /// Inserts the events at `all` (positions in `writes`, all of one UTC day) into that
    /// day's `collection`, where `flags` says which are first copies in the batch; sets
    /// their flags as [`Store::insert_events_or_refuse`] does, and returns the refusals.
    async fn insert_day(
        &self,
        collection: &str,
        writes: &[EventWrite<'_>],
        all: &[usize],
        flags: &mut [bool],
        redelivered: bool,
    ) -> Result<Vec<Refusal>, StoreError> {
        let events = self.db.collection::<Document>(collection);
        let firsts: Vec<usize> = all.iter().copied().filter(|&i| flags[i]).collect();
        let batch = firsts.iter().map(|&i| raw_document(&writes[i])).collect();
        // After a refusal, the unordered insert may have stored the other documents:
        // existing ids are then looked up as for a redelivery.
        let (already, look_up, refused): (Vec<usize>, bool, Vec<Refusal>) =
            match crate::insert_new(&events, batch).await {
                Ok(already) => (already.into_iter().map(|k| firsts[k]).collect(), redelivered, Vec::new()),
                Err(StoreError::Mongo(e)) if crate::refusal::is_refusal(&e) => {
                    let (already, refused) = one_by_one(&events, writes, all, flags).await?;
                    (already, true, refused)
                }
                Err(e) => return Err(e),
            };
        if look_up {
            stored_by_these_entries(&events, writes, &already, flags).await?;
        } else {
            // On a first delivery an existing id is a duplicate.
            for i in already {
                flags[i] = false;
            }
        }
        Ok(refused)
    }

    /// The collections holding raw events: every day's, oldest first, then the single
    /// collection of versions before them (`events`) if it is still there.
    pub async fn raw_event_collections(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self
            .db
            .list_collection_names()
            .await?
            .into_iter()
            .filter(|n| is_raw_day_collection(n) || n == LEGACY_EVENTS)
            .collect();
        // `events` sorts before `events_...`: put it last.
        names.sort_by_key(|n| (n == LEGACY_EVENTS, n.clone()));
        Ok(names)
    }

    /// Every raw event document of every collection, with `projection` (for checks and
    /// tools: it holds the whole history in memory).
    pub async fn raw_event_documents(&self, projection: Document) -> Result<Vec<Document>, StoreError> {
        let mut out = Vec::new();
        for collection in self.raw_event_collections().await? {
            let mut cursor = self
                .db
                .collection::<Document>(&collection)
                .find(doc! {})
                .projection(projection.clone())
                .await?;
            while let Some(d) = cursor.try_next().await? {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// Whether `name` is a day's raw-event collection (`events_<yyyymmdd>`).
pub(crate) fn is_raw_day_collection(name: &str) -> bool {
    name.strip_prefix(EVENTS_PREFIX).is_some_and(|d| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The collection of the raw events of the UTC day of `ts` (epoch ms):
/// `events_<yyyymmdd>`. One per day, so that an insert's cost is bounded by a day's events
/// whatever the history, and retention drops whole days.
pub fn raw_collection(ts: i64) -> String {
    format!("{EVENTS_PREFIX}{}", crate::rollups::utc_day(ts))
}

/// Sets the flags of `already` (positions in `writes` whose id existed in `events`): true
/// where the stored copy came from the same stream entry, i.e. a redelivery of it.
async fn stored_by_these_entries(
    events: &mongodb::Collection<Document>,
    writes: &[EventWrite<'_>],
    already: &[usize],
    flags: &mut [bool],
) -> Result<(), StoreError> {
    if already.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = already.iter().map(|&i| writes[i].event.event_id.as_str()).collect();
    // One find per thousand ids: FerretDB 1.24 serves no lookup by `_id` from an index
    // (each scans the collection), so one pass finds them all; MongoDB uses its index.
    let mut sources: HashMap<String, (i64, String)> = HashMap::new();
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let mut cursor =
            events.find(doc! { "_id": { "$in": chunk } }).projection(doc! { "src_p": 1, "src": 1 }).await?;
        while let Some(d) = cursor.try_next().await? {
            let id = d.get_str("_id").unwrap_or_default().to_string();
            let src_p = match d.get("src_p") {
                Some(Bson::Int64(p)) => *p,
                Some(Bson::Int32(p)) => i64::from(*p),
                _ => -1,
            };
            sources.insert(id, (src_p, d.get_str("src").unwrap_or_default().to_string()));
        }
    }
    for &i in already {
        let w = &writes[i];
        flags[i] = sources.get(&w.event.event_id) == Some(&source(w.partition, w.position));
    }
    Ok(())
}

/// The slow path after the store refused a day's batch: each event of `indices` alone, in
/// order, so that exactly the documents it refuses are known. Returns the positions (in `writes`) whose
/// id existed already, and the refusals; `flags` says which were inserted.
async fn one_by_one(
    events: &mongodb::Collection<Document>,
    writes: &[EventWrite<'_>],
    indices: &[usize],
    flags: &mut [bool],
) -> Result<(Vec<usize>, Vec<Refusal>), StoreError> {
    let mut done: HashSet<&str> = HashSet::new();
    let (mut already, mut refused) = (Vec::new(), Vec::new());
    for &i in indices {
        let w = &writes[i];
        let id = w.event.event_id.as_str();
        flags[i] = false;
        // Later copies of an id stand in for a refused first copy; after a stored one they
        // are duplicates.
        if done.contains(id) {
            continue;
        }
        match events.insert_one(raw_document(w)).await {
            Ok(_) => flags[i] = true,
            Err(e) if crate::is_duplicate(&e) => {
                flags[i] = true;
                already.push(i);
            }
            Err(e) if crate::refusal::is_refusal(&e) => {
                refused.push(Refusal { index: i, detail: crate::refusal::describe(&e) });
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        done.insert(id);
    }
    Ok((already, refused))
}
