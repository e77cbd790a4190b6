//! The Pulse operator as a library: the controllers, their pure builders and their wiring,
//! so the binary stays small and the builders are unit-tested without a cluster.
//!
//! Per object the reconcile reads as dereference -> validate -> build (pure) -> apply
//! (server-side apply, one field manager, forced) -> status.

pub mod context;
pub mod error;
pub mod funnel;
pub mod leader;
pub mod metrics;
pub mod pipeline;
