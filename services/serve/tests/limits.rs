//! The serving loop against real sockets: slow clients are closed, a body that does not
//! arrive in time gets 408, connections past the cap wait, and shutdown lets a request finish.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use pulse_serve::{BODY_TIMEOUT_CODE, ConnectionLimits, serve};
use pulse_testkit::{Trickle, trickle};

/// Generous: a slow client still open after this was not timed out.
const CLOSED_WITHIN: Duration = Duration::from_secs(30);
const EVERY: Duration = Duration::from_millis(300);

fn app() -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/v1/events", post(|body: Bytes| async move { body.len().to_string() }))
}

async fn start(
    limits: ConnectionLimits,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        app(),
        limits,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(10),
    ));
    (addr, stop, server)
}

fn short() -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(2),
        max_connections: 64,
    }
}

#[tokio::test]
async fn a_client_trickling_headers_is_closed() {
    let (addr, _stop, _server) = start(short()).await;
    let end = trickle(addr, Trickle::Headers, "/v1/events", "", EVERY, CLOSED_WITHIN).await;
    assert!(end.closed_by_server, "a header trickled for {CLOSED_WITHIN:?} kept the connection open");
}

#[tokio::test]
async fn a_client_trickling_a_body_gets_408_and_is_closed() {
    let (addr, _stop, _server) = start(short()).await;
    let end = trickle(addr, Trickle::Body, "/v1/events", "", EVERY, CLOSED_WITHIN).await;
    assert!(end.closed_by_server, "a body trickled for {CLOSED_WITHIN:?} kept the connection open");
    assert!(end.received.starts_with("HTTP/1.1 408"), "{}", end.received);
    assert!(end.received.contains(BODY_TIMEOUT_CODE), "a JSON error says why: {}", end.received);
}

#[tokio::test]
async fn a_body_sent_in_time_is_served() {
    let (addr, _stop, _server) = start(short()).await;
    let reply = reqwest::Client::new()
        .post(format!("http://{addr}/v1/events"))
        .body("x".repeat(100_000))
        .send()
        .await
        .expect("answer");
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.text().await.expect("body"), "100000");
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_slow_ones_are_closed() {
    let limits = ConnectionLimits { max_connections: 2, ..short() };
    let (addr, _stop, _server) = start(limits).await;
    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(trickle(addr, Trickle::Headers, "/v1/events", "", EVERY, CLOSED_WITHIN)))
        .collect();
    // Let both slow clients connect first, so they hold the two places.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let http = reqwest::Client::builder().timeout(CLOSED_WITHIN).build().expect("client");
    let mut normal = tokio::spawn(async move { http.get(format!("http://{addr}/ok")).send().await });
    // Not a timing assertion: with both places taken, no answer can come before a slow
    // client is closed, however fast or slow the machine.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut normal).await;
    assert!(early.is_err(), "a connection past the cap was served while the cap was reached");
    for s in slow {
        assert!(s.await.expect("slow client").closed_by_server, "slow client closed");
    }
    let reply = normal.await.expect("task").expect("served once the slow clients were closed");
    assert_eq!(reply.status(), 200);
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish_and_refuses_new_connections() {
    let limits = ConnectionLimits { body_read_timeout: Duration::from_secs(20), ..short() };
    let (addr, stop, server) = start(limits).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream(rx));
    let http = reqwest::Client::new();
    let in_flight = tokio::spawn(async move {
        http.post(format!("http://{addr}/v1/events")).header("Content-Length", "4").body(body).send().await
    });
    tx.send(Ok(Bytes::from_static(b"ab"))).await.expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(Ok(Bytes::from_static(b"cd"))).await.expect("send");
    drop(tx);
    let reply = in_flight.await.expect("task").expect("the in-flight request was answered");
    assert_eq!(reply.text().await.expect("body"), "4");
    tokio::time::timeout(CLOSED_WITHIN, server).await.expect("server stopped").expect("server task");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no new connections after shutdown");
}

/// A stream of body chunks fed by a channel.
fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
