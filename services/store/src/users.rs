//! Per-user activity the retention and cohort engines build on: one marker per user and
//! active day or week (`user_periods`), inserted once, so redelivery needs no watermark.
//! A user's first-seen day is their earliest day marker, and the exact first event time is
//! an index-backed query on raw events (`distinct_id`, `ts`). Nothing here is updated in
//! place: on FerretDB 1.24 every filtered update scans its collection, so per-user updates
//! per batch would not scale there.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use mongodb::bson::{Document, doc};
use pulse_core::buffer::BufferedEvent;
use pulse_core::config::RollupInterval;
use pulse_core::rollup::{bucket_start, week_start};

use crate::collections::USER_PERIODS;
use crate::{Store, StoreError};

impl Store {
    /// Records the days and weeks each user of `events` was active in.
    pub async fn record_activity(&self, events: &[&BufferedEvent], tz: &TimeZone) -> Result<(), StoreError> {
        let mut periods: BTreeMap<String, Document> = BTreeMap::new();
        for e in events {
            for (period, start) in [
                ("day", bucket_start(e.timestamp, RollupInterval::Day, tz)),
                ("week", week_start(e.timestamp, tz)),
            ] {
                periods.entry(format!("{period}|{start:015}|{}", e.distinct_id)).or_insert_with(|| {
                    doc! { "user": &e.distinct_id, "period": period, "start": start }
                });
            }
        }
        if periods.is_empty() {
            return Ok(());
        }
        let markers: Vec<Document> = periods
            .into_iter()
            .map(|(id, mut d)| {
                d.insert("_id", id);
                d
            })
            .collect();
        crate::insert_new(&self.db.collection::<Document>(USER_PERIODS), markers).await?;
        Ok(())
    }
}
