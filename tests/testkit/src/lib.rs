//! Starts the real servers of Pulse's local stack for tests and the demo, and stops them.
//!
//! Every server runs on a free loopback port in a temp dir of its own and is killed when its
//! handle drops, including when a test panics; a child also gets `SIGKILL` if the test
//! process itself dies, so no server outlives the run. Starting waits on the server's real
//! readiness (a ping, `/readyz`, a condition), never on a fixed sleep.
//!
//! - [`RedisServer`] and [`RedisCluster`]: redis-server from the OS packages.
//! - [`FerretDb`]: FerretDB, the MongoDB-wire server of the tests, on SQLite or on a
//!   throwaway PostgreSQL cluster ([`Backend`], picked by `PULSE_TEST_BACKEND`).
//! - [`PipelineFiles`]: a pipeline config and its secret files, as a pod mounts them.
//! - [`InfluxDb`]: influxd 1.x from the OS packages, for the processor's InfluxDB sink.
//! - [`Prometheus`]: Prometheus scraping the processes a test runs, from a generated config,
//!   with its query API for PromQL; [`KubeStateMetrics`] for a control plane's Deployment and
//!   Pod series.
//! - [`KubeStack`]: etcd and kube-apiserver with generated certificates and RBAC, optionally
//!   kube-controller-manager, kube-scheduler and kwok so Deployments become Available.
//!
//! The binaries come from `tests/env/build-stack.sh` (`make env`), cached under
//! `~/.cache/pulse/bin`; a missing one is a clear [`Error::MissingBinary`].

mod binaries;
mod error;
mod influx;
mod kube;
mod kube_state_metrics;
mod mongo;
mod pipeline;
mod ports;
mod postgres;
mod process;
mod prometheus;
mod redis;
mod slow_client;
mod workdir;

pub use binaries::{Binary, bin_dir};
pub use error::{Error, Result};
pub use influx::InfluxDb;
pub use kube::{KubeOptions, KubeStack};
pub use kube_state_metrics::KubeStateMetrics;
pub use mongo::{Backend, FerretDb};
pub use pipeline::{PipelineFiles, PipelineSpec};
pub use ports::free_port;
pub use process::ServerProcess;
pub use prometheus::{Prometheus, ScrapeJob};
pub use redis::{AppendFsync, RedisCluster, RedisOptions, RedisServer};
pub use slow_client::{SlowEnd, Trickle, trickle};
pub use workdir::WorkDir;

/// A name unique in this test run, for per-test namespaces, databases and key prefixes:
/// `prefix-<pid>-<counter>`, lowercase so it is also a valid Kubernetes name.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}-{}-{n}", prefix.to_lowercase(), std::process::id())
}
