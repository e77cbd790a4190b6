//! The Pulse API: the Rust types of the `AnalyticsPipeline` and `Funnel` custom resources
//! (group `pulse.dev`, version `v1alpha1`) and the generator of their CRD YAML.
//!
//! These types are what teams write in YAML and read back with `kubectl`; the operator
//! translates them into the pipeline config that the services read, so nothing outside the
//! operator depends on this crate at run time.

/// The API group of every Pulse custom resource.
pub const GROUP: &str = "pulse.dev";
/// The API version served for every Pulse custom resource.
pub const VERSION: &str = "v1alpha1";
