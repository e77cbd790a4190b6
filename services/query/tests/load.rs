//! The query API under a burst of ad-hoc queries, on a whole pipeline of real servers:
//! FerretDB and Redis from pulse-testkit, ingest, the processor and the query API
//! in-process. A few hundred concurrent queries, identical and distinct, while events are
//! ingested, must each be answered (200) or refused clearly (503 with Retry-After), none
//! may hang, identical queries are computed once, `/readyz` keeps answering, and the
//! processor still stores every event sent afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use pulse_store::Store;
use pulse_testkit::{FerretDb, PipelineFiles, PipelineSpec, RedisServer, unique_name};
use serde_json::{Value, json};

const PARTITIONS: u32 = 4;
const HOUR: i64 = 3_600_000;
/// The whole scenario must finish within this: a hang fails the test instead of blocking it.
const SCENARIO_LIMIT: Duration = Duration::from_secs(900);

/// A pipeline's config and secrets on disk.
struct Pipeline {
    _files: PipelineFiles,
    config: PathBuf,
    database: String,
    write_key: String,
    read_key: String,
    mongo_uri: String,
}

impl Pipeline {
    fn new(redis: &RedisServer, ferret: &FerretDb) -> Self {
        let mut spec = PipelineSpec::new(&unique_name("load"), &redis.url(), &ferret.uri());
        spec.partitions = PARTITIONS;
        spec.high_water_mark = 100_000_000;
        spec.retention = "365d".to_string();
        // A cache longer than the test, so "computed once" is not undone by expiry.
        spec.extra = "processor:\n  batchSize: 500\nquery:\n  cacheTtl: 1h\n\
                      rollups:\n  intervals: [hour, day]\n  numericProperties: [revenue]\n"
            .to_string();
        let files = PipelineFiles::write(spec).expect("pipeline config");
        let spec = &files.spec;
        let (config, database) = (files.config.clone(), spec.database.clone());
        let (write_key, read_key) = (spec.write_key.clone(), spec.read_key.clone());
        Pipeline { _files: files, config, database, write_key, read_key, mongo_uri: ferret.uri() }
    }
}

/// `n` events of `users` users over the last `spread` ms before `now`, ids `<prefix>-<i>`.
fn events(prefix: &str, n: usize, users: u64, now: i64, spread: i64) -> Vec<Value> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ prefix.len() as u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let names = ["page_viewed", "checkout_started", "purchase", "signed_up"];
    (0..n)
        .map(|i| {
            let plan = ["free", "pro"][(next() % 2) as usize];
            json!({
                "event_id": format!("{prefix}-{i}"),
                "event": names[(next() % 4) as usize],
                "distinct_id": format!("user-{}", next() % users),
                "timestamp": now - (next() % spread as u64) as i64,
                "properties": { "revenue": (next() % 10_000) as f64 / 100.0, "plan": plan },
            })
        })
        .collect()
}

/// Sends events to ingest in batches, retrying 429 and 503 as a client would.
async fn send(http: &reqwest::Client, ingest: &str, key: &str, events: &[Value]) {
    for batch in events.chunks(500) {
        let body = json!({ "batch": batch }).to_string();
        let mut accepted = false;
        for _ in 0..600 {
            let reply = http
                .post(format!("{ingest}/v1/batch"))
                .bearer_auth(key)
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("ingest answers");
            match reply.status().as_u16() {
                202 => {
                    accepted = true;
                    break;
                }
                429 | 503 => tokio::time::sleep(Duration::from_millis(100)).await,
                other => {
                    panic!("ingest refused a valid batch: {other} {}", reply.text().await.unwrap_or_default())
                }
            }
        }
        assert!(accepted, "ingest never accepted a batch");
    }
}

