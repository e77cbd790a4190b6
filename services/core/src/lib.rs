//! Pulse's domain, free of I/O and of Kubernetes: the event model and its validation, the
//! pipeline config (the contract between the operator and the services), and the funnel,
//! retention, cohort and trend engines.
//!
//! Everything here is a pure function of its inputs so it can be unit- and property-tested
//! without servers; the services and the operator do the I/O around it.

/// The version of the pipeline-config document this build reads and writes.
pub const PIPELINE_CONFIG_VERSION: u32 = 1;
