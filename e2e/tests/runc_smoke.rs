#![cfg(feature = "e2e")]
//! The harness itself, proven with containerd's own runc shim: a pod comes up ready
//! with an IP from the instance's bridge, stops, is removed, and leaves nothing.

use anyhow::Result;
use berth_e2e::containerd_config::RUNC_HANDLER;
use berth_e2e::leaks::{self, LeakKind};
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{e2e_test, scenario, Containerd};

async fn runc_pod_lifecycle(cd: &Containerd) -> Result<()> {
    let parent = cd.cgroup_parent("runc-smoke");
    let config = scenario::pod_config(cd, "runc-smoke")?.cgroup_parent(&parent);
    let id = scenario::run_pod(cd, &config, RUNC_HANDLER).await?;
    scenario::expect_ready(cd, &id).await?;
    let trace = PodTrace::capture(cd, &id, &parent).await?;
    anyhow::ensure!(
        trace.task.is_some(),
        "runc pod {id}: no live sandbox task pid"
    );
    anyhow::ensure!(
        trace.netns.is_some(),
        "runc pod {id}: no netns path in the verbose status"
    );
    anyhow::ensure!(
        !trace.shims.is_empty(),
        "runc pod {id}: no shim with -id {id} found"
    );
    // The leak checker must see the running pod, or its all-clear below means nothing.
    leaks::ensure_visible(
        cd,
        &trace,
        &[
            LeakKind::Shim,
            LeakKind::Recorded,
            LeakKind::CgroupMember,
            LeakKind::Mount,
            LeakKind::Netns,
            LeakKind::Cgroup,
            LeakKind::ContainerdState,
        ],
    )?;
    scenario::remove_and_check(cd, &trace).await
}

e2e_test!(runc_smoke, runc_pod_lifecycle);
