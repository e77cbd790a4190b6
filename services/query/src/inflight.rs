//! Coalescing of identical ad-hoc queries: while one is being computed, the same query
//! (same tenant, endpoint and request as parsed: the cache key) waits for that result
//! instead of computing it again. A dashboard of 300 viewers then costs one computation.
//!
//! The computation runs in a task of its own, so a client that goes away does not cancel
//! it for the others (and its turn, see [`crate::admission`], is held exactly as long as
//! the work runs).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

/// Computations in flight, by key; `V` is what each gives every waiter.
pub struct InFlight<V: Clone> {
    running: Arc<Mutex<HashMap<String, Shared<BoxFuture<'static, V>>>>>,
}

/// Whether a caller started the computation or joined one already running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Led,
    Joined,
}

impl<V: Clone + Send + Sync + 'static> Default for InFlight<V> {
    fn default() -> Self {
        InFlight { running: Arc::new(Mutex::new(HashMap::new())) }
    }
}

impl<V: Clone + Send + Sync + 'static> InFlight<V> {
    /// The outcome of the computation of `key`: `work`'s (spawned now) when none is
    /// running, else the running one's. `failed` stands in for the outcome when the work
    /// panicked.
    pub async fn run<W>(&self, key: String, work: W, failed: fn(String) -> V) -> (V, Role)
    where
        W: Future<Output = V> + Send + 'static,
    {
        let (outcome, role) = {
            let mut running = self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match running.get(&key) {
                Some(outcome) => (outcome.clone(), Role::Joined),
                None => {
                    let map = Arc::clone(&self.running);
                    let done_key = key.clone();
                    let task = tokio::spawn(async move {
                        // Forgotten only once done (after the answer is cached, so a query
                        // arriving later finds the cache), or when the work panicked.
                        let _forget = Forget { map, key: done_key };
                        work.await
                    });
                    let outcome =
                        async move { task.await.unwrap_or_else(|e| failed(e.to_string())) }.boxed().shared();
                    running.insert(key, outcome.clone());
                    (outcome, Role::Led)
                }
            }
        };
        (outcome.await, role)
    }

    /// Computations running now.
    pub fn len(&self) -> usize {
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Forget<V: Clone> {
    map: Arc<Mutex<HashMap<String, Shared<BoxFuture<'static, V>>>>>,
    key: String,
}

impl<V: Clone> Drop for Forget<V> {
    fn drop(&mut self) {
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn the_same_key_in_flight_is_computed_once() {
        let flight: Arc<InFlight<u32>> = Arc::new(InFlight::default());
        let computed = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let mut callers = Vec::new();
        for _ in 0..20 {
            let (flight, computed, mut released) =
                (Arc::clone(&flight), Arc::clone(&computed), released.clone());
            callers.push(tokio::spawn(async move {
                let work = async move {
                    computed.fetch_add(1, Ordering::SeqCst);
                    let _ = released.wait_for(|r| *r).await;
                    42
                };
                flight.run("k".into(), work, |_| 0).await
            }));
        }
        while computed.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let _ = release.send(true);
        let mut led = 0;
        for caller in callers {
            let (value, role) = caller.await.expect("joins");
            assert_eq!(value, 42);
            led += usize::from(role == Role::Led);
        }
        assert_eq!((computed.load(Ordering::SeqCst), led), (1, 1));
        assert!(flight.is_empty(), "a finished computation is forgotten");
    }

    #[tokio::test]
    async fn a_panicking_computation_gives_every_waiter_the_failure() {
        let flight: InFlight<Result<u32, String>> = InFlight::default();
        let (value, _) = flight.run("k".into(), async { panic!("boom") }, Err).await;
        assert!(value.is_err());
        assert!(flight.is_empty(), "a panicked computation is forgotten");
    }
}
