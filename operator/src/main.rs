//! The Pulse operator: turns each `AnalyticsPipeline` and `Funnel` into the Kubernetes
//! objects and external state (Redis streams, MongoDB indexes, dashboards) of that tenant's
//! pipeline, and renders the pipeline config the services read. Its one computation over
//! events is each Funnel's status summary (`funnel/summary.rs`): pulse-core's funnel engine
//! over the last 7 days of the tenant's event blocks, at most once a minute per funnel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, controller, watcher};
use kube::{Api, Client, ResourceExt};
use pulse_crds::{AnalyticsPipeline, Funnel};
use pulse_operator::context::Context;
use pulse_operator::leader::{LeaderElector, LeaseConfig};
use pulse_operator::metrics::Metrics;
use pulse_operator::pipeline::build::{MANAGED_BY, MANAGED_BY_LABEL, Settings};
use pulse_operator::{funnel, pipeline};
use tokio::sync::watch;

/// How long a pipeline's triggers are gathered before one reconcile.
const DEBOUNCE: Duration = Duration::from_millis(500);
/// The longest giving the leader Lease up may take at exit.
const LEASE_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// pulse-operator: AnalyticsPipeline and Funnel resources into running, autoscaled,
/// monitored pipelines.
#[derive(Debug, Parser)]
#[command(name = "pulse-operator", version, about)]
struct Args {
    /// Only watch these namespaces (repeat the flag, or comma-separate); all when unset.
    #[arg(long = "namespace", env = "PULSE_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// The image holding every Pulse binary, run by the pipelines' Deployments.
    #[arg(long, env = "PULSE_IMAGE", default_value = concat!("ghcr.io/pulse-analytics/pulse:", env!("CARGO_PKG_VERSION")))]
    image: String,
    /// The image of managed Redis.
    #[arg(long, env = "PULSE_REDIS_IMAGE", default_value = "redis:7.4-alpine")]
    redis_image: String,
    /// Where to serve /metrics and /healthz.
    #[arg(long, env = "PULSE_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// Elect a leader through a Lease, so only one replica reconciles.
    #[arg(long, env = "PULSE_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// The leader Lease's name.
    #[arg(long, env = "PULSE_LEASE_NAME", default_value = "pulse-operator")]
    lease_name: String,
    /// The leader Lease's namespace (default: the pod's namespace, else "default").
    #[arg(long, env = "PULSE_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// How long the Lease holds without renewal, in seconds.
    #[arg(long, env = "PULSE_LEASE_DURATION_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    lease_duration_secs: u64,
    /// How long a deleted pipeline's cleanup retries an unreachable store before giving
    /// up with a Warning Event, in seconds.
    #[arg(long, env = "PULSE_CLEANUP_DEADLINE_SECS", default_value_t = 300)]
    cleanup_deadline_secs: u64,
    /// How long reconciles in flight may finish after SIGTERM, in seconds.
    #[arg(long, env = "PULSE_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    shutdown_grace_secs: u64,
}

