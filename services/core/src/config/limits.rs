//! Settings the CRD and the pipeline config share: ingest limits, the rate limit, the
//! buffer's durability and rollup intervals. Defined once here; the CRD reuses them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::DurationSpec;

/// A token bucket shared by the tenant's ingest pods.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": "!has(self.burst) || self.burst >= self.eventsPerSecond", "message": "burst must be at least eventsPerSecond", "fieldPath": ".burst" }
]))]
pub struct RateLimit {
    /// Sustained events per second; more get 429 with Retry-After.
    #[schemars(range(min = 1, max = 10_000_000))]
    pub events_per_second: i64,
    /// Events allowed at once above the sustained rate (default: one second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000_000))]
    pub burst: Option<i64>,
}

/// Input limits. Anything over a limit is refused with an error naming it, never cut.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": "self.maxEventBytes <= self.maxBodyBytes", "message": "maxEventBytes must not exceed maxBodyBytes", "fieldPath": ".maxEventBytes" }
]))]
pub struct IngestLimits {
    /// Largest request body in bytes, after gzip decompression (default 1 MiB).
    #[serde(default = "default_max_body_bytes")]
    #[schemars(range(min = 1024, max = 67_108_864))]
    pub max_body_bytes: i64,
    /// Most events in one batch request (default 1000).
    #[serde(default = "default_max_events_per_batch")]
    #[schemars(range(min = 1, max = 10_000))]
    pub max_events_per_batch: i32,
    /// Largest single event, as JSON, in bytes (default 32 KiB).
    #[serde(default = "default_max_event_bytes")]
    #[schemars(range(min = 256, max = 1_048_576))]
    pub max_event_bytes: i64,
    /// Most properties in one event, counting nested keys (default 256).
    #[serde(default = "default_max_properties")]
    #[schemars(range(min = 1, max = 10_000))]
    pub max_properties: i32,
    /// Deepest nesting of objects and arrays in properties (default 5).
    #[serde(default = "default_max_property_depth")]
    #[schemars(range(min = 1, max = 32))]
    pub max_property_depth: i32,
    /// Longest event name, distinct_id, event_id or property key, in characters (default 200).
    #[serde(default = "default_max_name_length")]
    #[schemars(range(min = 8, max = 1024))]
    pub max_name_length: i32,
    /// How far in the future an event's timestamp may be (default "1h"). Older than the
    /// storage retention is always refused.
    #[serde(default = "default_max_future_skew")]
    pub max_future_skew: DurationSpec,
}

fn default_max_body_bytes() -> i64 {
    1_048_576
}
fn default_max_events_per_batch() -> i32 {
    1000
}
fn default_max_event_bytes() -> i64 {
    32_768
}
fn default_max_properties() -> i32 {
    256
}
fn default_max_property_depth() -> i32 {
    5
}
fn default_max_name_length() -> i32 {
    200
}
fn default_max_future_skew() -> DurationSpec {
    DurationSpec::hours(1)
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_body_bytes: default_max_body_bytes(),
            max_events_per_batch: default_max_events_per_batch(),
            max_event_bytes: default_max_event_bytes(),
            max_properties: default_max_properties(),
            max_property_depth: default_max_property_depth(),
            max_name_length: default_max_name_length(),
            max_future_skew: default_max_future_skew(),
        }
    }
}

/// How durable an event is when ingest acknowledges it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Durability {
    /// Append-only file fsynced every second.
    #[default]
    Fast,
    /// Fsynced (or replicated) before every acknowledgement.
    Strict,
}

/// A rollup interval, in the pipeline's time zone.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RollupInterval {
    Minute,
    Hour,
    Day,
}

impl IngestLimits {
    /// Checks the bounds the CRD schema states, for configs written by hand.
    pub(crate) fn validate_into(&self, field: &str, errors: &mut crate::validation::Errors) {
        let mut range = |name: &str, value: i64, min: i64, max: i64| {
            if !(min..=max).contains(&value) {
                errors.add(format!("{field}.{name}"), format!("{min} to {max}, not {value}"));
            }
        };
        range("maxBodyBytes", self.max_body_bytes, 1024, 67_108_864);
        range("maxEventsPerBatch", self.max_events_per_batch.into(), 1, 10_000);
        range("maxEventBytes", self.max_event_bytes, 256, 1_048_576);
        range("maxProperties", self.max_properties.into(), 1, 10_000);
        range("maxPropertyDepth", self.max_property_depth.into(), 1, 32);
        range("maxNameLength", self.max_name_length.into(), 8, 1024);
        if self.max_event_bytes > self.max_body_bytes {
            errors.add(format!("{field}.maxEventBytes"), "must not exceed maxBodyBytes");
        }
    }
}
