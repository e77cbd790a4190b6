//! The encoding of an event block, before deflate: columns, so a reader filters by name and
//! time from two small columns and parses only the properties of the events it keeps.
//!
//! ```text
//! version: u8 (2; 1 has no positions)
//! n: varint                       events
//! names: varint count, strings    distinct event names
//! name: n varints                 index into names
//! ts: n zigzag varints            timestamp, delta from the previous event's
//! received: n zigzag varints      received_at - timestamp
//! generated: n bytes              id_generated (0 or 1)
//! id: n strings                   event_id
//! user: n strings                 distinct_id
//! properties: n strings           JSON object text, empty when there are none
//! position: n (zigzag varint, varint)  the stream entry that stored the event: millis as a
//!                                 delta from the previous event's, and sequence
//! ```
//! A string is a varint byte length and UTF-8 bytes. The positions let a writer that lost
//! its memory tell which of its events its rollups have counted (docs/exactness.md).

use std::collections::HashMap;

use pulse_core::buffer::BufferedEvent;
use pulse_core::rollup::StreamPosition;
use serde_json::{Map, Value};

const VERSION: u8 = 2;
/// Blocks written before positions were kept.
const VERSION_WITHOUT_POSITIONS: u8 = 1;

/// Why a block could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("event block: {0}")]
pub struct CodecError(&'static str);

/// Decoded events, and the stream entry that stored each (None for a version 1 block).
#[derive(Debug, Default)]
pub struct Decoded {
    pub events: Vec<BufferedEvent>,
    pub positions: Option<Vec<StreamPosition>>,
}

/// Encodes `events` with the stream entries that stored them (properties in their stored
/// form, see [`stored_properties`]).
pub fn encode(positioned: &[(StreamPosition, &BufferedEvent)]) -> Vec<u8> {
    let events: &[&BufferedEvent] = &positioned.iter().map(|(_, e)| *e).collect::<Vec<_>>();
    let mut out = Vec::with_capacity(64 + events.len() * 170);
    out.push(VERSION);
    put_varint(&mut out, events.len() as u64);
    let mut names: Vec<&str> = Vec::new();
    let mut index: HashMap<&str, u64> = HashMap::new();
    let name_of: Vec<u64> = events
        .iter()
        .map(|e| {
            *index.entry(e.event.as_str()).or_insert_with(|| {
                names.push(&e.event);
                names.len() as u64 - 1
            })
        })
        .collect();
    put_varint(&mut out, names.len() as u64);
    for name in &names {
        put_str(&mut out, name);
    }
    for i in name_of {
        put_varint(&mut out, i);
    }
    let mut previous = 0i64;
    for e in events {
        put_varint(&mut out, zigzag(e.timestamp.wrapping_sub(previous)));
        previous = e.timestamp;
    }
    for e in events {
        put_varint(&mut out, zigzag(e.received_at.wrapping_sub(e.timestamp)));
    }
    out.extend(events.iter().map(|e| u8::from(e.id_generated)));
    for e in events {
        put_str(&mut out, &e.event_id);
    }
    for e in events {
        put_str(&mut out, &e.distinct_id);
    }
    for e in events {
        if e.properties.is_empty() {
            put_varint(&mut out, 0);
        } else {
            let text = match stored_properties(&e.properties) {
                Some(stored) => Value::Object(stored).to_string(),
                None => serde_json::to_string(&e.properties).unwrap_or_default(),
            };
            put_str(&mut out, &text);
        }
    }
    let mut previous = 0i64;
    for (position, _) in positioned {
        let millis = position.millis as i64;
        put_varint(&mut out, zigzag(millis.wrapping_sub(previous)));
        put_varint(&mut out, position.sequence);
        previous = millis;
    }
    out
}

/// Decodes the events for which `keep(name, timestamp)` holds, in block order.
pub fn decode(bytes: &[u8], keep: impl Fn(&str, i64) -> bool) -> Result<Decoded, CodecError> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.byte()?;
    if version != VERSION && version != VERSION_WITHOUT_POSITIONS {
        return Err(CodecError("unknown version"));
    }
    let n = usize::try_from(r.varint()?).map_err(|_| CodecError("bad length"))?;
    // Every event takes at least 6 bytes: a corrupt count fails here, not in an allocation.
    if n > bytes.len() {
        return Err(CodecError("event count exceeds the data"));
    }
    let name_count = r.varint()? as usize;
    if name_count > bytes.len() {
        return Err(CodecError("name count exceeds the data"));
    }
    let names: Vec<&str> = (0..name_count).map(|_| r.str()).collect::<Result<_, _>>()?;
    let name_of: Vec<&str> = (0..n)
        .map(|_| names.get(r.varint()? as usize).copied().ok_or(CodecError("bad name index")))
        .collect::<Result<_, _>>()?;
    let mut previous = 0i64;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        previous = previous.wrapping_add(unzigzag(r.varint()?));
        times.push(previous);
    }
    let kept: Vec<bool> = (0..n).map(|i| keep(name_of[i], times[i])).collect();
    let mut received = Vec::with_capacity(n);
    for &t in &times {
        received.push(t.wrapping_add(unzigzag(r.varint()?)));
    }
    let generated = r.take(n)?;
    let ids: Vec<&str> = (0..n).map(|_| r.str()).collect::<Result<_, _>>()?;
    let users: Vec<&str> = (0..n).map(|_| r.str()).collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(kept.iter().filter(|k| **k).count());
    for i in 0..n {
        let properties = r.str()?;
        if !kept[i] {
            continue;
        }
        let properties: Map<String, Value> = if properties.is_empty() {
            Map::new()
        } else {
            serde_json::from_str(properties).map_err(|_| CodecError("bad properties"))?
        };
        out.push(BufferedEvent {
            event_id: ids[i].to_string(),
            id_generated: generated[i] != 0,
            event: name_of[i].to_string(),
            distinct_id: users[i].to_string(),
            timestamp: times[i],
            received_at: received[i],
            properties,
        });
    }
    let positions = if version == VERSION {
        let mut previous = 0i64;
        let mut positions = Vec::with_capacity(out.len());
        for &kept in &kept {
            previous = previous.wrapping_add(unzigzag(r.varint()?));
            let sequence = r.varint()?;
            if kept {
                positions.push(StreamPosition { millis: previous as u64, sequence });
            }
        }
        Some(positions)
    } else {
        None
    };
    if r.at != bytes.len() {
        return Err(CodecError("trailing bytes"));
    }
    Ok(Decoded { events: out, positions })
}

