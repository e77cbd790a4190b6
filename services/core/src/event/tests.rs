//! Unit tests of event validation.

use super::*;
use crate::property::PropertyPath;
use serde_json::json;

const NOW: i64 = 1_790_000_000_000;

fn rules() -> EventRules {
    EventRules::new(&IngestLimits::default(), 365 * 86_400_000)
}

fn check(event: Value) -> Result<BufferedEvent, EventError> {
    rules().validate(&event.to_string(), NOW, &mut || "generated".to_string())
}

fn code(event: Value) -> (ErrorCode, String) {
    let e = check(event).expect_err("must be refused");
    (e.code, e.field)
}

#[test]
fn a_full_event_is_accepted_as_sent() {
    let e = check(json!({
        "event_id": "e-1", "event": "signup", "distinct_id": "u-1",
        "timestamp": "2026-09-21T10:00:00Z", "properties": { "plan": "pro", "seats": 3 }
    }))
    .expect("valid");
    assert_eq!((e.event_id.as_str(), e.id_generated), ("e-1", false));
    assert_eq!(e.timestamp, 1_789_984_800_000, "2026-09-21T10:00:00Z");
    assert_eq!(e.properties["seats"], json!(3));
    assert_eq!(e.received_at, NOW);
}

#[test]
fn defaults_fill_id_and_timestamp() {
    let e = check(json!({ "event": "signup", "distinct_id": "u-1" })).expect("valid");
    assert_eq!((e.event_id.as_str(), e.id_generated), ("generated", true));
    assert_eq!(e.timestamp, NOW);
    assert!(e.properties.is_empty());
}

#[test]
fn epoch_milliseconds_are_accepted() {
    let e = check(json!({ "event": "a", "distinct_id": "u", "timestamp": NOW - 5_000 })).expect("valid");
    assert_eq!(e.timestamp, NOW - 5_000);
}

#[test]
fn each_problem_gets_its_code_and_field() {
    let base = || json!({ "event": "a", "distinct_id": "u" });
    let with = |k: &str, v: Value| {
        let mut e = base();
        e[k] = v;
        e
    };
    assert_eq!(code(json!([1])), (ErrorCode::InvalidType, String::new()));
    assert_eq!(code(json!({ "distinct_id": "u" })), (ErrorCode::MissingField, "event".into()));
    assert_eq!(code(json!({ "event": "a" })), (ErrorCode::MissingField, "distinct_id".into()));
    assert_eq!(code(with("event", json!(""))), (ErrorCode::Empty, "event".into()));
    assert_eq!(code(with("event", json!(7))), (ErrorCode::InvalidType, "event".into()));
    assert_eq!(code(with("distinct_id", json!(42))), (ErrorCode::InvalidType, "distinct_id".into()));
    assert_eq!(code(with("event", json!("x".repeat(201)))), (ErrorCode::TooLong, "event".into()));
    assert_eq!(code(with("event_id", json!(["x"]))), (ErrorCode::InvalidType, "event_id".into()));
    assert_eq!(
        code(with("timestamp", json!("yesterday"))),
        (ErrorCode::InvalidTimestamp, "timestamp".into())
    );
    assert_eq!(code(with("timestamp", json!(1.5))), (ErrorCode::InvalidTimestamp, "timestamp".into()));
    assert_eq!(code(with("timestamp", json!(true))), (ErrorCode::InvalidType, "timestamp".into()));
    assert_eq!(
        code(with("timestamp", json!(NOW + 2 * 3_600_000))),
        (ErrorCode::TimestampInFuture, "timestamp".into())
    );
    assert_eq!(
        code(with("timestamp", json!(1_700_000_000))),
        (ErrorCode::TimestampTooOld, "timestamp".into())
    );
    assert_eq!(code(with("properties", json!("plan=pro"))), (ErrorCode::InvalidType, "properties".into()));
    assert_eq!(code(with("propertes", json!({}))), (ErrorCode::UnknownField, "propertes".into()));
    assert_eq!(code(with("properties", json!({ "": 1 }))), (ErrorCode::Empty, "properties".into()));
}

#[test]
fn size_depth_and_count_limits_hold() {
    let deep = json!({ "event": "a", "distinct_id": "u", "properties": { "a": { "b": { "c": { "d": { "e": { "f": 1 } } } } } } });
    assert_eq!(code(deep).0, ErrorCode::TooDeep);
    let ok_depth = json!({ "event": "a", "distinct_id": "u", "properties": { "a": { "b": { "c": { "d": { "e": 1 } } } } } });
    assert!(check(ok_depth).is_ok(), "five levels are allowed");
    let many: Map<String, Value> = (0..257).map(|i| (format!("p{i}"), json!(i))).collect();
    assert_eq!(
        code(json!({ "event": "a", "distinct_id": "u", "properties": many })).0,
        ErrorCode::TooManyProperties
    );
    let big = json!({ "event": "a", "distinct_id": "u", "properties": { "blob": "x".repeat(40_000) } });
    assert_eq!(code(big).0, ErrorCode::EventTooLarge);
}

