//! The rollup log: each partition's pre-aggregates as a dense sequence of records, one per
//! batch, written by inserts only, so that a batch costs the same whatever the store holds
//! and exactness rests on one thing every MongoDB-wire store does atomically, refusing a
//! second document with the same `_id`.
//!
//! Record `k` of partition `p` is written in steps, each an insert:
//! 1. a ballot `b|p<p>|<k>|0000` claims the record for a batch of entries (its first and
//!    last stream position): whoever inserts it first owns the record, another writer that
//!    tries is told the record is taken;
//! 2. the batch's raw events, event blocks and user lists ([`crate::rollups`]);
//! 3. a seal, the next ballot, says the attempt wrote all of that;
//! 4. the delta `d|p<p>|<k>`: the batch's contribution to every bucket it touches, whose
//!    content goes to `rollup_deltas` first and which a small document of the same `_id`
//!    in the log commits (the content of a record that is not committed is not read).
//!
//! A writer that finds a record begun and not committed (its holder died, or is paused)
//! takes the next ballot as a redo and does the whole batch again, looking up what the
//! earlier attempts stored; the earlier attempt's seal then fails, so it never writes its
//! delta. A record whose newest ballot is a seal is complete but for its delta, which any
//! writer may compute and insert: every attempt computes the same one. The buckets are the
//! sums of the deltas.

use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use pulse_core::rollup::StreamPosition;

use crate::{Store, StoreError, is_duplicate};

/// The log of every partition.
pub const ROLLUP_LOG: &str = "rollup_log";

/// The contents of the log's records (their period documents), apart from the small
/// documents of the log itself, so that reading where the log ends passes over little.
pub const ROLLUP_DELTAS: &str = "rollup_deltas";

/// Where a partition's log ends: its newest committed record and that record's last entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogTail {
    /// 0 when nothing is committed yet.
    pub record: u64,
    pub last: StreamPosition,
}

/// A record begun but not committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRecord {
    pub record: u64,
    pub first: StreamPosition,
    pub last: StreamPosition,
    /// Its newest ballot.
    pub ballot: u32,
    /// Whether that ballot seals an attempt (all but the delta is written).
    pub sealed: bool,
    /// The writer's tenure that took that ballot.
    pub by: String,
    /// When that ballot was taken (the writer's clock), in milliseconds.
    pub at: i64,
}

/// A partition's log as found in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogState {
    pub tail: LogTail,
    pub open: Option<OpenRecord>,
    /// The committed records the log holds, not yet merged into a version: what a
    /// starting writer's read passes over grows with them, until a compaction.
    pub records: u64,
}

/// `b|p<partition>|<record>|<ballot>`.
pub fn ballot_id(partition: u32, record: u64, ballot: u32) -> String {
    format!("b|p{partition}|{record:012}|{ballot:04}")
}

/// `d|p<partition>|<record>`.
pub fn delta_id(partition: u32, record: u64) -> String {
    format!("d|p{partition}|{record:012}")
}

/// One step of a record's attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ballot {
    /// Takes the record for a batch (ballot 0) or for a redo (a later one).
    Begin,
    /// Says the attempt that took the previous ballot wrote everything but the delta.
    Seal,
}

impl Store {
    /// The partition's log: its newest committed record and the record begun after it,
    /// if any. Reads the log (on FerretDB a pass over it): done when a writer starts and
    /// after a failed write, not per batch.
    pub async fn log_state(&self, partition: u32) -> Result<LogState, StoreError> {
        let range = |kind: &str| doc! { "_id": { "$gte": format!("{kind}|p{partition}|"), "$lt": format!("{kind}|p{partition}|~") } };
        let docs = self.log_documents(doc! { "$or": [range("b"), range("d")] }).await?;
        Ok(log_state_of(docs)?.remove(&partition).unwrap_or_default())
    }

    /// Every partition's log, in one pass (a processor's writers start together).
    pub async fn log_states(&self) -> Result<std::collections::HashMap<u32, LogState>, StoreError> {
        log_state_of(self.log_documents(doc! { "_id": { "$gte": "b|", "$lt": "d}" } }).await?)
    }

