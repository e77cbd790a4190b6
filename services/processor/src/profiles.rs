//! Per-user profiles: after a batch's raw events are stored, the `$set`, `$set_once` and
//! `$unset` they carry update their users' profiles, folded per user in stream order
//! (`pulse_core::profile`) and recorded as the batch's profile changes
//! (`pulse_store::profiles`).
//!
//! Only the events this batch's entries stored are applied (first deliveries and
//! redeliveries of the same entry, not duplicates of an event stored earlier), so a
//! client's retry of an old identify does not overwrite a newer one, and a redelivered
//! run is applied again in full, which leaves the profile as it was.

use pulse_core::buffer::BufferedEvent;
use pulse_core::profile::{ProfileUpdate, profile_updates};
use pulse_core::rollup::StreamPosition;
use pulse_store::{FailedEvent, PartitionLease, StoreError};
use serde_json::json;

use crate::failed::PoisonWatch;
use crate::{Context, ProcessorError};

/// Applies the profile updates of `stored` (in stream order), the batch's entries ending at
/// `last_entry` (at `at`). A user's update the store keeps refusing is set aside as failed
/// (the events themselves are stored and counted).
pub async fn apply(
    ctx: &Context,
    lease: PartitionLease,
    (last_entry, at): (&str, StreamPosition),
    stored: &[&BufferedEvent],
    poison: &mut PoisonWatch,
) -> Result<(), ProcessorError> {
    let updates = profile_updates(stored.iter().copied());
    if updates.is_empty() {
        return Ok(());
    }
    let refused = ctx.store.apply_profile_updates(lease.partition, at, &updates).await?;
    if refused.is_empty() {
        return Ok(());
    }
    let users: Vec<(&String, &ProfileUpdate)> = updates.iter().collect();
    let failed: Vec<FailedEvent> = refused
        .iter()
        .map(|r| {
            let (user, update) = users[r.index];
            let change = json!({ "unset": update.unset, "set": update.set, "set_once": update.set_once });
            FailedEvent::profile_refused(lease.partition, last_entry, user, &change, &r.detail)
        })
        .collect();
    if !poison.confirmed(&failed) {
        return Err(StoreError::Refused { events: failed.len(), detail: refused[0].detail.clone() }.into());
    }
    crate::failed::set_aside(ctx, &failed).await
}
