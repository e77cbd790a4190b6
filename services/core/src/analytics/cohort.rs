//! Cohorts: the users who match conditions on what they did and on their properties; the
//! other engines take the members as a filter.

use std::collections::{HashMap, HashSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{AnalyticsError, Limits, check_events};
use super::event::{AnalyticsEvent, EventMatcher, by_user};
use crate::property::PropertyFilter;
use crate::validation::Errors;

const MAX_CONDITIONS: usize = 16;
const DAY_MS: i64 = 86_400_000;

/// How conditions combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Combine {
    /// Every condition holds (default).
    #[default]
    All,
    /// At least one condition holds.
    Any,
}

/// One condition on a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum CohortCondition {
    /// Did a matching event at least `atLeast` times, within `[from, to)` or within the
    /// last `lastDays` days (before the query's `now`); give one of the two.
    #[serde(rename_all = "camelCase")]
    Performed {
        event: EventMatcher,
        #[serde(default = "one")]
        at_least: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_days: Option<u32>,
    },
    /// A user property: the value on the user's latest event that has the property (events
    /// after `now` ignored) meets the filter; a user with no such event is tested as
    /// without the property.
    Property { filter: PropertyFilter },
    /// A member of the cohort saved as `name` (the people behind a number, saved).
    InCohort { name: String },
}

/// What a saved cohort's name may be.
pub const SAVED_NAME_RULE: &str = "1 to 100 letters, digits, '_', '-' and '.'";

/// Whether `name` can name a saved cohort ([`SAVED_NAME_RULE`]).
pub fn valid_saved_name(name: &str) -> bool {
    (1..=100).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// The members of the saved cohorts a definition names, by name.
pub type SavedMembers = HashMap<String, HashSet<String>>;

fn one() -> u32 {
    1
}

/// A cohort definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CohortDefinition {
    /// 1 to 16 conditions.
    pub conditions: Vec<CohortCondition>,
    #[serde(default)]
    pub combine: Combine,
}

impl CohortDefinition {
    /// Checks every condition, with field paths.
    pub fn validate(&self) -> Result<(), AnalyticsError> {
        let mut errors = Errors::default();
        if !(1..=MAX_CONDITIONS).contains(&self.conditions.len()) {
            errors.add(
                "conditions",
                format!("1 to {MAX_CONDITIONS} conditions, not {}", self.conditions.len()),
            );
        }
        for (i, c) in self.conditions.iter().enumerate() {
            let field = format!("conditions[{i}]");
            match c {
                CohortCondition::Performed { event, at_least, from, to, last_days } => {
                    event.validate_into(&format!("{field}.event"), &mut errors);
                    if *at_least == 0 {
                        errors.add(
                            format!("{field}.atLeast"),
                            "at least 1 (a cohort of users who did not do something is not supported yet)",
                        );
                    }
                    match (from, to, last_days) {
                        (Some(f), Some(t), None) if f < t => {}
                        (Some(_), Some(_), None) => {
                            errors.add(format!("{field}.to"), "to must be after from")
                        }
                        (None, None, Some(d)) if *d >= 1 => {}
                        (None, None, Some(_)) => errors.add(format!("{field}.lastDays"), "at least 1 day"),
                        _ => errors.add(field.clone(), "give either from and to, or lastDays"),
                    }
                }
                CohortCondition::Property { filter } => {
                    filter.validate_into(&format!("{field}.filter"), &mut errors)
                }
                CohortCondition::InCohort { name } => {
                    if !valid_saved_name(name) {
                        errors.add(format!("{field}.name"), SAVED_NAME_RULE);
                    }
                }
            }
        }
        errors.into_result().map_err(AnalyticsError::Invalid)
    }

