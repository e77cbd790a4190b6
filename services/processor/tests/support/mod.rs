//! A whole pipeline for processor tests: real Redis (or Redis Cluster) and FerretDB,
//! ingest in-process, and the processor as a separate process so it can be SIGKILLed.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pulse_buffer::TenantLayout;
use pulse_core::config::RollupInterval;
use pulse_core::property::PropertyPath;
use pulse_core::rollup::time_zone;
use pulse_store::{BatchRollups, Store};
use pulse_testkit::{FerretDb, PipelineFiles, PipelineSpec, ServerProcess};
use serde_json::Value;

pub const INTERVALS: [RollupInterval; 3] =
    [RollupInterval::Minute, RollupInterval::Hour, RollupInterval::Day];

/// A pipeline's config, secrets and stores.
pub struct Pipeline {
    files: PipelineFiles,
    pub config: PathBuf,
    pub tenant: String,
    pub database: String,
    pub partitions: u32,
    pub redis_url: String,
    pub mongo_uri: String,
    pub write_key: String,
    pub timezone: String,
    pub cluster: bool,
}

impl Pipeline {
    pub fn new(redis_url: &str, cluster: bool, ferret: &FerretDb, partitions: u32) -> Self {
        let tenant = pulse_testkit::unique_name("t");
        let mut spec = PipelineSpec::new(&tenant, redis_url, &ferret.uri());
        spec.cluster = cluster;
        spec.partitions = partitions;
        spec.high_water_mark = 100_000_000;
        spec.timezone = "Europe/Berlin".to_string();
        spec.retention = "365d".to_string();
        spec.read_key = "rk".to_string();
        spec.extra = "processor:\n  batchSize: 1000\n\
                      rollups:\n  intervals: [minute, hour, day]\n  numericProperties: [revenue]\n"
            .to_string();
        let files = PipelineFiles::write(spec.clone()).expect("pipeline config");
        Pipeline {
            config: files.config.clone(),
            tenant,
            database: spec.database,
            partitions,
            redis_url: redis_url.to_string(),
            mongo_uri: ferret.uri(),
            write_key: spec.write_key,
            timezone: spec.timezone,
            cluster,
            files,
        }
    }

    /// The temp dir of the config and secrets, where the processes' logs go too.
    pub fn dir(&self) -> &Path {
        self.files.dir()
    }

    /// Starts a processor process.
    pub fn start_processor(&self, name: &str) -> ServerProcess {
        self.start_processor_with(name, &[])
    }

    /// Starts a processor process with extra environment variables (its settings).
    pub fn start_processor_with(&self, name: &str, env: &[(&str, &str)]) -> ServerProcess {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_pulse-processor"));
        command
            .arg("--config")
            .arg(&self.config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--log-format")
            .arg("text")
            .envs(env.iter().copied());
        ServerProcess::spawn(name, command, &self.dir().join(format!("{name}.log")))
            .expect("start the processor")
    }

    /// Runs `pulse-processor rebuild` to completion.
    pub fn rebuild(&self) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_pulse-processor"))
            .arg("--config")
            .arg(&self.config)
            .arg("--log-format")
            .arg("text")
            .arg("rebuild")
            .output()
            .expect("run rebuild")
    }

