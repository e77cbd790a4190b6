//! The checks a pipeline must pass before anything is built from it: what the API server's
//! schema cannot know (the name as a tenant id) and the config's own validation, the same
//! function the services run at start. Pure.

use pulse_core::config::{NamedFunnel, PipelineConfig, is_tenant_id};
use pulse_crds::{AnalyticsPipeline, AnalyticsPipelineSpec};

use crate::error::Error;
use crate::pipeline::config::{pipeline_config, render};

/// A pipeline that can be built: its identity, spec and rendered config.
#[derive(Debug, Clone)]
pub struct ValidPipeline {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub generation: Option<i64>,
    /// The tenant id of every Redis key and metric label: the pipeline's name.
    pub tenant: String,
    pub spec: AnalyticsPipelineSpec,
    pub config: PipelineConfig,
    /// The config as the ConfigMap holds it.
    pub config_text: String,
}

/// Checks `pipeline` with its valid `funnels` and renders its config.
pub fn validate(pipeline: &AnalyticsPipeline, funnels: Vec<NamedFunnel>) -> Result<ValidPipeline, Error> {
    let meta = &pipeline.metadata;
    let name = meta.name.clone().ok_or_else(|| Error::InvalidSpec("metadata.name: missing".into()))?;
    let namespace =
        meta.namespace.clone().ok_or_else(|| Error::InvalidSpec("metadata.namespace: missing".into()))?;
    let uid = meta.uid.clone().ok_or_else(|| Error::InvalidSpec("metadata.uid: missing".into()))?;
    // The name is the tenant id of the Redis keys, so it must be a DNS label; the API
    // server allows dots and 253 characters in names.
    if !is_tenant_id(&name) {
        return Err(Error::InvalidSpec(format!(
            "metadata.name: {name:?} must be 1-63 lowercase letters, digits and '-' (it is the tenant id)"
        )));
    }
    if let Some(auto) = pipeline.spec.processor.autoscaling.as_ref()
        && auto.target_requests_per_second.is_some()
    {
        return Err(Error::InvalidSpec(
            "spec.processor.autoscaling.targetRequestsPerSecond: only ingest scales on requests; the processor scales on CPU or buffer lag".into(),
        ));
    }
    let config = pipeline_config(&name, &pipeline.spec, funnels);
    config.validate().map_err(|errors| {
        Error::InvalidSpec(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
    })?;
    let config_text = render(&config).map_err(|e| Error::serialization("the pipeline config", e))?;
    Ok(ValidPipeline {
        name: name.clone(),
        namespace,
        uid,
        generation: meta.generation,
        tenant: name,
        spec: pipeline.spec.clone(),
        config,
        config_text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::build::fixtures;

    #[test]
    fn the_fixtures_are_valid() {
        let acme = fixtures::valid(fixtures::ACME);
        assert_eq!(acme.tenant, "acme");
        assert!(acme.config_text.contains("tenant: acme"), "{}", acme.config_text);
        fixtures::valid(fixtures::GLOBEX);
    }

    #[test]
    fn a_dotted_name_is_refused_with_the_field() {
        let mut p = fixtures::pipeline(fixtures::ACME);
        p.metadata.name = Some("acme.prod".into());
        let err = validate(&p, vec![]).expect_err("dots are not a tenant id");
        assert!(err.to_string().contains("metadata.name"), "{err}");
        assert_eq!(err.reason(), "InvalidSpec");
    }

    #[test]
    fn config_problems_name_their_field() {
        let mut p = fixtures::pipeline(fixtures::ACME);
        p.spec.ingest.limits.max_event_bytes = 10;
        let err = validate(&p, vec![]).expect_err("too small");
        assert!(err.to_string().contains("ingest.limits.maxEventBytes"), "{err}");
    }

    #[test]
    fn requests_per_second_is_for_ingest_only() {
        let mut p = fixtures::pipeline(fixtures::ACME);
        if let Some(a) = p.spec.processor.autoscaling.as_mut() {
            a.target_requests_per_second = Some(10);
        }
        let err = validate(&p, vec![]).expect_err("processor rps");
        assert!(err.to_string().contains("spec.processor.autoscaling.targetRequestsPerSecond"), "{err}");
    }
}