/// The properties as a raw event document gives them back, when that differs from `map`:
/// BSON has no u64, so integers beyond i64 are stored as doubles. A block keeps the same
/// values, so that an event read from a block equals the raw one.
pub fn stored_properties(map: &Map<String, Value>) -> Option<Map<String, Value>> {
    fn changes(v: &Value) -> bool {
        match v {
            Value::Number(n) => n.is_u64() && n.as_i64().is_none(),
            Value::Array(items) => items.iter().any(changes),
            Value::Object(map) => map.values().any(changes),
            _ => false,
        }
    }
    fn stored(v: &Value) -> Value {
        match v {
            Value::Number(n) if n.is_u64() && n.as_i64().is_none() => {
                serde_json::Number::from_f64(n.as_f64().unwrap_or(f64::NAN))
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
            Value::Array(items) => Value::Array(items.iter().map(stored).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), stored(v))).collect()),
            other => other.clone(),
        }
    }
    map.values().any(changes).then(|| map.iter().map(|(k, v)| (k.clone(), stored(v))).collect())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, CodecError> {
        let b = *self.bytes.get(self.at).ok_or(CodecError("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(CodecError("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or(CodecError("truncated"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn str(&mut self) -> Result<&'a str, CodecError> {
        let n = usize::try_from(self.varint()?).map_err(|_| CodecError("bad length"))?;
        std::str::from_utf8(self.take(n)?).map_err(|_| CodecError("bad UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(i: i64, props: Value) -> BufferedEvent {
        BufferedEvent {
            event_id: format!("id-{i}"),
            id_generated: i % 3 == 0,
            event: ["a", "b.c", "ü"][(i % 3) as usize].to_string(),
            distinct_id: format!("user-{}", i % 7),
            timestamp: 1_700_000_000_000 - i * 37_000,
            received_at: 1_700_000_000_000 + i,
            properties: props.as_object().cloned().unwrap_or_default(),
        }
    }

    /// Positions in stream order mostly, with a step back as a merged block may have.
    fn position(i: usize) -> StreamPosition {
        let millis = if i == 7 { 1_000 } else { 1_700_000_000_000 + (i as u64 / 3) * 5 };
        StreamPosition { millis, sequence: i as u64 % 3 }
    }

    fn positioned(events: &[BufferedEvent]) -> Vec<(StreamPosition, &BufferedEvent)> {
        events.iter().enumerate().map(|(i, e)| (position(i), e)).collect()
    }

    #[test]
    fn round_trips_and_filters_by_name_and_time() {
        let events: Vec<BufferedEvent> = (0..50)
            .map(|i| event(i, serde_json::json!({ "n": i, "x": { "y.z": [1, "two", null] }, "$k": -1.5 })))
            .chain([event(50, serde_json::json!({}))])
            .collect();
        let bytes = encode(&positioned(&events));
        let all = decode(&bytes, |_, _| true).expect("decode");
        assert_eq!(all.events, events);
        assert_eq!(all.positions, Some((0..events.len()).map(position).collect()));
        let cut = events[10].timestamp;
        let some = decode(&bytes, |name, ts| name == "a" && ts >= cut).expect("decode");
        let (want, want_positions): (Vec<BufferedEvent>, Vec<StreamPosition>) = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.event == "a" && e.timestamp >= cut)
            .map(|(i, e)| (e.clone(), position(i)))
            .unzip();
        assert_eq!(some.events, want);
        assert_eq!(some.positions, Some(want_positions));
        assert!(!some.events.is_empty());
    }

    #[test]
    fn a_version_1_block_decodes_without_positions() {
        let events: Vec<BufferedEvent> = (0..5).map(|i| event(i, serde_json::json!({ "n": i }))).collect();
        let at_zero: Vec<(StreamPosition, &BufferedEvent)> =
            events.iter().map(|e| (StreamPosition::default(), e)).collect();
        // Version 1 is version 2 without the position column (two zero bytes per event here).
        let mut bytes = encode(&at_zero);
        bytes.truncate(bytes.len() - 2 * events.len());
        bytes[0] = 1;
        let decoded = decode(&bytes, |_, _| true).expect("decode");
        assert_eq!(decoded.events, events);
        assert_eq!(decoded.positions, None);
    }

    #[test]
    fn integers_beyond_i64_become_doubles_as_in_a_raw_document() {
        let e = event(
            1,
            serde_json::json!({ "big": u64::MAX, "deep": [{ "b": 18_000_000_000_000_000_000u64 }], "small": 5 }),
        );
        let got = decode(&encode(&[(position(0), &e)]), |_, _| true).expect("decode").events;
        assert_eq!(got[0].properties["big"], serde_json::json!(u64::MAX as f64));
        assert_eq!(
            got[0].properties["deep"][0]["b"],
            serde_json::json!(18_000_000_000_000_000_000u64 as f64)
        );
        assert_eq!(got[0].properties["small"], serde_json::json!(5));
    }

    #[test]
    fn corrupt_data_is_an_error_not_a_panic() {
        let e = event(1, serde_json::json!({ "a": 1 }));
        let bytes = encode(&[(position(0), &e), (position(1), &e)]);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], |_, _| true).is_err(), "cut at {cut}");
        }
        assert!(decode(&[3, 0, 0], |_, _| true).is_err());
    }

    proptest! {
        #[test]
        fn any_times_and_positions_round_trip(
            rows in proptest::collection::vec((any::<i64>(), any::<i64>(), any::<u64>(), any::<u64>()), 0..40),
        ) {
            let events: Vec<BufferedEvent> = rows
                .iter()
                .enumerate()
                .map(|(i, (t, r, _, _))| BufferedEvent { timestamp: *t, received_at: *r, ..event(i as i64, Value::Null) })
                .collect();
            let positions: Vec<StreamPosition> =
                rows.iter().map(|(_, _, millis, sequence)| StreamPosition { millis: *millis, sequence: *sequence }).collect();
            let refs: Vec<(StreamPosition, &BufferedEvent)> = positions.iter().copied().zip(&events).collect();
            let decoded = decode(&encode(&refs), |_, _| true).expect("decode");
            prop_assert_eq!(decoded.events, events);
            prop_assert_eq!(decoded.positions, Some(positions));
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// Prints where a block's read time goes, per 100,000 events (no assertion):
    /// `cargo test --release -p pulse-store --lib -- --ignored decode_speed --nocapture`.
    #[test]
    #[ignore]
    fn decode_speed() {
        let events: Vec<BufferedEvent> = (0..100_000)
            .map(|i| BufferedEvent {
                event_id: format!("b{i:08}-{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                id_generated: false,
                event: ["page_viewed", "signed_up", "purchase"][i % 3].to_string(),
                distinct_id: format!("user-{}", (i * 31) % 10_000),
                timestamp: 1_700_000_000_000 + i as i64 * 2_000,
                received_at: 1_700_000_000_150 + i as i64 * 2_000,
                properties: serde_json::json!({ "plan": "pro", "revenue": (i % 10_000) as f64 / 100.0, "path": format!("/page/{}", i % 500) })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect();
        let blocks: Vec<Vec<u8>> = events
            .chunks(1000)
            .map(|c| {
                let refs: Vec<(StreamPosition, &BufferedEvent)> =
                    c.iter().map(|e| (StreamPosition::default(), e)).collect();
                let encoded = encode(&refs);
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut e, &encoded).expect("deflate");
                e.finish().expect("deflate")
            })
            .collect();
        let t = std::time::Instant::now();
        let inflated: Vec<Vec<u8>> = blocks
            .iter()
            .map(|b| {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::DeflateDecoder::new(&b[..]), &mut out)
                    .expect("inflate");
                out
            })
            .collect();
        let inflate = t.elapsed();
        let t = std::time::Instant::now();
        let n: usize = inflated.iter().map(|b| decode(b, |_, _| false).expect("decode").events.len()).sum();
        let skip = t.elapsed();
        let t = std::time::Instant::now();
        let n2: usize = inflated.iter().map(|b| decode(b, |_, _| true).expect("decode").events.len()).sum();
        let all = t.elapsed();
        let texts: Vec<String> =
            events.iter().map(|e| serde_json::to_string(&e.properties).expect("json")).collect();
        let t = std::time::Instant::now();
        let parsed: usize =
            texts.iter().map(|t| serde_json::from_str::<Map<String, Value>>(t).expect("json").len()).sum();
        eprintln!("properties JSON parse alone: {:?} ({parsed})", t.elapsed());
        let t = std::time::Instant::now();
        let mut seen = std::collections::HashSet::new();
        for e in &events {
            seen.insert(e.event_id.clone());
        }
        let dedup = t.elapsed();
        eprintln!(
            "100k events: inflate {inflate:?} ({} MB), columns only {skip:?} ({n}), full decode {all:?} ({n2}), dedup set {dedup:?}",
            inflated.iter().map(Vec::len).sum::<usize>() / 1_000_000
        );
    }
}
