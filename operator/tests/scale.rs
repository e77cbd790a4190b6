//! 100 pipelines applied at once all become Ready without a failed reconcile; prints the
//! time it took (the target on a 2-core machine is 60 s or less; a figure, never an
//! assertion).

mod support;

use std::time::{Duration, Instant};

use futures::future::join_all;
use support::*;

const PIPELINES: usize = 100;

#[tokio::test]
async fn a_hundred_pipelines_applied_at_once_all_become_ready() {
    let s = setup("hundred", &[]).await;
    // Small pipelines (1 ingest and 1 processor pod, no query pods), so 100 of them fit
    // the simulated node's 64 CPUs of requests.
    let spec = "  ingest: { replicas: 1 }\n  processor: { replicas: 1 }\n  query: { replicas: 0 }";
    let yamls: Vec<String> = (0..PIPELINES)
        .map(|i| {
            pipeline_yaml(&format!("t{i:03}"), &database(), spec).replace("partitions: 4", "partitions: 2")
        })
        .collect();
    let started = Instant::now();
    join_all(yamls.iter().map(|y| apply_pipeline(&s.pipelines, y))).await;
    let applied = started.elapsed();
    let last_ready = wait_for("every pipeline Ready", Duration::from_secs(900), || async {
        let list = s.pipelines.list(&Default::default()).await.map_err(|e| e.to_string())?;
        let ready = list
            .items
            .iter()
            .filter(|p| {
                condition(p, "Ready").is_some_and(|c| c.0 == "True")
                    && p.status.as_ref().and_then(|st| st.observed_generation) == p.metadata.generation
            })
            .count();
        if ready == PIPELINES {
            Ok(started.elapsed())
        } else {
            Err(format!("{ready} of {PIPELINES} Ready\n{}", s.operator.log_tail()))
        }
    })
    .await;
    let reconciles = s.operator.metric("pulse_operator_reconciles_total", "controller=\"pipeline\"").await;
    let errors =
        s.operator.metric("pulse_operator_reconcile_errors_total", "controller=\"pipeline\"").await + 0.0;
    println!(
        "{PIPELINES} pipelines: applied in {:.1} s, all Ready after {:.1} s (target <= 60 s); {reconciles:.0} reconciles, {errors:.0} errors",
        applied.as_secs_f64(),
        last_ready.as_secs_f64()
    );
    // Conflicting writes and transient API errors are retried, but none may be counted:
    // each would be a failed reconcile a user sees in the error-rate alert.
    assert_eq!(errors, 0.0, "reconciles failed\n{}", s.operator.log_tail());
}
