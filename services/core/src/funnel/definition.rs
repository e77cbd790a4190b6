//! The funnel definition: the one type behind the `Funnel` resource's spec, the pipeline
//! config's funnels and ad-hoc funnel queries.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::DurationSpec;
use crate::property::{PropertyFilter, PropertyPath};
use crate::validation::{Errors, FieldError};

/// The fewest steps a funnel has.
pub const MIN_STEPS: usize = 2;
/// The most steps a funnel has.
pub const MAX_STEPS: usize = 32;
const MAX_FILTERS: usize = 16;
const MAX_EXCLUSIONS: usize = 16;
const MAX_HOLD_CONSTANT: usize = 8;
/// The longest window: a year. Longer funnels are better asked as retention.
const MAX_WINDOW_SECS: u64 = 366 * 86_400;

/// How the chosen events of a user must be ordered to count as a conversion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FunnelOrder {
    /// Each step's event at or after the previous step's (other events may come between).
    #[default]
    Ordered,
    /// As ordered, and no event of any other step of this funnel between consecutive steps.
    Strict,
    /// Every step's event within the window, in any order.
    Unordered,
}

/// One step: an event name and optional conditions on its properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunnelStep {
    /// The event name this step matches, exactly (case-sensitive).
    #[schemars(length(min = 1, max = 200))]
    pub event: String,
    /// A label for reports; defaults to the event name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub name: Option<String>,
    /// Conditions the event's properties must all meet to match this step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub filters: Vec<PropertyFilter>,
}

/// An event that voids a conversion when it happens between two steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": "self.fromStep < self.toStep", "message": "fromStep must come before toStep" }
]))]
pub struct Exclusion {
    /// The event name that voids the chain.
    #[schemars(length(min = 1, max = 200))]
    pub event: String,
    /// Conditions on the excluded event's properties; empty means any such event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub filters: Vec<PropertyFilter>,
    /// The step (numbered from 1 as listed) after whose event the exclusion starts to apply.
    #[schemars(range(min = 1, max = 31))]
    pub from_step: u32,
    /// The step (numbered from 1) before whose event the exclusion stops applying.
    #[schemars(range(min = 2, max = 32))]
    pub to_step: u32,
}

/// A funnel: the steps a user must take, in what order, within what window.
///
/// A user reaches step k when there are k distinct events E1..Ek, Ei matching step i, with
/// t(E1) <= ... <= t(Ek) <= t(E1) + window; the user's level is the best such k. See
/// docs/semantics.md for strict and unordered funnels, exclusions and holdConstant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.exclusions) || self.exclusions.all(e, e.toStep <= size(self.steps))",
        "message": "exclusions[].toStep must name an existing step (1 to the number of steps)",
        "fieldPath": ".exclusions"
    },
    {
        "rule": "self.order != 'unordered' || !has(self.exclusions) || size(self.exclusions) == 0",
        "message": "exclusions need an ordered or strict funnel: an unordered funnel has no 'between'",
        "fieldPath": ".exclusions"
    }
]))]
pub struct FunnelDefinition {
    /// The steps in order, 2 to 32.
    #[schemars(length(min = 2, max = 32))]
    pub steps: Vec<FunnelStep>,
    /// How long after the first step's event the last step may happen (inclusive), e.g.
    /// "30m", "14d"; at most 366d.
    #[serde(default = "default_window")]
    pub window: DurationSpec,
    /// ordered (default), strict or unordered.
    #[serde(default)]
    pub order: FunnelOrder,
    /// Events that void a conversion when they happen between two given steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub exclusions: Vec<Exclusion>,
    /// Properties whose values every chosen step event must share (e.g. `device_id`, so the
    /// whole conversion happens on one device).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), extend("x-kubernetes-list-type" = "set"))]
    pub hold_constant: Vec<PropertyPath>,
    /// A property of the first step's event to split results by, e.g. an experiment
    /// variant; with two or more values the results compare their conversion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<PropertyPath>,
    /// Every step within one session of the user (their visit: by `$session_id`, else
    /// split by inactivity; see docs/semantics.md); a session's events are all of its
    /// events, so such a funnel reads every event of its range.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub same_session: bool,
}

fn default_window() -> DurationSpec {
    DurationSpec::days(14)
}

impl FunnelDefinition {
    /// The event names its result depends on: its steps' and exclusions', sorted; None for
    /// every name (a same-session funnel: any event extends a session).
    pub fn event_names(&self) -> Option<Vec<String>> {
        if self.same_session {
            return None;
        }
        let mut names: Vec<String> = self.steps.iter().map(|s| s.event.clone()).collect();
        names.extend(self.exclusions.iter().map(|e| e.event.clone()));
        names.sort_unstable();
        names.dedup();
        Some(names)
    }

