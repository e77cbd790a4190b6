//! The AnalyticsPipeline controller: dereference -> validate -> build -> apply -> status,
//! with a finalizer guarding the pipeline's external data.

pub mod apply;
pub mod build;
pub mod cleanup;
pub mod config;
pub mod dereference;
pub mod external;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Resource, ResourceExt};
use pulse_crds::{AnalyticsPipeline, AnalyticsPipelineStatus};

use crate::context::{Context, MANAGER};
use crate::error::Error;
use build::{BuildInput, Component, Workload, endpoint, keys_secret_name, redis_name, scales_on_requests};
use status::Part;

/// Guards the pipeline's external data (Redis keys, MongoDB database).
pub const FINALIZER: &str = "pulse.dev/cleanup";
/// The controller's label in metrics.
pub const CONTROLLER: &str = "pipeline";
/// How often a Ready pipeline is looked at again without any change (to notice changed
/// Secrets and external state).
const RESYNC: Duration = Duration::from_secs(300);
/// How soon a pipeline that is not Ready yet is looked at again if no watch event comes.
const NOT_READY_RESYNC: Duration = Duration::from_secs(60);

fn key(p: &AnalyticsPipeline) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

pub async fn reconcile(pipeline: Arc<AnalyticsPipeline>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = pipeline.namespace().unwrap_or_default();
    let api: Api<AnalyticsPipeline> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, pipeline.clone(), |event| async {
        match event {
            finalizer::Event::Apply(p) => reconcile_pipeline(&p, &ctx).await,
            finalizer::Event::Cleanup(p) => {
                ctx.metrics.set_pipeline_ready(&namespace, &p.name_any(), None);
                cleanup::cleanup(&p, &ctx).await
            }
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    });
    ctx.metrics.observe(CONTROLLER, started.elapsed(), result.as_ref().err().map(Error::reason));
    match &result {
        Ok(_) => ctx.reset_backoff(&key(&pipeline)),
        Err(e) => {
            tracing::warn!(pipeline = %key(&pipeline), reason = e.reason(), error = %e, "reconcile failed");
            publish(&ctx, &pipeline, EventType::Warning, e.reason(), &e.to_string()).await;
        }
    }
    result
}

/// Transient errors back off per pipeline: 1 s doubling to 5 minutes.
pub fn error_policy(pipeline: Arc<AnalyticsPipeline>, _error: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(ctx.next_backoff(&key(&pipeline)))
}

pub async fn publish(
    ctx: &Context,
    pipeline: &AnalyticsPipeline,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &pipeline.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an Event failed");
    }
}

async fn write_status(
    ctx: &Context,
    pipeline: &AnalyticsPipeline,
    status: &AnalyticsPipelineStatus,
) -> Result<(), Error> {
    let ready = (!pipeline.spec.paused).then(|| status::is_ready(status));
    ctx.metrics.set_pipeline_ready(&pipeline.namespace().unwrap_or_default(), &pipeline.name_any(), ready);
    if pipeline.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<AnalyticsPipeline> =
        Api::namespaced(ctx.client.clone(), &pipeline.namespace().unwrap_or_default());
    // Applied whole by the operator's field manager: a field the status no longer has
    // leaves it (a merge patch kept it), and no other writer's field is touched.
    let patch = serde_json::json!({
        "apiVersion": AnalyticsPipeline::api_version(&()),
        "kind": AnalyticsPipeline::kind(&()),
        "status": status,
    });
    api.patch_status(&pipeline.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::kube("writing the status"))?;
    Ok(())
}

