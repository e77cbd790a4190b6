//! The fault test: events (5% duplicates, shuffled timestamps) streamed through ingest
//! while the processor is SIGKILLed at random moments at least ten times and restarted;
//! afterwards the raw events are exactly the distinct ids sent, every rollup bucket
//! equals a recount from the raw events, and the events read from the event blocks are
//! exactly the raw events.
//!
//! `make test` sends 20,000 events; `PULSE_FAULT_EVENTS=200000` runs the full-size
//! version (slow on FerretDB 1.24, whose filtered writes scan their collection).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use pulse_testkit::{FerretDb, RedisServer};
use rand::{Rng, SeedableRng};
use support::{Pipeline, events_within};

const DEFAULT_EVENTS: usize = 20_000;
const BATCH: usize = 500;
const KILLS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_after_ten_sigkills_under_load() {
    let redis = RedisServer::start().await.expect("redis");
    let ferret = FerretDb::start().await.expect("ferretdb");
    let pipeline = Pipeline::new(&redis.url(), false, &ferret, 4);
    let ingest = pipeline.start_ingest().await;
    // Shuffled within five minutes, 5% late by up to two hours.
    let count =
        std::env::var("PULSE_FAULT_EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_EVENTS);
    let sent = events_within("f", count, 5_000, 42, 300_000, 7_200_000);
    let ids: BTreeSet<String> =
        sent.iter().map(|e| e["event_id"].as_str().expect("id").to_string()).collect();

    // 5% duplicates: every twentieth batch is sent twice, the second time later.
    let batches: Vec<&[serde_json::Value]> = sent.chunks(BATCH).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut processor = pipeline.start_processor("processor");
    let mut kills = 0;
    let kill_every = batches.len() / (KILLS + 1);
    for (i, batch) in batches.iter().enumerate() {
        ingest.send(batch).await;
        if i % 20 == 0 && i > 0 {
            ingest.send(batches[i - 1]).await;
        }
        if i > 0 && i % kill_every == 0 && kills < KILLS {
            // A random moment within the processor's work: let it run a little first.
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
            processor.kill();
            kills += 1;
            processor = pipeline.start_processor("processor");
        }
    }
    // One more kill while it catches up on the backlog.
    tokio::time::sleep(Duration::from_millis(rng.random_range(200..1200))).await;
    processor.kill();
    kills += 1;
    let _processor = pipeline.start_processor("processor");
    assert!(kills > KILLS - 1, "killed {kills} times");

    pipeline.wait_drained(Duration::from_secs(1800)).await;
    pipeline.assert_exact(&ids).await;
    pipeline.assert_blocks_hold_the_raw_events().await;
}