#[test]
fn what_no_store_can_hold_is_refused_with_its_field() {
    let base = || json!({ "event": "a", "distinct_id": "u" });
    let with = |k: &str, v: Value| {
        let mut e = base();
        e[k] = v;
        e
    };
    let props = |p: Value| with("properties", p);
    let nul = "a\u{0}b";
    let cases = [
        (props(json!({ "a": [[1, 2], [3]] })), ErrorCode::NestedArray, "properties.a[0]"),
        (props(json!({ "a": [1, { "b": [2, []] }] })), ErrorCode::NestedArray, "properties.a[1].b[1]"),
        (props(json!({ "$set": { "tags": [["x"]] } })), ErrorCode::NestedArray, "properties.$set.tags[0]"),
        (props(json!({ nul: 1 })), ErrorCode::InvalidCharacter, "properties.a\u{0}b"),
        (props(json!({ "o": { nul: 1 } })), ErrorCode::InvalidCharacter, "properties.o.a\u{0}b"),
        (props(json!({ "o": [{ "k": nul }] })), ErrorCode::InvalidCharacter, "properties.o[0].k"),
        (props(json!({ "$unset": [nul] })), ErrorCode::InvalidCharacter, "properties.$unset[0]"),
        (with("event", json!(nul)), ErrorCode::InvalidCharacter, "event"),
        (with("distinct_id", json!(nul)), ErrorCode::InvalidCharacter, "distinct_id"),
        (with("event_id", json!(nul)), ErrorCode::InvalidCharacter, "event_id"),
        (with("event", json!("   ")), ErrorCode::Empty, "event"),
        (with("distinct_id", json!("\t\n")), ErrorCode::Empty, "distinct_id"),
        (with("event_id", json!(" ")), ErrorCode::Empty, "event_id"),
        (props(json!({ " ": 1 })), ErrorCode::Empty, "properties"),
        (props(json!({ "o": { "": 1 } })), ErrorCode::Empty, "properties.o"),
        (props(json!({ "l": [{ "": 1 }] })), ErrorCode::Empty, "properties.l[0]"),
        (props(json!({ "$set": { "": 1 } })), ErrorCode::Empty, "properties.$set"),
        (props(json!({ "$unset": ["plan", ""] })), ErrorCode::Empty, "properties.$unset[1]"),
        (props(json!({ "$unset": ["  "] })), ErrorCode::Empty, "properties.$unset[0]"),
    ];
    for (event, expected, field) in cases {
        assert_eq!(code(event.clone()), (expected, field.to_string()), "{event}");
    }
    // What stores take is still taken: arrays of objects holding arrays, `$`/`.` in keys
    // (encoded by the store), spaces inside names, a non-array `$unset`.
    let fine = props(json!({
        "a": [{ "b": [1, 2] }, { "b": [] }], "$browser": "x", "a.b": 1, "my plan": " pro ",
        "$unset": "not a list of names"
    }));
    assert!(check(fine).is_ok());
    assert!(check(with("event", json!(" signed up "))).is_ok());
}

#[test]
fn duplicate_keys_and_unrepresentable_numbers_are_refused() {
    let refused = |text: &str| {
        let e = rules().validate(text, NOW, &mut || "generated".to_string()).expect_err("refused");
        (e.code, e.field)
    };
    assert_eq!(
        refused(r#"{"event": "a", "event": "b", "distinct_id": "u"}"#),
        (ErrorCode::DuplicateKey, "event".into())
    );
    assert_eq!(
        refused(r#"{"event": "a", "distinct_id": "u", "properties": {"o": {"k": 1, "k": 2}}}"#),
        (ErrorCode::DuplicateKey, "properties.o.k".into())
    );
    assert_eq!(
        refused(r#"{"event": "a", "distinct_id": "u", "properties": {"n": 1e400}}"#).0,
        ErrorCode::InvalidJson,
        "a number beyond f64 (infinity) cannot be parsed, so it is invalid JSON"
    );
    assert_eq!(
        refused(r#"{"event": "a", "distinct_id": "u", "properties": {"n": -1e400}}"#).0,
        ErrorCode::InvalidJson
    );
    let huge = r#"{"event": "a", "distinct_id": "u", "properties": {"n": 1.7e308}}"#;
    assert!(rules().validate(huge, NOW, &mut || "g".into()).is_ok(), "finite, however large");
}

#[test]
fn every_code_has_its_name() {
    let names: std::collections::BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(names.len(), ErrorCode::ALL.len());
    for code in ErrorCode::ALL {
        assert_eq!(serde_json::to_value(code).expect("serializes"), json!(code.as_str()));
    }
}

#[test]
fn values_of_summed_properties_stay_far_from_infinity() {
    let paths: Vec<PropertyPath> =
        vec!["revenue".parse().expect("path"), "cart.total".parse().expect("path")];
    let rules = rules().with_summed_properties(&paths);
    let check = |p: Value| {
        let event = json!({ "event": "a", "distinct_id": "u", "properties": p });
        rules.validate(&event.to_string(), NOW, &mut || "g".to_string()).map_err(|e| (e.code, e.field))
    };
    assert_eq!(
        check(json!({ "revenue": 1e251 })).err(),
        Some((ErrorCode::NumberOutOfRange, "properties.revenue".into()))
    );
    assert_eq!(
        check(json!({ "cart": { "total": -1.7e308 } })).err(),
        Some((ErrorCode::NumberOutOfRange, "properties.cart.total".into()))
    );
    assert!(check(json!({ "revenue": 1e250, "cart": { "total": u64::MAX } })).is_ok());
    assert!(check(json!({ "other": 1.7e308, "revenue": "n/a", "cart": 3 })).is_ok(), "only summed numbers");
}

#[test]
fn whole_float_epoch_milliseconds_are_integers_and_fractions_are_not() {
    let at = |ts: Value| check(json!({ "event": "e", "distinct_id": "u", "timestamp": ts }));
    assert_eq!(at(json!(1_789_999_000_000.0)).expect("a whole float").timestamp, 1_789_999_000_000);
    assert_eq!(
        code(json!({ "event": "e", "distinct_id": "u", "timestamp": 1_789_999_000_000.5 })).0,
        ErrorCode::InvalidTimestamp
    );
    assert_eq!(
        code(json!({ "event": "e", "distinct_id": "u", "timestamp": 1e300 })).0,
        ErrorCode::InvalidTimestamp
    );
}
