//! Durations as users write them: a positive whole number and one unit, e.g. `30m`, `7d`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The pattern every duration matches; also the schema's `pattern`, so the Kubernetes API
/// server refuses a bad one before Pulse sees it.
pub const DURATION_PATTERN: &str = "^[1-9][0-9]{0,5}(s|m|h|d|w)$";

/// A duration written as a number (1 to 999999) and a unit: `s`econds, `m`inutes, `h`ours,
/// `d`ays (24 h) or `w`eeks (7 d). Calendar units (months, years) are deliberately absent:
/// their length varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct DurationSpec {
    amount: u32,
    unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Unit {
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
}

impl Unit {
    fn seconds(self) -> u64 {
        match self {
            Unit::Seconds => 1,
            Unit::Minutes => 60,
            Unit::Hours => 3_600,
            Unit::Days => 86_400,
            Unit::Weeks => 604_800,
        }
    }

    fn suffix(self) -> char {
        match self {
            Unit::Seconds => 's',
            Unit::Minutes => 'm',
            Unit::Hours => 'h',
            Unit::Days => 'd',
            Unit::Weeks => 'w',
        }
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {0:?}: write a number from 1 to 999999 and one unit of s, m, h, d, w (e.g. \"30m\", \"7d\")"
)]
pub struct InvalidDuration(pub String);

impl DurationSpec {
    /// `n` seconds; `n` must be 1 to 999999 (checked at compile time for constants).
    pub const fn seconds(n: u32) -> Self {
        Self::new(n, Unit::Seconds)
    }

    /// `n` minutes.
    pub const fn minutes(n: u32) -> Self {
        Self::new(n, Unit::Minutes)
    }

    /// `n` hours.
    pub const fn hours(n: u32) -> Self {
        Self::new(n, Unit::Hours)
    }

    /// `n` days.
    pub const fn days(n: u32) -> Self {
        Self::new(n, Unit::Days)
    }

    const fn new(amount: u32, unit: Unit) -> Self {
        assert!(amount >= 1 && amount <= 999_999, "a duration's amount is 1 to 999999");
        DurationSpec { amount, unit }
    }

    /// The duration in whole seconds.
    pub fn as_secs(self) -> u64 {
        u64::from(self.amount) * self.unit.seconds()
    }

    /// The duration in milliseconds, the unit of event timestamps.
    pub fn as_millis(self) -> i64 {
        // At most 999999 weeks, about 6e14 ms: far inside i64.
        (self.as_secs() * 1000) as i64
    }

    /// As a std `Duration`.
    pub fn to_std(self) -> Duration {
        Duration::from_secs(self.as_secs())
    }
}

impl FromStr for DurationSpec {
    type Err = InvalidDuration;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidDuration(s.to_string());
        let unit = match s.chars().last().ok_or_else(invalid)? {
            's' => Unit::Seconds,
            'm' => Unit::Minutes,
            'h' => Unit::Hours,
            'd' => Unit::Days,
            'w' => Unit::Weeks,
            _ => return Err(invalid()),
        };
        let digits = &s[..s.len() - 1];
        let well_formed = (1..=6).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if !well_formed {
            return Err(invalid());
        }
        let amount = digits.parse().map_err(|_| invalid())?;
        Ok(DurationSpec { amount, unit })
    }
}

impl TryFrom<String> for DurationSpec {
    type Error = InvalidDuration;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// From a string only; anything else (a number of milliseconds, say) is refused with what a
/// duration looks like, which serde's "expected a string" would not say.
impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationText;
        impl serde::de::Visitor<'_> for DurationText {
            type Value = DurationSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a duration string such as "1m", "2h" or "7d""#)
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<DurationSpec, E> {
                s.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(DurationText)
    }
}

impl From<DurationSpec> for String {
    fn from(d: DurationSpec) -> Self {
        d.to_string()
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, self.unit.suffix())
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a number from 1 to 999999 and one unit of s, m, h, d (24h) or w (7d), e.g. \"30m\", \"7d\"."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_each_unit() {
        let secs = |s: &str| s.parse::<DurationSpec>().map(DurationSpec::as_secs);
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("30m"), Ok(1_800));
        assert_eq!(secs("2h"), Ok(7_200));
        assert_eq!(secs("7d"), Ok(604_800));
        assert_eq!(secs("2w"), Ok(1_209_600));
    }

    #[test]
    fn refuses_malformed_durations() {
        for bad in ["", "d", "0d", "07d", "1.5h", "-1h", "1y", "1M", "1h30m", "1 h", "1000000s", "١d"] {
            assert!(bad.parse::<DurationSpec>().is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn deserializes_from_a_string_and_refuses_bad_ones() {
        let d: DurationSpec = serde_json::from_str("\"14d\"").expect("valid");
        assert_eq!(d.as_secs(), 14 * 86_400);
        let err = serde_json::from_str::<DurationSpec>("\"14 days\"").expect_err("invalid");
        assert!(err.to_string().contains("invalid duration"), "{err}");
        let err = serde_json::from_str::<DurationSpec>("60000").expect_err("a number");
        assert!(err.to_string().contains(r#"expected a duration string such as "1m""#), "{err}");
    }

    proptest! {
        #[test]
        fn display_round_trips(amount in 1u32..=999_999, unit in 0usize..5) {
            let s = format!("{amount}{}", ['s', 'm', 'h', 'd', 'w'][unit]);
            let d: DurationSpec = s.parse().expect("valid");
            prop_assert_eq!(d.to_string(), s);
        }

        #[test]
        fn the_parser_agrees_with_the_schema_pattern(s in "[0-9a-z.]{0,8}") {
            // The API server checks the pattern; the services parse. They must agree.
            let by_pattern = {
                let (digits, unit) = s.split_at(s.len().saturating_sub(1));
                !digits.is_empty() && digits.len() <= 6 && !digits.starts_with('0')
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && matches!(unit, "s" | "m" | "h" | "d" | "w")
            };
            prop_assert_eq!(s.parse::<DurationSpec>().is_ok(), by_pattern);
        }
    }
}
