//! Bounds on the raw-event work of one replica: at most `running` ad-hoc queries read the
//! store and compute at once, at most `queue` more wait for a turn, each for at most
//! `max_wait`; beyond that a query is refused at once with 503 and `Retry-After`.
//!
//! Why: every raw read holds store cursors while it runs. FerretDB allows 100 open cursors
//! per database; with about 150 unbounded concurrent queries all of them were held by
//! reads waiting for a 101st, and the database stopped answering everyone (the processor
//! included). A few reads at a time also finish sooner than many sharing two cores.
//! Pre-aggregated answers (the in-memory views) never take a turn.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::QueryError;

/// The turns of one replica's raw-event queries.
pub struct RawQueryLimit {
    turns: Arc<Semaphore>,
    running: usize,
    waiting: Arc<AtomicUsize>,
    queue: usize,
    max_wait: Duration,
}

/// A turn: the holder may read the store; dropping it passes the turn on.
pub struct Turn {
    _permit: OwnedSemaphorePermit,
}

impl RawQueryLimit {
    /// `running` turns (at least 1), a queue of `queue` waiters, each waiting up to
    /// `max_wait`.
    pub fn new(running: usize, queue: usize, max_wait: Duration) -> Self {
        let running = running.max(1);
        RawQueryLimit {
            turns: Arc::new(Semaphore::new(running)),
            running,
            waiting: Arc::new(AtomicUsize::new(0)),
            queue,
            max_wait,
        }
    }

    /// Queries computing now.
    pub fn running(&self) -> usize {
        self.running - self.turns.available_permits().min(self.running)
    }

    /// Queries waiting for a turn now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// A turn, at once when one is free, else after waiting in the queue; refused
    /// ([`QueryError::overloaded`]) when the queue is full or the wait too long.
    pub async fn admit(&self) -> Result<Turn, QueryError> {
        if let Ok(permit) = Arc::clone(&self.turns).try_acquire_owned() {
            return Ok(Turn { _permit: permit });
        }
        let place = Waiting::join(&self.waiting);
        if place.ahead >= self.queue {
            return Err(QueryError::overloaded(format!(
                "this replica is computing its limit of {} ad-hoc queries and {} more are waiting; retry later",
                self.running, self.queue
            )));
        }
        match tokio::time::timeout(self.max_wait, Arc::clone(&self.turns).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Turn { _permit: permit }),
            // The semaphore is never closed; treat it as a wait that ran out.
            Ok(Err(_)) | Err(_) => Err(QueryError::overloaded(format!(
                "no turn among this replica's {} concurrent ad-hoc queries within {} s; retry later",
                self.running,
                self.max_wait.as_secs_f64()
            ))),
        }
    }
}

/// A place in the queue, left when dropped (also when the waiting request is cancelled).
struct Waiting {
    count: Arc<AtomicUsize>,
    ahead: usize,
}

impl Waiting {
    fn join(count: &Arc<AtomicUsize>) -> Self {
        let ahead = count.fetch_add(1, Ordering::AcqRel);
        Waiting { count: Arc::clone(count), ahead }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::QueryErrorCode;

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once_and_a_freed_turn_goes_to_the_waiter() {
        let limit = Arc::new(RawQueryLimit::new(1, 1, Duration::from_secs(3600)));
        let first = limit.admit().await.expect("a free turn");
        let waiter = tokio::spawn({
            let limit = Arc::clone(&limit);
            async move { limit.admit().await.map(|_| ()) }
        });
        while limit.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        let refused = limit.admit().await.err().expect("the queue is full");
        assert_eq!(refused.code, QueryErrorCode::Overloaded);
        assert_eq!((limit.running(), limit.waiting()), (1, 1));
        drop(first);
        waiter.await.expect("joins").expect("the waiter gets the turn");
        assert_eq!((limit.running(), limit.waiting()), (0, 0));
    }

    #[tokio::test]
    async fn a_wait_longer_than_the_limit_is_refused() {
        let limit = RawQueryLimit::new(1, 8, Duration::from_millis(20));
        let _held = limit.admit().await.expect("a free turn");
        let refused = limit.admit().await.err().expect("the turn is never freed");
        assert_eq!(refused.code, QueryErrorCode::Overloaded);
        assert_eq!(limit.waiting(), 0, "the refused query left the queue");
    }
}
