//! pulse-bench-query: loads a product's worth of events into a throwaway FerretDB (raw
//! events, their blocks and rollups, through the store's batch call as the processor
//! stores them), starts pulse-query on it, and prints HTTP latency percentiles of pre-aggregated
//! trends (rollups), declared funnels and a retention (the query service's in-memory views),
//! and of ad-hoc funnels (cold, then cached), next to the time chDB takes for the same
//! funnel on the same events.
//!
//! ```text
//! cargo build --release -p pulse-query -p pulse-bench-query
//! target/release/pulse-bench-query --query-bin target/release/pulse-query --events 1000000
//! ```

mod traffic;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use pulse_core::buffer::{BufferedEvent, partition_of};
use pulse_core::config::RollupInterval;
use pulse_core::rollup::{StreamPosition, time_zone};
use pulse_store::{BatchRollups, EventWrite, PartitionLease, Store, WriterMemory};
use pulse_testkit::{FerretDb, RedisServer, ServerProcess, WorkDir};
use serde_json::{Value, json};

const PARTITIONS: u32 = 8;
const DAY: i64 = 86_400_000;
const LOAD_BATCH: usize = 5_000;

/// pulse-bench-query: query latency over a loaded store.
#[derive(Debug, Parser)]
#[command(name = "pulse-bench-query", version, about)]
struct Args {
    /// The pulse-query binary to benchmark.
    #[arg(long)]
    query_bin: PathBuf,
    /// Events to load.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Days the events span (ending today).
    #[arg(long, default_value_t = 30)]
    days: i64,
    /// Timed requests per warm measurement.
    #[arg(long, default_value_t = 200)]
    requests: u64,
    /// Cold (uncached) ad-hoc funnel requests.
    #[arg(long, default_value_t = 3)]
    cold: u64,
    /// The Python with chDB (from tests/env/python-chdb.sh); skipped when absent.
    #[arg(long)]
    chdb_python: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pulse-bench-query: {e}");
            ExitCode::FAILURE
        }
    }
}

fn log(started: Instant, message: &str) {
    eprintln!("[bench-query {:4.0}s] {message}", started.elapsed().as_secs_f64());
}

type Failure = Box<dyn std::error::Error>;