    /// The names of the saved cohorts it uses.
    pub fn saved_cohorts(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .conditions
            .iter()
            .filter_map(|c| match c {
                CohortCondition::InCohort { name } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Whether the user `distinct_id` (their events, sorted by time) is a member at `now`
    /// (epoch ms); `saved` holds the saved cohorts it names.
    pub fn contains(
        &self,
        distinct_id: &str,
        events: &[&AnalyticsEvent],
        now: i64,
        saved: &SavedMembers,
    ) -> bool {
        let holds = |c: &CohortCondition| match c {
            CohortCondition::Performed { event, at_least, from, to, last_days } => {
                let (lo, hi) = match last_days {
                    Some(d) => (now - i64::from(*d) * DAY_MS, now),
                    None => (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX)),
                };
                let count =
                    events.iter().filter(|e| (lo..hi).contains(&e.timestamp) && event.matches(e)).count();
                count >= *at_least as usize
            }
            CohortCondition::Property { filter } => {
                let latest = events
                    .iter()
                    .rev()
                    .filter(|e| e.timestamp <= now)
                    .find(|e| filter.property.lookup(&e.properties).is_some());
                match latest {
                    Some(e) => filter.matches(&e.properties),
                    None => filter.matches(&serde_json::Value::Object(Default::default())),
                }
            }
            CohortCondition::InCohort { name } => saved.get(name).is_some_and(|m| m.contains(distinct_id)),
        };
        match self.combine {
            Combine::All => self.conditions.iter().all(holds),
            Combine::Any => self.conditions.iter().any(holds),
        }
    }
}

/// The members at `now` among the users of `events` and of the saved cohorts named (in
/// `saved`).
pub fn members(
    def: &CohortDefinition,
    events: &[AnalyticsEvent],
    now: i64,
    limits: &Limits,
    saved: &SavedMembers,
) -> Result<HashSet<String>, AnalyticsError> {
    def.validate()?;
    check_events(events.len(), limits)?;
    let users = by_user(events);
    let mut out: HashSet<String> = users
        .iter()
        .filter(|u| def.contains(u.distinct_id, &u.events, now, saved))
        .map(|u| u.distinct_id.to_string())
        .collect();
    // Members of a saved cohort may have no event read.
    let with_events: HashSet<&str> = users.iter().map(|u| u.distinct_id).collect();
    for name in def.saved_cohorts() {
        for user in saved.get(name).into_iter().flatten() {
            if !with_events.contains(user.as_str()) && def.contains(user, &[], now, saved) {
                out.insert(user.clone());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(user: &str, name: &str, ts: i64, props: serde_json::Value) -> AnalyticsEvent {
        AnalyticsEvent {
            event_id: format!("{user}-{name}-{ts}"),
            event: name.into(),
            distinct_id: user.into(),
            timestamp: ts,
            properties: props,
        }
    }

    fn cohort(value: serde_json::Value) -> CohortDefinition {
        serde_json::from_value(value).expect("well-formed cohort")
    }

    #[test]
    fn behaviour_and_properties() {
        let now = 30 * DAY_MS;
        let events = vec![
            ev("a", "buy", now - DAY_MS, json!({ "plan": "free" })),
            ev("a", "buy", now - 2 * DAY_MS, json!({})),
            ev("a", "seen", now - 3 * DAY_MS, json!({ "plan": "pro" })),
            ev("b", "buy", now - DAY_MS, json!({ "plan": "pro" })),
            ev("c", "buy", now - 20 * DAY_MS, json!({})),
            ev("c", "buy", now - 21 * DAY_MS, json!({})),
        ];
        let twice_last_week = cohort(json!({ "conditions": [
            { "type": "performed", "event": { "event": "buy" }, "atLeast": 2, "lastDays": 7 }
        ]}));
        let m =
            members(&twice_last_week, &events, now, &Limits::default(), &SavedMembers::new()).expect("valid");
        assert_eq!(m, HashSet::from(["a".to_string()]));
        let pro = cohort(json!({ "conditions": [
            { "type": "property", "filter": { "property": "plan", "value": "pro" } }
        ]}));
        // a's latest plan is "free" (the event a day ago), b's is "pro".
        assert_eq!(
            members(&pro, &events, now, &Limits::default(), &SavedMembers::new()).expect("valid"),
            HashSet::from(["b".to_string()])
        );
        let any = cohort(json!({ "combine": "any", "conditions": [
            { "type": "performed", "event": { "event": "buy" }, "atLeast": 2, "from": 0, "to": now - 15 * DAY_MS },
            { "type": "property", "filter": { "property": "plan", "value": "pro" } }
        ]}));
        let m = members(&any, &events, now, &Limits::default(), &SavedMembers::new()).expect("valid");
        assert_eq!(m, HashSet::from(["b".to_string(), "c".to_string()]));
    }

    #[test]
    fn a_saved_cohort_is_a_condition_like_the_others() {
        let now = 30 * DAY_MS;
        let events = vec![ev("a", "buy", now - DAY_MS, json!({})), ev("b", "seen", now - DAY_MS, json!({}))];
        let saved =
            SavedMembers::from([("vip".to_string(), HashSet::from(["b".to_string(), "z".to_string()]))]);
        let vip = cohort(json!({ "conditions": [{ "type": "inCohort", "name": "vip" }] }));
        let m = members(&vip, &events, now, &Limits::default(), &saved).expect("valid");
        assert_eq!(
            m,
            HashSet::from(["b".to_string(), "z".to_string()]),
            "z has no event read and is a member"
        );
        let vip_buyers = cohort(json!({ "conditions": [
            { "type": "inCohort", "name": "vip" },
            { "type": "performed", "event": { "event": "buy" }, "lastDays": 7 }
        ]}));
        assert!(members(&vip_buyers, &events, now, &Limits::default(), &saved).expect("valid").is_empty());
        let either = cohort(json!({ "combine": "any", "conditions": [
            { "type": "inCohort", "name": "vip" },
            { "type": "performed", "event": { "event": "buy" }, "lastDays": 7 }
        ]}));
        assert_eq!(members(&either, &events, now, &Limits::default(), &saved).expect("valid").len(), 3);
        assert!(cohort(json!({ "conditions": [{ "type": "inCohort", "name": "a|b" }] })).validate().is_err());
    }

    #[test]
    fn refuses_ambiguous_time_conditions() {
        let both = cohort(json!({ "conditions": [
            { "type": "performed", "event": { "event": "buy" }, "from": 0, "to": 5, "lastDays": 7 }
        ]}));
        let err = both.validate().expect_err("invalid");
        assert_eq!(err.code(), "invalid_query");
        assert!(err.to_string().contains("conditions[0]"), "{err}");
        assert!(cohort(json!({ "conditions": [] })).validate().is_err());
    }
}
