//! What every reconcile shares: the client, the Event recorder, metrics, the operator's
//! settings, optional APIs found in the cluster, and small per-object memories (backoff,
//! external state already ensured).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::metrics::Metrics;
use crate::pipeline::build::{Capabilities, Settings};

/// The field manager of every apply and the Event reporter.
pub const MANAGER: &str = "pulse-operator";
/// How long found capabilities are trusted before asking the API server again.
const CAPABILITIES_TTL: Duration = Duration::from_secs(30);

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub settings: Settings,
    /// How long a deleted pipeline's cleanup keeps retrying an unreachable store before it
    /// gives up (with a Warning Event) rather than block the deletion for ever.
    pub cleanup_deadline: Duration,
    capabilities: tokio::sync::Mutex<Option<(Instant, Capabilities)>>,
    failures: Mutex<HashMap<String, u32>>,
    ensured: Mutex<HashMap<String, String>>,
    swept: Mutex<HashMap<String, String>>,
    summarized: Mutex<SummaryClock>,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Metrics,
        settings: Settings,
        instance: &str,
        cleanup_deadline: Duration,
    ) -> Self {
        let reporter = Reporter { controller: MANAGER.into(), instance: Some(instance.into()) };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            settings,
            cleanup_deadline,
            capabilities: tokio::sync::Mutex::new(None),
            failures: Mutex::default(),
            ensured: Mutex::default(),
            swept: Mutex::default(),
            summarized: Mutex::default(),
        }
    }

    /// The optional APIs served now (cached for a short while): KEDA, grafana-operator
    /// and a custom metrics API.
    pub async fn capabilities(&self) -> Result<Capabilities, kube::Error> {
        let mut cached = self.capabilities.lock().await;
        if let Some((at, found)) = *cached
            && at.elapsed() < CAPABILITIES_TTL
        {
            return Ok(found);
        }
        let groups = self.client.list_api_groups().await?;
        let has = |name: &str| groups.groups.iter().any(|g| g.name == name);
        let found = Capabilities {
            keda: has("keda.sh"),
            grafana_operator: has("grafana.integreatly.org"),
            custom_metrics: has("custom.metrics.k8s.io"),
        };
        *cached = Some((Instant::now(), found));
        Ok(found)
    }

    /// The delay before retrying `key` after its `n`th failure in a row: 1 s doubling to
    /// a cap of 5 minutes.
    pub fn next_backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        backoff(*n)
    }

    pub fn reset_backoff(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Whether external state with `fingerprint` was ensured for `key` by this process.
    pub fn is_ensured(&self, key: &str, fingerprint: &str) -> bool {
        self.ensured.lock().unwrap_or_else(|e| e.into_inner()).get(key).is_some_and(|f| f == fingerprint)
    }

    pub fn set_ensured(&self, key: &str, fingerprint: Option<String>) {
        let mut ensured = self.ensured.lock().unwrap_or_else(|e| e.into_inner());
        match fingerprint {
            Some(f) => ensured.insert(key.to_string(), f),
            None => ensured.remove(key),
        };
    }

    /// Whether unwanted children were already swept for this set of wanted ones.
    pub fn is_swept(&self, key: &str, wanted: &str) -> bool {
        self.swept.lock().unwrap_or_else(|e| e.into_inner()).get(key).is_some_and(|w| w == wanted)
    }

    pub fn set_swept(&self, key: &str, wanted: Option<String>) {
        let mut swept = self.swept.lock().unwrap_or_else(|e| e.into_inner());
        match wanted {
            Some(w) => swept.insert(key.to_string(), w),
            None => swept.remove(key),
        };
    }
}

impl Context {
    /// Whether `key`'s summary may be computed now (at most once per `every`); if so, the
    /// time is taken.
    pub fn summary_due(&self, key: &str, every: Duration) -> bool {
        let mut summarized = self.summarized.lock().unwrap_or_else(|e| e.into_inner());
        summarized.take(key, Instant::now(), every)
    }
}

/// When each funnel's summary was last computed, so that reconciles (every status write,
/// every edit and every pipeline change trigger one) compute it at most once per period.
#[derive(Debug, Default)]
pub struct SummaryClock {
    last: HashMap<String, Instant>,
}

impl SummaryClock {
    /// Whether `key`'s summary may be computed at `now`, at most once per `every`; if so,
    /// `now` becomes its last time.
    pub fn take(&mut self, key: &str, now: Instant, every: Duration) -> bool {
        match self.last.get(key) {
            Some(at) if now.saturating_duration_since(*at) < every => false,
            _ => {
                self.last.insert(key.to_string(), now);
                true
            }
        }
    }
}

/// 1 s doubling per failure, at most 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let secs = 1u64.checked_shl(failures.saturating_sub(1)).unwrap_or(u64::MAX).min(300);
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(20), Duration::from_secs(300));
        assert_eq!(backoff(200), Duration::from_secs(300));
    }

    #[test]
    fn a_summary_is_computed_at_most_once_a_period_whatever_the_reconciles() {
        let (every, start) = (Duration::from_secs(60), Instant::now());
        let at = |secs: u64| start + Duration::from_millis(secs * 1000);
        let mut clock = SummaryClock::default();
        // A reconcile every second for five minutes (status writes, edits).
        let taken: Vec<u64> = (0..300).filter(|s| clock.take("ns/buy", at(*s), every)).collect();
        assert_eq!(taken, [0, 60, 120, 180, 240]);
        // Each funnel has its own period.
        assert!(clock.take("ns/other", at(299), every));
        assert!(!clock.take("ns/other", at(358), every));
        assert!(clock.take("ns/other", at(359), every));
    }
}
