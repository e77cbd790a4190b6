//! Per-user activity the retention and cohort engines build on: one marker per user and
//! active day or week (`user_periods`), inserted once, so redelivery needs no watermark.
//! A user's first-seen day is their earliest day marker; the exact first event time is in
//! the event blocks (the query API's activity view keeps it). Nothing here is updated in
//! place: on FerretDB 1.24 every filtered update scans its collection, so per-user updates
//! per batch would not scale there.

use std::collections::{BTreeMap, BTreeSet};

use jiff::tz::TimeZone;
use mongodb::bson::{Document, doc};
use pulse_core::buffer::BufferedEvent;
use pulse_core::config::RollupInterval;
use pulse_core::rollup::{bucket_start, week_start};

use crate::collections::USER_PERIODS;
use crate::memory::WriterMemory;
use crate::{Store, StoreError};

impl Store {
    /// Records the days and weeks each user of `events` was active in; markers the writer's
    /// `memory` holds are stored already and skipped.
    pub async fn record_activity(
        &self,
        events: &[&BufferedEvent],
        tz: &TimeZone,
        memory: &mut WriterMemory,
    ) -> Result<(), StoreError> {
        // Period id ("day|<start>") -> its start and users.
        let mut periods: BTreeMap<String, (i64, BTreeSet<&str>)> = BTreeMap::new();
        for e in events {
            for (period, start) in [
                ("day", bucket_start(e.timestamp, RollupInterval::Day, tz)),
                ("week", week_start(e.timestamp, tz)),
            ] {
                let id = format!("{period}|{start:015}");
                if !memory.knows(&id, &e.distinct_id) {
                    periods.entry(id).or_insert_with(|| (start, BTreeSet::new())).1.insert(&e.distinct_id);
                }
            }
        }
        let markers: Vec<Document> = periods
            .iter()
            .flat_map(|(id, (start, users))| {
                let period = id.split('|').next().unwrap_or_default();
                users.iter().map(move |user| {
                    doc! { "_id": format!("{id}|{user}"), "user": *user, "period": period, "start": *start }
                })
            })
            .collect();
        crate::insert_new(&self.db.collection::<Document>(USER_PERIODS), markers).await?;
        for (id, (start, users)) in &periods {
            memory.remember(id, *start, users.iter().copied());
        }
        Ok(())
    }
}
