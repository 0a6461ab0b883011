#![cfg(feature = "e2e")]
//! When a pod's shim is SIGKILLed, containerd notices and runs the shim's
//! `delete` action, which kills the orphaned berth-pause and removes the pod's
//! cgroup and state; the pod goes NOTREADY and removing it leaves nothing.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use berth_e2e::containerd_config::BERTH_HANDLER;
use berth_e2e::pod_trace::{self, PodTrace};
use berth_e2e::{e2e_test, leaks, scenario, Containerd};
use k8s_cri::v1::PodSandboxState;

async fn a_dead_shim_is_cleaned_up(cd: &Containerd) -> Result<()> {
    let parent = cd.cgroup_parent("killed");
    let config = scenario::pod_config(cd, "killed")?.cgroup_parent(&parent);
    let id = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    scenario::expect_ready(cd, &id).await?;
    let pause = scenario::pause_of(&id)?;
    let trace = PodTrace::capture(cd, &id, &parent).await?;
    let [shim] = trace.shims.as_slice() else {
        anyhow::bail!("pod {id} has shims {:?}, expected one", trace.shims);
    };

    ensure!(
        shim.is_alive(),
        "pod {id}: its shim {} is gone already",
        shim.pid
    );
    nix_kill(shim.pid)?;
    // The orphaned pause must not outlive the clean-up: `delete` kills it.
    scenario::wait_until(
        "berth-pause to be killed by the shim's delete",
        Duration::from_secs(20),
        || pod_trace::pause_pids(&id).is_empty(),
    )
    .await
    .with_context(|| format!("pod {id}: pause {pause} survived its shim's death"))?;
    let mut st = scenario::status(cd, &id).await?;
    for _ in 0..100 {
        if scenario::state(&st) == PodSandboxState::SandboxNotready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        st = scenario::status(cd, &id).await?;
    }
    ensure!(
        scenario::state(&st) == PodSandboxState::SandboxNotready,
        "pod {id} is {:?} after its shim died",
        scenario::state(&st)
    );
    scenario::remove_and_check(cd, &trace).await?;
    leaks::check_state_root_empty(&cd.berth_state_root())
}

fn nix_kill(pid: i32) -> Result<()> {
    // SAFETY: kill takes plain integers and touches no memory.
    let ret = unsafe { libc::kill(pid, libc::SIGKILL) };
    ensure!(
        ret == 0,
        "kill -9 {pid}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

e2e_test!(shim_killed, a_dead_shim_is_cleaned_up);
