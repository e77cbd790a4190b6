//! Status: conditions computed from what was applied and ensured, with transition times
//! kept while a condition's status holds, so an unchanged pipeline has an unchanged status
//! (and nothing is written).

use k8s_openapi::api::apps::v1::{DeploymentStatus, StatefulSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::DynamicObject;
use pulse_crds::{AnalyticsPipelineStatus, ConditionStatus};

use crate::pipeline::build::{ChildKind, Component};

/// One condition before its transition time is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl Part {
    pub fn new(type_: &'static str, ok: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Part { type_, ok, reason: reason.into(), message: message.into() }
    }
}

/// The condition types of a pipeline's parts.
pub const KNOWN_TYPES: [&str; 7] = [
    "BufferReady",
    "StorageReady",
    "IngestAvailable",
    "ProcessorAvailable",
    "QueryAvailable",
    "DashboardsReady",
    EVENTS_STORED,
];

/// True while no acknowledged event is set aside as failed. It says something about the
/// data, not about whether the pipeline runs, so it does not count towards Ready.
pub const EVENTS_STORED: &str = "EventsStored";

/// The EventsStored condition for `failed` failed events.
pub fn events_stored_part(failed: u64) -> Part {
    if failed == 0 {
        Part::new(EVENTS_STORED, true, "NoFailedEvents", "every acknowledged event was stored")
    } else {
        Part::new(
            EVENTS_STORED,
            false,
            "FailedEvents",
            format!(
                "{failed} acknowledged events were refused by the store and set aside: list them with GET /v1/failed-events, replay them with pulse-processor replay-failed (docs/operations.md)"
            ),
        )
    }
}

/// The condition type of a workload.
pub fn condition_type(component: Component) -> &'static str {
    match component {
        Component::Ingest => "IngestAvailable",
        Component::Processor => "ProcessorAvailable",
        Component::Query => "QueryAvailable",
    }
}

fn find<'a>(
    applied: &'a [(ChildKind, DynamicObject)],
    kind: ChildKind,
    name: &str,
) -> Option<&'a DynamicObject> {
    applied.iter().find(|(k, o)| *k == kind && o.metadata.name.as_deref() == Some(name)).map(|(_, o)| o)
}

/// The status of an applied child as its kind's type (the apply answers with the object as
/// stored); empty when it has none yet, or one this version cannot read.
fn child_status<S: serde::de::DeserializeOwned + Default>(child: &DynamicObject) -> S {
    child.data.get("status").cloned().and_then(|s| serde_json::from_value(s).ok()).unwrap_or_default()
}

/// Whether an applied Deployment is Available at its current generation.
pub fn workload_part(
    applied: &[(ChildKind, DynamicObject)],
    pipeline: &str,
    component: Component,
    note: &str,
) -> Part {
    let type_ = condition_type(component);
    let name = component.name(pipeline);
    let Some(d) = find(applied, ChildKind::Deployment, &name) else {
        return Part::new(type_, true, "ScaledToZero", format!("{} has 0 replicas", component.as_str()));
    };
    let status: DeploymentStatus = child_status(d);
    let current = status.observed_generation.is_some() && status.observed_generation == d.metadata.generation;
    let available = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True"));
    let note = if note.is_empty() { String::new() } else { format!("; {note}") };
    // No pod counts in messages: they change with every scaling step, and the status is
    // only written when it changes.
    if current && available {
        Part::new(type_, true, "Available", format!("Deployment {name} is available{note}"))
    } else {
        Part::new(type_, false, "Progressing", format!("Deployment {name} is not available yet{note}"))
    }
}

/// Whether managed Redis's StatefulSet has its pod ready.
pub fn managed_redis_part(applied: &[(ChildKind, DynamicObject)], name: &str) -> Part {
    let ready = find(applied, ChildKind::StatefulSet, name)
        .and_then(|s| child_status::<StatefulSetStatus>(s).ready_replicas);
    if ready.unwrap_or(0) >= 1 {
        Part::new(
            "BufferReady",
            true,
            "RedisReady",
            format!("StatefulSet {name} is ready; the processor creates the streams"),
        )
    } else {
        Part::new("BufferReady", false, "RedisStarting", format!("StatefulSet {name} has no ready pod yet"))
    }
}

