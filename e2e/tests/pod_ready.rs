#![cfg(feature = "e2e")]
//! RunPodSandbox with berth gives a ready pod with an IP from the instance's bridge.

use anyhow::{ensure, Result};
use berth_e2e::containerd_config::BERTH_HANDLER;
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{e2e_test, scenario, Containerd};

async fn pod_becomes_ready(cd: &Containerd) -> Result<()> {
    let config = scenario::pod_config(cd, "ready")?;
    let id = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    let ip = scenario::expect_ready(cd, &id).await?;
    eprintln!("pod {id} ready with IP {ip}");
    let trace = PodTrace::capture(cd, &id, "").await?;
    // Ready means berth-pause runs and containerd knows it as the task.
    let pause = scenario::pause_of(&id)?;
    ensure!(
        trace.task.as_ref().map(|t| t.pid) == Some(pause),
        "pod {id}: containerd's task pid {:?} is not berth-pause {pause}",
        trace.task
    );
    scenario::remove_and_check(cd, &trace).await
}

e2e_test!(pod_ready, pod_becomes_ready, both_modes);
