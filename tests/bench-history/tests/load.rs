//! The loader against real Redis and FerretDB: two runs add up to the history, stored
//! exactly as the processor stores it (raw events, rollups equal to a recount), and each
//! run holds and releases the partitions' leases (a new fencing token each), so a
//! processor started after it takes over.

use std::path::Path;
use std::process::Command;

use mongodb::bson::doc;
use pulse_core::config::RollupInterval;
use pulse_core::property::PropertyPath;
use pulse_store::{BatchRollups, Store};
use pulse_testkit::{FerretDb, PipelineFiles, PipelineSpec, RedisServer};

const PARTITIONS: u32 = 2;
const EVENTS_PER_DAY: u64 = 240;
const DAY_MS: i64 = 86_400_000;

fn load(config: &Path, from: u32, to: u32, end_ms: i64) {
    let output = Command::new(env!("CARGO_BIN_EXE_pulse-bench-history"))
        .arg("--config")
        .arg(config)
        .args(["--days-from", &from.to_string(), "--days-to", &to.to_string()])
        .args(["--events-per-day", &EVENTS_PER_DAY.to_string(), "--users", "50"])
        .args(["--end-ms", &end_ms.to_string(), "--json"])
        .output()
        .expect("run pulse-bench-history");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "loader failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("JSON summary");
    assert_eq!(summary["events"], u64::from(to - from) * EVENTS_PER_DAY, "{stdout}");
}

#[tokio::test]
async fn two_runs_store_the_history_as_the_processor_would_and_leave_the_leases_free() {
    let redis = RedisServer::start().await.expect("redis");
    let ferret = FerretDb::start().await.expect("ferretdb");
    let mut spec = PipelineSpec::new(&pulse_testkit::unique_name("hist"), &redis.url(), &ferret.uri());
    spec.partitions = PARTITIONS;
    spec.retention = "365d".to_string();
    spec.extra = "processor:\n  batchSize: 100\n\
                  rollups:\n  intervals: [minute, hour, day]\n  numericProperties: [revenue]\n"
        .to_string();
    let files = PipelineFiles::write(spec).expect("pipeline config");
    let (config, database, tenant) = (&files.config, &files.spec.database, &files.spec.tenant);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
    let end_ms = now.as_millis() as i64 / DAY_MS * DAY_MS;

    load(config, 0, 1, end_ms);
    load(config, 1, 2, end_ms);

    let store = Store::connect(&ferret.uri(), database).await.expect("store");
    let raw = store.raw_event_documents(doc! {}).await.expect("raw events");
    assert_eq!(raw.len() as u64, 2 * EVENTS_PER_DAY);
    let first = end_ms - 2 * DAY_MS;
    for d in &raw {
        let ts = d.get_datetime("ts").expect("ts").timestamp_millis();
        assert!((first..end_ms).contains(&ts), "an event at {ts} outside the two days");
    }
    let days = store.raw_event_collections().await.expect("collections");
    assert_eq!(days, [pulse_store::raw_collection(first), pulse_store::raw_collection(first + DAY_MS)]);

    // Rollups: every bucket equals a recount from the raw events, as after the processor.
    let intervals = [RollupInterval::Minute, RollupInterval::Hour, RollupInterval::Day];
    let numeric: Vec<PropertyPath> = vec!["revenue".parse().expect("path")];
    let tz = pulse_core::rollup::time_zone("UTC").expect("tz");
    let rollups = BatchRollups { intervals: &intervals, numeric: &numeric, tz: &tz };
    let recount = store.recount(&rollups).await.expect("recount");
    let kept = store.stored_rollups().await.expect("stored rollups");
    assert!(recount.len() > 100, "{} buckets", recount.len());
    let wrong: Vec<&String> = recount
        .iter()
        .filter(|(id, want)| !kept.get(*id).is_some_and(|got| got.agrees_with(want)))
        .map(|(id, _)| id)
        .collect();
    assert!(
        wrong.is_empty(),
        "{} buckets differ from a recount, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
    assert_eq!(kept.len(), recount.len());

    // Each run took every lease (a new token) and released it.
    let mut conn = redis.connection().await.expect("redis connection");
    for p in 0..PARTITIONS {
        let counter: Option<u64> = redis::cmd("GET")
            .arg(pulse_buffer::TenantLayout::of(tenant).lease_counter(p))
            .query_async(&mut conn)
            .await
            .expect("GET");
        assert_eq!(counter, Some(2), "partition {p}: two runs, two tokens");
        let holder: Option<String> = redis::cmd("GET")
            .arg(pulse_buffer::TenantLayout::of(tenant).lease(p))
            .query_async(&mut conn)
            .await
            .expect("GET");
        assert_eq!(holder, None, "partition {p}'s lease is released");
    }
}
