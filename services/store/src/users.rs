//! Per-user state the funnel and retention engines build on: first and last seen, and one
//! marker per active day and week. Both are idempotent by construction ($min/$max and
//! insert-once markers), so redelivery needs no watermark here.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::error::ErrorKind;
use pulse_core::buffer::BufferedEvent;
use pulse_core::config::RollupInterval;
use pulse_core::rollup::{bucket_start, week_start};

use crate::collections::{USER_PERIODS, USERS};
use crate::{DUPLICATE_KEY, Store, StoreError};

impl Store {
    /// Records when each user of `events` was active.
    pub async fn record_activity(&self, events: &[&BufferedEvent], tz: &TimeZone) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut span: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        let mut periods: BTreeMap<String, Document> = BTreeMap::new();
        for e in events {
            let s = span.entry(e.distinct_id.as_str()).or_insert((e.timestamp, e.timestamp));
            s.0 = s.0.min(e.timestamp);
            s.1 = s.1.max(e.timestamp);
            for (period, start) in [
                ("day", bucket_start(e.timestamp, RollupInterval::Day, tz)),
                ("week", week_start(e.timestamp, tz)),
            ] {
                periods.entry(format!("{}|{period}|{start}", e.distinct_id)).or_insert_with(|| {
                    doc! { "user": &e.distinct_id, "period": period, "start": start }
                });
            }
        }
        let updates: Vec<Document> = span
            .iter()
            .map(|(user, (first, last))| {
                doc! {
                    "q": { "_id": *user },
                    "u": {
                        "$min": { "first_seen": DateTime::from_millis(*first) },
                        "$max": { "last_seen": DateTime::from_millis(*last) },
                    },
                    "upsert": true,
                }
            })
            .collect();
        // One command with many statements (not bulkWrite, which the subset lacks).
        let answer = self
            .db
            .run_command(doc! { "update": USERS, "updates": updates.clone(), "ordered": false })
            .await?;
        if let Ok(errors) = answer.get_array("writeErrors") {
            for error in errors.iter().filter_map(|e| e.as_document()) {
                // Two upserts of a new user raced: the retry finds the document.
                let retryable = error.get_i32("code").is_ok_and(|c| c == DUPLICATE_KEY);
                let statement = error.get_i32("index").ok().and_then(|i| updates.get(i as usize));
                match (retryable, statement) {
                    (true, Some(s)) => {
                        self.db.run_command(doc! { "update": USERS, "updates": [s.clone()] }).await?;
                    }
                    _ => return Err(StoreError::Encode(format!("updating users: {error}"))),
                }
            }
        }
        let markers: Vec<Document> = periods
            .into_iter()
            .map(|(id, mut d)| {
                d.insert("_id", id);
                d
            })
            .collect();
        match self.db.collection::<Document>(USER_PERIODS).insert_many(markers).ordered(false).await {
            Ok(_) => Ok(()),
            Err(e) => match e.kind.as_ref() {
                ErrorKind::InsertMany(f)
                    if f.write_concern_error.is_none()
                        && f.write_errors
                            .as_ref()
                            .is_some_and(|w| w.iter().all(|w| w.code == DUPLICATE_KEY)) =>
                {
                    Ok(())
                }
                _ => Err(e.into()),
            },
        }
    }
}
