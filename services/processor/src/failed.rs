//! Setting failed events aside: an event the store refuses on [`POISON_TRIES`] tries in a
//! row, or an entry that is not events at all, is recorded in the tenant's failed events
//! (`pulse_store::failed`) so that its partition moves on. Acknowledged means stored, or
//! listed there.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use pulse_store::{EventWrite, FailedEvent};

use crate::metrics::ReasonLabel;
use crate::{Context, ProcessorError};

/// How many tries in a row (with backoff between them) the store must refuse an event
/// before it is set aside: a refusal is deterministic, but a server may also refuse for a
/// reason of the moment that no error code reveals.
pub const POISON_TRIES: u32 = 3;

/// The events the store refused in the tries of the current batch, by failed-event id.
#[derive(Default)]
pub struct PoisonWatch {
    refusals: HashMap<String, u32>,
}

impl PoisonWatch {
    /// Counts one more refusal of each of `failed`; true when each has now been refused
    /// [`POISON_TRIES`] times, so the batch may set them aside.
    pub fn confirmed(&mut self, failed: &[FailedEvent]) -> bool {
        let mut all = true;
        for f in failed {
            let tries = self.refusals.entry(f.id.clone()).or_default();
            *tries += 1;
            all &= *tries >= POISON_TRIES;
        }
        all
    }

    /// Forgets the refusals (a batch went through): the map stays as small as a batch.
    pub fn clear(&mut self) {
        self.refusals.clear();
    }
}

/// Records `failed` (a no-op for those recorded before), counts the new ones in the
/// metrics and logs where they were, never what they hold.
pub async fn set_aside(ctx: &Context, failed: &[FailedEvent]) -> Result<(), ProcessorError> {
    if failed.is_empty() {
        return Ok(());
    }
    let recorded = ctx.store.record_failed_events(failed).await?;
    for (f, new) in failed.iter().zip(recorded) {
        if new {
            ctx.metrics.failed_events.get_or_create(&ReasonLabel { reason: f.reason.as_str() }).inc();
            tracing::error!(
                partition = f.partition,
                entry = %f.entry,
                failed_event = %f.id,
                reason = f.reason.as_str(),
                "an acknowledged event was set aside as failed; see the failed events API"
            );
        }
    }
    Ok(())
}

/// Event names the store took as rollup bucket names: each new name is tried once
/// ([`pulse_store::Store::rollup_name_refusal`]) before any of its events is written.
#[derive(Default)]
pub struct KnownNames(Mutex<HashSet<String>>);

/// Names remembered at most; past that the set starts afresh (names are tried again).
const KNOWN_NAMES_MAX: usize = 100_000;

impl KnownNames {
    fn contains(&self, name: &str) -> bool {
        self.0.lock().is_ok_and(|names| names.contains(name))
    }

    fn insert(&self, name: &str) {
        if let Ok(mut names) = self.0.lock() {
            if names.len() >= KNOWN_NAMES_MAX {
                names.clear();
            }
            names.insert(name.to_string());
        }
    }
}

/// The writes whose event name the store refuses as a rollup bucket name, as failed
/// events (`origins[i]`: the entry and index of `writes[i]`). Known names cost nothing.
pub async fn refused_names(
    ctx: &Context,
    writes: &[EventWrite<'_>],
    origins: &[(&str, usize)],
) -> Result<Vec<(usize, FailedEvent)>, ProcessorError> {
    let mut refused: HashMap<&str, String> = HashMap::new();
    let mut tried: HashSet<&str> = HashSet::new();
    for w in writes {
        let name = w.event.event.as_str();
        if ctx.known_names.contains(name) || !tried.insert(name) {
            continue;
        }
        match ctx.store.rollup_name_refusal(name).await? {
            None => ctx.known_names.insert(name),
            Some(detail) => {
                refused.insert(name, detail);
            }
        }
    }
    Ok(writes
        .iter()
        .enumerate()
        .filter_map(|(i, w)| {
            let detail = refused.get(w.event.event.as_str())?;
            let (entry, index) = origins[i];
            Some((i, FailedEvent::refused(w.partition, entry, index, w.event, detail)))
        })
        .collect())
}
