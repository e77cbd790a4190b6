//! `make demo`: one tenant's whole pipeline on this machine. It starts the local stack
//! (Kubernetes with a simulated node, Redis, FerretDB), installs the CRDs, runs the operator,
//! applies the acme pipeline and funnels from examples/, turns the config and keys the
//! operator rendered into local files, runs ingest, processor and query from them, sends a
//! fortnight of synthetic product traffic with an A/B experiment, and prints what the query
//! API answers. It then serves until Ctrl-C (or exits at once with --exit).

mod services;
mod traffic;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::Parser;
use pulse_testkit::{
    AppendFsync, FerretDb, KubeOptions, KubeStack, Prometheus, RedisOptions, RedisServer, ScrapeJob,
};
use serde_json::json;
use services::{Cluster, Service};

/// pulse-demo: a whole tenant pipeline, end to end, on the local stack.
#[derive(Debug, Parser)]
#[command(name = "pulse-demo", about)]
struct Args {
    /// Synthetic users to generate (about 9 events each).
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(10..=1_000_000))]
    users: u64,
    /// Stop after printing the results instead of serving until Ctrl-C.
    #[arg(long, env = "PULSE_DEMO_EXIT")]
    exit: bool,
    /// Where the demo writes the rendered config, secrets and logs (emptied first).
    #[arg(long, default_value = "target/demo")]
    dir: PathBuf,
}

const NAMESPACE: &str = "demo";

/// Set once the demo has printed its results and serves until Ctrl-C.
static SERVING: AtomicBool = AtomicBool::new(false);
const TENANT: &str = "acme";

/// Prints a step and, when it ends, how long it took.
struct Step(Instant);

