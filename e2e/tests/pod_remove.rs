#![cfg(feature = "e2e")]
//! RemovePodSandbox on a berth pod with a cgroup parent leaves no process, mount,
//! cgroup, netns or state file behind.

use anyhow::{ensure, Result};
use berth_e2e::containerd_config::{Sandboxer, BERTH_HANDLER};
use berth_e2e::leaks::LeakKind;
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{e2e_test, leaks, procs, scenario, Containerd};

async fn remove_leaves_nothing(cd: &Containerd) -> Result<()> {
    let parent = cd.cgroup_parent("remove");
    let config = scenario::pod_config(cd, "remove")?.cgroup_parent(&parent);
    let id = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    scenario::expect_ready(cd, &id).await?;
    let pause = scenario::pause_of(&id)?;
    let trace = PodTrace::capture(cd, &id, &parent).await?;
    ensure!(
        trace.task.as_ref().map(|t| t.pid) == Some(pause),
        "pod {id}: containerd's task pid {:?} is not berth-pause {pause}",
        trace.task
    );

    // The cgroup check below is only real if the pod's cgroup was under the parent.
    let cgroups = procs::cgroups(pause).unwrap_or_default();
    ensure!(
        cgroups.lines().any(|l| l.contains(&format!("{parent}/"))),
        "pod {id}: pause {pause} is not in a cgroup below {parent}:\n{cgroups}"
    );
    ensure!(
        trace.netns.as_ref().is_some_and(|p| p.exists()),
        "pod {id}: no netns file"
    );

    // The leak checker must see the running pod, or its all-clear below means
    // nothing. In shim mode there is no pause container, so no rootfs or
    // shm mount of the pod's: none to see, and none may be left.
    let mut kinds = vec![
        LeakKind::Pause,
        LeakKind::Shim,
        LeakKind::Recorded,
        LeakKind::Mount,
        LeakKind::Netns,
        LeakKind::Cgroup,
        LeakKind::CgroupMember,
        LeakKind::BerthState,
        LeakKind::ContainerdState,
    ];
    if cd.sandboxer() == Sandboxer::Shim {
        kinds.retain(|k| *k != LeakKind::Mount);
    }
    leaks::ensure_visible(cd, &trace, &kinds)?;
    scenario::remove_and_check(cd, &trace).await?;
    leaks::check_state_root_empty(&cd.berth_state_root())
}

e2e_test!(pod_remove, remove_leaves_nothing, both_modes);
