//! The operator as a process: killed in the middle of reconciling it converges after a
//! restart; of two processes one leads and the other takes over when it goes; SIGTERM
//! drains and hands the Lease over.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use support::*;

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases.get_opt("pulse-operator").await.ok().flatten()?.spec?.holder_identity.filter(|h| !h.is_empty())
}

#[tokio::test]
async fn killed_mid_reconcile_the_operator_converges_after_a_restart() {
    let mut s = setup("restart", &[]).await;
    let names: Vec<String> = (0..6).map(|i| format!("p{i}")).collect();
    for name in &names {
        apply_pipeline(&s.pipelines, &pipeline_yaml(name, &database(), "")).await;
    }
    // Kill it as soon as it has started working on them.
    wait_for("a first reconcile", WAIT, || async {
        let n = s.operator.metric("pulse_operator_reconciles_total", "controller=\"pipeline\"").await;
        if n >= 1.0 { Ok(()) } else { Err(format!("{n} reconciles")) }
    })
    .await;
    s.operator.kill();
    let restarted = Operator::start(s.stack, &s.ns, &[]);
    for name in &names {
        wait_ready(&s.pipelines, name, &restarted).await;
    }
}

#[tokio::test]
async fn of_two_operators_one_leads_and_the_other_takes_over() {
    let mut s = setup("leader", &[]).await;
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), &s.ns);
    let first =
        wait_for("a leader", WAIT, || async { holder(&leases).await.ok_or("no holder".to_string()) }).await;
    let second = Operator::start(s.stack, &s.ns, &[]);
    // Both run; only the first leads and reconciles.
    apply_pipeline(&s.pipelines, &pipeline_yaml("led", &database(), "")).await;
    wait_ready(&s.pipelines, "led", &s.operator).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(second.metrics().await.is_some(), "the standby serves /metrics");
    let health =
        reqwest::get(format!("http://127.0.0.1:{}/healthz", second.metrics_port)).await.expect("healthz");
    assert!(health.status().is_success());
    assert_eq!(s.operator.metric("pulse_operator_leader", "").await, 1.0);
    assert_eq!(second.metric("pulse_operator_leader", "").await, 0.0);
    assert_eq!(second.metric("pulse_operator_reconciles_total", "").await, 0.0, "the standby reconciled");
    assert_eq!(holder(&leases).await.as_deref(), Some(first.as_str()));

    // The leader crashes (no release): the standby takes over once the Lease expires.
    let crashed = Instant::now();
    s.operator.kill();
    let next = wait_for("a new leader", WAIT, || async {
        match holder(&leases).await {
            Some(h) if h != first => Ok(h),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    println!("takeover after a crash: {:?} (Lease duration 4 s)", crashed.elapsed());
    apply_pipeline(&s.pipelines, &pipeline_yaml("after", &database(), "")).await;
    wait_ready(&s.pipelines, "after", &second).await;

    // A third process waits; SIGTERM on the leader releases the Lease at once.
    let third = Operator::start(s.stack, &s.ns, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut second = second;
    let stopped = Instant::now();
    let status = second.terminate().expect("exit status");
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    wait_for("the third takes over", WAIT, || async {
        match holder(&leases).await {
            Some(h) if h != next && h != first => Ok(h),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    println!("takeover after SIGTERM: {:?}", stopped.elapsed());
    assert_eq!(
        wait_for("the third leads", WAIT, || async {
            let v = third.metric("pulse_operator_leader", "").await;
            if v == 1.0 { Ok(v) } else { Err(format!("{v}")) }
        })
        .await,
        1.0
    );
}
