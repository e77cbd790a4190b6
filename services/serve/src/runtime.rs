//! What every Pulse binary runs on besides its HTTP loop: logging (JSON by default, with
//! the tenant and a trace id on every request's lines), the shutdown signal, and request
//! spans with their timing. The binaries keep only their wiring.

use std::future::Future;

use axum::http::Request;
use tokio::sync::watch;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnResponse, MakeSpan, TraceLayer};
use tracing::{Level, Span};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log pipelines).
    Json,
    /// Human-readable lines.
    Text,
}

/// Logs to stderr in `format`, at the level `RUST_LOG` says (info when unset). JSON lines
/// carry the fields of the spans they are in: the tenant, the trace id, the partition.
/// Text lines have colours on a terminal only.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a pod's log keeps plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
}

/// Resolves on SIGTERM or Ctrl-C. The SIGTERM handler is installed when this is called,
/// not when the future is first polled: a signal in between would otherwise kill the
/// process the default way, without finishing what is in flight.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let terminate = async {
            match terminate {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            () = terminate => {},
        }
    }
}

/// [`shutdown_signal`] as a flag many tasks can wait on: flips once the signal arrived.
pub fn shutdown_watch() -> watch::Receiver<bool> {
    let signal = shutdown_signal();
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = stop_tx.send(true);
    });
    stop_rx
}

/// The layer that gives every request of `tenant`'s service a span (`request`, with the
/// tenant, the trace id, the method and the path) and logs its status and latency at
/// debug level.
pub fn request_spans(tenant: &str) -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan> {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan { tenant: tenant.into() })
        .on_response(DefaultOnResponse::new().level(Level::DEBUG))
}

/// Makes a request's span. The trace id is the W3C `traceparent` header's, so a request
/// can be followed from the client; otherwise a new one.
#[derive(Debug, Clone)]
pub struct RequestSpan {
    tenant: std::sync::Arc<str>,
}

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        let traced = request.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(trace_id_of);
        let trace_id = traced.map(str::to_string).unwrap_or_else(new_trace_id);
        tracing::info_span!(
            "request",
            tenant = %self.tenant,
            trace_id = %trace_id,
            method = %request.method(),
            path = %request.uri().path(),
        )
    }
}

/// The trace id of a W3C `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`), unless it
/// is malformed or all zeros (invalid by the standard).
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (_version, id) = (parts.next()?, parts.next()?);
    let valid = id.len() == 32
        && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && id.bytes().any(|b| b != b'0');
    valid.then_some(id)
}

/// A new random trace id, in the W3C form (32 lowercase hex digits).
fn new_trace_id() -> String {
    format!("{:032x}", rand::random::<u128>().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_id_comes_from_a_valid_traceparent_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(trace_id_of(&format!("00-{id}-00f067aa0ba902b7-01")), Some(id));
        assert_eq!(trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id_of("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id_of("00-4bf92f35-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id_of("garbage"), None);
        let made = new_trace_id();
        assert_eq!(made.len(), 32);
        assert!(trace_id_of(&format!("00-{made}-00f067aa0ba902b7-01")).is_some());
    }
}