async fn run(args: &Args) -> Result<(), Failure> {
    let started = Instant::now();
    let dir = WorkDir::new("bench-query")?;
    let ferret = FerretDb::start().await?;
    let redis = RedisServer::start().await?;
    log(started, "FerretDB and Redis started");

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let end = (now / DAY) * DAY;
    let from = end - args.days * DAY;
    let events = traffic::generate(args.events, from, end);
    let users = events.iter().map(|e| e.distinct_id.as_str()).collect::<std::collections::HashSet<_>>().len();
    log(started, &format!("generated {} events of {users} users over {} days", events.len(), args.days));

    let store = Store::new(ferret.client().await?.database("pulse_bench"));
    store.ensure_schema().await?;
    let tz = time_zone("UTC")?;
    let intervals = [RollupInterval::Hour, RollupInterval::Day];
    let numeric = vec!["revenue".parse()?];
    let rollups = BatchRollups { intervals: &intervals, numeric: &numeric, tz: &tz };
    let load = Instant::now();
    store_batches(&store, &events, &rollups, started).await?;
    let load_s = load.elapsed().as_secs_f64();
    log(
        started,
        &format!(
            "loaded: raw events, event blocks and rollups in {load_s:.0} s ({:.0} events/s)",
            events.len() as f64 / load_s.max(1e-9)
        ),
    );

    let write = |name: &str, text: &str| -> Result<PathBuf, std::io::Error> {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    };
    let read_key = "bench-read-key";
    let config = format!(
        "version: 1\ntenant: bench\ntimezone: UTC\n\
         buffer:\n  redisUrlFile: {}\n  partitions: {PARTITIONS}\n  highWaterMark: 1000000\n\
         storage:\n  mongodbUriFile: {}\n  database: pulse_bench\n  retention: 3650d\n\
         keys:\n  writeKeyFile: {}\n  readKeyFile: {}\n\
         query:\n  cacheTtl: 10m\n\
         rollups:\n  intervals: [hour, day]\n  numericProperties: [revenue]\n\
         funnels:\n- name: checkout\n  steps: [{{event: signup}}, {{event: activated}}, {{event: purchase}}]\n  window: 7d\n  breakdown: variant\n",
        write("redis-url", &redis.url())?.display(),
        write("mongodb-uri", &ferret.uri())?.display(),
        write("write-key", "bench-write-key")?.display(),
        write("read-key", read_key)?.display(),
    );
    let config = write("pipeline.yaml", &config)?;
    let port = pulse_testkit::free_port()?;
    let mut command = Command::new(&args.query_bin);
    command
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--max-events")
        .arg((args.events * 2).to_string());
    let spawned = Instant::now();
    let mut server = ServerProcess::spawn("pulse-query", command, &dir.join("query.log"))?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let ready = format!("{base}/readyz");
    server
        .wait_ready(Duration::from_secs(900), || {
            let (http, ready) = (http.clone(), ready.clone());
            async move {
                match http.get(&ready).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("readyz answered {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await?;
    log(
        started,
        &format!(
            "pulse-query ready in {:.1} s (rollups and event blocks read into memory)",
            spawned.elapsed().as_secs_f64()
        ),
    );

    let client = Client { http, base, key: read_key.to_string() };
    let mut rows: Vec<Row> = Vec::new();
    for (name, body) in [
        (
            "trend: events per day, 30 days",
            json!({ "event": { "event": "page_viewed" }, "measure": { "kind": "count" }, "interval": "day", "from": from, "to": end }),
        ),
        (
            "trend: unique users per day",
            json!({ "event": { "event": "page_viewed" }, "measure": { "kind": "uniqueUsers" }, "interval": "day", "from": from, "to": end }),
        ),
        (
            "trend: revenue per hour, 7 days",
            json!({ "event": { "event": "purchase" }, "measure": { "kind": "sum", "property": "revenue" }, "interval": "hour", "from": end - 7 * DAY, "to": end }),
        ),
    ] {
        let (first, source) = client.post("/v1/trends", &body).await?;
        if source != "preaggregated" {
            return Err(format!("{name}: answered from {source}, not the rollups").into());
        }
        let h = client.repeat(args.requests, |_| ("/v1/trends".to_string(), Some(body.clone()))).await?;
        rows.push(Row::latency(&format!("{name} (pre-aggregated)"), first, &h, Target::Preaggregated));
    }

    // Declared funnels and retention come from the in-memory views, computed per request
    // (no cache in front of them).
    for (name, days) in [("declared funnel, 7 days", 7), ("declared funnel, 30 days", args.days)] {
        let path = format!("/v1/funnels/checkout?from={}&to={end}", end - days * DAY);
        let (first, source) = client.get(&path).await?;
        if source != "preaggregated" {
            return Err(format!("{name}: answered from {source}, not the funnel's view").into());
        }
        let h = client.repeat(args.requests, |_| (path.clone(), None)).await?;
        rows.push(Row::latency(&format!("{name} (pre-aggregated)"), first, &h, Target::Preaggregated));
    }
    let retention = json!({ "start": { "event": "signup" }, "return": { "event": "page_viewed" }, "period": "day", "periods": 14, "from": from, "to": end });
    let (first, source) = client.post("/v1/retention", &retention).await?;
    if source != "preaggregated" {
        return Err(format!("retention: answered from {source}, not the activity view").into());
    }
    let h = client.repeat(args.requests, |_| ("/v1/retention".to_string(), Some(retention.clone()))).await?;
    rows.push(Row::latency("retention 14 days (pre-aggregated)", first, &h, Target::Preaggregated));

    let funnel = |to: i64| {
        json!({
            "definition": { "steps": [{ "event": "signup" }, { "event": "activated" }, { "event": "purchase" }], "window": "7d", "breakdown": "variant" },
            "from": from, "to": to,
        })
    };
    let mut cold_funnel = Histogram::<u64>::new(3)?;
    let mut report = Value::Null;
    for i in 0..args.cold {
        // A different range each time: a cache miss.
        let t = Instant::now();
        let (answer, source) = client.post_full("/v1/funnels", &funnel(end - 1 - i as i64)).await?;
        cold_funnel.record(t.elapsed().as_micros() as u64)?;
        if source != "raw" {
            return Err(format!("the cold ad-hoc funnel came from {source}").into());
        }
        report = answer;
    }
    rows.push(Row::latency("ad-hoc funnel over all events, cold", 0, &cold_funnel, Target::Cold));
    let h = client.repeat(args.requests, |_| ("/v1/funnels".to_string(), Some(funnel(end)))).await?;
    rows.push(Row::latency("ad-hoc funnel, cached", 0, &h, Target::Cached));

    // Paths, lifecycle and a person's timeline: cold (a range or user not asked before),
    // then cached or repeated.
    let paths = |to: i64| json!({ "start": { "event": "signup" }, "steps": 3, "window": "1d", "collapseRepeats": true, "from": from, "to": to });
    let mut cold = Histogram::<u64>::new(3)?;
    for i in 0..args.cold {
        let t = Instant::now();
        let (_, source) = client.post_full("/v1/paths", &paths(end - 1 - i as i64)).await?;
        cold.record(t.elapsed().as_micros() as u64)?;
        if source != "raw" {
            return Err(format!("the cold paths query came from {source}").into());
        }
    }
    rows.push(Row::latency("paths after signup (3 steps, 1d), cold", 0, &cold, Target::Cold));
    let (paths_report, _) = client.post_full("/v1/paths", &paths(end)).await?;
    let h = client.repeat(args.requests, |_| ("/v1/paths".to_string(), Some(paths(end)))).await?;
    rows.push(Row::latency("paths, cached", 0, &h, Target::Cached));

    let lifecycle = json!({ "event": { "event": "page_viewed" }, "period": "day", "from": from, "to": end });
    let (lifecycle_report, source) = client.post_full("/v1/lifecycle", &lifecycle).await?;
    if source != "preaggregated" {
        return Err(format!("lifecycle: answered from {source}, not the activity view").into());
    }
    let h = client.repeat(args.requests, |_| ("/v1/lifecycle".to_string(), Some(lifecycle.clone()))).await?;
    rows.push(Row::latency("lifecycle, 30 days (pre-aggregated)", 0, &h, Target::Preaggregated));
    // A property filter (every page view has a path) sends it to the raw events.
    let filtered = |to: i64| {
        json!({ "event": { "event": "page_viewed", "filters": [{ "property": "path", "op": "exists" }] },
                "period": "day", "from": from, "to": to })
    };
    let mut cold = Histogram::<u64>::new(3)?;
    for i in 0..args.cold {
        let t = Instant::now();
        let (_, source) = client.post_full("/v1/lifecycle", &filtered(end - 1 - i as i64)).await?;
        cold.record(t.elapsed().as_micros() as u64)?;
        if source != "raw" {
            return Err(format!("the cold filtered lifecycle came from {source}").into());
        }
    }
    rows.push(Row::latency("lifecycle with a filter, cold", 0, &cold, Target::Cold));
    let h = client.repeat(args.requests, |_| ("/v1/lifecycle".to_string(), Some(filtered(end)))).await?;
    rows.push(Row::latency("lifecycle with a filter, cached", 0, &h, Target::Cached));

    let mut people: Vec<&str> = events.iter().map(|e| e.distinct_id.as_str()).collect();
    people.sort_unstable();
    people.dedup();
    let mut cold = Histogram::<u64>::new(3)?;
    for user in
        people.iter().step_by((people.len() / args.cold.max(1) as usize).max(1)).take(args.cold as usize)
    {
        let (micros, _) = client.get(&format!("/v1/persons/{user}/events?limit=50")).await?;
        cold.record(micros)?;
    }
    rows.push(Row::latency("a person's timeline (50 events), first asked", 0, &cold, Target::Cold));
    let timeline = format!("/v1/persons/{}/events?limit=50", people[0]);
    let h = client.repeat(args.requests, |_| (timeline.clone(), None)).await?;
    rows.push(Row::latency("a person's timeline, asked again (not cached)", 0, &h, Target::Cold));

    // What a cold ad-hoc funnel is made of: the store's read of the events, and the engine.
    let read = Instant::now();
    let steps = ["signup", "activated", "purchase"].map(String::from);
    let stored = store.events_between(Some(&steps), from, end + 7 * DAY + 1, usize::MAX).await?;
    let read_s = read.elapsed().as_secs_f64();
    let events_read: Vec<pulse_core::analytics::AnalyticsEvent> =
        stored.into_iter().map(Into::into).collect();
    let compute = Instant::now();
    let def: pulse_core::funnel::FunnelDefinition =
        serde_json::from_value(funnel(end)["definition"].clone())?;
    let query =
        pulse_core::analytics::funnel::FunnelQuery { from, to: end, trend: None, session_timeout: None };
    pulse_core::analytics::funnel::run(
        &def,
        &query,
        &events_read,
        None,
        &tz,
        &pulse_core::analytics::Limits::default(),
    )?;
    let anatomy = Anatomy { events: events_read.len(), read_s, compute_s: compute.elapsed().as_secs_f64() };

    let chdb = match &args.chdb_python {
        Some(python) => Some(chdb_funnel(python, &dir, &events, from, end)?),
        None => None,
    };
    let analyses = match &args.chdb_python {
        Some(python) => Some(chdb_analyses(python, &dir, &events, from, end)?),
        None => None,
    };
    print_report(args, &events, users, &rows, &report, chdb.as_ref());
    print_analyses(&paths_report, &lifecycle_report, analyses.as_ref());
    println!(
        "  a cold ad-hoc funnel, taken apart: the store reads its {} events in {:.2} s ({:.0} events/s), the engine computes in {:.3} s",
        anatomy.events,
        anatomy.read_s,
        anatomy.events as f64 / anatomy.read_s.max(1e-9),
        anatomy.compute_s
    );
    server.terminate(Duration::from_secs(5));
    Ok(())
}

/// Stores the events as the processor does on first delivery (`Store::store_batch`: raw
/// events, event blocks, rollups), partition by partition.
async fn store_batches(
    store: &Store,
    events: &[BufferedEvent],
    rollups: &BatchRollups<'_>,
    started: Instant,
) -> Result<(), Failure> {
    let mut by_partition: HashMap<u32, Vec<&BufferedEvent>> = HashMap::new();
    for e in events {
        by_partition.entry(partition_of(&e.distinct_id, PARTITIONS)).or_default().push(e);
    }
    let (total, mut done, mut shown) = (events.len(), 0usize, Instant::now());
    for (partition, events) in by_partition {
        let lease = PartitionLease { partition, fence: 1 };
        let mut memory = WriterMemory::default();
        for (i, batch) in events.chunks(LOAD_BATCH).enumerate() {
            let position = StreamPosition { millis: 1 + i as u64, sequence: 0 };
            let writes: Vec<EventWrite<'_>> =
                batch.iter().map(|e| EventWrite { partition, position, event: e }).collect();
            store.store_next_batch(lease, &writes, rollups, &mut memory).await?;
            done += batch.len();
            if shown.elapsed() >= Duration::from_secs(5) {
                log(started, &format!("  {done} of {total} events stored"));
                shown = Instant::now();
            }
        }
    }
    Ok(())
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    async fn send(&self, path: &str, body: Option<&Value>) -> Result<(u64, Value), Failure> {
        let url = format!("{}{path}", self.base);
        let request = match body {
            Some(b) => self.http.post(url).json(b),
            None => self.http.get(url),
        };
        let t = Instant::now();
        let reply = request.bearer_auth(&self.key).send().await?;
        let status = reply.status();
        let answer: Value = reply.json().await?;
        let micros = t.elapsed().as_micros() as u64;
        if !status.is_success() {
            return Err(format!("{path}: {status} {answer}").into());
        }
        Ok((micros, answer))
    }

    async fn post(&self, path: &str, body: &Value) -> Result<(u64, String), Failure> {
        let (micros, answer) = self.send(path, Some(body)).await?;
        Ok((micros, answer["answeredFrom"].as_str().unwrap_or_default().to_string()))
    }

    async fn post_full(&self, path: &str, body: &Value) -> Result<(Value, String), Failure> {
        let (_, answer) = self.send(path, Some(body)).await?;
        let source = answer["answeredFrom"].as_str().unwrap_or_default().to_string();
        Ok((answer["result"].clone(), source))
    }

    async fn get(&self, path: &str) -> Result<(u64, String), Failure> {
        let (micros, answer) = self.send(path, None).await?;
        Ok((micros, answer["answeredFrom"].as_str().unwrap_or_default().to_string()))
    }

    /// `n` sequential requests; their latencies in microseconds.
    async fn repeat(
        &self,
        n: u64,
        request: impl Fn(u64) -> (String, Option<Value>),
    ) -> Result<Histogram<u64>, Failure> {
        let mut h = Histogram::<u64>::new(3)?;
        for i in 0..n {
            let (path, body) = request(i);
            let (micros, _) = self.send(&path, body.as_ref()).await?;
            h.record(micros)?;
        }
        Ok(h)
    }
}

/// The target a row is compared with (issue 6).
#[derive(Clone, Copy)]
enum Target {
    /// p50 <= 1 ms, p99 <= 5 ms.
    Preaggregated,
    /// <= 5 ms.
    Cached,
    /// <= 2 s.
    Cold,
}

struct Row {
    name: String,
    first_us: u64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    target: Target,
}

impl Row {
    fn latency(name: &str, first_us: u64, h: &Histogram<u64>, target: Target) -> Self {
        Row {
            name: name.to_string(),
            first_us,
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
            target,
        }
    }

    fn verdict(&self) -> (&'static str, &'static str) {
        match self.target {
            Target::Preaggregated if self.p50_us <= 1_000 && self.p99_us <= 5_000 => {
                ("p50<=1ms p99<=5ms", "ok")
            }
            Target::Preaggregated => ("p50<=1ms p99<=5ms", "MISSED"),
            Target::Cached if self.p99_us <= 5_000 => ("<=5ms", "ok"),
            Target::Cached => ("<=5ms", "MISSED"),
            Target::Cold if self.max_us <= 2_000_000 => ("<=2s", "ok"),
            Target::Cold => ("<=2s", "MISSED"),
        }
    }
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// Where a cold ad-hoc funnel's time goes.
struct Anatomy {
    events: usize,
    read_s: f64,
    compute_s: f64,
}

/// chDB's time for the same funnel on the same events: load, then the query (best of 3).
struct ChdbTimes {
    load_s: f64,
    query_s: Vec<f64>,
    levels: Vec<u64>,
}

fn chdb_funnel(
    python: &PathBuf,
    dir: &WorkDir,
    events: &[BufferedEvent],
    from: i64,
    to: i64,
) -> Result<ChdbTimes, Failure> {
    let path = dir.join("events.jsonl");
    let mut text = String::with_capacity(events.len() * 64);
    for e in events {
        text.push_str(&json!({ "user": e.distinct_id, "event": e.event, "ts": e.timestamp }).to_string());
        text.push('\n');
    }
    std::fs::write(&path, text)?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/chdb_funnel.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&path)
        .arg(from.to_string())
        .arg(to.to_string())
        .arg((7 * DAY).to_string())
        .output()?;
    if !out.status.success() {
        return Err(format!("chdb: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let answer: Value = serde_json::from_slice(&out.stdout)?;
    let floats =
        |v: &Value| v.as_array().into_iter().flatten().filter_map(Value::as_f64).collect::<Vec<f64>>();
    Ok(ChdbTimes {
        load_s: answer["load_s"].as_f64().unwrap_or_default(),
        query_s: floats(&answer["query_s"]),
        levels: answer["at_least"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect(),
    })
}

/// chDB's paths and lifecycle on the same events (`chdb_analyses.py`).
fn chdb_analyses(
    python: &PathBuf,
    dir: &WorkDir,
    events: &[BufferedEvent],
    from: i64,
    to: i64,
) -> Result<Value, Failure> {
    let path = dir.join("events-with-ids.jsonl");
    let mut text = String::with_capacity(events.len() * 80);
    for e in events {
        let row = json!({ "id": e.event_id, "user": e.distinct_id, "event": e.event, "ts": e.timestamp });
        text.push_str(&row.to_string());
        text.push('\n');
    }
    std::fs::write(&path, text)?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/chdb_analyses.py");
    let out =
        Command::new(python).arg(script).arg(&path).arg(from.to_string()).arg(to.to_string()).output()?;
    if !out.status.success() {
        return Err(format!("chdb: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Pulse's paths and lifecycle next to chDB's.
fn print_analyses(paths: &Value, lifecycle: &Value, chdb: Option<&Value>) {
    let top: Vec<(Vec<String>, u64)> = paths["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                serde_json::from_value(p["events"].clone()).unwrap_or_default(),
                p["users"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let days: std::collections::BTreeMap<String, [i64; 4]> = lifecycle["periods"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let day = jiff::Timestamp::from_millisecond(p["periodStart"].as_i64().unwrap_or(0))
                .map(|t| t.strftime("%Y-%m-%d").to_string())
                .unwrap_or_default();
            let n = |k: &str| p[k].as_i64().unwrap_or(0);
            (day, [n("new"), n("returning"), n("resurrecting"), n("dormant")])
        })
        .collect();
    println!(
        "  pulse paths after signup: {} users, top {:?}",
        paths["users"],
        top.iter().map(|(p, n)| format!("{} x{n}", p.join(">"))).collect::<Vec<_>>()
    );
    let Some(c) = chdb else {
        println!("  chDB: skipped (no --chdb-python; run tests/env/python-chdb.sh)");
        return;
    };
    let best = |key: &str| {
        c[key].as_array().into_iter().flatten().filter_map(Value::as_f64).fold(f64::INFINITY, f64::min)
    };
    let chdb_top: Vec<(Vec<String>, u64)> = c["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (serde_json::from_value(r[0].clone()).unwrap_or_default(), r[1].as_u64().unwrap_or(0)))
        .collect();
    let same_paths = chdb_top == top && c["path_users"] == paths["users"];
    println!(
        "  chDB paths (arrays over each user's events), same events: query best {:.3} s; {}",
        best("paths_s"),
        if same_paths { "users and top paths equal to Pulse" } else { "DIFFERS from Pulse" }
    );
    let chdb_days: std::collections::BTreeMap<String, [i64; 4]> =
        serde_json::from_value(c["lifecycle"].clone()).unwrap_or_default();
    let same_days = days.iter().all(|(d, counts)| chdb_days.get(d).copied().unwrap_or([0; 4]) == *counts);
    println!(
        "  chDB lifecycle of page_viewed per day, same events: query best {:.3} s; {} days {}",
        best("lifecycle_s"),
        days.len(),
        if same_days { "equal to Pulse" } else { "DIFFER from Pulse" }
    );
}

fn print_report(
    args: &Args,
    events: &[BufferedEvent],
    users: usize,
    rows: &[Row],
    report: &Value,
    chdb: Option<&ChdbTimes>,
) {
    println!();
    println!(
        "=== query benchmark (2 cores; FerretDB 1.24 SQLite; {} events, {users} users, {} days; {} sequential requests per warm row)",
        events.len(),
        args.days,
        args.requests
    );
    println!(
        "  {:<52} {:>10} {:>10} {:>10} {:>10}   {:<18} ",
        "query (HTTP, client side)", "first", "p50", "p99", "max", "target"
    );
    for r in rows {
        let (target, verdict) = r.verdict();
        println!(
            "  {:<52} {:>10} {:>10} {:>10} {:>10}   {:<18} {verdict}",
            r.name,
            ms(r.first_us),
            ms(r.p50_us),
            ms(r.p99_us),
            ms(r.max_us),
            target
        );
    }
    let steps: Vec<u64> =
        report["steps"].as_array().into_iter().flatten().filter_map(|s| s["users"].as_u64()).collect();
    println!("  pulse funnel signup -> activated -> purchase (7d): users per step {steps:?}");
    match chdb {
        Some(c) => {
            let best = c.query_s.iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "  chDB windowFunnel(7d, 'strict_once'), same events: load {:.2} s, query best {:.3} s of {:?}; users per step {:?}{}",
                c.load_s,
                best,
                c.query_s.iter().map(|s| format!("{s:.3}")).collect::<Vec<_>>(),
                c.levels,
                if c.levels == steps { " (equal to Pulse)" } else { " (DIFFERS from Pulse)" }
            );
        }
        None => println!("  chDB: skipped (no --chdb-python; run tests/env/python-chdb.sh)"),
    }
}
