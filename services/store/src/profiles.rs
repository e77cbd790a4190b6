//! The `profiles` collection: one document per user, `_id` = the distinct id, with the
//! user's properties (keys encoded) under `properties`, so property cohorts can filter on
//! user properties and not only on event properties.
//!
//! Writes stay in the portable subset and touch documents by `_id` only (on FerretDB 1.24
//! a filtered write scans the collection): per changed user, one read when a `$set_once`
//! must know which properties exist, then one `update_one` by `_id` with upsert, `$set`
//! and `$unset`. Exact under redelivery because one writer applies a partition's events in
//! stream order and a replayed run leaves the profile as it was (see
//! `pulse_core::profile`); one writer per partition also avoids FerretDB's lost concurrent
//! updates of one document, since a user's events share a partition.

use std::collections::BTreeMap;

use mongodb::bson::{Bson, Document, doc};
use pulse_core::profile::ProfileUpdate;
use pulse_core::rollup::encode_key;
use serde_json::{Map, Value};

use crate::documents::{bson_of_json, json_of_bson};
use crate::{Refusal, Store, StoreError};

/// The collection of per-user profiles.
pub const PROFILES: &str = "profiles";

/// Profile writes of one batch in flight at once (each a different user).
pub const PROFILE_WRITES_IN_FLIGHT: usize = 16;

impl Store {
    /// Applies each user's folded update to their profile, creating it when absent. Users
    /// are independent documents, so up to [`PROFILE_WRITES_IN_FLIGHT`] are written at once;
    /// each user's read and write stay in order. Returns the updates the store refused (by
    /// position in `updates`), which are not applied.
    pub async fn apply_profile_updates(
        &self,
        updates: &BTreeMap<String, ProfileUpdate>,
    ) -> Result<Vec<Refusal>, StoreError> {
        // Each user's update on its own: one the store refuses (whatever no validation
        // foresaw) is reported, not fatal; any other failure is an error, to be retried.
        let users: Vec<(&String, &ProfileUpdate)> = updates.iter().collect();
        let mut outcomes = Vec::with_capacity(users.len());
        for (chunk, group) in users.chunks(PROFILE_WRITES_IN_FLIGHT).enumerate() {
            let writes = group.iter().enumerate().map(|(i, (user, update))| {
                let index = chunk * PROFILE_WRITES_IN_FLIGHT + i;
                async move {
                    match self.apply_profile_update(user, update).await {
                        Ok(()) => Ok(None),
                        Err(StoreError::Mongo(e)) if crate::refusal::is_refusal(&e) => {
                            Ok(Some(Refusal { index, detail: crate::refusal::describe(&e) }))
                        }
                        Err(e) => Err(e),
                    }
                }
            });
            outcomes.extend(futures::future::join_all(writes).await);
        }
        let mut refused = Vec::new();
        for outcome in outcomes {
            refused.extend(outcome?);
        }
        Ok(refused)
    }

    async fn apply_profile_update(&self, user: &str, update: &ProfileUpdate) -> Result<(), StoreError> {
        let profiles = self.db.collection::<Document>(PROFILES);
        let mut set = Document::new();
        for (name, value) in &update.set {
            set.insert(format!("properties.{}", encode_key(name)), bson_of_json(value));
        }
        if !update.set_once.is_empty() {
            let existing =
                profiles.find_one(doc! { "_id": user }).projection(doc! { "properties": 1 }).await?;
            let present = existing.as_ref().and_then(|d| d.get_document("properties").ok());
            for (name, value) in &update.set_once {
                let key = encode_key(name);
                // `unset` runs before `set_once` in the update's meaning.
                let absent = update.unset.contains(name) || !present.is_some_and(|p| p.contains_key(&key));
                if absent {
                    set.insert(format!("properties.{key}"), bson_of_json(value));
                }
            }
        }
        let mut unset = Document::new();
        for name in update.unset.iter().filter(|n| !update.set.contains_key(*n)) {
            let path = format!("properties.{}", encode_key(name));
            if !set.contains_key(&path) {
                unset.insert(path, Bson::String(String::new()));
            }
        }
        let mut change = Document::new();
        if !set.is_empty() {
            change.insert("$set", set);
        }
        if !unset.is_empty() {
            change.insert("$unset", unset);
        }
        if change.is_empty() {
            return Ok(());
        }
        profiles.update_one(doc! { "_id": user }, change).upsert(true).await?;
        Ok(())
    }

    /// A user's profile properties (keys decoded), or `None` when the user has none.
    pub async fn profile(&self, distinct_id: &str) -> Result<Option<Map<String, Value>>, StoreError> {
        let found = self
            .db
            .collection::<Document>(PROFILES)
            .find_one(doc! { "_id": distinct_id })
            .projection(doc! { "properties": 1 })
            .await?;
        Ok(found.map(|d| match d.get("properties").map(json_of_bson) {
            Some(Value::Object(properties)) => properties,
            _ => Map::new(),
        }))
    }
}
