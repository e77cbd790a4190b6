//! JSON parsing that refuses duplicate object keys. `serde_json` keeps the last of two equal
//! keys without a word, so `{"batch": [a], "batch": [b]}` would silently drop `a`; every
//! user-facing JSON input goes through here instead, at any depth, in one pass.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a JSON text was refused.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// An object holds the same key twice; `path` names the second one, e.g.
    /// `properties.plan` or `batch[2].event`.
    #[error("duplicate key at {path}: a JSON object must not hold the same key twice")]
    DuplicateKey { path: String },
    /// Not JSON (or nested deeper than the parser's limit of 128).
    #[error("not valid JSON: {0}")]
    Syntax(#[source] serde_json::Error),
}

impl JsonError {
    /// Whether the parser's own nesting guard refused it.
    pub fn is_too_deep(&self) -> bool {
        matches!(self, JsonError::Syntax(e) if e.to_string().contains("recursion limit"))
    }
}

/// Parses `text` into a value, refusing an object that holds a key twice.
pub fn parse(text: &str) -> Result<Value, JsonError> {
    parse_with(|seed| {
        let mut de = serde_json::Deserializer::from_str(text);
        let value = seed.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    })
}

/// Parses `bytes` (UTF-8) into a value, refusing an object that holds a key twice.
pub fn parse_slice(bytes: &[u8]) -> Result<Value, JsonError> {
    parse_with(|seed| {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = seed.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    })
}

fn parse_with(
    run: impl FnOnce(UniqueValue<'_>) -> Result<Value, serde_json::Error>,
) -> Result<Value, JsonError> {
    let duplicate = RefCell::new(None::<Vec<Segment>>);
    match run(UniqueValue { duplicate: &duplicate }) {
        Ok(value) => Ok(value),
        Err(e) => match duplicate.into_inner() {
            Some(mut segments) => {
                segments.reverse();
                Err(JsonError::DuplicateKey { path: path_of(&segments) })
            }
            None => Err(JsonError::Syntax(e)),
        },
    }
}

/// The fields of a JSON object in the order sent, duplicates kept so the caller can name
/// them ([`Self::first_duplicate`]); for top-level objects whose values are parsed later
/// (e.g. as `&RawValue`).
#[derive(Debug)]
pub struct ObjectFields<V>(pub Vec<(String, V)>);

impl<V> ObjectFields<V> {
    /// The first key sent a second time, if any.
    pub fn first_duplicate(&self) -> Option<&str> {
        let mut seen = std::collections::HashSet::with_capacity(self.0.len());
        self.0.iter().map(|(k, _)| k.as_str()).find(|k| !seen.insert(*k))
    }

    /// The value of `key` (the first, when sent twice).
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for ObjectFields<V> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for FieldsVisitor<V> {
            type Value = ObjectFields<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0).min(16));
                while let Some(entry) = map.next_entry::<String, V>()? {
                    fields.push(entry);
                }
                Ok(ObjectFields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor(std::marker::PhantomData))
    }
}

/// One step of a path into a JSON value.
enum Segment {
    Key(String),
    Index(usize),
}

fn path_of(segments: &[Segment]) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Key(k) if path.is_empty() => path.push_str(k),
            Segment::Key(k) => {
                path.push('.');
                path.push_str(k);
            }
            Segment::Index(i) => path.push_str(&format!("[{i}]")),
        }
    }
    path
}

/// Builds a [`Value`] like serde_json's own impl, but refuses a repeated key. The path of a
/// duplicate is collected innermost first while the error unwinds, so the happy path
/// allocates nothing for it.
#[derive(Clone, Copy)]
struct UniqueValue<'a> {
    duplicate: &'a RefCell<Option<Vec<Segment>>>,
}

impl UniqueValue<'_> {
    fn note(&self, segment: Segment) {
        if let Some(segments) = self.duplicate.borrow_mut().as_mut() {
            segments.push(segment);
        }
    }
}

impl<'de> DeserializeSeed<'de> for UniqueValue<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // serde_json refuses numbers beyond f64 already; this keeps NaN and infinity out
        // whatever the parser's features.
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a number must be finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        loop {
            match seq.next_element_seed(self) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return Ok(Value::Array(items)),
                Err(e) => {
                    self.note(Segment::Index(items.len()));
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = match access.next_value_seed(self) {
                Ok(value) => value,
                Err(e) => {
                    self.note(Segment::Key(key));
                    return Err(e);
                }
            };
            match map.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(taken) => {
                    *self.duplicate.borrow_mut() = Some(vec![Segment::Key(taken.key().clone())]);
                    return Err(de::Error::custom("duplicate key"));
                }
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn duplicate(text: &str) -> Option<String> {
        match parse(text) {
            Err(JsonError::DuplicateKey { path }) => Some(path),
            _ => None,
        }
    }

    #[test]
    fn parses_like_serde_json() {
        let text = r#"{"a": [1, -2, 2.5, 18446744073709551615, "x", null, true, {"b": {}}], "c": "é\u0000"}"#;
        assert_eq!(parse(text).expect("valid"), serde_json::from_str::<Value>(text).expect("valid"));
        assert_eq!(parse_slice(text.as_bytes()).expect("valid"), parse(text).expect("valid"));
    }

    #[test]
    fn duplicate_keys_are_named_by_their_path() {
        assert_eq!(duplicate(r#"{"batch": [1], "batch": [2]}"#).as_deref(), Some("batch"));
        assert_eq!(
            duplicate(r#"{"event": "a", "properties": {"plan": 1, "x": {}, "plan": 2}}"#).as_deref(),
            Some("properties.plan")
        );
        assert_eq!(
            duplicate(r#"{"batch": [{"a": 1}, {"p": {"l": [0, {"k": 1, "k": 1}]}}]}"#).as_deref(),
            Some("batch[1].p.l[1].k")
        );
        assert_eq!(
            duplicate(r#"{"a": {"b": 1}, "c": {"b": 2}}"#),
            None,
            "equal keys in two objects are fine"
        );
    }

    #[test]
    fn other_problems_are_syntax_errors() {
        assert!(matches!(parse("{\"a\": 1e400}"), Err(JsonError::Syntax(_))), "beyond f64");
        assert!(matches!(parse("{\"a\": 1} x"), Err(JsonError::Syntax(_))), "trailing text");
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(&deep).expect_err("too deep").is_too_deep());
    }

    #[test]
    fn object_fields_keep_duplicates_for_the_caller() {
        let fields: ObjectFields<Value> =
            serde_json::from_str(r#"{"batch": [1], "x": 2, "batch": [3]}"#).expect("an object");
        assert_eq!(fields.first_duplicate(), Some("batch"));
        assert_eq!(fields.get("batch"), Some(&json!([1])));
        let fine: ObjectFields<Value> = serde_json::from_str(r#"{"batch": []}"#).expect("an object");
        assert_eq!(fine.first_duplicate(), None);
    }
}
