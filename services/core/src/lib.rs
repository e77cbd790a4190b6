//! Pulse's domain, free of I/O and of Kubernetes: the event model and its validation, the
//! pipeline config (the contract between the operator and the services), and the funnel,
//! retention, cohort and trend engines.
//!
//! Everything here is a pure function of its inputs so it can be unit- and property-tested
//! without servers; the services and the operator do the I/O around it. Types that users
//! write (a funnel definition, a duration, a property path) carry their JSON schema, with
//! the CEL rules the Kubernetes API server enforces, so the CRDs reuse them as they are.

pub mod analytics;
pub mod buffer;
pub mod config;
pub mod duration;
pub mod event;
pub mod funnel;
pub mod json;
pub mod profile;
pub mod property;
pub mod rollup;
pub mod validation;

/// The version of the pipeline-config document this build reads and writes.
pub const PIPELINE_CONFIG_VERSION: u32 = 1;
