//! The analytics engines: funnels, retention, lifecycle, stickiness, paths, trends and
//! cohorts, computed exactly from events, as docs/semantics.md defines every number.
//!
//! The engines take [`AnalyticsEvent`]s from any source (raw events streamed from the
//! store, a test's generated set) in any order; they group them per user, drop repeated
//! event ids and sort by time themselves. Per-user results ([`funnel::UserFunnel`]) and
//! tallies are separate from the aggregation so the pre-aggregated path can keep per-user
//! state and merge tallies across partitions with the same logic.
//!
//! Every limit is an explicit [`AnalyticsError`], never a silently shortened answer.

pub mod cohort;
pub mod discovery;
mod error;
pub mod event;
pub mod funnel;
pub mod lifecycle;
pub mod materialized;
pub mod paths;
pub mod people;
pub mod period;
pub mod retention;
pub mod session;
pub mod stats;
pub mod stickiness;
pub mod trend;

pub use error::{AnalyticsError, Limits};
pub use event::{AnalyticsEvent, EventMatcher, UserEvents, by_user};
