//! Pre-aggregates: which rollup buckets an event falls in, and what it adds to them.
//! Pure: the processor applies the contributions, the rebuild recomputes them.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use jiff::{Timestamp, Unit, ZonedDateTime, ZonedDateTimeRound};
use serde_json::{Map, Value};

use crate::buffer::BufferedEvent;
use crate::config::RollupInterval;
use crate::property::PropertyPath;

/// One rollup bucket: an event name over one interval starting at `start` (epoch ms).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketKey {
    pub event: String,
    pub interval: RollupInterval,
    pub start: i64,
}

impl BucketKey {
    /// The bucket's document id: `<interval>|<start>|<event>`, the start zero-padded to 15
    /// digits so that ids sort by interval, then time: a range of `_id` is a time range,
    /// and no secondary index is needed (index upkeep is the main cost of small updates).
    pub fn id(&self) -> String {
        format!("{}|{:015}|{}", interval_name(self.interval), self.start.max(0), self.event)
    }
}

impl BucketKey {
    /// The period the bucket belongs to: its interval and start.
    pub fn period(&self) -> PeriodKey {
        PeriodKey { interval: self.interval, start: self.start }
    }
}

/// One interval starting at `start` (epoch ms): the buckets of every event name over it
/// share one stored document per partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeriodKey {
    pub interval: RollupInterval,
    pub start: i64,
}

impl PeriodKey {
    /// `<interval>|<start>`, the start zero-padded as in [`BucketKey::id`], which it prefixes.
    pub fn id(&self) -> String {
        format!("{}|{:015}", interval_name(self.interval), self.start.max(0))
    }

    /// The bucket of `event` in this period.
    pub fn bucket(&self, event: &str) -> BucketKey {
        BucketKey { event: event.to_string(), interval: self.interval, start: self.start }
    }
}

/// The interval's name as stored.
pub fn interval_name(interval: RollupInterval) -> &'static str {
    match interval {
        RollupInterval::Minute => "minute",
        RollupInterval::Hour => "hour",
        RollupInterval::Day => "day",
    }
}

/// The interval of a stored name.
pub fn interval_of_name(name: &str) -> Option<RollupInterval> {
    [RollupInterval::Minute, RollupInterval::Hour, RollupInterval::Day]
        .into_iter()
        .find(|i| interval_name(*i) == name)
}

/// Whether buckets of this interval count unique users. Minute buckets count events only:
/// a per-minute distinct count is rarely asked for and would cost a marker per event.
pub fn counts_users(interval: RollupInterval) -> bool {
    !matches!(interval, RollupInterval::Minute)
}

/// Why a time zone could not be used.
#[derive(Debug, thiserror::Error)]
#[error("unknown time zone {0:?}: use an IANA name such as Europe/Berlin, or UTC")]
pub struct UnknownTimeZone(pub String);

/// Looks up an IANA time zone (bundled, so it works in any container).
pub fn time_zone(name: &str) -> Result<TimeZone, UnknownTimeZone> {
    TimeZone::get(name).map_err(|_| UnknownTimeZone(name.to_string()))
}

/// The start (epoch ms) of the interval holding `ts` in `tz`: minutes and hours by the
/// zone's clock (so +05:30 zones get their own hours), days from local midnight.
pub fn bucket_start(ts: i64, interval: RollupInterval, tz: &TimeZone) -> i64 {
    let Ok(instant) = Timestamp::from_millisecond(ts) else { return ts };
    let zoned = instant.to_zoned_datetime(tz.clone());
    let unit = match interval {
        RollupInterval::Minute => Unit::Minute,
        RollupInterval::Hour => Unit::Hour,
        RollupInterval::Day => Unit::Day,
    };
    zoned.start_of_unit(unit).map(|z| z.timestamp().as_millisecond()).unwrap_or(ts)
}

