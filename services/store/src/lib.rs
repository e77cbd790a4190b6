//! Pulse's MongoDB storage, within the portable store subset of design.md section 8 (no
//! transactions, no bulkWrite, `$group` with `$sum` only), so it runs on MongoDB 6+ and
//! on FerretDB alike.
//!
//! Collections of a tenant's database:
//! - `events`: raw events, `_id` = event id, the source of truth;
//! - `rollup_log`: each partition's pre-aggregates as a dense sequence of records, one per
//!   batch: its ballots and commits, small documents ([`log`]); `rollup_deltas`: each
//!   record's content, the batch's share of every bucket it touches (`ev.<event>`: events
//!   `n`, unique users `u`, numeric stats `num`); a bucket is the sum of its records
//!   ([`rollups`]); `rollup_versions`: the records compaction merged, one document per
//!   partition and UTC day ([`compaction`]);
//! - `bucket_users_<yyyymmdd>_p<n>`: the users each record of partition `n` counted first in
//!   each hour and day bucket starting that day, one list per record ([`rollups`]);
//! - `profile_changes`: per batch and user, the user's profile update ([`profiles`]);
//! - `event_blocks_<yyyymmdd>` (small ones apart, in `event_blocks_small_<yyyymmdd>`) and
//!   `event_block_index_<yyyymmdd>`: the raw events again, deflated in
//!   blocks of a batch's events of one UTC day each with the stream entry of every event,
//!   for reads of many events and for a writer to find which users its rollups counted
//!   ([`blocks`]);
//! - `failed_events`: acknowledged events the store refused on every try, with the reason,
//!   so that their partition moves on ([`failed`]);
//! - `rollup_name_probes`: empty; an event name is tried there as an update path before a
//!   batch counts it ([`failed`]).
//!
//! Stores written by earlier versions may also hold `rollups` (period documents updated in
//! place), `rollup_users` and `user_periods` (per-user markers), no longer written or
//! read; a rebuild drops them. `event_blocks` (every block in one collection) is read until
//! a rebuild moves its blocks into their days. `profiles` (one document per user, updated in place) is
//! still read, as the state a user's profile changes apply to.
//!
//! Exactness without transactions: see docs/exactness.md and [`rollups`].

pub mod batch;
pub mod blocks;
pub mod cohorts;
pub mod compaction;
mod documents;
mod events;
pub mod failed;
pub mod log;
pub mod memory;
pub mod profiles;
mod read;
pub mod refusal;
pub use read::PeriodShare;
pub mod recount;
pub mod rollups;
mod schema;

pub use batch::{Batch, BatchSteps, PlainSteps, RecordPlan, StoredBatch};
pub use blocks::{BlockRef, Compacted, CompactionDays};
pub use compaction::Compaction;
pub use documents::{bson_of_json, json_of_bson};
pub use events::{EventWrite, InsertOutcome, Refusal, StoredFlags, raw_collection};
pub use failed::{FailedEvent, FailureReason};
pub use log::{Ballot, LogState, LogTail, OpenRecord};
pub use memory::{UserKey, WriterMemory};
pub use rollups::{BatchRollups, PartitionLease, RecordAttempt, RecordDelta};
pub use schema::SchemaReport;

/// Collection names.
pub mod collections {
    /// Raw events, one collection per UTC day of their time: `events_<yyyymmdd>`
    /// ([`crate::events::raw_collection`]).
    pub const EVENTS_PREFIX: &str = "events_";
    /// Where versions before the day collections kept every raw event: still read (rebuild)
    /// and expired, and dropped once empty.
    pub const LEGACY_EVENTS: &str = "events";
    pub const ROLLUP_LOG: &str = crate::log::ROLLUP_LOG;
    pub const ROLLUP_VERSIONS: &str = crate::compaction::ROLLUP_VERSIONS;
    pub const ROLLUP_DELTAS: &str = crate::log::ROLLUP_DELTAS;
    /// No longer written or read: dropped by a rebuild.
    pub const LEGACY: [&str; 3] = ["rollups", "rollup_users", "user_periods"];
    /// Event blocks, one collection per UTC day of their events: `event_blocks_<yyyymmdd>`.
    pub const EVENT_BLOCKS_PREFIX: &str = "event_blocks_";
    /// The blocks of fewer than a thousand events (a batch at a low rate, or a backfill's
    /// share of a day), until compaction merges them: `event_blocks_small_<yyyymmdd>`. Kept
    /// apart so that compaction's find and delete pass over them, not over a day's big blocks.
    pub const SMALL_EVENT_BLOCKS_PREFIX: &str = "event_blocks_small_";
    /// Where an older version kept every block: still read and cleaned until a rebuild
    /// drops it.
    pub const LEGACY_EVENT_BLOCKS: &str = "event_blocks";
    /// Event block index entries, one collection per UTC day of their blocks:
    /// `event_block_index_<yyyymmdd>`.
    pub const EVENT_BLOCK_INDEX_PREFIX: &str = "event_block_index_";
    /// Where an older version kept every index entry: read while it exists, and moved into
    /// the days' collections by `Store::ensure_schema`.
    pub const LEGACY_EVENT_BLOCK_INDEX: &str = "event_block_index";
    /// Acknowledged events the store refused, kept aside ([`crate::failed`]).
    pub const FAILED_EVENTS: &str = "failed_events";
    /// Scratch documents that try an event name as a rollup update path; each is removed at
    /// once, so the collection stays empty.
    pub const ROLLUP_NAME_PROBES: &str = "rollup_name_probes";
    /// Saved cohorts: a head per name and its member chunks ([`crate::cohorts`]).
    pub const SAVED_COHORTS: &str = crate::cohorts::SAVED_COHORTS;
}

