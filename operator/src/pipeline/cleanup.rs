//! The finalizer's cleanup: with `deletionPolicy: Delete` the tenant's Redis keys and
//! MongoDB database are dropped before the pipeline goes; with Retain nothing is touched.
//! Data or a store that is already gone is success; a store that stays unreachable blocks
//! the deletion only until the operator's cleanup deadline, then a Warning Event says what
//! was left behind.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use pulse_crds::{AnalyticsPipeline, DeletionPolicy};

use crate::context::Context;
use crate::error::Error;
use crate::pipeline::dereference::secret_value;
use crate::pipeline::{external, publish};

pub async fn cleanup(pipeline: &AnalyticsPipeline, ctx: &Context) -> Result<Action, Error> {
    let name = pipeline.name_any();
    ctx.set_ensured(&format!("{}/{name}", pipeline.namespace().unwrap_or_default()), None);
    ctx.set_swept(&format!("{}/{name}", pipeline.namespace().unwrap_or_default()), None);
    if pipeline.spec.deletion_policy == DeletionPolicy::Retain {
        publish(
            ctx,
            pipeline,
            EventType::Normal,
            "DataRetained",
            "deletionPolicy Retain: Redis streams and the MongoDB database are kept",
        )
        .await;
        return Ok(Action::await_change());
    }
    match drop_data(pipeline, ctx).await {
        Ok(note) => {
            publish(ctx, pipeline, EventType::Normal, "DataDeleted", &note).await;
            Ok(Action::await_change())
        }
        Err(e) if past_deadline(pipeline, ctx) => {
            let note =
                format!("gave up deleting the data after {:?}: {e}; delete it by hand", ctx.cleanup_deadline);
            publish(ctx, pipeline, EventType::Warning, "CleanupAbandoned", &note).await;
            Ok(Action::await_change())
        }
        Err(e) => Err(e),
    }
}

fn past_deadline(pipeline: &AnalyticsPipeline, ctx: &Context) -> bool {
    let Some(since) = pipeline.metadata.deletion_timestamp.as_ref() else { return false };
    let elapsed = k8s_openapi::jiff::Timestamp::now().duration_since(since.0);
    elapsed.as_secs() >= i64::try_from(ctx.cleanup_deadline.as_secs()).unwrap_or(i64::MAX)
}

async fn drop_data(pipeline: &AnalyticsPipeline, ctx: &Context) -> Result<String, Error> {
    let namespace = pipeline.namespace().unwrap_or_default();
    let tenant = pipeline.name_any();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let spec = &pipeline.spec;
    let mut notes = Vec::new();
    match spec.buffer.redis.external.as_ref() {
        Some(external) => match secret_value(&secrets, &external.url_secret_ref, "urlSecretRef").await {
            Ok(url) => {
                let partitions = u32::try_from(spec.buffer.partitions).unwrap_or(0);
                let n = external::delete_buffer(&url, external.cluster, &tenant, partitions).await?;
                notes.push(format!("deleted {n} Redis keys"));
            }
            // No URL, no Redis to clean: the Secret went first.
            Err(Error::MissingSecret(m)) => notes.push(format!("Redis not cleaned: {m}")),
            Err(e) => return Err(e),
        },
        None => notes.push("managed Redis's volume goes with its StatefulSet".to_string()),
    }
    match secret_value(&secrets, &spec.storage.mongodb.uri_secret_ref, "uriSecretRef").await {
        Ok(uri) => {
            external::delete_storage(&uri, &spec.storage.database).await?;
            notes.push(format!("dropped database {}", spec.storage.database));
        }
        Err(Error::MissingSecret(m)) => notes.push(format!("MongoDB not cleaned: {m}")),
        Err(e) => return Err(e),
    }
    Ok(notes.join("; "))
}
