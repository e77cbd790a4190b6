//! SIGTERM stops pulse-query within its grace period (`--shutdown-grace-secs`, 25 s by
//! default, under the pods' 30 s) while Redis and the store do not answer (frozen with
//! SIGSTOP: connections are accepted and nothing answers), with a query in flight on them.

mod support;

use std::time::{Duration, Instant};

use pulse_testkit::{FerretDb, PipelineFiles, PipelineSpec, RedisServer, unique_name};
use serde_json::json;

/// The pods' grace period (`terminationGracePeriodSeconds`, as the operator sets it).
const POD_GRACE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_redis_and_the_store_do_not_answer_stops_the_query_api_within_its_grace() {
    let mut redis = RedisServer::start().await.expect("redis");
    let mut ferret = FerretDb::start().await.expect("ferretdb");
    let mut spec = PipelineSpec::new(&unique_name("qs"), &redis.url(), &ferret.uri());
    spec.partitions = 4;
    spec.read_key = "rk".into();
    let files = PipelineFiles::write(spec).expect("pipeline config");
    let (mut query, url) = support::start_binary(&files, "text", "info").await;
    let http = reqwest::Client::new();

    redis.pause();
    ferret.process_mut().pause();
    // A raw query on the frozen store, in flight when SIGTERM comes.
    let body = json!({ "definition": { "steps": [{ "event": "a" }, { "event": "b" }], "window": "1h" },
                       "from": 1_774_569_600_000_i64, "to": 1_774_656_000_000_i64 });
    let in_flight = tokio::spawn(http.post(format!("{url}/v1/funnels")).bearer_auth("rk").json(&body).send());
    tokio::time::sleep(Duration::from_secs(2)).await;
    query.check_running().expect("the query API waits for Redis and the store");

    let sent = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = query.sigterm_and_wait(POD_GRACE);
        let log = std::fs::read_to_string(query.log()).unwrap_or_default();
        (status, log)
    })
    .await
    .expect("waited");
    let took = sent.elapsed();
    eprintln!("the query API: {:?} {took:?} after SIGTERM", status.0);
    let (status, log) = status;
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    let status = status.unwrap_or_else(|| {
        panic!("the query API was still running {took:?} after SIGTERM; its log ends:\n{tail}")
    });
    assert!(status.success(), "the query API exited with {status} after SIGTERM:\n{tail}");
    in_flight.abort();
    redis.resume();
    ferret.process_mut().resume();
}
