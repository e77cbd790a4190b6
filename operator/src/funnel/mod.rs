//! The Funnel controller: validates the funnel and its pipelineRef, waits until the
//! pipeline's config carries it (the pipeline controller adds every valid Funnel), and
//! keeps the status: Ready, the step count, and the conversion summary.

pub mod status;
pub mod summary;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use pulse_core::config::PipelineConfig;
use pulse_crds::{AnalyticsPipeline, Funnel};

use crate::context::{Context, MANAGER};
use crate::error::Error;
use crate::pipeline::build::config_map_name;
use crate::pipeline::config::paths;

pub const CONTROLLER: &str = "funnel";
/// How soon to look again while the pipeline's config does not carry the funnel yet.
const WAIT_FOR_CONFIG: Duration = Duration::from_secs(3);
/// The summary is refreshed at most this often.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

fn key(f: &Funnel) -> String {
    format!("funnel:{}/{}", f.namespace().unwrap_or_default(), f.name_any())
}

pub async fn reconcile(funnel: Arc<Funnel>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_funnel(&funnel, &ctx).await;
    ctx.metrics.observe(CONTROLLER, started.elapsed(), result.as_ref().err().map(Error::reason));
    match &result {
        Ok(_) => ctx.reset_backoff(&key(&funnel)),
        Err(e) => publish(&ctx, &funnel, EventType::Warning, e.reason(), &e.to_string()).await,
    }
    result
}

pub fn error_policy(funnel: Arc<Funnel>, _error: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(ctx.next_backoff(&key(&funnel)))
}

async fn publish(ctx: &Context, funnel: &Funnel, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &funnel.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an Event failed");
    }
}

async fn reconcile_funnel(funnel: &Funnel, ctx: &Context) -> Result<Action, Error> {
    if funnel.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = funnel.namespace().unwrap_or_default();
    let name = funnel.name_any();
    let pipeline_name = &funnel.spec.pipeline_ref.name;
    let previous = funnel.status.clone().unwrap_or_default();
    let pipelines: Api<AnalyticsPipeline> = Api::namespaced(ctx.client.clone(), &namespace);
    let pipeline = pipelines.get_opt(pipeline_name).await.map_err(Error::kube("reading the pipeline"))?;
    let config = match pipeline.as_ref() {
        Some(_) => {
            let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
            maps.get_opt(&config_map_name(pipeline_name))
                .await
                .map_err(Error::kube("reading the pipeline config"))?
                .and_then(|m| m.data)
                .and_then(|d| d.get(paths::CONFIG_KEY).cloned())
                .and_then(|text| PipelineConfig::parse(&text).ok())
        }
        None => None,
    };
    let verdict = status::verdict(&funnel.spec, pipeline.is_some(), config.as_ref(), &name);
    let mut new = status::status(funnel, &verdict, &previous);
    if let Some(p) = pipeline.as_ref().filter(|_| verdict.ready)
        && ctx.summary_due(&key(funnel), SUMMARY_EVERY)
    {
        ctx.metrics.funnel_summaries.inc();
        match summarize(ctx, funnel, p).await {
            Ok(summary)
                if previous.summary.as_ref().is_none_or(|old| !summary::same_numbers(old, &summary)) =>
            {
                new.summary = Some(summary);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(funnel = %key(funnel), error = %e, "the funnel's summary was not refreshed")
            }
        }
    }
    if new != previous {
        if verdict.reason != status::previous_reason(&previous) {
            let type_ = if verdict.ready || verdict.reason == "WaitingForPipelineConfig" {
                EventType::Normal
            } else {
                EventType::Warning
            };
            publish(ctx, funnel, type_, verdict.reason, &verdict.message).await;
        }
        let api: Api<Funnel> = Api::namespaced(ctx.client.clone(), &namespace);
        // Applied whole by the operator's field manager, as the pipeline's status.
        let patch = serde_json::json!({
            "apiVersion": Funnel::api_version(&()),
            "kind": Funnel::kind(&()),
            "status": new,
        });
        api.patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(Error::kube("writing the funnel status"))?;
    }
    if let Some(summary) = new.summary.as_ref() {
        status::export(ctx, &namespace, pipeline_name, &name, summary);
    }
    Ok(match verdict.reason {
        "WaitingForPipelineConfig" => Action::requeue(WAIT_FOR_CONFIG),
        _ if verdict.ready => Action::requeue(SUMMARY_EVERY),
        // Invalid or missing pipeline: an edit of the funnel or the pipeline's arrival (a
        // watch maps pipelines to their funnels) triggers the next reconcile.
        _ => Action::await_change(),
    })
}

async fn summarize(
    ctx: &Context,
    funnel: &Funnel,
    pipeline: &AnalyticsPipeline,
) -> Result<pulse_crds::FunnelSummary, Error> {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(ctx.client.clone(), &funnel.namespace().unwrap_or_default());
    let storage = &pipeline.spec.storage;
    let uri =
        crate::pipeline::dereference::secret_value(&secrets, &storage.mongodb.uri_secret_ref, "uriSecretRef")
            .await?;
    let now = k8s_openapi::jiff::Timestamp::now().as_millisecond();
    let sessions =
        summary::Sessions { timezone: &pipeline.spec.timezone, timeout: pipeline.spec.query.session_timeout };
    summary::compute(&uri, &storage.database, &funnel.spec.definition, sessions, now).await
}
