//! Schema-driven fuzzing: schemathesis (installed by tests/env/python-schemathesis.sh,
//! `make env`) generates requests from the `/openapi.json` of ingest and of query, valid
//! and invalid ones, and runs all its checks on the answers: no 5xx, every status, content
//! type, header and body as documented, invalid input refused, valid input accepted, auth
//! enforced. Behind them run a real Redis, FerretDB and the processor; afterwards every
//! event ingest acknowledged must be stored (or listed as failed), with the backlog at zero.
//!
//! Ingest is fuzzed first with the processor stopped, so the acknowledged events can be
//! read back from the streams (the processor deletes what it has stored); the processor
//! then starts and drains them while query is fuzzed.
//!
//! No operation or check is excluded: neither document lists `/healthz`, `/readyz` or
//! `/metrics`, and both declare their bearer key, so the auth checks apply as written.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pulse_buffer::TenantLayout;
use pulse_core::buffer::{BufferedEvent, ENTRY_FIELD};
use pulse_testkit::{FerretDb, RedisServer};
use support::Pipeline;

const PARTITIONS: u32 = 4;
/// Far more than the processor needs for the few hundred events the fuzzing sends.
const DRAIN: Duration = Duration::from_secs(60);
/// Test cases per operation and phase: enough to reach the validation edges (empty, NUL,
/// nesting, wrong types, missing auth) while keeping the whole test to a couple of minutes.
const MAX_EXAMPLES: &str = "60";
/// A fixed seed, so a failure is reproduced by running the test again.
const SEED: &str = "17";
const READ_KEY: &str = "rk";

/// The `st` CLI, or None when it is not installed and this is not CI (the test is then
/// skipped with a message). Under CI a missing CLI fails the test.
fn schemathesis_cli() -> Option<PathBuf> {
    let cli = match std::env::var_os("PULSE_SCHEMATHESIS") {
        Some(path) => PathBuf::from(path),
        None => std::env::var_os("PULSE_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/pulse")
            })
            .join("venv-schemathesis/bin/st"),
    };
    if cli.exists() {
        return Some(cli);
    }
    let message = format!(
        "{} is missing: run `make env` (tests/env/python-schemathesis.sh) to install schemathesis",
        cli.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("SKIPPED: {message}");
    None
}

/// What one schemathesis run printed, and whether it passed.
struct Fuzzed {
    service: &'static str,
    passed: bool,
    output: String,
}

/// Runs schemathesis against `base`'s OpenAPI document with `key` as the bearer token.
async fn fuzz(cli: &Path, service: &'static str, base: &str, key: &str, dir: &Path) -> Fuzzed {
    // Every check on, with two documented limits that a schema cannot state counted as
    // answers to a valid request: 413 (ingest: a body, batch or event over its size limits,
    // sizes of the serialized request) and 422 (query: an answer over its limits of events
    // read, periods or breakdown values, which depend on the data and the range's length).
    let config = dir.join("schemathesis.toml");
    std::fs::write(
        &config,
        "[checks.negative_data_rejection]\nexpected-statuses = [\"400\", \"401\", \"403\", \"404\", \"405\", \"406\", \"409\", \"413\", \"415\", \"422\", \"428\", \"429\", \"5xx\"]\n\
         [checks.positive_data_acceptance]\nexpected-statuses = [\"2xx\", \"3xx\", \"401\", \"403\", \"404\", \"409\", \"413\", \"422\", \"429\", \"5xx\"]\n",
    )
    .expect("write the schemathesis config");
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis_hooks");
    let mut command = tokio::process::Command::new(cli);
    command
        // Keeps generated timestamps within ingest's moving window (see the hooks file).
        .env("SCHEMATHESIS_HOOKS", "pulse_hooks")
        .env("PYTHONPATH", &hooks)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
        // Report every distinct failure of an operation, not only its first.
        .arg("--continue-on-failure")
        // No example database: every run starts from the seed alone, and nothing is written
        // into the source tree.
        .args(["--generation-database", "none"])
        // One worker: the machine is shared, and the services under test run in this process.
        .args(["--workers", "1"])
        .args(["--request-timeout", "30", "--no-color"])
        // Whatever it caches goes to the pipeline's temp dir, not the source tree.
        .current_dir(dir)
        .kill_on_drop(true);
    let output = command.output().await.expect("run schemathesis");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    eprintln!("===== schemathesis against {service} =====\n{text}");
    Fuzzed { service, passed: output.status.success(), output: text }
}