async fn reconcile_pipeline(pipeline: &AnalyticsPipeline, ctx: &Context) -> Result<Action, Error> {
    let previous = pipeline.status.clone().unwrap_or_default();
    let generation = pipeline.metadata.generation;
    if pipeline.spec.paused {
        // Keep every part's last known condition; only Ready and Paused change.
        let parts: Vec<Part> = previous
            .conditions
            .iter()
            .filter(|c| c.type_ != "Ready" && c.type_ != "Paused")
            .filter_map(|c| {
                let type_ = status::KNOWN_TYPES.iter().find(|t| **t == c.type_)?;
                Some(Part::new(type_, c.status == "True", c.reason.clone(), c.message.clone()))
            })
            .collect();
        let status = AnalyticsPipelineStatus {
            observed_generation: generation,
            conditions: status::conditions(&parts, true, generation, &previous.conditions),
            ..previous.clone()
        };
        if !previous.conditions.iter().any(|c| c.type_ == "Paused" && c.status == "True") {
            publish(ctx, pipeline, EventType::Normal, "Paused", "spec.paused is true: nothing is changed")
                .await;
        }
        write_status(ctx, pipeline, &status).await?;
        return Ok(Action::await_change());
    }

    let deref = match dereference::dereference(pipeline, ctx).await {
        Ok(d) => d,
        Err(e @ Error::MissingSecret(_)) => {
            write_status(
                ctx,
                pipeline,
                &status::not_built(e.reason(), &e.to_string(), generation, &previous),
            )
            .await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let capabilities = deref.capabilities;
    let view = match validate::validate(pipeline, deref.funnels) {
        Ok(v) => v,
        Err(e @ Error::InvalidSpec(_)) => {
            // Not retried: only an edit of the spec can fix it, and that triggers a reconcile.
            let status = status::not_built(e.reason(), &e.to_string(), generation, &previous);
            if pipeline.status.as_ref() != Some(&status) {
                publish(ctx, pipeline, EventType::Warning, e.reason(), &e.to_string()).await;
            }
            write_status(ctx, pipeline, &status).await?;
            ctx.metrics
                .errors
                .get_or_create(&crate::metrics::ErrorLabels { controller: CONTROLLER, reason: e.reason() })
                .inc();
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e),
    };
    let parsed = deref.redis_url.as_deref().and_then(dereference::redis_address);
    let (redis_address, redis_password) = match parsed {
        Some((address, password)) => (Some(address), password),
        None => (None, None),
    };
    let input = BuildInput {
        view: &view,
        settings: &ctx.settings,
        keys: &deref.keys,
        capabilities,
        redis_address,
        redis_password: redis_password.as_deref(),
    };
    let children = build::build(&input)?;
    let applied = apply::apply(&ctx.client, &view.namespace, &children).await?;
    let wanted = apply::fingerprint(&children);
    let k = key(pipeline);
    if !ctx.is_swept(&k, &wanted) {
        let deleted =
            apply::sweep(&ctx.client, &view.namespace, &view.name, &view.uid, &children, capabilities)
                .await?;
        if !deleted.is_empty() {
            publish(ctx, pipeline, EventType::Normal, "Swept", &format!("deleted {}", deleted.join(", ")))
                .await;
        }
        ctx.set_swept(&k, Some(wanted));
    }

    // External state, once per change of what it depends on.
    let partitions = view.config.buffer.partitions;
    let fingerprint = format!(
        "{partitions}|{}|{}|{}|{}",
        deref.redis_url.as_deref().unwrap_or("managed"),
        deref.mongodb_uri,
        view.config.storage.database,
        view.config.storage.retention
    );
    let mut external_error = None;
    let (buffer_part, storage_part) = if ctx.is_ensured(&k, &fingerprint) {
        (previous_part(&previous, "BufferReady"), previous_part(&previous, "StorageReady"))
    } else {
        (None, None)
    };
    let buffer_part = match (buffer_part, deref.redis_url.as_deref()) {
        (_, None) => status::managed_redis_part(&applied, &redis_name(&view.name)),
        (Some(part), Some(_)) => part,
        (None, Some(url)) => {
            match external::ensure_buffer(url, view.config.buffer.cluster, &view.tenant, partitions).await {
                Ok(()) => Part::new(
                    "BufferReady",
                    true,
                    "StreamsReady",
                    format!("{partitions} streams with the consumer group"),
                ),
                Err(e) => {
                    let part = Part::new("BufferReady", false, "RedisUnreachable", e.to_string());
                    external_error = Some(e);
                    part
                }
            }
        }
    };
    let storage_part = match storage_part {
        Some(part) => part,
        None => match external::ensure_storage(&deref.mongodb_uri, &view.config.storage.database).await {
            Ok(()) => Part::new(
                "StorageReady",
                true,
                "SchemaReady",
                format!("database {} has its collections and indexes", view.config.storage.database),
            ),
            Err(e) => {
                let part = Part::new("StorageReady", false, "StorageUnreachable", e.to_string());
                external_error.get_or_insert(e);
                part
            }
        },
    };
    ctx.set_ensured(&k, external_error.is_none().then_some(fingerprint));

    let mut parts = vec![buffer_part, storage_part];
    // Counted on every reconcile (the collection is small): the condition follows failures
    // and replays within a resync. An unreachable store keeps the last known condition.
    match external::count_failed_events(&deref.mongodb_uri, &view.config.storage.database).await {
        Ok(failed) => parts.push(status::events_stored_part(failed)),
        Err(e) => {
            tracing::debug!(error = %e, "failed events not counted");
            parts.extend(previous.conditions.iter().find(|c| c.type_ == status::EVENTS_STORED).map(|c| {
                Part::new(status::EVENTS_STORED, c.status == "True", c.reason.clone(), c.message.clone())
            }));
        }
    }
    for component in Component::ALL {
        let note = match Workload::of(&view, component) {
            Some(w) => match w.autoscaling.as_ref() {
                Some(_) if component == Component::Processor && capabilities.keda => {
                    "scaled by KEDA on stream lag".to_string()
                }
                Some(auto)
                    if auto.target_requests_per_second.is_some()
                        && !scales_on_requests(component, auto, capabilities) =>
                {
                    "scales on CPU only: no custom metrics API is served".to_string()
                }
                Some(_) => "scaled by a HorizontalPodAutoscaler".to_string(),
                None => String::new(),
            },
            None => String::new(),
        };
        parts.push(status::workload_part(&applied, &view.name, component, &note));
    }
    parts.push(if view.spec.dashboards.enabled {
        let how = if capabilities.grafana_operator {
            "a ConfigMap and a GrafanaDashboard"
        } else {
            "a ConfigMap for Grafana's sidecar"
        };
        Part::new("DashboardsReady", true, "Applied", format!("dashboard applied as {how}"))
    } else {
        Part::new("DashboardsReady", true, "Disabled", "spec.dashboards.enabled is false")
    });

    let has = |c: Component| Workload::of(&view, c).is_some();
    let status = AnalyticsPipelineStatus {
        observed_generation: generation,
        conditions: status::conditions(&parts, false, generation, &previous.conditions),
        ingest_endpoint: has(Component::Ingest).then(|| endpoint(&view, Component::Ingest)),
        query_endpoint: has(Component::Query).then(|| endpoint(&view, Component::Query)),
        keys_secret: Some(keys_secret_name(&view.name)),
    };
    if previous.observed_generation != generation {
        publish(
            ctx,
            pipeline,
            EventType::Normal,
            "Applied",
            &format!("applied generation {} ({} objects)", generation.unwrap_or(0), children.len()),
        )
        .await;
    }
    let ready = status::is_ready(&status);
    if ready && !status::is_ready(&previous) {
        publish(ctx, pipeline, EventType::Normal, "Ready", "every part of the pipeline is ready").await;
    }
    write_status(ctx, pipeline, &status).await?;
    if let Some(e) = external_error {
        return Err(e);
    }
    Ok(Action::requeue(if ready { RESYNC } else { NOT_READY_RESYNC }))
}

fn previous_part(previous: &AnalyticsPipelineStatus, type_: &'static str) -> Option<Part> {
    previous
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| Part::new(type_, true, c.reason.clone(), c.message.clone()))
}