impl Step {
    fn start(what: &str) -> Step {
        println!("▸ {what}");
        Step(Instant::now())
    }
    fn done(self, what: &str) {
        println!("  ✓ {what} ({:.1} s)", self.0.elapsed().as_secs_f64());
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let outcome = tokio::select! {
        r = run(&args, started) => r,
        // Before the demo serves, Ctrl-C drops everything (each process is killed with its
        // handle); once it serves, `run` stops the services itself, in order.
        () = async {
            loop {
                let _ = tokio::signal::ctrl_c().await;
                if !SERVING.load(Ordering::SeqCst) {
                    break;
                }
            }
        } => Err("interrupted".to_string()),
    };
    match outcome {
        Ok(()) => println!("\nStopped cleanly after {:.0} s.", started.elapsed().as_secs_f64()),
        Err(e) if e == "interrupted" => println!("\nInterrupted: everything the demo started is stopped."),
        Err(e) => {
            eprintln!("\npulse-demo failed: {e}\nLogs are in {}.", args.dir.display());
            std::process::exit(1);
        }
    }
}

async fn run(args: &Args, started: Instant) -> Result<(), String> {
    let dir = std::path::absolute(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("secrets")).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let bin = services::binaries_dir()?;

    let step = Step::start("starting the local stack: etcd, kube-apiserver, controllers, scheduler, kwok");
    let stack = KubeStack::start(KubeOptions::full()).await.map_err(|e| e.to_string())?;
    step.done(&format!("Kubernetes API at {}", stack.server_url()));
    let step = Step::start("starting Redis (append-only, fsync always) and FerretDB (MongoDB wire protocol)");
    // acme's buffer is `durability: strict`: ingest acknowledges only what Redis has on disk.
    let strict = RedisOptions { append_only: Some(AppendFsync::Always) };
    let (redis, ferret) =
        tokio::try_join!(RedisServer::start_with(strict), FerretDb::start()).map_err(|e| e.to_string())?;
    step.done(&format!("Redis {}, MongoDB {}", redis.url(), ferret.uri()));
    let cluster = Cluster { stack: &stack, namespace: NAMESPACE };

    let step = Step::start("installing the CRDs (crds/*.yaml)");
    let repo = services::repo_dir();
    cluster.kubectl(&["apply", "--server-side", "-f", &repo.join("crds").to_string_lossy()])?;
    cluster.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/analyticspipelines.pulse.dev",
        "crd/funnels.pulse.dev",
    ])?;
    cluster.kubectl(&["create", "namespace", NAMESPACE])?;
    step.done("AnalyticsPipeline and Funnel are served");

    let step = Step::start("running pulse-operator (a local process, watching namespace demo)");
    let mut operator = Service::operator(&bin, &dir, &stack).await?;
    step.done(&format!("metrics on {}", operator.url));

    let step = Step::start("applying examples/demo/acme.yaml and examples/funnels/");
    // The example's Secrets point at placeholder hosts; these point at the local servers.
    cluster.secret("acme-redis", "url", &redis.url())?;
    cluster.secret("acme-mongodb", "uri", &ferret.uri())?;
    cluster.apply(&repo.join("examples/demo/acme.yaml"))?;
    cluster.apply(&repo.join("examples/funnels"))?;
    cluster
        .kubectl(&["wait", "--for=condition=Ready", "analyticspipeline/acme", "--timeout=180s"])
        .map_err(|e| format!("{e}\noperator log: {}", operator.log.display()))?;
    step.done("pipeline acme is Ready (Deployments Available on the simulated node)");

    let step = Step::start("materialising the rendered pipeline config and keys as the pods mount them");
    let config = cluster.materialise(TENANT, &dir)?;
    step.done(&format!("{}", config.file.display()));

    let step = Step::start("running pulse-ingest, pulse-processor and pulse-query from that config");
    let mut ingest = Service::start(&bin, "pulse-ingest", &config.file, &dir).await?;
    let mut processor = Service::start(&bin, "pulse-processor", &config.file, &dir).await?;
    let mut query = Service::start(&bin, "pulse-query", &config.file, &dir).await?;
    step.done(&format!("ingest {}, query {}", ingest.url, query.url));

    let step = Step::start(
        "starting Prometheus: scraping the operator and the three services, with Pulse's alert rules",
    );
    let address = |s: &Service| s.url.trim_start_matches("http://").to_string();
    let jobs = [
        ScrapeJob::new("operator", [address(&operator)]),
        ScrapeJob::new("ingest", [address(&ingest)]),
        ScrapeJob::new("processor", [address(&processor)]),
        ScrapeJob::new("query", [address(&query)]),
    ];
    let rules = repo.join("charts/pulse/rules/pulse-rules.yaml");
    let prometheus = Prometheus::start(&jobs, &[rules.as_path()]).await.map_err(|e| e.to_string())?;
    step.done(&format!("Prometheus at {} (its HTTP API; this build has no web UI)", prometheus.url()));

    let now = jiff::Timestamp::now().as_millisecond();
    let events = traffic::generate(args.users as usize, now, &format!("{now}"));
    let step = Step::start(&format!(
        "sending {} events of {} users over {} days (checkout_v2 A/B experiment)",
        events.len(),
        args.users,
        traffic::DAYS
    ));
    let sent = services::send(&ingest.url, &config.write_key, &events).await?;
    step.done(&format!("{sent} events accepted"));
    let step = Step::start("waiting for the processor to store them exactly once");
    services::wait_stored(&processor.url, &query.url, &config.read_key, now, sent).await?;
    step.done("every event is in MongoDB once, and the query API counts them all");

    let http = reqwest::Client::new();
    let q = services::Query { http: &http, url: &query.url, key: &config.read_key };
    let from = now - traffic::DAYS * traffic::DAY - traffic::DAY;
    println!("\n$ kubectl get analyticspipelines,funnels -n demo");
    print!("{}", cluster.kubectl(&["get", "analyticspipelines,funnels"])?);
    println!("(CONVERSION is the operator's 7-day summary in each Funnel's status, refreshed every minute.)");

    let checkout = q.get(&format!("/v1/funnels/checkout?from={from}&to={now}")).await?;
    println!(
        "\n{}",
        report::funnel(
            "Funnel checkout (cart_viewed → checkout_started → order_paid with total > 0, 2 h window, cart_emptied excluded)",
            &checkout["result"],
            "experiments.checkout_v2"
        )
    );
    let signup = q.get(&format!("/v1/funnels/signup?from={from}&to={now}")).await?;
    println!("{}", report::funnel("Funnel signup (1 day window)", &signup["result"], ""));
    let retention = q
        .post(
            "/v1/retention",
            &json!({
                "start": { "event": "signed_up" }, "return": { "event": "session_started" },
                "kind": "firstTime", "period": "day", "periods": 8, "from": now - 10 * traffic::DAY, "to": now,
            }),
        )
        .await?;
    let tz = config.timezone.clone();
    println!(
        "{}",
        report::retention(
            "Retention: signed up, then came back (session_started)",
            &retention["result"],
            &tz
        )
    );
    // Who dropped off at payment in the checkout funnel: its definition is the Funnel's spec.
    let funnel: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo.join("examples/funnels/checkout.yaml")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("examples/funnels/checkout.yaml: {e}"))?;
    let mut definition = funnel["spec"].clone();
    if let Some(spec) = definition.as_object_mut() {
        spec.remove("pipelineRef");
    }
    let dropped = q
        .post(
            "/v1/people",
            &json!({
                "of": { "kind": "funnel", "query": { "definition": definition, "from": from, "to": now },
                        "step": 3, "outcome": "droppedOff" },
                "limit": 5,
            }),
        )
        .await?;
    println!(
        "{}",
        report::dropped_off(
            "Dropped off at order_paid (checkout funnel), 5 of",
            &dropped["result"],
            &query.url
        )
    );
    let paths = q
        .post(
            "/v1/paths",
            &json!({
                "start": { "event": "signed_up" }, "steps": 3, "window": "1d", "collapseRepeats": true,
                "from": from, "to": now,
            }),
        )
        .await?;
    println!(
        "{}",
        report::paths("Top 5 paths after signed_up (3 steps, 1 day, repeats collapsed)", &paths["result"])
    );
    let lifecycle = q
        .post(
            "/v1/lifecycle",
            &json!({ "event": { "event": "session_started" }, "period": "day", "from": now - 6 * traffic::DAY, "to": now }),
        )
        .await?;
    println!(
        "{}",
        report::lifecycle("Lifecycle of the last week (session_started)", &lifecycle["result"], &tz)
    );
    let trend = q
        .post(
            "/v1/trends",
            &json!({
                "event": { "event": "session_started" }, "measure": { "kind": "uniqueUsers" },
                "interval": "day", "from": now - traffic::DAYS * traffic::DAY, "to": now,
                "breakdown": { "property": "platform", "top": 3 },
            }),
        )
        .await?;
    println!(
        "{}",
        report::trend("Trend: daily active users (session_started) by platform", &trend["result"], &tz)
    );
    println!(
        "(answered from: checkout {}, retention {}, lifecycle {}, trend {})\n",
        checkout["answeredFrom"], retention["answeredFrom"], lifecycle["answeredFrom"], trend["answeredFrom"]
    );
    println!("{}", alert_status(&prometheus).await);
    print_try_it(&stack, &config, &ingest.url, &query.url, &prometheus.url(), &dir, (from, now));
    println!("Ready after {:.0} s.", started.elapsed().as_secs_f64());

    if !args.exit {
        SERVING.store(true, Ordering::SeqCst);
        println!("Serving until Ctrl-C.");
        // The operator refreshes each Funnel's 7-day conversion summary once a minute: show
        // the CONVERSION column again once it has counted the traffic.
        let summaries = async {
            let counted = services::wait_until(std::time::Duration::from_secs(120), || async {
                let out = cluster.kubectl(&[
                    "get",
                    "funnels",
                    "-o",
                    "jsonpath={.items[*].status.summary.conversion}",
                ])?;
                let values: Vec<&str> = out.split_whitespace().collect();
                if values.len() >= 3 && values.iter().all(|v| v.ends_with('%')) {
                    Ok(())
                } else {
                    Err("no summaries yet".to_string())
                }
            })
            .await;
            if let (Ok(()), Ok(table)) = (counted, cluster.kubectl(&["get", "funnels"])) {
                println!(
                    "\n$ kubectl get funnels -n demo   # a minute later: the operator's summaries\n{table}"
                );
            }
            println!("{}", alert_status(&prometheus).await);
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = summaries => {}
        }
    }
    println!("Stopping: query, processor, ingest, operator, then the stack.");
    for s in [&mut query, &mut processor, &mut ingest, &mut operator] {
        s.stop();
    }
    drop((redis, ferret, stack));
    Ok(())
}

