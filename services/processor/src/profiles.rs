//! Per-user profiles: after a batch's raw events are stored, the `$set`, `$set_once` and
//! `$unset` they carry update their users' profiles, folded per user in stream order
//! (`pulse_core::profile`) and written by `_id` (`pulse_store::profiles`).
//!
//! Only the events this batch's entries stored are applied (first deliveries and
//! redeliveries of the same entry, not duplicates of an event stored earlier), so a
//! client's retry of an old identify does not overwrite a newer one, and a redelivered
//! run is applied again in full, which leaves the profile as it was.

use pulse_core::buffer::BufferedEvent;
use pulse_core::profile::profile_updates;

use crate::{Context, ProcessorError};

/// Applies the profile updates of `stored` (in stream order).
pub async fn apply(ctx: &Context, stored: &[&BufferedEvent]) -> Result<(), ProcessorError> {
    let updates = profile_updates(stored.iter().copied());
    if !updates.is_empty() {
        ctx.store.apply_profile_updates(&updates).await?;
    }
    Ok(())
}
