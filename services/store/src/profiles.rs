//! Per-user profiles, kept as a log of changes so that writing one costs an insert.
//!
//! `profile_changes` holds, per batch and user whose profile the batch changes, the user's
//! update folded over the batch (`pulse_core::profile`): `_id` `<user>|<position>`, fields
//! `u` (the user), `p` (the partition), `at` (the stream position of the batch's last
//! entry, [`StreamPosition::to_key`]), `unset`, `set`, `set_once` (names encoded). On
//! FerretDB every read or update by `_id` scans its collection, so a per-user document
//! updated in place made every batch slower as users accumulated; an insert stays flat.
//!
//! A profile is its changes applied in stream order (`at`). Exact under redelivery: the
//! same batch writes the same document (a duplicate key), and a batch cut otherwise on
//! redelivery adds updates whose application in stream order leaves the profile as the
//! run once would (the property tests in `pulse_core::profile`).
//!
//! [`Store::compact_profile_changes`] folds a partition's changes into one document per
//! user now and then, off the hot path: a generation of folds (`c` = 1, `g` the
//! generation, at the user's last change's position), then deletes what they replace by
//! ranges of position. Readers that meet a fold and the changes it replaces together
//! apply the fold after them, which changes nothing.
//! Profiles of versions before the log (`profiles`, one document per user) are read as
//! the state the changes apply to.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use pulse_core::profile::ProfileUpdate;
use pulse_core::rollup::{StreamPosition, decode_key, encode_key};
use serde_json::{Map, Value};

use crate::documents::{bson_of_json, json_of_bson};
use crate::{Refusal, Store, StoreError};

/// The collection of profile changes.
pub const PROFILE_CHANGES: &str = "profile_changes";

/// Profiles as versions before the change log kept them: one document per user.
pub const PROFILES: &str = "profiles";

/// Documents a fold deletes per request, well under what FerretDB's backends take in one
/// deletion (see [`Store::compact_profile_changes`]).
const DELETE_CHUNK: usize = 10_000;

/// Folds written per request.
const INSERT_CHUNK: usize = 1_000;

/// A fold waits until there is at least one change per this many folded profiles.
const FOLD_WHEN_CHANGES_PER_PROFILE: usize = 4;

/// What a fold of one partition's profile changes did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProfileCompaction {
    /// Users whose profile the fold wrote anew (every user of the partition).
    pub users: usize,
    /// Documents the folds replaced (changes and folds of earlier generations).
    pub replaced: usize,
}