/// Waits until the store's event blocks (what queries read) hold every id of `sent`.
async fn wait_stored(store: &Store, sent: &BTreeSet<String>) {
    loop {
        let read = store.events_between(None, i64::MIN / 2, i64::MAX / 2, 10 * sent.len()).await;
        if let Ok(read) = read {
            let held: BTreeSet<String> = read.into_iter().map(|e| e.event_id).collect();
            if sent.is_subset(&held) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn serve<F, E>(start: impl FnOnce(tokio::net::TcpListener) -> F) -> String
where
    F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let running = start(listener);
    tokio::spawn(async move {
        if let Err(e) = running.await {
            panic!("a service stopped: {e}");
        }
    });
    url
}

async fn wait_ready(http: &reqwest::Client, url: &str) {
    loop {
        if let Ok(r) = http.get(format!("{url}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ad-hoc query number `d`: funnels and filtered trends (neither has a pre-aggregate).
fn query(d: usize, now: i64) -> (&'static str, Value) {
    let (from, to) = (now - 3 * 24 * HOUR, now + HOUR);
    if d.is_multiple_of(2) {
        let body = json!({
            "definition": {
                "steps": [{ "event": "page_viewed" }, { "event": "checkout_started" }, { "event": "purchase" }],
                "window": format!("{}m", d + 1),
            },
            "from": from, "to": to,
        });
        ("/v1/funnels", body)
    } else {
        let body = json!({
            "event": { "event": "page_viewed", "filters": [{ "property": "revenue", "op": "gt", "value": d.to_string() }] },
            "measure": { "kind": "count" }, "interval": "hour", "from": from, "to": to,
        });
        ("/v1/trends", body)
    }
}

/// One answer of the burst.
#[derive(Debug)]
struct Reply {
    query: usize,
    status: u16,
    retry_after: Option<String>,
    content_type: Option<String>,
    body: Value,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_ad_hoc_queries_is_answered_or_refused_and_the_pipeline_keeps_storing() {
    let (redis, ferret) =
        (RedisServer::start().await.expect("redis"), FerretDb::start().await.expect("ferretdb"));
    let pipeline = Pipeline::new(&redis, &ferret);
    tokio::time::timeout(SCENARIO_LIMIT, scenario(&pipeline))
        .await
        .expect("the scenario hung: a query, /readyz or the processor never finished");
}

async fn scenario(p: &Pipeline) {
    let http = reqwest::Client::new();
    let config = p.config.clone();
    let ingest =
        serve(|l| pulse_ingest::run(pulse_ingest::Settings::new(config.clone()), l, std::future::pending()))
            .await;
    let processor = pulse_processor::connect(&p.config, "load-test".into()).await.expect("processor");
    serve(|l| pulse_processor::run(processor, l, std::future::pending())).await;
    wait_ready(&http, &ingest).await;
    let store = Store::connect(&p.mongo_uri, &p.database).await.expect("store");

    // History for the queries to read: many blocks, as small batches over days make.
    let now = jiff::Timestamp::now().as_millisecond();
    let history = events("history", 20_000, 400, now, 2 * 24 * HOUR);
    send(&http, &ingest, &p.write_key, &history).await;
    let mut sent: BTreeSet<String> =
        history.iter().filter_map(|e| e["event_id"].as_str().map(String::from)).collect();
    wait_stored(&store, &sent).await;
    eprintln!("history stored: {} events", sent.len());

    let settings = pulse_query::Settings::new(p.config.clone());
    let query_url = serve(|l| pulse_query::run(settings, l, std::future::pending())).await;
    wait_ready(&http, &query_url).await;

    // The burst: 60 distinct queries, each sent 5 times, all at once, while events arrive
    // and /readyz is probed.
    let during = events("during", 4_000, 400, now, HOUR);
    sent.extend(during.iter().filter_map(|e| e["event_id"].as_str().map(String::from)));
    let ingesting = {
        let (http, ingest, key) = (http.clone(), ingest.clone(), p.write_key.clone());
        tokio::spawn(async move { send(&http, &ingest, &key, &during).await })
    };
    // Probes of /readyz and of a pre-aggregated trend (from the rollups in memory), which
    // must not wait behind the raw reads.
    let probing = {
        let (http, url, key) = (http.clone(), query_url.clone(), p.read_key.clone());
        let preaggregated = json!({
            "event": { "event": "page_viewed" }, "measure": { "kind": "count" }, "interval": "hour",
            "from": now - 3 * 24 * HOUR, "to": now + HOUR,
        });
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..20 {
                let ready = http.get(format!("{url}/readyz")).send().await.expect("/readyz answers");
                let trend = http
                    .post(format!("{url}/v1/trends"))
                    .bearer_auth(&key)
                    .json(&preaggregated)
                    .send()
                    .await
                    .expect("a pre-aggregated trend is answered");
                let (status, body) =
                    (trend.status().as_u16(), trend.json::<Value>().await.unwrap_or(Value::Null));
                answers.push((ready.status().as_u16(), status, body["answeredFrom"].clone()));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            answers
        })
    };
    let burst = (0..300).map(|i| {
        let (http, url, key) = (http.clone(), query_url.clone(), p.read_key.clone());
        let d = i % 60;
        let (path, body) = query(d, now);
        async move {
            let reply = http
                .post(format!("{url}{path}"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .expect("the query API answers");
            let header =
                |name: &str| reply.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from);
            let (retry_after, content_type) = (header("retry-after"), header("content-type"));
            let status = reply.status().as_u16();
            let body = reply.json().await.unwrap_or(Value::Null);
            Reply { query: d, status, retry_after, content_type, body }
        }
    });
    eprintln!("query API ready; the burst starts");
    let replies = futures::future::join_all(burst).await;
    ingesting.await.expect("ingesting during the burst");
    let probes = probing.await.expect("probing /readyz");

    let mut raw_per_query: BTreeMap<usize, usize> = BTreeMap::new();
    let (mut answered, mut refused) = (0, 0);
    for r in &replies {
        match r.status {
            200 => {
                answered += 1;
                let from = r.body["answeredFrom"].as_str().unwrap_or_default();
                assert!(["raw", "cache"].contains(&from), "query {}: answered from {from:?}", r.query);
                *raw_per_query.entry(r.query).or_default() += usize::from(from == "raw");
            }
            503 => {
                refused += 1;
                assert!(r.retry_after.is_some(), "a 503 without Retry-After: {r:?}");
                assert_eq!(r.content_type.as_deref(), Some("application/json"), "{r:?}");
                assert_eq!(r.body["error"]["code"], "overloaded", "{r:?}");
            }
            _ => panic!("neither answered nor refused clearly: {r:?}"),
        }
    }
    eprintln!("burst: {answered} answered, {refused} refused; /readyz and a trend during it: {probes:?}");
    for (ready, status, from) in &probes {
        assert!([200, 503].contains(ready), "/readyz answered {ready}");
        assert_eq!(
            (*status, from.as_str()),
            (200, Some("preaggregated")),
            "pre-aggregated answers never queue"
        );
    }
    assert!(answered > 0, "every query was refused");
    let recomputed: Vec<(&usize, &usize)> = raw_per_query.iter().filter(|(_, n)| **n > 1).collect();
    assert!(recomputed.is_empty(), "identical queries were computed again (query, times): {recomputed:?}");

    // The pipeline still stores: every event sent after the burst reaches the store.
    eprintln!("sending events after the burst");
    let after = events("after", 2_000, 400, jiff::Timestamp::now().as_millisecond(), HOUR);
    send(&http, &ingest, &p.write_key, &after).await;
    sent.extend(after.iter().filter_map(|e| e["event_id"].as_str().map(String::from)));
    wait_stored(&store, &sent).await;
    let reply = http.get(format!("{query_url}/readyz")).send().await.expect("/readyz answers");
    assert_eq!(reply.status(), 200, "the query API is ready after the burst");
}