#[tokio::main]
async fn main() {
    pulse_serve::init_logging(pulse_serve::LogFormat::Json);
    let args = Args::parse();
    if let Err(e) = run(args).await {
        tracing::error!(error = %e, "pulse-operator stopped");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let client = Client::try_default().await.map_err(|e| format!("connecting to Kubernetes: {e}"))?;
    let metrics = Metrics::new();
    let listener = tokio::net::TcpListener::bind(args.metrics_address)
        .await
        .map_err(|e| format!("listening on {}: {e}", args.metrics_address))?;
    let app = Router::new()
        .route("/metrics", get(|State(m): State<Metrics>| async move { m.encode() }))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(metrics.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    });

    let identity = format!(
        "{}-{}-{:08x}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "pulse-operator".into()),
        std::process::id(),
        rand::random::<u32>()
    );
    let (stop, stopped) = watch::channel(false);
    let signal = pulse_serve::shutdown_signal();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            signal.await;
            tracing::info!("shutting down: finishing reconciles in flight");
            let _ = stop.send(true);
        }
    });

    let elector = args.leader_elect.then(|| {
        let namespace = args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into());
        let duration = Duration::from_secs(args.lease_duration_secs);
        Arc::new(LeaderElector::new(
            client.clone(),
            LeaseConfig {
                name: args.lease_name.clone(),
                namespace,
                identity: identity.clone(),
                duration,
                retry: (duration / 5).max(Duration::from_millis(500)),
            },
        ))
    });
    let mut lost = None;
    if let Some(elector) = elector.as_ref() {
        let mut stopping = stopped.clone();
        tokio::select! {
            () = elector.acquire() => {}
            _ = stopping.wait_for(|s| *s) => return Ok(()),
        }
        metrics.leader.set(1);
        let elector = elector.clone();
        let stop = stop.clone();
        lost = Some(tokio::spawn(async move {
            elector.hold().await;
            let _ = stop.send(true);
        }));
    }

    let settings = Settings { image: args.image.clone(), redis_image: args.redis_image.clone() };
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        settings,
        &identity,
        Duration::from_secs(args.cleanup_deadline_secs),
    ));
    let scopes: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    tracing::info!(namespaces = ?args.namespaces, "starting the controllers");
    let mut controllers = Vec::new();
    for scope in scopes {
        controllers.push(tokio::spawn(run_pipelines(
            client.clone(),
            scope.clone(),
            ctx.clone(),
            stopped.clone(),
        )));
        controllers.push(tokio::spawn(run_funnels(client.clone(), scope, ctx.clone(), stopped.clone())));
    }
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    let mut stopping = stopped.clone();
    let _ = stopping.wait_for(|s| *s).await;
    let all = futures::future::join_all(controllers);
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!("reconciles did not finish within the shutdown grace");
    }
    metrics.leader.set(0);
    let lost_leadership = lost.as_ref().is_some_and(|h| h.is_finished());
    // Giving the Lease up lets another replica lead at once instead of after the Lease's
    // duration; an API server that does not answer must not hold the exit past the pod's
    // grace period (the chart gives 10 s beyond the shutdown grace).
    if let Some(elector) = elector
        && tokio::time::timeout(LEASE_RELEASE_TIMEOUT, elector.release()).await.is_err()
    {
        tracing::warn!("the leader Lease could not be given up in time; it expires by itself");
    }
    if lost_leadership {
        return Err("lost the leader Lease".into());
    }
    Ok(())
}

fn api<K>(client: &Client, scope: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn wait(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

async fn run_pipelines(
    client: Client,
    scope: Option<String>,
    ctx: Arc<Context>,
    stopped: watch::Receiver<bool>,
) {
    let owned = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    Controller::new(api::<AnalyticsPipeline>(&client, &scope), watcher::Config::default())
        .owns(api::<Deployment>(&client, &scope), owned.clone())
        .owns(api::<StatefulSet>(&client, &scope), owned.clone())
        .owns(api::<Service>(&client, &scope), owned.clone())
        .owns(api::<ConfigMap>(&client, &scope), owned.clone())
        .owns(api::<HorizontalPodAutoscaler>(&client, &scope), owned.clone())
        .owns(api::<PodDisruptionBudget>(&client, &scope), owned)
        // A Funnel changes its pipeline's config.
        .watches(api::<Funnel>(&client, &scope), watcher::Config::default(), |f: Funnel| {
            let namespace = f.namespace()?;
            Some(ObjectRef::new(&f.spec.pipeline_ref.name).within(&namespace))
        })
        // A rollout changes a Deployment's status several times within a second; one
        // reconcile after the burst sees the same end state.
        .with_config(controller::Config::default().debounce(DEBOUNCE))
        .graceful_shutdown_on(wait(stopped))
        .run(pipeline::reconcile, pipeline::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn run_funnels(
    client: Client,
    scope: Option<String>,
    ctx: Arc<Context>,
    stopped: watch::Receiver<bool>,
) {
    let controller = Controller::new(api::<Funnel>(&client, &scope), watcher::Config::default());
    let funnels = controller.store();
    controller
        // A pipeline appearing, changing or going changes its funnels' readiness.
        .watches(
            api::<AnalyticsPipeline>(&client, &scope),
            watcher::Config::default(),
            move |p: AnalyticsPipeline| {
                let (name, namespace) = (p.name_any(), p.namespace());
                funnels
                    .state()
                    .into_iter()
                    .filter(|f| f.spec.pipeline_ref.name == name && f.namespace() == namespace)
                    .map(|f| ObjectRef::from_obj(&*f))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(wait(stopped))
        .run(funnel::reconcile, funnel::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}