impl Store {
    /// Records each user's update of a batch of `partition` whose last entry is `at` (their
    /// events in stream order, folded). Returns the updates the store refused (by position
    /// in `updates`), which are not recorded; any other failure is an error, to be retried.
    pub async fn apply_profile_updates(
        &self,
        partition: u32,
        at: StreamPosition,
        updates: &BTreeMap<String, ProfileUpdate>,
    ) -> Result<Vec<Refusal>, StoreError> {
        let changes = self.db.collection::<Document>(PROFILE_CHANGES);
        let docs: Vec<Document> =
            updates.iter().map(|(user, update)| change_document(user, partition, at, update)).collect();
        match crate::insert_new(&changes, docs.clone()).await {
            Ok(_) => return Ok(Vec::new()),
            Err(StoreError::Mongo(e)) if crate::refusal::is_refusal(&e) => {}
            Err(e) => return Err(e),
        }
        // Something in the batch is refused: find which, one by one (the rest may be in).
        let mut refused = Vec::new();
        for (index, doc) in docs.into_iter().enumerate() {
            match changes.insert_one(doc).await {
                Ok(_) => {}
                Err(e) if crate::is_duplicate(&e) => {}
                Err(e) if crate::refusal::is_refusal(&e) => {
                    refused.push(Refusal { index, detail: crate::refusal::describe(&e) })
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(refused)
    }

    /// A user's profile properties (keys decoded), or `None` when the user has none.
    pub async fn profile(&self, distinct_id: &str) -> Result<Option<Map<String, Value>>, StoreError> {
        let legacy = self
            .db
            .collection::<Document>(PROFILES)
            .find_one(doc! { "_id": distinct_id })
            .projection(doc! { "properties": 1 })
            .await?;
        let changes: Vec<Document> = self
            .db
            .collection::<Document>(PROFILE_CHANGES)
            .find(doc! { "u": distinct_id })
            .await?
            .try_collect()
            .await?;
        if legacy.is_none() && changes.is_empty() {
            return Ok(None);
        }
        let mut profile = match legacy.as_ref().and_then(|d| d.get("properties")).map(json_of_bson) {
            Some(Value::Object(properties)) => properties,
            _ => Map::new(),
        };
        for update in in_stream_order(changes).iter().map(|(_, update)| update) {
            profile = update.apply(&profile);
        }
        Ok(Some(profile))
    }

    /// Every user's profile (keys decoded), by user id, reading at most `limit` documents
    /// (profile changes and older profiles): more is [`StoreError::TooManyProfiles`].
    pub async fn profiles(&self, limit: usize) -> Result<BTreeMap<String, Map<String, Value>>, StoreError> {
        let mut read = 0usize;
        let count = |read: &mut usize| {
            *read += 1;
            if *read > limit { Err(StoreError::TooManyProfiles { limit }) } else { Ok(()) }
        };
        let mut profiles: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        let mut legacy = self.db.collection::<Document>(PROFILES).find(doc! {}).await?;
        while let Some(d) = legacy.try_next().await? {
            count(&mut read)?;
            if let (Ok(user), Some(Value::Object(properties))) =
                (d.get_str("_id"), d.get("properties").map(json_of_bson))
            {
                profiles.insert(user.to_string(), properties);
            }
        }
        let mut by_user: BTreeMap<String, Vec<Document>> = BTreeMap::new();
        let mut changes = self.db.collection::<Document>(PROFILE_CHANGES).find(doc! {}).await?;
        while let Some(change) = changes.try_next().await? {
            count(&mut read)?;
            by_user.entry(change.get_str("u").unwrap_or_default().to_string()).or_default().push(change);
        }
        for (user, docs) in by_user {
            let profile = profiles.entry(user).or_default();
            for (_, update) in in_stream_order(docs) {
                *profile = update.apply(profile);
            }
        }
        Ok(profiles)
    }

    /// Folds the profile changes of `partition` into one document per user, a new
    /// generation of the partition's profiles, then deletes what it replaces. Run off the
    /// hot path, and only when the changes are many next to the profiles they change: it
    /// reads the partition's documents whole and writes every user's anew, so the cost per
    /// change stays constant however many users the store holds.
    ///
    /// What it replaces goes by ranges of stream position (each a pass over the collection
    /// on FerretDB, which serves no filter from an index) of at most [`DELETE_CHUNK`]
    /// documents, never by lists of ids: FerretDB tests a `$in` against every document
    /// once per id, and refuses a deletion of more documents than its backend takes
    /// parameters (32,766 on SQLite). A document that a writer of an older lease adds to
    /// such a range meanwhile repeats events the partition's writer had stored before the
    /// fold began, so the fold holds them already.
    pub async fn compact_profile_changes(&self, partition: u32) -> Result<ProfileCompaction, StoreError> {
        let changes = self.db.collection::<Document>(PROFILE_CHANGES);
        let mut by_user: BTreeMap<String, Vec<Document>> = BTreeMap::new();
        let mut positions = Vec::new();
        let (mut unfolded, mut generation) = (0usize, 0i64);
        let mut cursor = changes.find(doc! { "p": i64::from(partition) }).await?;
        while let Some(change) = cursor.try_next().await? {
            if change.contains_key("c") {
                generation = generation.max(crate::log::int(change.get("g")) as i64);
            } else {
                unfolded += 1;
            }
            positions.push(change.get_str("at").unwrap_or_default().to_string());
            let user = change.get_str("u").unwrap_or_default().to_string();
            by_user.entry(user).or_default().push(change);
        }
        let folded_users =
            by_user.len() - by_user.values().filter(|docs| docs.iter().all(|d| !d.contains_key("c"))).count();
        if unfolded == 0 || unfolded * FOLD_WHEN_CHANGES_PER_PROFILE < folded_users {
            return Ok(ProfileCompaction::default());
        }
        let generation = generation + 1;
        let mut folds = Vec::with_capacity(by_user.len());
        for (user, docs) in by_user {
            let ordered = in_stream_order(docs);
            let Some(at) = ordered.last().map(|(key, _)| key.0.clone()) else { continue };
            let mut fold = ProfileUpdate::default();
            for (_, update) in &ordered {
                fold.then_update(update);
            }
            let mut d = change_document(&user, partition, StreamPosition::default(), &fold);
            d.insert("_id", format!("{user}|{at}|g{generation}"));
            d.insert("at", at);
            d.insert("c", 1i64);
            d.insert("g", generation);
            folds.push(d);
        }
        let mut done = ProfileCompaction { users: folds.len(), replaced: 0 };
        // Every user's fold is in before anything it replaces goes: a fold stopped halfway
        // leaves documents that the next one reads again.
        for chunk in folds.chunks(INSERT_CHUNK) {
            crate::insert_new(&changes, chunk.to_vec()).await?;
        }
        positions.sort_unstable();
        let mut after: Option<&String> = None;
        for range in ranges_of(&positions, DELETE_CHUNK) {
            let mut at = doc! { "$lte": range };
            if let Some(previous) = after {
                at.insert("$gt", previous);
            }
            let filter = doc! { "p": i64::from(partition), "g": { "$ne": generation }, "at": at };
            done.replaced += changes.delete_many(filter).await?.deleted_count as usize;
            after = Some(range);
        }
        Ok(done)
    }
}

/// The last position of each range of the documents at `positions` (sorted) holding about
/// `documents` of them: a range ends after every document at its last position, and
/// documents share a position only within one batch, which holds fewer than a range.
fn ranges_of(positions: &[String], documents: usize) -> Vec<&String> {
    let mut ends = Vec::new();
    let mut start = 0;
    while start < positions.len() {
        let end = &positions[(start + documents).min(positions.len()) - 1];
        start += positions[start..].partition_point(|p| p <= end);
        ends.push(end);
    }
    ends
}

/// The document of one user's update in a batch of `partition` ending at `at`.
fn change_document(user: &str, partition: u32, at: StreamPosition, update: &ProfileUpdate) -> Document {
    let encoded = |m: &Map<String, Value>| -> Document {
        m.iter().map(|(name, value)| (encode_key(name), bson_of_json(value))).collect()
    };
    let at = at.to_key();
    doc! {
        "_id": format!("{user}|{at}"),
        "u": user,
        "p": i64::from(partition),
        "at": at,
        "unset": update.unset.iter().map(|n| encode_key(n)).collect::<Vec<_>>(),
        "set": encoded(&update.set),
        "set_once": encoded(&update.set_once),
    }
}

/// Where a change applies, `(at, c, _id)`: in stream order, a fold after the changes it
/// replaces; `_id` names the document a fold replaces.
type ChangeOrder = (String, i64, String);

/// `changes` of one user as updates in the order they apply.
fn in_stream_order(changes: Vec<Document>) -> Vec<(ChangeOrder, ProfileUpdate)> {
    let mut out: Vec<(ChangeOrder, ProfileUpdate)> = changes
        .into_iter()
        .map(|d| {
            let decoded = |name: &str| -> Map<String, Value> {
                d.get_document(name)
                    .map(|m| m.iter().map(|(k, v)| (decode_key(k), json_of_bson(v))).collect())
                    .unwrap_or_default()
            };
            let update = ProfileUpdate {
                unset: d
                    .get_array("unset")
                    .map(|a| a.iter().filter_map(Bson::as_str).map(decode_key).collect())
                    .unwrap_or_default(),
                set: decoded("set"),
                set_once: decoded("set_once"),
            };
            let order = (
                d.get_str("at").unwrap_or_default().to_string(),
                crate::log::int(d.get("c")) as i64,
                d.get_str("_id").unwrap_or_default().to_string(),
            );
            (order, update)
        })
        .collect();
    out.sort_by(|a, b| (&a.0.0, a.0.1).cmp(&(&b.0.0, b.0.1)));
    out
}

#[cfg(test)]
mod tests {
    use super::ranges_of;

    #[test]
    fn ranges_end_after_every_document_at_their_last_position() {
        let positions: Vec<String> =
            ["a", "b", "b", "b", "c", "d", "d", "e"].iter().map(|p| p.to_string()).collect();
        let ends: Vec<&str> = ranges_of(&positions, 3).into_iter().map(String::as_str).collect();
        assert_eq!(ends, ["b", "d", "e"]);
        let ends: Vec<&str> = ranges_of(&positions, 100).into_iter().map(String::as_str).collect();
        assert_eq!(ends, ["e"]);
        assert!(ranges_of(&[], 3).is_empty());
    }
}
