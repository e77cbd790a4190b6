//! The HTTP serving loop every Pulse service uses: accepts at most `max_connections`
//! connections at a time (the rest wait in the listen backlog), closes a connection whose
//! request head does not arrive within the header timeout, answers 408 when a request body
//! does not arrive within the body timeout, and on shutdown stops accepting and lets
//! in-flight requests finish for a grace period.
//!
//! One owner for these limits, so ingest and query cannot drift apart; and, in
//! [`runtime`], for what every binary shares besides: logging, spans and shutdown.

mod body_deadline;
pub mod runtime;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

pub use crate::body_deadline::BODY_TIMEOUT_CODE;
pub use crate::runtime::{LogFormat, init_logging, request_spans, shutdown_signal, shutdown_watch};

/// Limits on a service's connections and on how slowly a client may send a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a client has to send a request's head (request line and headers), counted
    /// from the moment the server waits for it; also how long an idle keep-alive
    /// connection stays open. Past it the connection is closed.
    pub header_read_timeout: Duration,
    /// How long a client has to send a request's whole body, counted from the end of its
    /// head. Past it the request gets 408 and the connection is closed.
    pub body_read_timeout: Duration,
    /// The most connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// The command-line flags of [`ConnectionLimits`], flattened into each service's `Args`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Seconds a client has to send a request's headers (and an idle keep-alive connection
    /// stays open); then the connection is closed.
    #[arg(long, env = "PULSE_HEADER_READ_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body; then it gets 408 and the
    /// connection is closed.
    #[arg(long, env = "PULSE_BODY_READ_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_read_timeout_secs: u64,
    /// The most connections served at once; further ones wait in the listen backlog.
    #[arg(long, env = "PULSE_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
}

impl From<&ConnectionArgs> for ConnectionLimits {
    fn from(args: &ConnectionArgs) -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(args.body_read_timeout_secs),
            max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX).max(1),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves; then stops
/// accepting, asks open connections to finish their current request, and returns once
/// they did or `grace` passed, whichever comes first.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) {
    let router = body_deadline::layer(router, limits.body_read_timeout);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Take a permit before accepting: past the cap, clients wait in the kernel's listen
        // backlog instead of costing a task and a buffer each.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed; stop rather than spin
            },
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::error!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    continue;
                }
            },
        };
        connections.spawn(serve_connection(stream, router.clone(), limits, stopping_rx.clone(), permit));
        // Reap finished connections so the set stays as small as the open ones.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(grace = ?grace, "in-flight requests still running after the grace period; exiting");
    }
}

/// One connection, HTTP/1.1 with keep-alive, until the client or the header timeout closes
/// it, or shutdown finishes its current request.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    let mut connection = std::pin::pin!(connection);
    let stop = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    tokio::select! {
        served = connection.as_mut() => log_connection_end(served),
        () = stop => {
            connection.as_mut().graceful_shutdown();
            log_connection_end(connection.await);
        }
    }
}

fn log_connection_end(served: Result<(), hyper::Error>) {
    if let Err(e) = served {
        // Slow or vanished clients end here; they are the client's problem, not ours.
        tracing::debug!(error = %e, "connection closed with an error");
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
