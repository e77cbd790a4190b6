//! A deadline on the whole request body, not on each chunk: a client trickling one byte a
//! second would never trip a per-chunk timeout, yet holds a connection and a buffer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

/// The error code of the 408 answer to a body that did not arrive in time.
pub const BODY_TIMEOUT_CODE: &str = "body_timeout";

/// Every request's body gets `timeout` from the end of its head to arrive completely.
pub(crate) fn layer(router: Router, timeout: Duration) -> Router {
    router.layer(axum::middleware::from_fn_with_state(timeout, body_deadline))
}

async fn body_deadline(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let body = Body::new(DeadlineBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        expired: Arc::clone(&expired),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    // Handlers map a body error their own way (ingest says "too large"); the client
    // deserves to know it was too slow, whatever the handler made of it.
    if expired.load(Ordering::Acquire) { timed_out(timeout) } else { response }
}

fn timed_out(timeout: Duration) -> Response {
    let body = serde_json::json!({
        "error": {
            "code": BODY_TIMEOUT_CODE,
            "field": "body",
            "message": format!(
                "the request body did not arrive within {} s; send it faster or in smaller requests",
                timeout.as_secs_f64()
            ),
        }
    });
    let mut response = (StatusCode::REQUEST_TIMEOUT, axum::Json(body)).into_response();
    // The rest of the body may still be on its way: the connection cannot be reused.
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Why a body read failed: its deadline passed.
#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        // Polled after the body's data, so a body already complete is never refused.
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
