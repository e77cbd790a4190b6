//! Leader election through a coordination.k8s.io Lease: one operator process reconciles,
//! the others wait and take over when its Lease expires (or at once when it releases it on
//! shutdown). Writes are guarded by the Lease's resourceVersion, so two candidates cannot
//! both win the same term.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;

/// Where the Lease is and how it is held.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This process's identity in the Lease.
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub duration: Duration,
    /// How often the holder renews, and candidates retry.
    pub retry: Duration,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Held,
    HeldByOther,
}

pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
}

impl LeaderElector {
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        LeaderElector { api: Api::namespaced(client, &config.namespace), config }
    }

    /// Waits until this process holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_hold().await {
                Ok(Attempt::Held) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became the leader");
                    return;
                }
                Ok(Attempt::HeldByOther) => {}
                Err(e) => tracing::warn!(error = %e, "leader election: reading or writing the Lease failed"),
            }
            tokio::time::sleep(self.config.retry).await;
        }
    }

    /// Renews the Lease until a renewal has not succeeded for two thirds of its duration
    /// (another process may then take it), and returns: leadership is lost.
    pub async fn hold(&self) {
        let deadline = self.config.duration * 2 / 3;
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry).await;
            match self.try_hold().await {
                Ok(Attempt::Held) => renewed = Instant::now(),
                Ok(Attempt::HeldByOther) => {
                    tracing::error!("leader election: another process holds the Lease");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "leader election: renewing the Lease failed"),
            }
            if renewed.elapsed() > deadline {
                tracing::error!("leader election: the Lease was not renewed in time");
                return;
            }
        }
    }

    /// Gives the Lease up so a standby takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else { return };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(&self.config.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!("released the leader Lease"),
            Err(e) => tracing::warn!(error = %e, "releasing the leader Lease failed"),
        }
    }

    async fn try_hold(&self) -> Result<Attempt, kube::Error> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.config.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.config.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldByOther),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let ours = spec.holder_identity.as_deref() == Some(&self.config.identity);
        let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(renewed), Some(secs)) => renewed.0 + SignedDuration::from_secs(i64::from(secs)) < now,
            _ => true,
        };
        if !(ours || free || expired) {
            return Ok(Attempt::HeldByOther);
        }
        if !ours {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.config.identity.clone());
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        // replace carries the resourceVersion read: a concurrent writer makes this 409.
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Held),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldByOther),
            Err(e) => Err(e),
        }
    }
}
