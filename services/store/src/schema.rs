//! Collections and indexes, ensured by one idempotent function that the processor runs at
//! start and the operator runs when it creates a pipeline.

use mongodb::IndexModel;
use mongodb::bson::doc;
use mongodb::options::IndexOptions;
use pulse_core::duration::DurationSpec;

use crate::collections::{EVENT_BLOCK_INDEX, EVENTS};
use crate::{Store, StoreError};

/// What [`Store::ensure_schema`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaReport {
    /// Whether the server keeps raw-event retention itself with a TTL index; if not, the
    /// processor deletes expired events periodically.
    pub ttl_index: bool,
}

impl Store {
    /// Creates the collections' indexes if missing. Safe to run any number of times, from
    /// any number of processes.
    pub async fn ensure_schema(&self, retention: DurationSpec) -> Result<SchemaReport, StoreError> {
        let events = self.db.collection::<mongodb::bson::Document>(EVENTS);
        // Raw events are written once and read only whole (rebuild, recount): queries read
        // the event blocks. So no secondary index but the TTL one where the server has TTL
        // indexes: each costs every insert. Where it has none (FerretDB), no index on `ts`
        // either: FerretDB serves no range filter from an index, so the daily retention pass
        // reads the whole collection anyway, and the index cost every insert about a third
        // of its rate with events' times spread over a minute (timestamps in any order
        // land anywhere in it).
        let ttl_index = match existing_ts_index(&events).await? {
            // Decided on an earlier run: keep it (creating an index that exists, with other
            // options, is an error, and crashes FerretDB 1.24's connection).
            Some(TsIndex::Ttl) => true,
            found => {
                if let Some(TsIndex::Plain(name)) = found {
                    // Made by an earlier version where the server has no TTL indexes.
                    match events.drop_index(name).await {
                        Ok(()) => {
                            tracing::info!("dropped the plain index on the raw events' ts: it served no read")
                        }
                        Err(e) => tracing::warn!(error = %e, "the plain index on the raw events' ts stays"),
                    }
                }
                let ttl = IndexModel::builder()
                    .keys(doc! { "ts": 1 })
                    .options(
                        IndexOptions::builder()
                            .name("ts_ttl".to_string())
                            .expire_after(std::time::Duration::from_secs(retention.as_secs()))
                            .build(),
                    )
                    .build();
                match events.create_index(ttl).await {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::info!(error = %e, "no TTL index on this server; expired events are deleted once a day");
                        false
                    }
                }
            }
        };
        // Rollups are read by `_id` (ranges of it for time ranges, see BucketKey::id) and
        // written often: no secondary index to maintain.
        let collection = |name| self.db.collection::<mongodb::bson::Document>(name);
        // Blocks are read by `_id`, from their day's collection (created by its first
        // block). Their index entries are few (one per batch, small batches merged),
        // scanned whole on FerretDB; MongoDB serves the time ranges of queries and
        // retention (`hi`) and compaction's small blocks (`p`, `n`) from indexes.
        let existing = self.db.list_collection_names().await?;
        for name in [EVENT_BLOCK_INDEX, crate::profiles::PROFILE_CHANGES] {
            if !existing.iter().any(|c| c == name) {
                match self.db.create_collection(name).await {
                    Ok(()) => {}
                    // Created meanwhile by another process.
                    Err(e) if namespace_exists(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        ensure_indexes(&collection(EVENT_BLOCK_INDEX), &[doc! { "hi": 1 }, doc! { "p": 1, "n": 1 }]).await?;
        // Profile changes are read by user (one profile) and by partition (folding them).
        ensure_indexes(&collection(crate::profiles::PROFILE_CHANGES), &[doc! { "u": 1 }, doc! { "p": 1 }])
            .await?;
        Ok(SchemaReport { ttl_index })
    }

    /// Deletes, by whole UTC days, raw events older than `retention` (where there is no TTL
    /// index), event blocks whose newest event is, and the user lists of their periods.
    /// Rollup periods past their own retention (minutes after 14 days, hours after 400;
    /// days are kept) are left out by the rollup log's compaction ([`crate::compaction`]).
    pub async fn delete_expired(
        &self,
        now_ms: i64,
        retention: DurationSpec,
        ttl_index: bool,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        // Whole UTC days expire at once, so that the passes over the events collection (on
        // a store without TTL indexes) happen once a day, and only when an event block says
        // an event of an expired day is there.
        const DAY_MS: i64 = 86_400_000;
        let cutoff = (now_ms - retention.as_millis()).div_euclid(DAY_MS) * DAY_MS;
        // A failure here (FerretDB refuses to delete more documents at once than its backend
        // takes parameters: docs/operations.md) is reported after the rest has expired.
        let mut raw_events = Ok(());
        if !ttl_index && self.holds_events_before(cutoff).await? {
            match self
                .db
                .collection::<mongodb::bson::Document>(EVENTS)
                .delete_many(doc! { "ts": { "$lt": mongodb::bson::DateTime::from_millis(cutoff) } })
                .await
            {
                Ok(done) => deleted += done.deleted_count,
                Err(e) => raw_events = Err(e),
            }
        }
        deleted += self.delete_expired_blocks(cutoff).await?;
        // User lists of periods past retention go by whole collections, one per partition
        // and day (`bucket_users_<yyyymmdd>_p<n>`: a day's names sort after the day alone).
        let oldest_kept = format!(
            "{}{}",
            crate::rollups::BUCKET_USERS_PREFIX,
            crate::rollups::utc_day(now_ms - retention.as_millis())
        );
        for name in self.db.list_collection_names().await? {
            if name.starts_with(crate::rollups::BUCKET_USERS_PREFIX) && name < oldest_kept {
                self.db.collection::<mongodb::bson::Document>(&name).drop().await?;
            }
        }
        raw_events?;
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
