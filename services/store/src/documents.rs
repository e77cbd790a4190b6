//! JSON <-> BSON for event properties, with keys encoded for the store.

use mongodb::bson::{Bson, Document};
use pulse_core::rollup::{decode_key, encode_key};
use serde_json::{Map, Number, Value};

/// A JSON value as BSON, object keys encoded ([`encode_key`]). Integers beyond i64 become
/// doubles (BSON has no u64).
pub fn bson_of_json(value: &Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(bson_of_json).collect()),
        Value::Object(map) => Bson::Document(document_of_json(map)),
    }
}

/// A JSON object as a BSON document, keys encoded.
pub fn document_of_json(map: &Map<String, Value>) -> Document {
    map.iter().map(|(k, v)| (encode_key(k), bson_of_json(v))).collect()
}

/// The reverse of [`bson_of_json`], keys decoded.
pub fn json_of_bson(value: &Bson) -> Value {
    match value {
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::Int32(i) => Value::from(*i),
        Bson::Int64(i) => Value::from(*i),
        Bson::Double(d) => Number::from_f64(*d).map(Value::Number).unwrap_or(Value::Null),
        Bson::String(s) => Value::String(s.clone()),
        Bson::Array(items) => Value::Array(items.iter().map(json_of_bson).collect()),
        Bson::Document(doc) => {
            Value::Object(doc.iter().map(|(k, v)| (decode_key(k), json_of_bson(v))).collect())
        }
        Bson::DateTime(t) => Value::from(t.timestamp_millis()),
        other => Value::String(other.to_string()),
    }
}
