//! InfluxDB line protocol, pure: a point becomes
//! `measurement,tag=value field=1i,other=2.5 <time>` with the protocol's escaping.
//! Reference: InfluxDB 1.x "Line protocol syntax" (commas and spaces are escaped in
//! measurements; commas, spaces and `=` in tag keys, tag values and field keys).

use std::fmt::Write;

/// A field's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue {
    Int(i64),
    Float(f64),
}

/// One point: a series (measurement and tags) at a time, with its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: &'static str,
    /// Tag keys and values, in key order (InfluxDB's preferred order); empty values are
    /// left out, as the protocol cannot carry them.
    pub tags: Vec<(&'static str, String)>,
    pub fields: Vec<(&'static str, FieldValue)>,
    /// Epoch milliseconds (written with `precision=ms`).
    pub time_ms: i64,
}

impl Point {
    /// The point as one line (no newline). Non-finite floats, which the protocol cannot
    /// carry, are left out; a point left with no field is `None`.
    pub fn encode(&self) -> Option<String> {
        let fields: Vec<String> = self
            .fields
            .iter()
            .filter_map(|(key, value)| {
                let value = match value {
                    FieldValue::Int(n) => format!("{n}i"),
                    FieldValue::Float(x) if x.is_finite() => float(*x),
                    FieldValue::Float(_) => return None,
                };
                Some(format!("{}={value}", escape_key(key)))
            })
            .collect();
        if fields.is_empty() {
            return None;
        }
        let mut line = escape_measurement(self.measurement);
        let mut tags: Vec<&(&str, String)> = self.tags.iter().filter(|(_, v)| !v.is_empty()).collect();
        tags.sort_by_key(|(k, _)| *k);
        for (key, value) in tags {
            let _ = write!(line, ",{}={}", escape_key(key), escape_key(value));
        }
        let _ = write!(line, " {} {}", fields.join(","), self.time_ms);
        Some(line)
    }
}

/// A float as the protocol reads it: Rust's shortest round-trip form, which never uses an
/// exponent for finite values and so is always a valid line-protocol float.
fn float(x: f64) -> String {
    let s = format!("{x}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

fn escape_measurement(s: &str) -> String {
    escape(s, &[',', ' '])
}

/// Tag keys, tag values and field keys.
fn escape_key(s: &str) -> String {
    escape(s, &[',', ' ', '='])
}

fn escape(s: &str, special: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            // A line break would end the point: written as a space, escaped.
            '\n' | '\r' => out.push_str("\\ "),
            '\\' => out.push_str("\\\\"),
            c if special.contains(&c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(event: &str) -> Point {
        Point {
            measurement: "pulse_events",
            tags: vec![("tenant", "acme".into()), ("event", event.into()), ("interval", "minute".into())],
            fields: vec![("count", FieldValue::Int(3)), ("users", FieldValue::Int(2))],
            time_ms: 1_700_000_040_000,
        }
    }

    #[test]
    fn sorts_tags_and_marks_integers() {
        assert_eq!(
            point("signed_up").encode().as_deref(),
            Some("pulse_events,event=signed_up,interval=minute,tenant=acme count=3i,users=2i 1700000040000")
        );
    }

    #[test]
    fn escapes_commas_spaces_equals_and_line_breaks() {
        let line = point("a b,c=d\\e\nf").encode().expect("has fields");
        assert!(line.starts_with(r"pulse_events,event=a\ b\,c\=d\\e\ f,interval="), "{line}");
        assert_eq!(line.lines().count(), 1);
    }

    #[test]
    fn floats_always_have_a_point_and_non_finite_ones_are_left_out() {
        let mut p = point("x");
        p.fields = vec![
            ("sum", FieldValue::Float(3.0)),
            ("min", FieldValue::Float(-0.25)),
            ("max", FieldValue::Float(f64::NAN)),
        ];
        assert_eq!(
            p.encode().as_deref(),
            Some("pulse_events,event=x,interval=minute,tenant=acme sum=3.0,min=-0.25 1700000040000")
        );
        p.fields = vec![("max", FieldValue::Float(f64::INFINITY))];
        assert_eq!(p.encode(), None);
        assert_eq!(float(1e21), "1000000000000000000000.0");
        assert_eq!(float(1.5e-7), "0.00000015");
    }

    #[test]
    fn empty_tag_values_are_left_out() {
        let mut p = point("x");
        p.tags.push(("funnel", String::new()));
        assert!(!p.encode().expect("line").contains("funnel"));
    }
}
