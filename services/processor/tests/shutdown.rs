//! SIGTERM stops the processor within its grace period whatever Redis or the store is
//! doing: Kubernetes kills a pod still running when its grace period ends (30 s, as the
//! operator sets it), and a processor that hangs on a dead Redis would be SIGKILLed.
//!
//! Redis is taken away in the two ways it goes: killed (connections are refused at once)
//! and frozen (connections are accepted and nothing answers, as when Redis's node vanished
//! behind its Service address). The store is frozen while every partition has a batch to
//! write: batches take turns for the store, so before the drain deadline a processor with
//! many partitions was still waiting out their turns after 30 s.

mod support;

use std::time::{Duration, Instant};

use pulse_testkit::{FerretDb, RedisServer, ServerProcess};
use support::{Pipeline, events};

/// The pods' grace period (`terminationGracePeriodSeconds`, as the operator sets it): the
/// processor promises to stop within 25 s of SIGTERM (`pulse_processor::SHUTDOWN_GRACE`).
const POD_GRACE: Duration = Duration::from_secs(30);
/// A large pipeline's partitions (1 to 256, 8 by default), all held by one processor: a
/// worker and a lease each, and batches that wait their turn for the store (two at a time).
const PARTITIONS: u32 = 64;

#[derive(Clone, Copy, Debug)]
enum Outage {
    RedisKilled,
    RedisFrozen,
    StoreFrozen,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_redis_is_killed_stops_the_processor_within_its_grace() {
    stops_within_grace(Outage::RedisKilled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_redis_does_not_answer_stops_the_processor_within_its_grace() {
    stops_within_grace(Outage::RedisFrozen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_store_does_not_answer_stops_the_processor_within_its_grace() {
    stops_within_grace(Outage::StoreFrozen).await;
}

async fn stops_within_grace(outage: Outage) {
    let mut redis = RedisServer::start().await.expect("redis");
    let mut ferret = FerretDb::start().await.expect("ferretdb");
    let pipeline = Pipeline::new(&redis.url(), false, &ferret, PARTITIONS);
    let ingest = pipeline.start_ingest().await;
    let mut running = pipeline.start_processor("running");
    // Processed events: the processor holds partition leases and runs their workers.
    ingest.send(&events("s", 200, 20, 1)).await;
    pipeline.wait_drained(Duration::from_secs(120)).await;

    match outage {
        Outage::RedisKilled => redis.kill(),
        Outage::RedisFrozen => redis.pause(),
        Outage::StoreFrozen => {
            ferret.process_mut().pause();
            // A batch to write on every partition (a thousand users): each worker is in a
            // store write, or waiting its turn for one, when stopped.
            ingest.send(&events("t", 1000, 1000, 2)).await;
        }
    }
    // Long enough for lease renewals (or the batch's writes) to hang or fail.
    tokio::time::sleep(Duration::from_secs(5)).await;
    running.check_running().expect("the processor waits for the outage to end instead of exiting");
    // One more that starts during the outage: it is still connecting when stopped.
    let mut starting = pipeline.start_processor("starting");
    tokio::time::sleep(Duration::from_secs(2)).await;
    starting.check_running().expect("a processor waits for Redis and the store at start");

    for process in [&mut running, &mut starting] {
        assert_stops_within_grace(process, outage);
    }
    // A worker's lines carry its tenant and partition (its `partition` span).
    let log = std::fs::read_to_string(running.log()).unwrap_or_default();
    let span = format!("partition{{tenant={} partition=", pipeline.tenant);
    assert!(
        log.lines().any(|l| l.contains("partition acquired") && l.contains(&span)),
        "no worker line is in a span naming its tenant and partition:\n{log}"
    );
    if let Outage::StoreFrozen = outage {
        ferret.process_mut().resume();
    }
}

fn assert_stops_within_grace(process: &mut ServerProcess, outage: Outage) {
    let name = process.name().to_string();
    let sent = Instant::now();
    let status = process.sigterm_and_wait(POD_GRACE);
    let took = sent.elapsed();
    eprintln!("{outage:?}: the {name} processor: {status:?} {took:?} after SIGTERM");
    let log = std::fs::read_to_string(process.log()).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    let Some(status) = status else {
        panic!(
            "{outage:?}: the {name} processor was still running {took:?} after SIGTERM; its log ends:\n{tail}"
        );
    };
    assert!(status.success(), "{outage:?}: the {name} processor exited with {status} after SIGTERM:\n{tail}");
}
