//! Pre-aggregates kept in memory for the answers that must come back in about a
//! millisecond: a declared funnel ([`FunnelView`]) and standard retention
//! ([`ActivityView`]). Each is fed events in any order and batch split, repeated ids
//! included, and answers exactly what the ad-hoc engines ([`super::funnel::run`],
//! [`super::retention::run`]) answer over every event fed so far, or says it cannot
//! (`Ok(None)`), so the caller goes ad hoc. docs/semantics.md ("Two paths") says which
//! queries each view answers.
//!
//! Pure: no I/O. The query service owns the views, loads them once from the store and
//! feeds them what arrives since.

mod calendar;
mod funnel;
mod retention;
mod seen;

#[cfg(test)]
mod tests;

pub use funnel::FunnelView;
pub(crate) use funnel::earlier;
pub use retention::{ActivityView, UserDay};

use std::collections::HashMap;

use super::event::AnalyticsEvent;

/// The events of a batch per user: (user index, positions in the batch in input order),
/// users in index order. New users get the next index.
fn group_by_user(events: &[AnalyticsEvent], users: &mut HashMap<String, u32>) -> Vec<(u32, Vec<usize>)> {
    let mut keys: Vec<(u32, usize)> = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let next = users.len() as u32;
        let user = match users.get(e.distinct_id.as_str()) {
            Some(&u) => u,
            None => {
                users.insert(e.distinct_id.clone(), next);
                next
            }
        };
        keys.push((user, i));
    }
    keys.sort_unstable();
    keys.chunk_by(|a, b| a.0 == b.0).map(|run| (run[0].0, run.iter().map(|k| k.1).collect())).collect()
}
