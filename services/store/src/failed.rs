//! Failed events: acknowledged events that the store refuses on every try (a document no
//! validation foresaw), kept aside with the reason instead of blocking their partition.
//! Acknowledged means stored, or listed here: never neither.
//!
//! A failed event's `_id` comes from where it was in the buffer
//! (`<partition>|<stream entry>|<index in the entry>`), so recording it again after a
//! redelivery is a duplicate insert, a no-op. The event itself is kept as JSON text
//! (control characters escaped), since its document form is what the store refused.

use mongodb::bson::{Bson, DateTime, Document, doc};
use pulse_core::buffer::BufferedEvent;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::collections::{FAILED_EVENTS, ROLLUP_NAME_PROBES};
use crate::{Store, StoreError};

/// Why an event failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// The store refused the raw event document on every try.
    StoreRefused,
    /// The buffer entry could not be read as events (written by something other than ingest).
    UndecodableEntry,
    /// The event is stored, but the store refused the profile change (`$set`, `$unset`) it
    /// made with the batch's other events of its user; the payload is that change.
    ProfileRefused,
}

impl FailureReason {
    /// The reason's stable code, as stored, listed and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::StoreRefused => "store_refused",
            FailureReason::UndecodableEntry => "undecodable_entry",
            FailureReason::ProfileRefused => "profile_refused",
        }
    }

    fn parse(code: &str) -> Option<Self> {
        match code {
            "store_refused" => Some(FailureReason::StoreRefused),
            "undecodable_entry" => Some(FailureReason::UndecodableEntry),
            "profile_refused" => Some(FailureReason::ProfileRefused),
            _ => None,
        }
    }
}

/// One failed event (or undecodable entry), as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedEvent {
    /// `<partition>|<stream entry>|<index in the entry>` (`-` for a whole entry).
    pub id: String,
    pub partition: u32,
    /// The stream entry it came from.
    pub entry: String,
    pub reason: FailureReason,
    /// What the store (or the decoder) said, cut to [`DETAIL_MAX`] bytes.
    pub detail: String,
    /// The event as JSON text, or the entry's raw text when it could not be decoded.
    pub payload: String,
    /// The event id, when the event could be decoded.
    pub event_id: Option<String>,
    /// When it was recorded, epoch milliseconds.
    pub failed_at: i64,
}

/// Scratch document ids for [`Store::rollup_name_refusal`], unique within a process.
static PROBE_ID: AtomicU64 = AtomicU64::new(0);

/// The most of a refusal's message that is kept.
pub const DETAIL_MAX: usize = 1000;
/// The most of an undecodable entry's text that is kept (a document must stay small).
pub const PAYLOAD_MAX: usize = 1 << 20;

impl FailedEvent {
    /// A decoded event of `entry` (at `index` in it) that the store refused.
    pub fn refused(partition: u32, entry: &str, index: usize, event: &BufferedEvent, detail: &str) -> Self {
        FailedEvent {
            id: format!("{partition}|{entry}|{index}"),
            partition,
            entry: entry.to_string(),
            reason: FailureReason::StoreRefused,
            detail: cut(detail, DETAIL_MAX),
            // Serializing a decoded event cannot fail (string keys, JSON values).
            payload: serde_json::to_string(event).unwrap_or_default(),
            event_id: Some(event.event_id.clone()),
            failed_at: jiff::Timestamp::now().as_millisecond(),
        }
    }

    /// An entry whose content is not a list of events.
    pub fn undecodable(partition: u32, entry: &str, raw: &[u8], detail: &str) -> Self {
        FailedEvent {
            id: format!("{partition}|{entry}|-"),
            partition,
            entry: entry.to_string(),
            reason: FailureReason::UndecodableEntry,
            detail: cut(detail, DETAIL_MAX),
            payload: cut(&String::from_utf8_lossy(raw), PAYLOAD_MAX),
            event_id: None,
            failed_at: jiff::Timestamp::now().as_millisecond(),
        }
    }

    /// A user's profile change that the store refused, made by the batch ending at `entry`.
    pub fn profile_refused(
        partition: u32,
        entry: &str,
        user: &str,
        change: &serde_json::Value,
        detail: &str,
    ) -> Self {
        FailedEvent {
            // The user named by a hash: ids stay short whatever the distinct id.
            id: format!("{partition}|{entry}|profile-{:016x}", fnv1a(user.as_bytes())),
            partition,
            entry: entry.to_string(),
            reason: FailureReason::ProfileRefused,
            detail: cut(detail, DETAIL_MAX),
            payload: cut(
                &serde_json::json!({ "distinct_id": user, "change": change }).to_string(),
                PAYLOAD_MAX,
            ),
            event_id: None,
            failed_at: jiff::Timestamp::now().as_millisecond(),
        }
    }

    /// The event, when the payload is one (what a replay sends again).
    pub fn event(&self) -> Option<BufferedEvent> {
        match self.reason {
            FailureReason::StoreRefused => serde_json::from_str(&self.payload).ok(),
            FailureReason::UndecodableEntry | FailureReason::ProfileRefused => None,
        }
    }

    fn to_document(&self) -> Document {
        // Strings go in with NUL replaced: some stores (PostgreSQL-backed) refuse NUL even
        // inside values, and this document must never be refused itself.
        let mut doc = doc! {
            "_id": &self.id,
            "p": i64::from(self.partition),
            "entry": &self.entry,
            "reason": self.reason.as_str(),
            "detail": without_nul(&self.detail),
            "payload": escape_nul(&self.payload),
            "failed_at": DateTime::from_millis(self.failed_at),
        };
        if let Some(id) = &self.event_id {
            doc.insert("event_id", without_nul(id));
        }
        doc
    }

