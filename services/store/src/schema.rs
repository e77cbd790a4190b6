//! Collections and indexes, ensured by one idempotent function that the processor runs at
//! start and the operator runs when it creates a pipeline.

use mongodb::IndexModel;
use mongodb::bson::doc;
use mongodb::options::IndexOptions;
use pulse_core::duration::DurationSpec;

use crate::collections::{EVENTS, ROLLUP_USERS, ROLLUPS, USER_PERIODS, USERS};
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
        let index = |keys| IndexModel::builder().keys(keys).build();
        let events = self.db.collection::<mongodb::bson::Document>(EVENTS);
        events
            .create_indexes([index(doc! { "event": 1, "ts": 1 }), index(doc! { "distinct_id": 1, "ts": 1 })])
            .await?;
        let ttl = IndexModel::builder()
            .keys(doc! { "ts": 1 })
            .options(
                IndexOptions::builder()
                    .name("ts_ttl".to_string())
                    .expire_after(std::time::Duration::from_secs(retention.as_secs()))
                    .build(),
            )
            .build();
        let ttl_index = match events.create_index(ttl).await {
            Ok(_) => true,
            Err(e) => {
                tracing::info!(error = %e, "no TTL index on this server; expired events are deleted periodically");
                events.create_index(IndexModel::builder().keys(doc! { "ts": 1 }).build()).await?;
                false
            }
        };
        self.db
            .collection::<mongodb::bson::Document>(ROLLUPS)
            .create_indexes([
                index(doc! { "interval": 1, "event": 1, "start": 1 }),
                index(doc! { "start": 1 }),
            ])
            .await?;
        self.db
            .collection::<mongodb::bson::Document>(ROLLUP_USERS)
            .create_index(index(doc! { "start": 1 }))
            .await?;
        self.db
            .collection::<mongodb::bson::Document>(USERS)
            .create_index(index(doc! { "first_seen": 1 }))
            .await?;
        self.db
            .collection::<mongodb::bson::Document>(USER_PERIODS)
            .create_index(index(doc! { "period": 1, "start": 1 }))
            .await?;
        Ok(SchemaReport { ttl_index })
    }

    /// Deletes raw events older than `retention` (where there is no TTL index), and rollup
    /// buckets past their own retention: minute buckets after 14 days, hour buckets after
    /// 400 days; day buckets are kept (they are small and outlive raw events on purpose).
    pub async fn delete_expired(
        &self,
        now_ms: i64,
        retention: DurationSpec,
        ttl_index: bool,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        if !ttl_index {
            let cutoff = mongodb::bson::DateTime::from_millis(now_ms - retention.as_millis());
            deleted += self
                .db
                .collection::<mongodb::bson::Document>(EVENTS)
                .delete_many(doc! { "ts": { "$lt": cutoff } })
                .await?
                .deleted_count;
        }
        for (interval, days) in [("minute", 14i64), ("hour", 400)] {
            let cutoff = now_ms - days * 86_400_000;
            for collection in [ROLLUPS, ROLLUP_USERS] {
                deleted += self
                    .db
                    .collection::<mongodb::bson::Document>(collection)
                    .delete_many(doc! { "interval": interval, "start": { "$lt": cutoff } })
                    .await?
                    .deleted_count;
            }
        }
        Ok(deleted)
    }
}
