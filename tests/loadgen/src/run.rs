//! The run: one keep-alive HTTP/1.1 client, one worker per connection, a warmup that is not
//! measured, then the measured window.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::config::LoadConfig;
use crate::outcome::{Outcome, Tally};
use crate::pool::BodyPool;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long past the end a paced run may still send requests that fell behind schedule.
const CATCH_UP: Duration = Duration::from_secs(5);

/// The measured part of a run.
#[derive(Debug)]
pub struct RunReport {
    pub tally: Tally,
    /// From the end of the warmup to the last measured answer, at least the duration.
    pub window: Duration,
    /// Requests due in the measured window, when paced.
    pub scheduled: Option<u64>,
}

struct Shared {
    client: Client<HttpConnector, Full<Bytes>>,
    config: LoadConfig,
    pool: BodyPool,
    /// The next request number: a unique id part and, when paced, a slot in the schedule.
    next: AtomicU64,
    start: Instant,
    measure_start: Instant,
    end: Instant,
}

/// Fails with a clear message when nothing listens at the server's address.
pub async fn check_reachable(authority: &str) -> Result<(), String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot connect to {authority}: {e}")),
        Err(_) => Err(format!("cannot connect to {authority}: no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// Runs the warmup and the measured window and returns what was measured.
pub async fn run(config: LoadConfig, pool: BodyPool) -> RunReport {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(config.connections)
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector);
    let start = Instant::now();
    let measure_start = start + config.warmup;
    let end = measure_start + config.duration;
    let scheduled = config.schedule.due_between(config.warmup, config.warmup + config.duration);
    let connections = config.connections;
    let shared =
        Arc::new(Shared { client, config, pool, next: AtomicU64::new(0), start, measure_start, end });

    let mut workers = JoinSet::new();
    for _ in 0..connections {
        workers.spawn(worker(Arc::clone(&shared)));
    }
    let mut tally = Tally::new();
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(worker_tally) => tally.merge(worker_tally),
            Err(e) => eprintln!("pulse-loadgen: a worker failed: {e}"),
        }
    }
    // At least the nominal duration, so a run cut short by errors does not look faster.
    let last = tally.last_done.map_or(Duration::ZERO, |last| last.saturating_duration_since(measure_start));
    let window = last.max(shared.config.duration);
    RunReport { tally, window, scheduled }
}

async fn worker(shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::new();
    let mut failures = 0u32;
    loop {
        let request = shared.next.fetch_add(1, Ordering::Relaxed);
        let sent = match shared.config.schedule.due(request) {
            Some(due) => {
                let due = shared.start + due;
                if due >= shared.end || Instant::now() >= shared.end + CATCH_UP {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => {
                let now = Instant::now();
                if now >= shared.end {
                    break;
                }
                now
            }
        };
        let outcome = send(&shared, request).await;
        let done = Instant::now();
        let failed = matches!(outcome, Outcome::Transport(_));
        if sent >= shared.measure_start {
            tally.record(outcome, sent, done);
        }
        if failed {
            failures = failures.saturating_add(1);
            tokio::time::sleep(backoff(failures)).await;
        } else {
            failures = 0;
        }
    }
    tally
}

/// Pause after consecutive failures without an answer: 20 ms doubling up to 1 s, so a dead
/// server is not hammered in a tight loop.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(10u64 << failures.min(7)).min(Duration::from_secs(1))
}

async fn send(shared: &Shared, request: u64) -> Outcome {
    let config = &shared.config;
    let mut builder = Request::post(config.batch_uri.clone())
        .header(AUTHORIZATION, config.authorization.clone())
        .header(CONTENT_TYPE, "application/json");
    if config.gzip {
        builder = builder.header(CONTENT_ENCODING, "gzip");
    }
    let request = match builder.body(Full::new(shared.pool.body(request))) {
        Ok(request) => request,
        Err(e) => return Outcome::Transport(format!("building the request: {e}")),
    };
    let exchange = async {
        let response = shared.client.request(request).await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {}", error_chain(&e)))?
            .to_bytes();
        Ok::<_, String>(Outcome::of_response(status, &body))
    };
    match tokio::time::timeout(config.timeout, exchange).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(message)) => Outcome::Transport(message),
        Err(_) => Outcome::Transport(format!("no answer within {:?}", config.timeout)),
    }
}

/// An error and its causes, `outer: inner: ...`, e.g. "client error (Connect): tcp connect
/// error: Connection refused (os error 111)".
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_millis(20));
        assert_eq!(backoff(2), Duration::from_millis(40));
        assert_eq!(backoff(6), Duration::from_millis(640));
        assert_eq!(backoff(7), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_reported_not_panicked_on() {
        // Bind then drop a listener: the port is very likely closed right after.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let err = check_reachable(&addr.to_string()).await.expect_err("nothing listens");
        assert!(err.starts_with(&format!("cannot connect to {addr}")), "{err}");
    }
}
