//! A ClusterIP Service per workload, on its named HTTP port.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Child, ChildKind, Component, metadata, selector_labels};
use crate::error::Error;
use crate::pipeline::validate::ValidPipeline;

pub fn service(view: &ValidPipeline, component: Component) -> Result<Child, Error> {
    let name = component.name(&view.name);
    let object = Service {
        metadata: metadata(view, name.clone(), component.as_str()),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(view, component.as_str())),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: component.port(),
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    Child::new(ChildKind::Service, name, &object)
}

/// The in-cluster URL of a component's Service.
pub fn endpoint(view: &ValidPipeline, component: Component) -> String {
    format!("http://{}.{}.svc:{}", component.name(&view.name), view.namespace, component.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::build::fixtures;

    #[test]
    fn the_service_selects_the_workloads_pods_on_its_port() {
        let view = fixtures::valid(fixtures::ACME);
        let s = service(&view, Component::Ingest).expect("build").object;
        assert_eq!(s["spec"]["selector"]["app.kubernetes.io/component"], "ingest");
        assert_eq!(s["spec"]["selector"]["app.kubernetes.io/instance"], "acme");
        assert_eq!(s["spec"]["ports"][0]["port"], 8080);
        assert_eq!(endpoint(&view, Component::Ingest), "http://acme-ingest.team-a.svc:8080");
    }
}
