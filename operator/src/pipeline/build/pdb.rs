//! A PodDisruptionBudget per workload of two or more pods: voluntary evictions (node
//! drains) take one pod at a time. A single-pod workload gets none, so it never blocks a
//! drain.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::deployment::Workload;
use super::{Child, ChildKind, metadata, selector_labels};
use crate::error::Error;
use crate::pipeline::validate::ValidPipeline;

pub fn pod_disruption_budget(view: &ValidPipeline, workload: &Workload) -> Result<Option<Child>, Error> {
    if workload.min_replicas() < 2 {
        return Ok(None);
    }
    let component = workload.component.as_str();
    let name = workload.component.name(&view.name);
    let object = PodDisruptionBudget {
        metadata: metadata(view, name.clone(), component),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(view, component)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    };
    Child::new(ChildKind::PodDisruptionBudget, name, &object).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::build::{Component, fixtures};

    #[test]
    fn two_or_more_pods_get_a_budget_of_one_unavailable() {
        let view = fixtures::valid(fixtures::ACME);
        let ingest = Workload::of(&view, Component::Ingest).expect("ingest");
        let pdb = pod_disruption_budget(&view, &ingest).expect("build").expect("min 2");
        assert_eq!(pdb.object["spec"]["maxUnavailable"], 1);
        let processor = Workload::of(&view, Component::Processor).expect("processor");
        assert!(pod_disruption_budget(&view, &processor).expect("build").is_none());
    }
}