/// One line per failure or error schemathesis printed: the operation, the check (or the
/// error), the status and the request that reproduces it.
fn failures(output: &str) -> String {
    let mut lines = Vec::new();
    let (mut operation, mut check, mut status) = (String::new(), String::new(), String::new());
    let mut in_errors = false;
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("===") {
            in_errors = line.contains(" ERRORS ");
        } else if line.starts_with("___") && line.ends_with("___") {
            operation = line.trim_matches('_').trim().to_string();
            (check, status) = (String::new(), String::new());
        } else if line.starts_with("- ST") {
            check = line.trim_start_matches("- ").to_string();
        } else if line.starts_with('[') && line.ends_with(':') {
            status = line.trim_end_matches(':').to_string();
        } else if line.starts_with("curl ") {
            lines.push(format!("  {operation} | {check} | {status} | {line}"));
        } else if in_errors && check.is_empty() {
            // An error's first line says what went wrong, e.g. "Network Error".
            check = line.to_string();
        }
    }
    lines.join("\n")
}

/// `text` without ANSI colour sequences (the processor's text log has them).
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters, ending at the final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Waits (up to `limit`) until the processor has stored every buffered event; returns the
/// events still unprocessed then.
async fn drain(pipeline: &Pipeline, conn: &mut pulse_buffer::Connection, limit: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = pipeline.backlog(conn).await;
        if left == 0 || tokio::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The events in the tenant's streams, and the ids of entries that do not hold a JSON
/// array of events.
async fn buffered(
    pipeline: &Pipeline,
    conn: &mut pulse_buffer::Connection,
) -> (Vec<BufferedEvent>, Vec<String>) {
    let (mut events, mut unreadable) = (Vec::new(), Vec::new());
    for p in 0..pipeline.partitions {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(TenantLayout::of(&pipeline.tenant).stream(p))
            .arg("-")
            .arg("+")
            .query_async(conn)
            .await
            .expect("XRANGE");
        for entry in reply.ids {
            let parsed = match entry.map.get(ENTRY_FIELD) {
                Some(redis::Value::BulkString(bytes)) => {
                    serde_json::from_slice::<Vec<BufferedEvent>>(bytes).ok()
                }
                _ => None,
            };
            match parsed {
                Some(list) => events.extend(list),
                None => unreadable.push(entry.id),
            }
        }
    }
    (events, unreadable)
}

/// Ingest's `events_accepted` counter.
async fn accepted_by_ingest(http: &reqwest::Client, ingest: &str) -> u64 {
    let text = http
        .get(format!("{ingest}/metrics"))
        .send()
        .await
        .expect("ingest /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|l| l.starts_with("pulse_ingest_events_accepted_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no pulse_ingest_events_accepted_total in:\n{text}"))
}

/// The ids of the raw events, and the failed events.
async fn stored(pipeline: &Pipeline) -> (BTreeSet<String>, Vec<pulse_store::FailedEvent>) {
    let store = pipeline.store().await;
    let raw = store.raw_event_documents(mongodb::bson::doc! { "_id": 1 }).await.expect("raw events");
    // A non-string id cannot be any acknowledged event's: keep it visible as itself.
    let ids = raw
        .iter()
        .map(|d| match d.get("_id") {
            Some(mongodb::bson::Bson::String(s)) => s.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    let failed = store.list_failed_events(None, 1_000_000).await.expect("failed events");
    (ids, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_requests_get_documented_answers_and_acknowledged_events_are_stored() {
    let Some(cli) = schemathesis_cli() else { return };
    let redis = RedisServer::start().await.expect("redis");
    let ferret = FerretDb::start().await.expect("ferretdb");
    let pipeline = Pipeline::new(&redis.url(), false, &ferret, PARTITIONS);
    // A declared funnel, so `/v1/funnels/{name}` has one to find.
    let mut config = std::fs::read_to_string(&pipeline.config).expect("read config");
    config.push_str(
        "funnels:\n- name: checkout\n  steps: [{event: page_viewed}, {event: purchase}]\n  window: 1d\n",
    );
    std::fs::write(&pipeline.config, config).expect("write config");
    let dir = pipeline.dir().to_path_buf();

    let ingest = pipeline.start_ingest().await;
    let query = pipeline.start_query().await;
    let mut fuzzed = vec![fuzz(&cli, "ingest", &ingest.url, &ingest.key, &dir).await];

    let mut conn = pulse_buffer::Connection::open(&pipeline.redis_url, false, Duration::from_secs(5))
        .await
        .expect("redis");
    let (events, unreadable) = buffered(&pipeline, &mut conn).await;
    let buffered_events = events.len() as u64;
    let acknowledged: BTreeSet<String> = events.into_iter().map(|e| e.event_id).collect();
    let accepted = accepted_by_ingest(&ingest.http, &ingest.url).await;
    eprintln!(
        "ingest acknowledged {accepted} events; the streams hold {buffered_events} ({} distinct ids)",
        acknowledged.len()
    );

    let _processor = pipeline.start_processor("processor");
    fuzzed.push(fuzz(&cli, "query", &query, READ_KEY, &dir).await);
    let undrained = drain(&pipeline, &mut conn, DRAIN).await;
    let mut left = 0u64;
    for p in 0..PARTITIONS {
        let n: u64 = redis::cmd("XLEN")
            .arg(TenantLayout::of(&pipeline.tenant).stream(p))
            .query_async(&mut conn)
            .await
            .expect("XLEN");
        left += n;
    }
    let (raw, failed) = stored(&pipeline).await;
    let missing: Vec<&String> = acknowledged.difference(&raw).collect();
    let extra: Vec<&String> = raw.difference(&acknowledged).collect();
    eprintln!("stored {} raw events, {} failed events; {left} stream entries left", raw.len(), failed.len());
    let mut reasons = std::collections::BTreeMap::new();
    for f in &failed {
        *reasons.entry((f.reason.as_str(), f.detail.chars().take(120).collect::<String>())).or_insert(0) += 1;
    }
    for ((reason, detail), n) in &reasons {
        eprintln!("  failed: {n} x {reason}: {detail}");
    }

    let mut problems: Vec<String> = fuzzed
        .iter()
        .filter(|f| !f.passed)
        .map(|f| {
            format!(
                "schemathesis found failures in {} (its output is above):\n{}",
                f.service,
                failures(&f.output)
            )
        })
        .collect();
    if undrained != 0 {
        let log = without_colours(&std::fs::read_to_string(dir.join("processor.log")).unwrap_or_default());
        // Its retry lines repeat one error per stuck partition, each several kilobytes
        // long: the last line of each partition, shortened.
        eprintln!("===== the processor's last log line of each partition =====");
        for p in 0..PARTITIONS {
            let tag = format!("partition={p} ");
            if let Some(line) = log.lines().rev().find(|l| l.contains(&tag)) {
                eprintln!("{}", line.chars().take(3000).collect::<String>());
            }
        }
        let (left, _) = buffered(&pipeline, &mut conn).await;
        eprintln!("===== events left in the streams =====");
        for e in left.iter().take(20) {
            eprintln!("{}", serde_json::to_string(e).unwrap_or_default());
        }
        problems.push(format!(
            "{undrained} events still unprocessed after {DRAIN:?} (the processor's log is above)"
        ));
    }
    if accepted != buffered_events {
        problems
            .push(format!("ingest acknowledged {accepted} events but its streams hold {buffered_events}"));
    }
    if !unreadable.is_empty() {
        problems.push(format!("stream entries that are not a JSON array of events: {unreadable:?}"));
    }
    if undrained == 0 && left != 0 {
        problems.push(format!("{left} stream entries left after the backlog reached zero"));
    }
    // Every acknowledged event is stored, or listed as failed with its id.
    let failed_ids: BTreeSet<&str> = failed.iter().filter_map(|f| f.event_id.as_deref()).collect();
    let lost: Vec<&&String> = missing.iter().filter(|id| !failed_ids.contains(id.as_str())).collect();
    if !lost.is_empty() {
        problems.push(format!(
            "{} acknowledged events are neither stored nor failed, e.g. {:?}",
            lost.len(),
            lost.iter().take(5).collect::<Vec<_>>()
        ));
    }
    if !extra.is_empty() {
        problems.push(format!(
            "raw events that ingest never acknowledged: {:?}",
            extra.iter().take(5).collect::<Vec<_>>()
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