/// The full condition list: Ready first, summarizing `parts`, then the parts.
pub fn conditions(
    parts: &[Part],
    paused: bool,
    generation: Option<i64>,
    previous: &[Condition],
) -> Vec<Condition> {
    let failing: Vec<&str> =
        parts.iter().filter(|p| !p.ok && p.type_ != EVENTS_STORED).map(|p| p.type_).collect();
    let ready = if paused {
        Part::new("Ready", false, "Paused", "spec.paused is true: the operator changes nothing")
    } else if failing.is_empty() {
        Part::new("Ready", true, "AllPartsReady", "every part of the pipeline is ready")
    } else {
        Part::new("Ready", false, "PartsNotReady", format!("not ready: {}", failing.join(", ")))
    };
    let paused_part = if paused {
        Part::new("Paused", true, "PausedBySpec", "spec.paused is true")
    } else {
        Part::new("Paused", false, "Running", "the operator reconciles this pipeline")
    };
    std::iter::once(&ready)
        .chain(std::iter::once(&paused_part))
        .chain(parts.iter())
        .map(|p| condition(p, generation, previous))
        .collect()
}

fn condition(part: &Part, generation: Option<i64>, previous: &[Condition]) -> Condition {
    let status = if part.ok { ConditionStatus::True } else { ConditionStatus::False }.as_str();
    let since = previous
        .iter()
        .find(|c| c.type_ == part.type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    Condition {
        type_: part.type_.to_string(),
        status: status.to_string(),
        reason: part.reason.clone(),
        message: part.message.clone(),
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// The conditions of a pipeline that cannot be built (an invalid spec, a missing Secret):
/// Ready false with the reason, the other conditions kept as they were.
pub fn not_built(
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: &AnalyticsPipelineStatus,
) -> AnalyticsPipelineStatus {
    let part = Part::new("Ready", false, reason, message);
    let mut conditions: Vec<Condition> =
        previous.conditions.iter().filter(|c| c.type_ != "Ready").cloned().collect();
    conditions.insert(0, condition(&part, generation, &previous.conditions));
    AnalyticsPipelineStatus { observed_generation: generation, conditions, ..previous.clone() }
}

/// Whether Ready is True in `status`.
pub fn is_ready(status: &AnalyticsPipelineStatus) -> bool {
    status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_events_show_in_their_own_condition_but_leave_ready_alone() {
        let parts = [Part::new("BufferReady", true, "StreamsReady", ""), events_stored_part(3)];
        let c = conditions(&parts, false, Some(1), &[]);
        assert_eq!(c[0].status, "True", "Ready: {:?}", c[0]);
        let stored = c.iter().find(|c| c.type_ == EVENTS_STORED).expect("EventsStored");
        assert_eq!((stored.status.as_str(), stored.reason.as_str()), ("False", "FailedEvents"));
        assert!(stored.message.starts_with("3 acknowledged events"));
        assert_eq!(events_stored_part(0).reason, "NoFailedEvents");
    }

    #[test]
    fn ready_summarizes_the_parts_and_names_the_failing_ones() {
        let parts = [
            Part::new("BufferReady", true, "StreamsReady", ""),
            Part::new("IngestAvailable", false, "Progressing", ""),
        ];
        let c = conditions(&parts, false, Some(2), &[]);
        assert_eq!(c[0].type_, "Ready");
        assert_eq!(c[0].status, "False");
        assert!(c[0].message.contains("IngestAvailable"));
        assert_eq!(c[0].observed_generation, Some(2));
        let all_ok = [Part::new("BufferReady", true, "StreamsReady", "")];
        assert_eq!(conditions(&all_ok, false, Some(2), &[])[0].status, "True");
        let paused = conditions(&all_ok, true, Some(2), &[]);
        assert_eq!((paused[0].status.as_str(), paused[0].reason.as_str()), ("False", "Paused"));
        assert_eq!(paused[1].status, "True");
    }

    #[test]
    fn transition_times_hold_while_the_status_holds() {
        let parts = [Part::new("BufferReady", true, "StreamsReady", "")];
        let first = conditions(&parts, false, Some(1), &[]);
        let again = conditions(&parts, false, Some(1), &first);
        assert_eq!(first, again);
    }
}
