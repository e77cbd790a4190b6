//! The pipeline-config ConfigMap: the services' contract, rendered from the pipeline.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::{Child, ChildKind, config_map_name, metadata};
use crate::error::Error;
use crate::pipeline::config::paths;
use crate::pipeline::validate::ValidPipeline;

pub fn config_map(view: &ValidPipeline) -> Result<Child, Error> {
    let name = config_map_name(&view.name);
    let object = ConfigMap {
        metadata: metadata(view, name.clone(), "config"),
        data: Some(BTreeMap::from([(paths::CONFIG_KEY.to_string(), view.config_text.clone())])),
        ..ConfigMap::default()
    };
    Child::new(ChildKind::ConfigMap, name, &object)
}

/// A short stable digest of the config text. Pods carry it as an annotation, so a config
/// change rolls the workloads: the services read the config once, at start.
pub fn config_digest(text: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let hash = text.bytes().fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::build::fixtures;
    use pulse_core::config::PipelineConfig;

    #[test]
    fn the_config_map_holds_a_config_the_services_accept() {
        let view = fixtures::valid(fixtures::ACME);
        let child = config_map(&view).expect("build");
        assert_eq!(child.name, "acme-config");
        let text = child.object["data"][paths::CONFIG_KEY].as_str().expect("text");
        let config = PipelineConfig::parse(text).expect("valid config");
        assert_eq!(config.funnels.len(), 1);
        assert_eq!(config.buffer.redis_url_file.to_str(), Some(paths::REDIS_URL_FILE));
    }

    #[test]
    fn the_digest_follows_the_text() {
        assert_eq!(config_digest("a"), config_digest("a"));
        assert_ne!(config_digest("a"), config_digest("b"));
        assert_eq!(config_digest("a").len(), 16);
    }
}
