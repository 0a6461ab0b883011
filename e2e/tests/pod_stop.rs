#![cfg(feature = "e2e")]
//! StopPodSandbox on a berth pod ends its berth-pause and leaves the pod NOTREADY
//! (and still listed) until it is removed.

use std::time::Duration;

use anyhow::{ensure, Result};
use berth_e2e::containerd_config::BERTH_HANDLER;
use berth_e2e::pod_trace::{self, PodTrace};
use berth_e2e::{e2e_test, leaks, scenario, Containerd};
use k8s_cri::v1::PodSandboxState;

async fn stop_ends_pause(cd: &Containerd) -> Result<()> {
    let config = scenario::pod_config(cd, "stop")?;
    let id = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    scenario::expect_ready(cd, &id).await?;
    let pause = scenario::pause_of(&id)?;
    let trace = PodTrace::capture(cd, &id, "").await?;

    cd.cri().stop_pod_sandbox(&id).await?;
    scenario::wait_until("the pause to be gone", leaks::GRACE, || {
        pod_trace::pause_pids(&id).is_empty() && !trace.pauses.iter().any(|p| p.is_alive())
    })
    .await
    .map_err(|e| e.context(format!("pod {id}: pause {pause} outlived StopPodSandbox")))?;

    let st = scenario::status(cd, &id).await?;
    ensure!(
        scenario::state(&st) == PodSandboxState::SandboxNotready,
        "pod {id} is {:?} after StopPodSandbox",
        scenario::state(&st)
    );
    // A second stop is a no-op, as kubelet expects.
    cd.cri().stop_pod_sandbox(&id).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;

    cd.cri().remove_pod_sandbox(&id).await?;
    leaks::check_pod_removed(cd, &trace).await
}

e2e_test!(pod_stop, stop_ends_pause, both_modes);