/// One status line: the alerts firing and pending in the demo's Prometheus, or none.
async fn alert_status(prometheus: &Prometheus) -> String {
    let alerts = match prometheus.alerts().await {
        Ok(a) => a,
        Err(e) => return format!("Alerts: Prometheus did not answer: {e}"),
    };
    let of = |state: &str| -> Vec<String> {
        alerts
            .iter()
            .filter(|a| a["state"] == state)
            .map(|a| {
                format!(
                    "{} ({})",
                    a["labels"]["alertname"].as_str().unwrap_or("?"),
                    a["labels"]["tenant"].as_str().unwrap_or("-")
                )
            })
            .collect()
    };
    let (firing, pending) = (of("firing"), of("pending"));
    if firing.is_empty() && pending.is_empty() {
        "Alerts: none firing (Pulse's rules, evaluated every second)".to_string()
    } else {
        format!("Alerts: firing {firing:?}, pending {pending:?}")
    }
}

fn print_try_it(
    stack: &KubeStack,
    config: &services::Materialised,
    ingest: &str,
    query: &str,
    prometheus: &str,
    dir: &Path,
    (from, now): (i64, i64),
) {
    println!("Try it (while the demo runs):");
    println!("  export KUBECONFIG={}", stack.kubeconfig().display());
    println!("  export WRITE_KEY={} READ_KEY={}", config.write_key, config.read_key);
    println!("  kubectl get pulse -n demo            # pipelines and funnels");
    println!("  kubectl describe funnel checkout -n demo");
    println!("  curl -s {ingest}/openapi.json | head -c 300   # ingest API");
    println!("  curl -s {query}/openapi.json | head -c 300    # query API");
    println!(
        "  curl -s -X POST {ingest}/v1/batch -H \"Authorization: Bearer $WRITE_KEY\" -H 'Content-Type: application/json' \\\n    -d '{{\"batch\":[{{\"event\":\"signed_up\",\"distinct_id\":\"me\"}}]}}'"
    );
    println!("  curl -s \"{query}/v1/events\" -H \"Authorization: Bearer $READ_KEY\"");
    println!(
        "  curl -s \"{query}/v1/funnels/checkout?from={from}&to={now}\" -H \"Authorization: Bearer $READ_KEY\""
    );
    println!(
        "  curl -s -X POST {query}/v1/trends -H \"Authorization: Bearer $READ_KEY\" -H 'Content-Type: application/json' \\\n    -d '{{\"event\":{{\"event\":\"order_paid\"}},\"measure\":{{\"kind\":\"sum\",\"property\":\"revenue\"}},\"interval\":\"day\",\"from\":{from},\"to\":{now}}}'"
    );
    println!(
        "  curl -s {prometheus}/api/v1/query --data-urlencode 'query=sum(rate(pulse_ingest_events_accepted_total[1m]))'   # Prometheus"
    );
    println!("  curl -s {prometheus}/api/v1/alerts   # Pulse's alerts (charts/pulse/rules/pulse-rules.yaml)");
    println!("  Config, secrets and logs: {}\n", dir.display());
}

mod report;