    /// Starts ingest in-process on this pipeline's config.
    pub async fn start_ingest(&self) -> Ingest {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let settings = pulse_ingest::Settings::new(self.config.clone());
        let task = tokio::spawn(pulse_ingest::run(settings, listener, std::future::pending()));
        let ingest = Ingest { url, key: self.write_key.clone(), http: reqwest::Client::new(), task };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = ingest.http.get(format!("{}/readyz", ingest.url)).send().await
                && r.status() == 200
            {
                return ingest;
            }
            assert!(tokio::time::Instant::now() < deadline, "ingest did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts query in-process on this pipeline's config; returns its URL once ready.
    pub async fn start_query(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let settings = pulse_query::Settings::new(self.config.clone());
        tokio::spawn(pulse_query::run(settings, listener, std::future::pending()));
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{url}/readyz")).send().await
                && r.status().is_success()
            {
                return url;
            }
            assert!(tokio::time::Instant::now() < deadline, "query did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.mongo_uri, &self.database).await.expect("store")
    }

    /// The unprocessed events over all partitions.
    pub async fn backlog(&self, conn: &mut pulse_buffer::Connection) -> u64 {
        let mut total = 0;
        for p in 0..self.partitions {
            let n: Option<u64> = redis::cmd("GET")
                .arg(TenantLayout::of(&self.tenant).backlog(p))
                .query_async(conn)
                .await
                .unwrap_or(None);
            total += n.unwrap_or(0);
        }
        total
    }

    /// Waits until every accepted event is processed (backlog zero), up to `limit`.
    pub async fn wait_drained(&self, limit: Duration) {
        let mut conn = pulse_buffer::Connection::open(&self.redis_url, self.cluster, Duration::from_secs(5))
            .await
            .expect("redis");
        self.wait_drained_on(&mut conn, limit).await;
    }

    pub async fn wait_drained_on(&self, conn: &mut pulse_buffer::Connection, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = self.backlog(conn).await;
            if left == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{left} events still unprocessed after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Raw events are exactly `ids`, and every rollup bucket equals a recount.
    /// The events read from the blocks are the raw events: the same ids, the same content,
    /// whatever copies the kills left in several blocks.
    pub async fn assert_blocks_hold_the_raw_events(&self) {
        let store = self.store().await;
        let mut raw = std::collections::BTreeMap::new();
        for d in store.raw_event_documents(mongodb::bson::doc! {}).await.expect("raw events") {
            let e = pulse_store::recount::event_of_document(&d);
            raw.insert(e.event_id.clone(), e);
        }
        let read = store
            .events_between(None, i64::MIN / 2, i64::MAX / 2, 10 * raw.len())
            .await
            .expect("read blocks");
        let copies: u64 = store
            .event_block_refs(None, i64::MIN / 2, i64::MAX / 2)
            .await
            .expect("block refs")
            .iter()
            .map(|r| r.events)
            .sum();
        eprintln!("blocks hold {copies} event copies for {} events", raw.len());
        let n = read.len();
        let blocks: std::collections::BTreeMap<String, pulse_core::buffer::BufferedEvent> =
            read.into_iter().map(|e| (e.event_id.clone(), e)).collect();
        assert_eq!(blocks.len(), n, "events_between returns one event per id");
        let missing: Vec<&String> = raw.keys().filter(|id| !blocks.contains_key(*id)).take(5).collect();
        let extra: Vec<&String> = blocks.keys().filter(|id| !raw.contains_key(*id)).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "blocks differ: missing {missing:?}, extra {extra:?}"
        );
        let differ: Vec<&String> = raw.keys().filter(|id| raw[*id] != blocks[*id]).take(5).collect();
        assert!(differ.is_empty(), "events whose block copy differs from the raw one: {differ:?}");
    }

    pub async fn assert_exact(&self, ids: &BTreeSet<String>) {
        let store = self.store().await;
        let raw = store.raw_event_documents(mongodb::bson::doc! { "_id": 1 }).await.expect("raw events");
        let stored: BTreeSet<String> =
            raw.iter().map(|d| d.get_str("_id").expect("id").to_string()).collect();
        assert_eq!(raw.len(), stored.len(), "an id is stored once, in one day's collection");
        let missing: Vec<&String> = ids.difference(&stored).take(5).collect();
        let extra: Vec<&String> = stored.difference(ids).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "raw events differ: missing {missing:?}, extra {extra:?}"
        );
        assert_eq!(stored.len(), ids.len());

        let numeric: Vec<PropertyPath> = vec!["revenue".parse().expect("path")];
        let tz = time_zone(&self.timezone).expect("tz");
        let rollups = BatchRollups { intervals: &INTERVALS, numeric: &numeric, tz: &tz };
        let recount = store.recount(&rollups).await.expect("recount");
        let kept = store.stored_rollups().await.expect("stored rollups");
        let mut wrong = Vec::new();
        for (id, want) in &recount {
            match kept.get(id) {
                Some(got) if got.agrees_with(want) => {}
                got => wrong.push(format!("{id}: stored {got:?}, recount {want:?}")),
            }
        }
        for id in kept.keys().filter(|k| !recount.contains_key(*k)) {
            wrong.push(format!("{id}: stored but no raw event falls in it"));
        }
        assert!(
            wrong.is_empty(),
            "{} of {} buckets differ from a recount, e.g.:\n{}",
            wrong.len(),
            recount.len(),
            wrong.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
        );
    }
}

/// Ingest running in-process.
pub struct Ingest {
    pub url: String,
    pub key: String,
    pub http: reqwest::Client,
    task: tokio::task::JoinHandle<Result<(), pulse_ingest::IngestError>>,
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Ingest {
    /// Sends a batch, retrying 429/503 as a client would, until it is accepted.
    pub async fn send(&self, events: &[Value]) {
        let body = serde_json::json!({ "batch": events }).to_string();
        for _ in 0..200 {
            let reply = self
                .http
                .post(format!("{}/v1/batch", self.url))
                .header("Authorization", format!("Bearer {}", self.key))
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("ingest answers");
            match reply.status().as_u16() {
                202 => return,
                429 | 503 => tokio::time::sleep(Duration::from_millis(100)).await,
                other => {
                    panic!("ingest refused a valid batch: {other} {}", reply.text().await.unwrap_or_default())
                }
            }
        }
        panic!("ingest never accepted the batch");
    }
}

/// Events with shuffled timestamps: most within the last 30 minutes in random order, 5%
/// late (up to three days old); numeric revenue; `users` users.
pub fn events(prefix: &str, n: usize, users: usize, seed: u64) -> Vec<Value> {
    events_within(prefix, n, users, seed, 1_800_000, 3 * 86_400_000)
}

/// As [`events`], with most timestamps shuffled within `spread_ms` and 5% late by up to
/// `late_ms`.
pub fn events_within(
    prefix: &str,
    n: usize,
    users: usize,
    seed: u64,
    spread_ms: i64,
    late_ms: i64,
) -> Vec<Value> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let now = jiff::Timestamp::now().as_millisecond();
    let names = ["page_viewed", "signed_up", "purchase", "checkout_started"];
    (0..n)
        .map(|i| {
            let ts = if rng.random_range(0..100) < 5 {
                now - rng.random_range(0..late_ms)
            } else {
                now - rng.random_range(0..spread_ms)
            };
            serde_json::json!({
                "event_id": format!("{prefix}-{i}"),
                "event": names[rng.random_range(0..names.len())],
                "distinct_id": format!("user-{}", rng.random_range(0..users)),
                "timestamp": ts,
                "properties": { "revenue": (rng.random_range(0..10_000) as f64) / 100.0, "plan": "pro" },
            })
        })
        .collect()
}