    /// The ballots and commits of the log that `filter` selects (one pass over it).
    async fn log_documents(&self, filter: Document) -> Result<Vec<Document>, StoreError> {
        let mut cursor = self
            .db
            .collection::<Document>(ROLLUP_LOG)
            .find(filter)
            .projection(
                doc! { "p": 1, "k": 1, "first": 1, "last": 1, "ballot": 1, "sealed": 1, "by": 1, "at": 1 },
            )
            .await?;
        let mut out = Vec::new();
        while let Some(d) = cursor.try_next().await? {
            out.push(d);
        }
        Ok(out)
    }

    /// Takes `ballot` of record `record` for the entries `first..=last`: true if this
    /// writer took it, false if another did first.
    #[allow(clippy::too_many_arguments)]
    pub async fn take_ballot(
        &self,
        partition: u32,
        record: u64,
        ballot: u32,
        step: Ballot,
        (first, last): (StreamPosition, StreamPosition),
        tenure: &str,
    ) -> Result<bool, StoreError> {
        let d = doc! {
            "_id": ballot_id(partition, record, ballot),
            "p": i64::from(partition),
            "k": record as i64,
            "ballot": i64::from(ballot),
            "sealed": step == Ballot::Seal,
            "first": first.to_key(),
            "last": last.to_key(),
            "by": tenure,
            "at": DateTime::now(),
        };
        match self.db.collection::<Document>(ROLLUP_LOG).insert_one(d).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Commits record `record`: inserts its delta (`periods` as [`crate::rollups`] builds
    /// them). Another attempt's delta of the same record is the same, so finding one is
    /// success.
    pub async fn commit_record(
        &self,
        partition: u32,
        record: u64,
        (first, last): (StreamPosition, StreamPosition),
        periods: Vec<Document>,
    ) -> Result<(), StoreError> {
        let ids: Vec<Bson> = periods.iter().filter_map(|p| p.get_str("id").ok()).map(Bson::from).collect();
        let content = doc! {
            "_id": delta_id(partition, record),
            "p": i64::from(partition),
            "k": record as i64,
            "last": last.to_key(),
            "pids": ids,
            PACKED_PERIODS: pack_periods(&periods)?,
        };
        // The content first: it counts only once the small commit document names it.
        crate::insert_new(&self.db.collection::<Document>(ROLLUP_DELTAS), vec![content]).await?;
        let commit = doc! {
            "_id": delta_id(partition, record),
            "p": i64::from(partition),
            "k": record as i64,
            "first": first.to_key(),
            "last": last.to_key(),
            "at": DateTime::now(),
        };
        match self.db.collection::<Document>(ROLLUP_LOG).insert_one(commit).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The field of a record's delta and of a compacted version that holds its periods: their
/// BSON (`{periods: [...]}`), deflated. FerretDB converts every nested value of a document
/// on each write and read, so periods as nested documents made a backfill's records (a
/// minute period per event, hundreds of kilobytes) cost about 70 ms to insert and 180 ms to
/// read each, against 7 and 10 packed; readers of the log pass over every record.
pub(crate) const PACKED_PERIODS: &str = "pz";

/// `periods` as the value of [`PACKED_PERIODS`].
pub(crate) fn pack_periods(periods: &[Document]) -> Result<Bson, StoreError> {
    use std::io::Write;
    let mut bson = Vec::new();
    doc! { "periods": periods }.to_writer(&mut bson).map_err(|e| StoreError::Encode(e.to_string()))?;
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    deflate.write_all(&bson).map_err(|e| StoreError::Encode(e.to_string()))?;
    let bytes = deflate.finish().map_err(|e| StoreError::Encode(e.to_string()))?;
    Ok(Bson::Binary(mongodb::bson::Binary { subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes }))
}

/// The periods of a record's delta or a version: packed, or as the nested documents that
/// earlier versions wrote.
pub(crate) fn periods_of(document: &Document) -> Result<Vec<Document>, StoreError> {
    let Ok(packed) = document.get_binary_generic(PACKED_PERIODS) else {
        return Ok(document
            .get_array("periods")
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_document().cloned())
            .collect());
    };
    let corrupt = |e: &dyn std::fmt::Display| {
        StoreError::Encode(format!(
            "the periods of {} do not decode: {e}",
            document.get_str("_id").unwrap_or("?")
        ))
    };
    let mut bson = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::DeflateDecoder::new(&packed[..]), &mut bson)
        .map_err(|e| corrupt(&e))?;
    let unpacked = Document::from_reader(&mut &bson[..]).map_err(|e| corrupt(&e))?;
    Ok(unpacked.get_array("periods").into_iter().flatten().filter_map(|p| p.as_document().cloned()).collect())
}

/// Each partition's log from its ballots (`b|`) and commits (`d|`): the newest commit, and
/// the newest ballot of the record after it, if any.
fn log_state_of(
    docs: impl IntoIterator<Item = Document>,
) -> Result<std::collections::HashMap<u32, LogState>, StoreError> {
    let mut commits: std::collections::HashMap<u32, Document> = std::collections::HashMap::new();
    let mut records: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    let mut ballots: Vec<Document> = Vec::new();
    for d in docs {
        let id = d.get_str("_id").unwrap_or_default();
        if id.starts_with("d|") {
            let p = int(d.get("p")) as u32;
            *records.entry(p).or_default() += 1;
            if commits.get(&p).is_none_or(|c| int(c.get("k")) < int(d.get("k"))) {
                commits.insert(p, d);
            }
        } else if id.starts_with("b|") {
            ballots.push(d);
        }
    }
    let mut out = std::collections::HashMap::new();
    for (p, d) in &commits {
        out.insert(
            *p,
            LogState {
                tail: LogTail { record: int(d.get("k")), last: position(d, "last")? },
                open: None,
                records: records.get(p).copied().unwrap_or(0),
            },
        );
    }
    for d in ballots {
        let p = int(d.get("p")) as u32;
        let state = out.entry(p).or_insert_with(LogState::default);
        let next = state.tail.record + 1;
        if int(d.get("k")) != next {
            continue; // a spent ballot of a committed record
        }
        let ballot = int(d.get("ballot")) as u32;
        if state.open.as_ref().is_some_and(|o| o.ballot >= ballot) {
            continue;
        }
        state.open = Some(OpenRecord {
            record: next,
            first: position(&d, "first")?,
            last: position(&d, "last")?,
            ballot,
            sealed: d.get_bool("sealed").unwrap_or(false),
            by: d.get_str("by").unwrap_or_default().to_string(),
            at: d.get_datetime("at").map(|t| t.timestamp_millis()).unwrap_or(0),
        });
    }
    Ok(out)
}

fn position(d: &Document, field: &str) -> Result<StreamPosition, StoreError> {
    let text = d.get_str(field).unwrap_or_default();
    StreamPosition::from_key(text).ok_or_else(|| {
        StoreError::Encode(format!(
            "rollup log document {:?} has an unreadable {field} {text:?}",
            d.get("_id")
        ))
    })
}

pub(crate) fn int(v: Option<&Bson>) -> u64 {
    match v {
        Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Double(n)) => *n as u64,
        _ => 0,
    }
}

#[cfg(test)]
mod packing_tests {
    use super::*;

    #[test]
    fn periods_round_trip_packed_and_are_read_as_earlier_versions_wrote_them() {
        let periods = vec![
            doc! { "id": "minute|001", "i": "minute", "s": 60_000i64, "ev": { "a%2Eb": { "n": 2i64, "u": 1i64 } } },
            doc! { "id": "day|000", "i": "day", "s": 0i64, "ev": { "view": { "n": 1i64 } } },
        ];
        let packed = doc! { "_id": "d|p0|1", PACKED_PERIODS: pack_periods(&periods).expect("pack") };
        assert_eq!(periods_of(&packed).expect("unpack"), periods);
        let nested = doc! { "_id": "d|p0|1", "periods": periods.clone() };
        assert_eq!(periods_of(&nested).expect("nested"), periods);
        let corrupt = doc! { "_id": "d|p0|1", PACKED_PERIODS: mongodb::bson::Binary {
        subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: vec![1, 2, 3] } };
        let error = periods_of(&corrupt).expect_err("corrupt").to_string();
        assert!(error.contains("d|p0|1"), "{error}");
    }
}
