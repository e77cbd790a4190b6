//! Slow clients cannot hold the query API's connections: a header or a body trickled a
//! byte at a time is cut off, and past the connection cap new clients wait their turn.

use std::net::SocketAddr;
use std::time::Duration;

use pulse_query::{ConnectionLimits, Settings};
use pulse_testkit::{FerretDb, PipelineFiles, PipelineSpec, RedisServer, Trickle, trickle, unique_name};

/// Generous: a slow client still connected after this was never timed out.
const CLOSED_WITHIN: Duration = Duration::from_secs(30);
const EVERY: Duration = Duration::from_millis(500);

struct Query {
    addr: SocketAddr,
    read_key: String,
    _stop: tokio::sync::oneshot::Sender<()>,
    _files: PipelineFiles,
}

async fn start(redis: &RedisServer, ferret: &FerretDb, max_connections: usize) -> Query {
    let files = PipelineFiles::write(PipelineSpec::new(&unique_name("slow"), &redis.url(), &ferret.uri()))
        .expect("pipeline config");
    let read_key = files.spec.read_key.clone();
    let mut settings = Settings::new(files.config.clone());
    settings.connections = ConnectionLimits {
        header_read_timeout: Duration::from_secs(2),
        body_read_timeout: Duration::from_secs(3),
        max_connections,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(pulse_query::run(settings, listener, async {
        let _ = stopped.await;
    }));
    // One fresh connection per probe, so none stays open to take a place.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
        if let Ok(r) = http.get(format!("http://{addr}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "query API did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Query { addr, read_key, _stop: stop, _files: files }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_clients_past_the_cap_wait() {
    let redis = RedisServer::start().await.expect("redis");
    let ferret = FerretDb::start().await.expect("ferretdb");
    let query = start(&redis, &ferret, 2).await;
    let auth = format!("Authorization: Bearer {}\r\n", query.read_key);

    let (headers, body) = tokio::join!(
        trickle(query.addr, Trickle::Headers, "/v1/trends", "", EVERY, CLOSED_WITHIN),
        trickle(query.addr, Trickle::Body, "/v1/trends", &auth, EVERY, CLOSED_WITHIN),
    );
    assert!(headers.closed_by_server, "a trickled header kept the connection for {CLOSED_WITHIN:?}");
    assert!(body.closed_by_server, "a trickled body kept the connection for {CLOSED_WITHIN:?}");
    assert!(body.received.starts_with("HTTP/1.1 408"), "{}", body.received);
    assert!(body.received.contains("body_timeout"), "{}", body.received);

    // Both places taken by slow clients: a normal request waits, then is served.
    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(trickle(query.addr, Trickle::Headers, "/v1/trends", "", EVERY, CLOSED_WITHIN)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let http = reqwest::Client::builder().timeout(CLOSED_WITHIN).build().expect("client");
    let url = format!("http://{}/healthz", query.addr);
    let mut normal = tokio::spawn(async move { http.get(url).send().await });
    // Not a timing assertion: nothing can answer it while both places are taken.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut normal).await;
    assert!(early.is_err(), "served past the connection cap");
    for s in slow {
        assert!(s.await.expect("slow client").closed_by_server, "slow client cut off");
    }
    let reply = normal.await.expect("task").expect("served once the slow clients were cut off");
    assert_eq!(reply.status(), 200);
}