/// The start (epoch ms) of the ISO week (from Monday's local midnight) holding `ts` in `tz`.
pub fn week_start(ts: i64, tz: &TimeZone) -> i64 {
    let Ok(instant) = Timestamp::from_millisecond(ts) else { return ts };
    let zoned = instant.to_zoned_datetime(tz.clone());
    let back = i64::from(zoned.weekday().to_monday_zero_offset());
    zoned
        .start_of_day()
        .and_then(|day| day.checked_sub(jiff::Span::new().days(back)))
        .and_then(|monday| monday.start_of_day())
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(ts)
}

trait StartOf {
    fn start_of_unit(&self, unit: Unit) -> Result<ZonedDateTime, jiff::Error>;
}

impl StartOf for ZonedDateTime {
    fn start_of_unit(&self, unit: Unit) -> Result<ZonedDateTime, jiff::Error> {
        match unit {
            Unit::Day => self.start_of_day(),
            _ => self.round(ZonedDateTimeRound::new().smallest(unit).mode(jiff::RoundMode::Trunc)),
        }
    }
}

/// Sum, min, max and count of one numeric property in a bucket. The sum saturates at
/// ±`f64::MAX` instead of overflowing to infinity, which no store can hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumericStat {
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub count: u64,
}

impl NumericStat {
    fn of(value: f64) -> Self {
        NumericStat { sum: value, min: value, max: value, count: 1 }
    }

    fn add(&mut self, value: f64) {
        self.sum = saturating_sum(self.sum, value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.count += 1;
    }
}

/// `a + b` for finite `a` and `b`, clamped to ±`f64::MAX` where it would overflow.
pub fn saturating_sum(a: f64, b: f64) -> f64 {
    (a + b).clamp(-f64::MAX, f64::MAX)
}

/// What a set of events adds to one bucket (unique users are counted by the store, which
/// knows who was already seen).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contribution {
    pub events: u64,
    /// By encoded property path.
    pub numeric: BTreeMap<String, NumericStat>,
}

impl Contribution {
    /// Adds one event.
    pub fn add(&mut self, event: &BufferedEvent, numeric_properties: &[PropertyPath]) {
        self.events += 1;
        let properties = Value::Object(event.properties.clone());
        for path in numeric_properties {
            if let Some(n) = path.lookup(&properties).and_then(Value::as_f64).filter(|n| n.is_finite()) {
                self.numeric
                    .entry(encode_key(path.as_str()))
                    .and_modify(|s| s.add(n))
                    .or_insert_with(|| NumericStat::of(n));
            }
        }
    }
}

/// Every bucket an event falls in.
pub fn buckets_of(event: &BufferedEvent, intervals: &[RollupInterval], tz: &TimeZone) -> Vec<BucketKey> {
    intervals
        .iter()
        .map(|&interval| BucketKey {
            event: event.event.clone(),
            interval,
            start: bucket_start(event.timestamp, interval, tz),
        })
        .collect()
}

/// Every period `events` fall in (each of `intervals`).
pub fn periods_of<'e>(
    events: impl IntoIterator<Item = &'e BufferedEvent>,
    intervals: &[RollupInterval],
    tz: &TimeZone,
) -> std::collections::BTreeSet<PeriodKey> {
    events
        .into_iter()
        .flat_map(|e| {
            intervals
                .iter()
                .map(|&interval| PeriodKey { interval, start: bucket_start(e.timestamp, interval, tz) })
        })
        .collect()
}

/// A position in a partition's stream (a Redis stream id), ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamPosition {
    pub millis: u64,
    pub sequence: u64,
}

impl StreamPosition {
    /// Parses a Redis stream id `<ms>-<seq>`.
    pub fn parse(id: &str) -> Option<Self> {
        let (millis, sequence) = id.split_once('-')?;
        Some(StreamPosition { millis: millis.parse().ok()?, sequence: sequence.parse().ok()? })
    }

    /// A fixed-width text form whose string order is the stream order, for the store.
    pub fn to_key(self) -> String {
        format!("{:020}-{:020}", self.millis, self.sequence)
    }

    /// The position just before this one (no stream entry lies between them).
    pub fn predecessor(self) -> Self {
        match self.sequence.checked_sub(1) {
            Some(sequence) => StreamPosition { millis: self.millis, sequence },
            None => StreamPosition { millis: self.millis.saturating_sub(1), sequence: u64::MAX },
        }
    }

