//! `Funnel`: a named funnel on one pipeline, with a live conversion summary.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use pulse_core::funnel::FunnelDefinition;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A funnel on one pipeline, which the pipeline's query service keeps pre-aggregated in
/// memory, so its answers come back in about a millisecond. The fields besides pipelineRef
/// are the funnel definition shared with ad-hoc funnel queries.
// Each printcolumn repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "pulse.dev",
    version = "v1alpha1",
    kind = "Funnel",
    plural = "funnels",
    singular = "funnel",
    shortname = "fnl",
    category = "pulse",
    namespaced,
    status = "FunnelStatus",
    doc = "A funnel on an AnalyticsPipeline: steps, window, order, exclusions, holdConstant and breakdown.",
    printcolumn(name = "Pipeline", type_ = "string", json_path = ".spec.pipelineRef.name"),
    printcolumn(name = "Steps", type_ = "integer", json_path = ".status.stepCount"),
    printcolumn(name = "Window", type_ = "string", json_path = ".spec.window"),
    printcolumn(name = "Conversion", type_ = "string", json_path = ".status.summary.conversion"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(
    extend("x-kubernetes-validations" = [
        { "rule": "self.pipelineRef.name == oldSelf.pipelineRef.name", "message": "pipelineRef is immutable: create a new Funnel for another pipeline", "fieldPath": ".pipelineRef.name" }
    ]),
    transform = keep_definition_rules
)]
pub struct FunnelSpec {
    /// The AnalyticsPipeline, in the same namespace, whose events this funnel counts.
    pub pipeline_ref: PipelineRef,
    /// The funnel itself.
    #[serde(flatten)]
    pub definition: FunnelDefinition,
}

/// Flattening a struct keeps its fields but drops its own CEL rules; add the funnel
/// definition's rules back so they stay defined once, in pulse-core.
fn keep_definition_rules(schema: &mut Schema) {
    const RULES: &str = "x-kubernetes-validations";
    let definition = schemars::schema_for!(FunnelDefinition);
    let Some(Value::Array(definition_rules)) = definition.get(RULES).cloned() else { return };
    match schema.get_mut(RULES) {
        Some(Value::Array(rules)) => rules.extend(definition_rules),
        _ => {
            schema.insert(RULES.into(), Value::Array(definition_rules));
        }
    }
}

/// A reference to an AnalyticsPipeline in the same namespace.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRef {
    /// The pipeline's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
}

/// What the operator observed, and the funnel's live numbers.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunnelStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: the pipeline exists and its pipeline config carries this version of the
    /// funnel, so the query service maintains it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The number of steps of the observed spec (a printer column shows only one value of
    /// a list, so the count is kept here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_count: Option<i32>,
    /// Conversion over the summary's range, refreshed at a bounded rate and only written when
    /// it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<FunnelSummary>,
}

/// A funnel's conversion over a recent range.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunnelSummary {
    /// The range counted, e.g. "last 7d".
    pub range: String,
    /// Users whose first step fell in the range.
    pub entered: i64,
    /// Of those, users who reached the last step within the window.
    pub converted: i64,
    /// converted / entered as a percentage, e.g. "12.5%"; "-" when nobody entered.
    pub conversion: String,
    /// When these numbers were computed.
    pub updated_at: Time,
}
