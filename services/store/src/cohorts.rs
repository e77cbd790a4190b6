//! Saved cohorts: fixed lists of users (the people behind a number, saved by name) that
//! queries filter by, as they do by a behavioural cohort.
//!
//! A head document per name (`_id` the name) says which generation of member chunks is
//! current; a chunk is `<name>|<generation>|<index>` with up to 10,000 ids. A save writes
//! the new generation's chunks, then the head, then deletes the old chunks: a reader that
//! read a head finds its chunks whole (unless a later save deletes them meanwhile, which
//! it reports as [`StoreError::Moved`]: read again).

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::options::ReplaceOptions;

use crate::{Store, StoreError};

pub const SAVED_COHORTS: &str = "saved_cohorts";
/// Member ids per chunk: a chunk stays far below the store's 16 MiB document limit even
/// with ids of a few hundred bytes.
const CHUNK: usize = 10_000;

/// A saved cohort's head: what it is, not who.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedCohort {
    pub name: String,
    /// Its members.
    pub users: u64,
    /// When it was saved (epoch ms).
    pub saved_at: i64,
    /// What it was saved from (the request, as JSON text).
    pub source: String,
}

fn chunk_id(name: &str, generation: i64, index: usize) -> String {
    format!("{name}|{generation:020}|{index:06}")
}

/// The `_id` range of a generation's chunks.
fn chunks_of(name: &str, generation: i64) -> Document {
    let prefix = format!("{name}|{generation:020}|");
    doc! { "_id": { "$gte": &prefix, "$lt": format!("{prefix}~") } }
}

impl Store {
    /// Saves `members` (sorted, each once) as the cohort `name`, replacing any cohort of
    /// that name. `name` must be valid (`pulse_core::analytics::cohort::valid_saved_name`:
    /// no `|`).
    pub async fn save_cohort(
        &self,
        name: &str,
        members: &[String],
        source: &str,
        now: i64,
    ) -> Result<SavedCohort, StoreError> {
        let collection = self.db.collection::<Document>(SAVED_COHORTS);
        let previous = collection.find_one(doc! { "_id": name }).await?;
        let old = previous.as_ref().and_then(|h| h.get_i64("generation").ok());
        let generation = old.map_or(1, |g| g + 1);
        let chunks: Vec<Document> = members
            .chunks(CHUNK)
            .enumerate()
            .map(|(i, ids)| doc! { "_id": chunk_id(name, generation, i), "users": ids })
            .collect();
        if !chunks.is_empty() {
            collection.insert_many(chunks).await?;
        }
        let head = doc! {
            "_id": name,
            "generation": generation,
            "users": members.len() as i64,
            "savedAt": now,
            "source": source,
        };
        collection
            .replace_one(doc! { "_id": name }, head)
            .with_options(ReplaceOptions::builder().upsert(true).build())
            .await?;
        if let Some(old) = old {
            collection.delete_many(chunks_of(name, old)).await?;
        }
        Ok(SavedCohort {
            name: name.to_string(),
            users: members.len() as u64,
            saved_at: now,
            source: source.to_string(),
        })
    }

    /// The cohort saved as `name` and its members (sorted), or None.
    pub async fn saved_cohort(&self, name: &str) -> Result<Option<(SavedCohort, Vec<String>)>, StoreError> {
        // A save that replaces the generation being read deletes its chunks: read again.
        for _ in 0..3 {
            match self.read_saved_cohort(name).await? {
                Read::Whole(cohort) => return Ok(cohort),
                Read::Replaced => continue,
            }
        }
        Err(StoreError::Malformed(format!("saved cohort {name:?} was replaced three times while being read")))
    }

    async fn read_saved_cohort(&self, name: &str) -> Result<Read, StoreError> {
        let collection = self.db.collection::<Document>(SAVED_COHORTS);
        let Some(head) = collection.find_one(doc! { "_id": name }).await? else {
            return Ok(Read::Whole(None));
        };
        let malformed = |what: &str| StoreError::Malformed(format!("saved cohort {name:?}: {what}"));
        let generation = head.get_i64("generation").map_err(|_| malformed("no generation"))?;
        let users = head.get_i64("users").map_err(|_| malformed("no user count"))?;
        let mut members: Vec<String> = Vec::with_capacity(users.max(0) as usize);
        let mut cursor = collection.find(chunks_of(name, generation)).sort(doc! { "_id": 1 }).await?;
        while let Some(chunk) = cursor.try_next().await? {
            let ids = chunk.get_array("users").map_err(|_| malformed("a chunk without users"))?;
            members.extend(ids.iter().filter_map(|id| id.as_str().map(String::from)));
        }
        if members.len() as i64 != users {
            return Ok(Read::Replaced);
        }
        let cohort = SavedCohort {
            name: name.to_string(),
            users: users as u64,
            saved_at: head.get_i64("savedAt").unwrap_or_default(),
            source: head.get_str("source").unwrap_or_default().to_string(),
        };
        Ok(Read::Whole(Some((cohort, members))))
    }
}

enum Read {
    Whole(Option<(SavedCohort, Vec<String>)>),
    Replaced,
}
