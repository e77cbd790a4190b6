//! Collections and indexes, ensured by one idempotent function that the processor runs at
//! start and the operator runs when it creates a pipeline.

use mongodb::IndexModel;
use mongodb::bson::doc;
use pulse_core::duration::DurationSpec;

use crate::collections::LEGACY_EVENTS;
use crate::{Store, StoreError};

/// What [`Store::ensure_schema`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaReport {
    /// Whether the collection older versions kept every raw event in has a TTL index (the
    /// server expires it); if not, the processor deletes its expired events. Day
    /// collections are dropped by the processor on every server.
    pub ttl_index: bool,
}

impl Store {
    /// Creates the collections' indexes if missing. Safe to run any number of times, from
    /// any number of processes.
    pub async fn ensure_schema(&self) -> Result<SchemaReport, StoreError> {
        // Raw events live in one collection per UTC day (created by its first insert), read
        // only whole (rebuild, recount) and retired by dropping the day: no secondary index,
        // each would cost every insert. The single collection of older versions keeps what
        // it had: a TTL index expires it where the server has them.
        let legacy = self.db.collection::<mongodb::bson::Document>(LEGACY_EVENTS);
        let ttl_index = match existing_ts_index(&legacy).await? {
            Some(TsIndex::Ttl) => true,
            Some(TsIndex::Plain(name)) => {
                // Made by an earlier version where the server has no TTL indexes.
                match legacy.drop_index(name).await {
                    Ok(()) => {
                        tracing::info!("dropped the plain index on the raw events' ts: it served no read")
                    }
                    Err(e) => tracing::warn!(error = %e, "the plain index on the raw events' ts stays"),
                }
                false
            }
            None => false,
        };
        // Rollups are read by `_id` (ranges of it for time ranges, see BucketKey::id) and
        // written often: no secondary index to maintain.
        let collection = |name| self.db.collection::<mongodb::bson::Document>(name);
        // Blocks and their index entries live in their day's collections (created by the
        // day's first block), with no secondary index: blocks are read by `_id`, and a
        // day's entries are few. The single index of older versions moves into them.
        match self.move_legacy_block_index().await {
            Ok(0) => {}
            Ok(moved) => tracing::info!(moved, "the event block index moved into one collection per day"),
            // Read as it is meanwhile; the next start moves the rest.
            Err(e) => tracing::warn!(error = %e, "the event block index of older versions stays for now"),
        }
        let existing = self.db.list_collection_names().await?;
        let name = crate::profiles::PROFILE_CHANGES;
        if !existing.iter().any(|c| c == name) {
            match self.db.create_collection(name).await {
                Ok(()) => {}
                // Created meanwhile by another process.
                Err(e) if namespace_exists(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Profile changes are read by user (one profile) and by partition (folding them).
        ensure_indexes(&collection(crate::profiles::PROFILE_CHANGES), &[doc! { "u": 1 }, doc! { "p": 1 }])
            .await?;
        Ok(SchemaReport { ttl_index })
    }

    /// Deletes, by whole UTC days, raw events older than `retention` (their days'
    /// collections; in the single collection of older versions, unless its TTL index does),
    /// event blocks whose newest event is, and the user lists of their periods. Rollup
    /// periods past their own retention (minutes after 14 days, hours after 400; days are
    /// kept) are left out by the rollup log's compaction ([`crate::compaction`]).
    pub async fn delete_expired(
        &self,
        now_ms: i64,
        retention: DurationSpec,
        ttl_index: bool,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        // Whole UTC days expire at once.
        const DAY_MS: i64 = 86_400_000;
        let cutoff = (now_ms - retention.as_millis()).div_euclid(DAY_MS) * DAY_MS;
        // A failure in the older versions' collection (FerretDB refuses to delete more
        // documents at once than its backend takes parameters: docs/operations.md) is
        // reported after the rest has expired.
        let legacy = self.expire_legacy_events(cutoff, ttl_index).await;
        deleted += self.delete_expired_blocks(cutoff).await?;
        // Raw events and user lists of days past retention go by whole collections
        // (`events_<yyyymmdd>`, and `bucket_users_<yyyymmdd>_p<n>`, whose names sort after
        // the day's alone).
        let oldest_day = crate::rollups::utc_day(cutoff);
        let oldest_events = format!("{}{oldest_day}", crate::collections::EVENTS_PREFIX);
        let oldest_lists = format!("{}{oldest_day}", crate::rollups::BUCKET_USERS_PREFIX);
        for name in self.db.list_collection_names().await? {
            let expired = (crate::events::is_raw_day_collection(&name) && name < oldest_events)
                || (name.starts_with(crate::rollups::BUCKET_USERS_PREFIX) && name < oldest_lists);
            if expired {
                self.db.collection::<mongodb::bson::Document>(&name).drop().await?;
            }
        }
        deleted += legacy?;
        Ok(deleted)
    }

    /// Deletes the expired events of the collection older versions kept every raw event
    /// in (where no TTL index does), and drops it once it is empty.
    async fn expire_legacy_events(&self, cutoff: i64, ttl_index: bool) -> Result<u64, StoreError> {
        if !self.db.list_collection_names().await?.iter().any(|n| n == LEGACY_EVENTS) {
            return Ok(0);
        }
        let legacy = self.db.collection::<mongodb::bson::Document>(LEGACY_EVENTS);
        let mut deleted = 0;
        // Only when an event block says an event of an expired day is there: each pass
        // reads the whole collection on FerretDB.
        if !ttl_index && self.holds_events_before(cutoff).await? {
            deleted = legacy
                .delete_many(doc! { "ts": { "$lt": mongodb::bson::DateTime::from_millis(cutoff) } })
                .await?
                .deleted_count;
        }
        if legacy.estimated_document_count().await? == 0 {
            legacy.drop().await?;
            tracing::info!("the raw-event collection of older versions is empty and dropped");
        }
        Ok(deleted)
    }
}

/// Whether a create failed because the collection exists (code 48, NamespaceExists).
fn namespace_exists(e: &mongodb::error::Error) -> bool {
    matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 48)
}

/// An index on the raw events' `ts` alone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TsIndex {
    /// It expires documents: the server keeps retention.
    Ttl,
    /// An earlier version's, where the server has no TTL indexes (its name).
    Plain(String),
}

/// The index `events` has on `ts` alone, if any.
async fn existing_ts_index(
    events: &mongodb::Collection<mongodb::bson::Document>,
) -> Result<Option<TsIndex>, StoreError> {
    use futures::TryStreamExt;
    let mut indexes = match events.list_indexes().await {
        Ok(cursor) => cursor,
        // A collection that does not exist yet has no indexes.
        Err(_) => return Ok(None),
    };
    while let Some(index) = indexes.try_next().await? {
        if index.keys == doc! { "ts": 1 } {
            let options = index.options.unwrap_or_default();
            return Ok(Some(match options.expire_after {
                Some(_) => TsIndex::Ttl,
                None => TsIndex::Plain(options.name.unwrap_or_else(|| "ts_1".to_string())),
            }));
        }
    }
    Ok(None)
}

/// Creates the indexes on `keys` that the collection lacks. Only missing ones are sent:
/// re-creating existing indexes crashes FerretDB 1.24's connection.
async fn ensure_indexes(
    collection: &mongodb::Collection<mongodb::bson::Document>,
    keys: &[mongodb::bson::Document],
) -> Result<(), StoreError> {
    use futures::TryStreamExt;
    let mut existing = Vec::new();
    if let Ok(mut cursor) = collection.list_indexes().await {
        while let Some(index) = cursor.try_next().await? {
            existing.push(index.keys);
        }
    }
    let missing: Vec<IndexModel> = keys
        .iter()
        .filter(|k| !existing.contains(k))
        .map(|k| IndexModel::builder().keys(k.clone()).build())
        .collect();
    if !missing.is_empty() {
        match collection.create_indexes(missing).await {
            Ok(_) => {}
            // FerretDB on PostgreSQL killed while creating an index leaves the index in
            // PostgreSQL but not in its own catalogue, and refuses to create it again: the
            // index is there, so the schema is.
            Err(e) if e.to_string().contains("already exists") => {
                tracing::warn!(error = %e, "an index the store says it lacks already exists; going on");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
