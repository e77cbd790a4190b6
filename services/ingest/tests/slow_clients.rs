//! Slow clients cannot hold ingest's connections: a header or a body trickled a byte at a
//! time is cut off, and past the connection cap new clients wait instead of piling up.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use pulse_ingest::ConnectionLimits;
use pulse_testkit::{RedisServer, Trickle, trickle};
use support::{Pipeline, TestIngest, event};

/// Generous: a slow client still connected after this was never timed out.
const CLOSED_WITHIN: Duration = Duration::from_secs(30);
const EVERY: Duration = Duration::from_millis(500);

fn limits(max_connections: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_secs(2),
        body_read_timeout: Duration::from_secs(3),
        max_connections,
    }
}

fn addr(ingest: &TestIngest) -> SocketAddr {
    ingest.url.trim_start_matches("http://").parse().expect("ingest address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_and_bodies_are_cut_off() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest =
        TestIngest::start(&redis.url(), Pipeline { connections: limits(64), ..Pipeline::default() }).await;
    let auth = format!("Authorization: Bearer {}\r\n", ingest.write_key);
    let (headers, body) = tokio::join!(
        trickle(addr(&ingest), Trickle::Headers, "/v1/events", "", EVERY, CLOSED_WITHIN),
        trickle(addr(&ingest), Trickle::Body, "/v1/events", &auth, EVERY, CLOSED_WITHIN),
    );
    assert!(headers.closed_by_server, "a trickled header kept the connection for {CLOSED_WITHIN:?}");
    assert!(body.closed_by_server, "a trickled body kept the connection for {CLOSED_WITHIN:?}");
    assert!(body.received.starts_with("HTTP/1.1 408"), "{}", body.received);
    assert!(body.received.contains("body_timeout"), "{}", body.received);
    // Normal clients are unaffected.
    let reply = ingest.post("/v1/events", event("e1", "u1").to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_clients_wait_and_are_served_once_slow_ones_are_cut_off() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest =
        TestIngest::start(&redis.url(), Pipeline { connections: limits(2), ..Pipeline::default() }).await;
    // wait_ready's keep-alive connection would take a place: use fresh clients only.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(trickle(addr(&ingest), Trickle::Headers, "/v1/events", "", EVERY, CLOSED_WITHIN))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let http = reqwest::Client::builder().timeout(CLOSED_WITHIN).build().expect("client");
    let (url, key) = (format!("{}/v1/events", ingest.url), ingest.write_key.clone());
    let mut normal = tokio::spawn(async move {
        http.post(url).bearer_auth(key).body(event("e2", "u2").to_string()).send().await
    });
    // Not a timing assertion: with both places taken nothing can answer it, however slow
    // or fast the machine.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut normal).await;
    assert!(early.is_err(), "served past the connection cap");
    for s in slow {
        assert!(s.await.expect("slow client").closed_by_server, "slow client cut off");
    }
    let reply = normal.await.expect("task").expect("served once the slow clients were cut off");
    assert_eq!(reply.status(), 202);
}