/// The store error code for a duplicate key.
pub const DUPLICATE_KEY: i32 = 11000;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("a document could not be encoded: {0}")]
    Encode(String),
    /// Another writer took `0` first (a record of the rollup log, or its ballot), or the
    /// log moved on: the batch is read again from where the log ends.
    #[error(
        "{0} was taken by another writer, or the rollup log moved on: the batch is tried again from where the log ends"
    )]
    Moved(String),
    /// `detail` is what the store said; kept out of the message, which is logged.
    #[error(
        "the store refused {events} event document(s); after repeated refusals they are set aside as failed events"
    )]
    Refused { events: usize, detail: String },
    /// A document that Pulse wrote and cannot read back (changed by hand, or by a newer
    /// release).
    #[error("the store holds a malformed document: {0}")]
    Malformed(String),
    #[error("an event block could not be read: {0}")]
    Block(String),
    #[error("the query reads more than {limit} events: narrow the range or add filters")]
    TooManyEvents { limit: usize },
    #[error("the profiles are more than {limit} documents: more than a query reads at once")]
    TooManyProfiles { limit: usize },
}

impl StoreError {
    /// Whether this fault lasts until an operator repairs the store
    /// ([`refusal::damaged_catalogue`]), so that retrying alone will not end it.
    pub fn damaged_catalogue(&self) -> bool {
        matches!(self, StoreError::Mongo(e) if refusal::damaged_catalogue(e))
    }
}

/// A tenant's database.
#[derive(Clone)]
pub struct Store {
    db: mongodb::Database,
}

impl Store {
    /// Connects to `uri` and uses `database`. The URI is never logged (it may hold a password).
    pub async fn connect(uri: &str, database: &str) -> Result<Self, StoreError> {
        let client = mongodb::Client::with_uri_str(uri).await?;
        Ok(Store { db: client.database(database) })
    }

    /// A store over an existing client.
    pub fn new(db: mongodb::Database) -> Self {
        Store { db }
    }

    /// The database.
    pub fn database(&self) -> &mongodb::Database {
        &self.db
    }

    /// Whether the server answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.run_command(mongodb::bson::doc! { "ping": 1 }).await?;
        Ok(())
    }
}

/// Inserts `documents` unordered and returns the positions of those whose `_id` existed
/// already; any other failure is an error.
pub(crate) async fn insert_new(
    collection: &mongodb::Collection<mongodb::bson::Document>,
    documents: Vec<mongodb::bson::Document>,
) -> Result<Vec<usize>, StoreError> {
    use mongodb::error::ErrorKind;
    if documents.is_empty() {
        return Ok(Vec::new());
    }
    match collection.insert_many(documents).ordered(false).await {
        Ok(_) => Ok(Vec::new()),
        Err(e) => match e.kind.as_ref() {
            ErrorKind::InsertMany(failure)
                if failure.write_concern_error.is_none()
                    && failure
                        .write_errors
                        .as_ref()
                        .is_some_and(|w| w.iter().all(|w| w.code == DUPLICATE_KEY)) =>
            {
                Ok(failure.write_errors.iter().flatten().map(|w| w.index).collect())
            }
            _ => Err(e.into()),
        },
    }
}

/// Whether a MongoDB error is a duplicate key.
pub fn is_duplicate(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => e.to_string().contains("E11000"),
    }
}