    /// Parses [`Self::to_key`]'s form.
    pub fn from_key(key: &str) -> Option<Self> {
        Self::parse(key)
    }

    /// The Redis stream id.
    pub fn to_redis_id(self) -> String {
        format!("{}-{}", self.millis, self.sequence)
    }
}

/// Encodes a property key (or an event name) for the store, where keys may not contain `.`
/// nor start with `$`, and where some stores trim white space at the ends of an update path's
/// parts (FerretDB then refuses the part as empty): `%` becomes `%25`, `.` becomes `%2E`, a
/// leading `$` becomes `%24`, and white space at either end becomes its UTF-8 bytes as `%XX`.
/// Reversible.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let inner_start = key.len() - key.trim_start().len();
    let inner_end = key.trim_end().len();
    for (i, c) in key.char_indices() {
        match c {
            '%' => out.push_str("%25"),
            '.' => out.push_str("%2E"),
            '$' if i == 0 => out.push_str("%24"),
            c if i < inner_start || i >= inner_end => {
                let mut bytes = [0; 4];
                for b in c.encode_utf8(&mut bytes).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`encode_key`]: every `%XX` run is the UTF-8 it encodes (a `%` not followed by
/// two hex digits stays as it is; `encode_key` never writes one).
pub fn decode_key(key: &str) -> String {
    if !key.contains('%') {
        return key.to_string();
    }
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| {
                std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .flatten();
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Encodes every key of a properties object, nested objects and objects in arrays too.
pub fn encode_properties(properties: &Map<String, Value>) -> Map<String, Value> {
    properties.iter().map(|(k, v)| (encode_key(k), encode_value(v))).collect()
}

fn encode_value(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(encode_properties(map)),
        Value::Array(items) => Value::Array(items.iter().map(encode_value).collect()),
        other => other.clone(),
    }
}

/// Reverses [`encode_properties`].
pub fn decode_properties(properties: &Map<String, Value>) -> Map<String, Value> {
    properties.iter().map(|(k, v)| (decode_key(k), decode_value(v))).collect()
}

fn decode_value(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(decode_properties(map)),
        Value::Array(items) => Value::Array(items.iter().map(decode_value).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().expect("timestamp").as_millisecond()
    }

    #[test]
    fn buckets_follow_the_time_zone() {
        let utc = time_zone("UTC").expect("utc");
        let kolkata = time_zone("Asia/Kolkata").expect("kolkata");
        let t = ms("2026-11-24T10:47:31Z");
        assert_eq!(bucket_start(t, RollupInterval::Minute, &utc), ms("2026-11-24T10:47:00Z"));
        assert_eq!(bucket_start(t, RollupInterval::Hour, &utc), ms("2026-11-24T10:00:00Z"));
        assert_eq!(bucket_start(t, RollupInterval::Day, &utc), ms("2026-11-24T00:00:00Z"));
        // Kolkata is +05:30: its hours start at :30 UTC and its day at 18:30 UTC.
        assert_eq!(bucket_start(t, RollupInterval::Hour, &kolkata), ms("2026-11-24T10:30:00Z"));
        assert_eq!(bucket_start(t, RollupInterval::Day, &kolkata), ms("2026-11-23T18:30:00Z"));
    }

    #[test]
    fn days_across_a_dst_change_have_their_real_length() {
        let berlin = time_zone("Europe/Berlin").expect("berlin");
        // 2026-10-25 has 25 hours in Berlin.
        let day = bucket_start(ms("2026-10-25T12:00:00Z"), RollupInterval::Day, &berlin);
        let next = bucket_start(ms("2026-10-26T12:00:00Z"), RollupInterval::Day, &berlin);
        assert_eq!(next - day, 25 * 3_600_000);
    }

    #[test]
    fn weeks_start_on_monday_local_midnight() {
        let utc = time_zone("UTC").expect("utc");
        // 2026-11-24 is a Tuesday.
        assert_eq!(week_start(ms("2026-11-24T10:00:00Z"), &utc), ms("2026-11-23T00:00:00Z"));
        assert_eq!(week_start(ms("2026-11-23T00:00:00Z"), &utc), ms("2026-11-23T00:00:00Z"));
    }

    #[test]
    fn unknown_zones_are_refused() {
        assert!(time_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn stream_positions_order_as_redis_does() {
        let a = StreamPosition::parse("1700000000000-9").expect("id");
        let b = StreamPosition::parse("1700000000000-10").expect("id");
        assert!(a < b);
        assert!(a.to_key() < b.to_key(), "the stored form sorts the same way");
        assert_eq!(StreamPosition::from_key(&b.to_key()), Some(b));
        assert_eq!(b.to_redis_id(), "1700000000000-10");
    }

    #[test]
    fn contributions_sum_numeric_properties() {
        let event = |revenue: Value| BufferedEvent {
            event_id: "e".into(),
            id_generated: false,
            event: "purchase".into(),
            distinct_id: "u".into(),
            timestamp: 0,
            received_at: 0,
            properties: serde_json::json!({ "revenue": revenue, "cart": { "items": 2 } })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        let paths: Vec<PropertyPath> =
            vec!["revenue".parse().expect("path"), "cart.items".parse().expect("path")];
        let mut c = Contribution::default();
        c.add(&event(serde_json::json!(10.5)), &paths);
        c.add(&event(serde_json::json!(-2)), &paths);
        c.add(&event(serde_json::json!("n/a")), &paths);
        assert_eq!(c.events, 3);
        assert_eq!(c.numeric["revenue"], NumericStat { sum: 8.5, min: -2.0, max: 10.5, count: 2 });
        assert_eq!(c.numeric["cart%2Eitems"].count, 3);
    }

    #[test]
    fn white_space_at_the_ends_of_a_key_is_encoded_and_comes_back() {
        assert_eq!(encode_key(" a b\u{a0}"), "%20a b%C2%A0");
        assert_eq!(encode_key("\ta\u{85}"), "%09a%C2%85");
        assert_eq!(encode_key("Signed Up"), "Signed Up", "inner spaces stay");
        for key in [" a b\u{a0}", "\ta\u{85}", "  ", "%20", "$.x ", "100%"] {
            assert_eq!(decode_key(&encode_key(key)), key);
        }
        assert_eq!(decode_key("a%2Eb%24%25"), "a.b$%", "keys encoded before stay readable");
    }

    #[test]
    fn numeric_sums_saturate_instead_of_overflowing() {
        let event = |revenue: f64| BufferedEvent {
            event_id: "e".into(),
            id_generated: false,
            event: "purchase".into(),
            distinct_id: "u".into(),
            timestamp: 0,
            received_at: 0,
            properties: serde_json::json!({ "revenue": revenue }).as_object().cloned().unwrap_or_default(),
        };
        let paths: Vec<PropertyPath> = vec!["revenue".parse().expect("path")];
        let mut up = Contribution::default();
        up.add(&event(1.5e308), &paths);
        up.add(&event(1.5e308), &paths);
        up.add(&event(1.0), &paths);
        assert_eq!(up.numeric["revenue"], NumericStat { sum: f64::MAX, min: 1.0, max: 1.5e308, count: 3 });
        let mut down = Contribution::default();
        down.add(&event(-f64::MAX), &paths);
        down.add(&event(-f64::MAX), &paths);
        assert_eq!(down.numeric["revenue"].sum, -f64::MAX);
        assert_eq!(saturating_sum(f64::MAX, -f64::MAX), 0.0);
        assert_eq!(saturating_sum(2.5, -1.0), 1.5, "ordinary sums are untouched");
    }

    proptest! {
        #[test]
        fn key_encoding_round_trips_and_is_store_safe(key in "\\PC{0,20}") {
            let encoded = encode_key(&key);
            prop_assert!(!encoded.contains('.'));
            prop_assert!(!encoded.starts_with('$'));
            prop_assert_eq!(decode_key(&encoded), key);
        }
    }
}