    fn from_document(doc: &Document) -> Option<Self> {
        Some(FailedEvent {
            id: doc.get_str("_id").ok()?.to_string(),
            partition: match doc.get("p")? {
                Bson::Int64(p) => u32::try_from(*p).ok()?,
                Bson::Int32(p) => u32::try_from(*p).ok()?,
                _ => return None,
            },
            entry: doc.get_str("entry").ok()?.to_string(),
            reason: FailureReason::parse(doc.get_str("reason").ok()?)?,
            detail: doc.get_str("detail").unwrap_or_default().to_string(),
            payload: doc.get_str("payload").unwrap_or_default().to_string(),
            event_id: doc.get_str("event_id").ok().map(str::to_string),
            failed_at: doc.get_datetime("failed_at").map(|t| t.timestamp_millis()).unwrap_or_default(),
        })
    }
}

impl Store {
    /// Records failed events; one recorded before (same `_id`) is left as it was. Returns,
    /// for each, whether this call recorded it.
    pub async fn record_failed_events(&self, failed: &[FailedEvent]) -> Result<Vec<bool>, StoreError> {
        let documents = failed.iter().map(FailedEvent::to_document).collect();
        let existed = crate::insert_new(&self.db.collection::<Document>(FAILED_EVENTS), documents).await?;
        let mut recorded = vec![true; failed.len()];
        for i in existed {
            recorded[i] = false;
        }
        Ok(recorded)
    }

    /// Failed events in `_id` order (partition, entry, index), at most `limit` of them,
    /// starting after `after`.
    pub async fn list_failed_events(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FailedEvent>, StoreError> {
        use futures::TryStreamExt;
        let filter = match after {
            Some(after) => doc! { "_id": { "$gt": after } },
            None => doc! {},
        };
        let docs: Vec<Document> = self
            .db
            .collection::<Document>(FAILED_EVENTS)
            .find(filter)
            .sort(doc! { "_id": 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await?
            .try_collect()
            .await?;
        Ok(docs.iter().filter_map(FailedEvent::from_document).collect())
    }

    /// How many failed events there are.
    pub async fn count_failed_events(&self) -> Result<u64, StoreError> {
        Ok(self.db.collection::<Document>(FAILED_EVENTS).count_documents(doc! {}).await?)
    }

    /// Whether the store takes `event` as a rollup bucket name: the update path it becomes
    /// (`ev.<name>.n`), tried on a scratch document that is removed at once. Some names
    /// pass every check Pulse makes and are still refused in an update path (FerretDB, for
    /// one, finds empty field names in some Unicode). `Some(what the store said)` when
    /// refused.
    pub async fn rollup_name_refusal(&self, event: &str) -> Result<Option<String>, StoreError> {
        let probes = self.db.collection::<Document>(ROLLUP_NAME_PROBES);
        let id = format!("probe|{}|{}", std::process::id(), PROBE_ID.fetch_add(1, Ordering::Relaxed));
        let path = format!("ev.{}.n", pulse_core::rollup::encode_key(event));
        let tried =
            probes.update_one(doc! { "_id": &id }, doc! { "$inc": { path: 1_i64 } }).upsert(true).await;
        match tried {
            Ok(_) => {
                probes.delete_one(doc! { "_id": &id }).await?;
                Ok(None)
            }
            Err(e) if crate::refusal::is_refusal(&e) => Ok(Some(crate::refusal::describe(&e))),
            Err(e) => Err(e.into()),
        }
    }

    /// Forgets a failed event (after its replay was acknowledged by the buffer).
    pub async fn delete_failed_event(&self, id: &str) -> Result<(), StoreError> {
        self.db.collection::<Document>(FAILED_EVENTS).delete_one(doc! { "_id": id }).await?;
        Ok(())
    }
}

fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

fn without_nul(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// NUL as the JSON escape `\u0000`: the payload is JSON text, where that escape is exactly a
/// NUL (serde_json escapes control characters already; this is a safety net).
fn escape_nul(text: &str) -> String {
    text.replace('\0', "\\u0000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_event_round_trips_through_its_document() {
        let event: BufferedEvent = serde_json::from_value(serde_json::json!({
            "event_id": "e\u{0}1", "event": "x", "distinct_id": "u", "timestamp": 1, "received_at": 2,
            "properties": {"a\u{0}b": [[1, 2], [3]]}
        }))
        .expect("an event");
        let failed = FailedEvent::refused(3, "17-0", 2, &event, "refused: nested arrays");
        let doc = failed.to_document();
        assert!(!format!("{doc}").contains('\0'), "no NUL reaches the store");
        let back = FailedEvent::from_document(&doc).expect("a failed event");
        assert_eq!(back.id, "3|17-0|2");
        assert_eq!(back.event(), Some(event), "the payload gives the event back, NUL included");
    }

    #[test]
    fn long_details_are_cut_on_a_character_boundary() {
        let detail = "é".repeat(DETAIL_MAX);
        let failed = FailedEvent::undecodable(0, "1-0", b"not json", &detail);
        assert!(failed.detail.len() <= DETAIL_MAX + "…".len());
        assert_eq!(failed.payload, "not json");
        assert_eq!(failed.event(), None);
    }
}
