//! Raw events: inserted once by id, whatever the redeliveries and duplicates.

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use pulse_core::buffer::BufferedEvent;
use pulse_core::rollup::StreamPosition;

use crate::collections::EVENTS;
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
        let mut seen = HashSet::new();
        let mut batch = Vec::new();
        let mut batch_index = Vec::new();
        for (i, w) in writes.iter().enumerate() {
            // A second copy of an id in the same batch is a duplicate of the first.
            if seen.insert(w.event.event_id.as_str()) {
                batch.push(raw_document(w));
                batch_index.push(i);
                flags[i] = true;
            }
        }
        if batch.is_empty() {
            return Ok(InsertOutcome { flags, refused: Vec::new() });
        }
        let events = self.db.collection::<Document>(EVENTS);
        // After a refusal, the unordered insert may have stored the other documents: existing
        // ids are then looked up as for a redelivery.
        let (already, refused, redelivered) = match crate::insert_new(&events, batch).await {
            Ok(already) => (already.into_iter().map(|i| batch_index[i]).collect(), Vec::new(), redelivered),
            Err(StoreError::Mongo(e)) if crate::refusal::is_refusal(&e) => {
                let (already, refused) = one_by_one(&events, writes, &mut flags).await?;
                (already, refused, true)
            }
            Err(e) => return Err(e),
        };
        if !redelivered {
            for i in already {
                flags[i] = false;
            }
            return Ok(InsertOutcome { flags, refused });
        }
        if already.is_empty() {
            return Ok(InsertOutcome { flags, refused });
        }
        // Those ids exist: this entry stored them only if their source is this entry.
        let ids: Vec<&str> = already.iter().map(|&i| writes[i].event.event_id.as_str()).collect();
        // One find per thousand ids: FerretDB 1.24 serves no lookup by `_id` from an index
        // (each scans the collection), so one pass finds them all; MongoDB uses its index.
        let mut sources: HashMap<String, (i64, String)> = HashMap::new();
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            let mut cursor = events
                .find(doc! { "_id": { "$in": chunk } })
                .projection(doc! { "src_p": 1, "src": 1 })
                .await?;
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
        for i in already {
            let w = &writes[i];
            flags[i] = sources.get(&w.event.event_id) == Some(&source(w.partition, w.position));
        }
        Ok(InsertOutcome { flags, refused })
    }
}

/// The slow path after the store refused a batch: each event alone, in order, so that
/// exactly the documents it refuses are known. Returns the positions (in `writes`) whose
/// id existed already, and the refusals; `flags` says which were inserted.
async fn one_by_one(
    events: &mongodb::Collection<Document>,
    writes: &[EventWrite<'_>],
    flags: &mut [bool],
) -> Result<(Vec<usize>, Vec<Refusal>), StoreError> {
    let mut done: HashSet<&str> = HashSet::new();
    let (mut already, mut refused) = (Vec::new(), Vec::new());
    for (i, w) in writes.iter().enumerate() {
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
