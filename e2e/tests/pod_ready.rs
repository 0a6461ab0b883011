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

/// In shim mode containerd 2.1 makes no pause container, so a node without
/// the pause image (air-gapped, nothing to pull from) still runs pods: the
/// image is removed from containerd's store before the pod is run.
async fn a_pod_needs_no_pause_image(cd: &Containerd) -> Result<()> {
    let pause = berth_e2e::images::PAUSE;
    cd.ctr_ok(&["images", "rm", "--sync", pause])?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while cd.cri().image_status(pause).await?.is_some() {
        ensure!(
            std::time::Instant::now() < deadline,
            "CRI still has {pause} after it was removed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let config = scenario::pod_config(cd, "no-pause-image")?;
    let id = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    scenario::expect_ready(cd, &id).await?;
    let trace = PodTrace::capture(cd, &id, "").await?;
    let spec =
        berth_e2e::container_config::ContainerSpec::shell("app", "echo ready; exec sleep 1000");
    scenario::run_container(cd, &id, &config, &spec).await?;
    scenario::wait_ready(&config, &spec).await?;
    ensure!(
        cd.cri().image_status(pause).await?.is_none(),
        "running the pod brought {pause} back"
    );
    scenario::remove_and_check(cd, &trace).await
}

mod no_pause_image {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn containerd_2_1_shim_mode() -> anyhow::Result<()> {
        berth_e2e::scenario::run_shim_mode(super::a_pod_needs_no_pause_image).await
    }
}
