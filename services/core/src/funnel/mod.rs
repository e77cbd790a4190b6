//! Funnels: how a user moves through a sequence of steps within a window.
//!
//! [`FunnelDefinition`] is what a user declares, in a `Funnel` resource or an ad-hoc query;
//! the engine that computes conversions from it lives beside it.

mod definition;

pub use definition::{Exclusion, FunnelDefinition, FunnelOrder, FunnelStep, MAX_STEPS, MIN_STEPS};