    /// Checks everything the CRD schema and its CEL rules check, plus the window bound, for
    /// definitions that do not pass through the Kubernetes API server (ad-hoc queries, the
    /// pipeline config). Returns every problem, each with its field path.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        let steps = self.steps.len();
        if !(MIN_STEPS..=MAX_STEPS).contains(&steps) {
            errors.add("steps", format!("a funnel has {MIN_STEPS} to {MAX_STEPS} steps, not {steps}"));
        }
        for (i, step) in self.steps.iter().enumerate() {
            check_event_name(&mut errors, &format!("steps[{i}].event"), &step.event);
            if step.name.as_ref().is_some_and(|n| n.is_empty() || n.chars().count() > 200) {
                errors.add(format!("steps[{i}].name"), "a step's name has 1 to 200 characters");
            }
            check_filters(&mut errors, &format!("steps[{i}].filters"), &step.filters);
        }
        if self.window.as_secs() > MAX_WINDOW_SECS {
            errors.add("window", format!("at most 366d, not {}", self.window));
        }
        if self.exclusions.len() > MAX_EXCLUSIONS {
            errors.add("exclusions", format!("at most {MAX_EXCLUSIONS} exclusions"));
        }
        if self.order == FunnelOrder::Unordered && !self.exclusions.is_empty() {
            errors.add("exclusions", "exclusions need an ordered or strict funnel");
        }
        for (i, exclusion) in self.exclusions.iter().enumerate() {
            let field = format!("exclusions[{i}]");
            check_event_name(&mut errors, &format!("{field}.event"), &exclusion.event);
            check_filters(&mut errors, &format!("{field}.filters"), &exclusion.filters);
            if exclusion.from_step < 1 || exclusion.from_step >= exclusion.to_step {
                errors.add(format!("{field}.fromStep"), "fromStep must be at least 1 and before toStep");
            }
            if exclusion.to_step as usize > steps {
                errors.add(
                    format!("{field}.toStep"),
                    format!("there is no step {} (steps: {steps})", exclusion.to_step),
                );
            }
        }
        if self.hold_constant.len() > MAX_HOLD_CONSTANT {
            errors.add("holdConstant", format!("at most {MAX_HOLD_CONSTANT} properties"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, path) in self.hold_constant.iter().enumerate() {
            if !seen.insert(path) {
                errors.add(format!("holdConstant[{i}]"), format!("{path} is listed twice"));
            }
        }
        errors.into_result()
    }
}

fn check_event_name(errors: &mut Errors, field: &str, name: &str) {
    if name.is_empty() || name.chars().count() > 200 {
        errors.add(field, "an event name has 1 to 200 characters");
    }
}

fn check_filters(errors: &mut Errors, field: &str, filters: &[PropertyFilter]) {
    if filters.len() > MAX_FILTERS {
        errors.add(field, format!("at most {MAX_FILTERS} filters"));
    }
    for (i, filter) in filters.iter().enumerate() {
        filter.validate_into(&format!("{field}[{i}]"), errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn definition(value: serde_json::Value) -> FunnelDefinition {
        serde_json::from_value(value).expect("well-formed definition")
    }

    fn fields(def: &FunnelDefinition) -> Vec<String> {
        def.validate().err().unwrap_or_default().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn defaults_are_ordered_and_fourteen_days() {
        let def = definition(json!({ "steps": [{ "event": "signup" }, { "event": "activated" }] }));
        assert_eq!(def.order, FunnelOrder::Ordered);
        assert_eq!(def.window.to_string(), "14d");
        assert_eq!(def.validate(), Ok(()));
    }

    #[test]
    fn refuses_too_few_and_too_many_steps() {
        let one = definition(json!({ "steps": [{ "event": "signup" }] }));
        assert_eq!(fields(&one), ["steps"]);
        let steps: Vec<_> = (0..33).map(|i| json!({ "event": format!("e{i}") })).collect();
        assert_eq!(fields(&definition(json!({ "steps": steps }))), ["steps"]);
    }

    #[test]
    fn exclusions_must_name_existing_steps_in_order() {
        let def = definition(json!({
            "steps": [{ "event": "cart" }, { "event": "paid" }],
            "exclusions": [
                { "event": "abandoned", "fromStep": 1, "toStep": 3 },
                { "event": "abandoned", "fromStep": 2, "toStep": 2 }
            ]
        }));
        assert_eq!(fields(&def), ["exclusions[0].toStep", "exclusions[1].fromStep"]);
    }

    #[test]
    fn unordered_funnels_take_no_exclusions() {
        let def = definition(json!({
            "steps": [{ "event": "a" }, { "event": "b" }],
            "order": "unordered",
            "exclusions": [{ "event": "x", "fromStep": 1, "toStep": 2 }]
        }));
        assert_eq!(fields(&def), ["exclusions"]);
    }

    #[test]
    fn refuses_windows_over_a_year_and_duplicate_hold_constant() {
        let def = definition(json!({
            "steps": [{ "event": "a" }, { "event": "b" }],
            "window": "400d",
            "holdConstant": ["device_id", "device_id"]
        }));
        assert_eq!(fields(&def), ["window", "holdConstant[1]"]);
    }

    #[test]
    fn bad_paths_and_durations_fail_to_parse() {
        let bad_path = json!({ "steps": [{ "event": "a" }, { "event": "b" }], "breakdown": "a..b" });
        assert!(serde_json::from_value::<FunnelDefinition>(bad_path).is_err());
        let bad_window = json!({ "steps": [{ "event": "a" }, { "event": "b" }], "window": "2 weeks" });
        assert!(serde_json::from_value::<FunnelDefinition>(bad_window).is_err());
    }
}
