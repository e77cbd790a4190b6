//! A Funnel's status: Ready with a reason, the step count, the summary. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use pulse_core::config::PipelineConfig;
use pulse_crds::{Funnel, FunnelSpec, FunnelStatus, FunnelSummary};

use crate::context::Context;
use crate::metrics::FunnelLabels;

/// Whether the funnel is Ready, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

pub fn verdict(
    spec: &FunnelSpec,
    pipeline_exists: bool,
    config: Option<&PipelineConfig>,
    name: &str,
) -> Verdict {
    if let Err(problems) = spec.definition.validate() {
        let message =
            problems.iter().map(|p| format!("spec.{}: {}", p.field, p.reason)).collect::<Vec<_>>().join("; ");
        return Verdict { ready: false, reason: "InvalidSpec", message };
    }
    let pipeline = &spec.pipeline_ref.name;
    if !pipeline_exists {
        return Verdict {
            ready: false,
            reason: "PipelineNotFound",
            message: format!("spec.pipelineRef.name: no AnalyticsPipeline {pipeline:?} in this namespace"),
        };
    }
    let carried =
        config.is_some_and(|c| c.funnels.iter().any(|f| f.name == name && f.definition == spec.definition));
    if carried {
        Verdict {
            ready: true,
            reason: "InPipelineConfig",
            message: format!("pipeline {pipeline} maintains this funnel"),
        }
    } else {
        Verdict {
            ready: false,
            reason: "WaitingForPipelineConfig",
            message: format!("pipeline {pipeline}'s config does not carry this version of the funnel yet"),
        }
    }
}

pub fn previous_reason(previous: &FunnelStatus) -> &str {
    previous.conditions.iter().find(|c| c.type_ == "Ready").map_or("", |c| c.reason.as_str())
}

pub fn status(funnel: &Funnel, verdict: &Verdict, previous: &FunnelStatus) -> FunnelStatus {
    let status = if verdict.ready { "True" } else { "False" };
    let since = previous
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    let generation = funnel.metadata.generation;
    FunnelStatus {
        observed_generation: generation,
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: verdict.reason.into(),
            message: verdict.message.clone(),
            observed_generation: generation,
            last_transition_time: since,
        }],
        step_count: i32::try_from(funnel.spec.definition.steps.len()).ok(),
        // The summary is kept until a newer one is computed.
        summary: previous.summary.clone(),
    }
}

/// Exports a summary's conversion for the dashboards.
pub fn export(ctx: &Context, namespace: &str, pipeline: &str, funnel: &str, summary: &FunnelSummary) {
    if summary.entered > 0 {
        let labels =
            FunnelLabels { namespace: namespace.into(), pipeline: pipeline.into(), funnel: funnel.into() };
        ctx.metrics
            .funnel_conversion
            .get_or_create(&labels)
            .set(summary.converted as f64 / summary.entered as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn funnel(yaml: &str) -> Funnel {
        match serde_yaml::from_str(yaml) {
            Ok(f) => f,
            Err(e) => panic!("fixture: {e}"),
        }
    }

    const SIGNUP: &str = "apiVersion: pulse.dev/v1alpha1\nkind: Funnel\nmetadata: { name: signup, namespace: a, generation: 2 }\nspec:\n  pipelineRef: { name: acme }\n  steps: [{ event: visited }, { event: signed_up }, { event: paid }]\n";

    fn config_with(f: &Funnel) -> PipelineConfig {
        let text = format!(
            "version: 1\ntenant: acme\nbuffer: {{ redisUrlFile: /r, partitions: 1, highWaterMark: 1000 }}\nstorage: {{ mongodbUriFile: /m, database: d, retention: 1d }}\nkeys: {{ writeKeyFile: /w, readKeyFile: /r }}\nfunnels: [{}]\n",
            serde_json::json!({"name": "signup", "steps": f.spec.definition.steps})
        );
        match PipelineConfig::parse(&text) {
            Ok(c) => c,
            Err(e) => panic!("config: {e}"),
        }
    }

    #[test]
    fn ready_once_the_pipeline_config_carries_this_definition() {
        let f = funnel(SIGNUP);
        assert_eq!(verdict(&f.spec, false, None, "signup").reason, "PipelineNotFound");
        assert_eq!(verdict(&f.spec, true, None, "signup").reason, "WaitingForPipelineConfig");
        let config = config_with(&f);
        let v = verdict(&f.spec, true, Some(&config), "signup");
        assert!(v.ready, "{v:?}");
        let mut edited = f.clone();
        edited.spec.definition.steps.pop();
        assert_eq!(verdict(&edited.spec, true, Some(&config), "signup").reason, "WaitingForPipelineConfig");
    }

    #[test]
    fn the_status_counts_steps_and_keeps_the_transition_time() {
        let f = funnel(SIGNUP);
        let v = verdict(&f.spec, false, None, "signup");
        let first = status(&f, &v, &FunnelStatus::default());
        assert_eq!(first.step_count, Some(3));
        assert_eq!(first.observed_generation, Some(2));
        assert_eq!(status(&f, &v, &first), first);
    }
}
