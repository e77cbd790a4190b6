//! Redis failures: ingest answers 503 quickly instead of hanging, never acknowledges what
//! Redis did not confirm, and every acknowledged event survives a Redis crash with AOF.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pulse_testkit::{AppendFsync, RedisOptions, RedisServer};
use support::{Pipeline, TestIngest, batch, event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_redis_being_killed_under_load() {
    let mut redis = RedisServer::start_with(RedisOptions { append_only: Some(AppendFsync::Always) })
        .await
        .expect("redis");
    let pipeline = Pipeline { durability: "strict", ..Pipeline::default() };
    let ingest = Arc::new(TestIngest::start(&redis.url(), pipeline).await);
    let acknowledged = Arc::new(Mutex::new(HashSet::<String>::new()));
    let statuses = Arc::new(Mutex::new(Vec::<u16>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let mut senders = Vec::new();
    for sender in 0..4 {
        let (ingest, acknowledged, statuses, stop) =
            (Arc::clone(&ingest), Arc::clone(&acknowledged), Arc::clone(&statuses), Arc::clone(&stop));
        senders.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let events: Vec<_> =
                    (0..50).map(|i| event(&format!("s{sender}-{n}-{i}"), &format!("u{i}"))).collect();
                n += 1;
                let reply = ingest.post("/v1/batch", batch(&events)).await;
                if reply.status == 202 {
                    let mut acked = acknowledged.lock().expect("lock");
                    acked.extend(events.iter().map(|e| e["event_id"].as_str().expect("id").to_string()));
                } else {
                    assert_eq!(reply.status, 503, "only 503 while Redis is down: {}", reply.text);
                    assert_eq!(reply.code(), "buffer_unavailable");
                    assert!(reply.retry_after.is_some(), "503 says when to retry");
                }
                statuses.lock().expect("lock").push(reply.status);
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(800)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let while_down = statuses.lock().expect("lock").len();
    redis.restart().await.expect("restart redis with its AOF");
    ingest.wait_ready().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        // A request that hung would keep its sender here until the client timeout fails it.
        s.await.expect("sender finished: every request got an answer");
    }

    let statuses = statuses.lock().expect("lock").clone();
    assert!(statuses.contains(&503), "requests while Redis was down got 503");
    assert!(statuses[while_down..].contains(&202), "ingest accepted again after the restart");
    let buffered: HashSet<String> = ingest.buffered().await.into_iter().map(|(_, e)| e.event_id).collect();
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let missing: Vec<&String> = acknowledged.difference(&buffered).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events are missing after the crash, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert!(
        acknowledged.len() > 1000,
        "the test acknowledged enough events to mean something: {}",
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_durability_refuses_a_redis_without_fsync_always() {
    let redis = RedisServer::start_with(RedisOptions { append_only: Some(AppendFsync::EverySec) })
        .await
        .expect("redis");
    let pipeline = Pipeline { durability: "strict", ..Pipeline::default() };
    let ingest = TestIngest::start_unready(&redis.url(), pipeline).await;
    // Give the monitor time to connect and judge the settings.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let ready = ingest.http.get(format!("{}/readyz", ingest.url)).send().await.expect("readyz");
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.expect("body").contains("appendfsync always"));
    let reply = ingest.post("/v1/events", r#"{"event":"a","distinct_id":"u"}"#).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert!(reply.text.contains("appendfsync always"), "{}", reply.text);
    assert!(ingest.buffered().await.is_empty(), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_gives_503_fast() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let ingest = TestIngest::start_unready(&format!("redis://127.0.0.1:{port}"), Pipeline::default()).await;
    // A hang would fail the request at the client's timeout instead of answering.
    let reply = ingest.post("/v1/events", r#"{"event":"a","distinct_id":"u"}"#).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.code(), "buffer_unavailable");
}
