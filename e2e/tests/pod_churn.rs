#![cfg(feature = "e2e")]
//! Twenty berth pods up and down in a row leak nothing: each is checked after its
//! removal, and the instance's processes and mounts are the same at the end as before.

use anyhow::{ensure, Result};
use berth_e2e::containerd_config::BERTH_HANDLER;
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{cgroups, e2e_test, leaks, scenario, Containerd};

const PODS: usize = 20;

async fn churn_leaks_nothing(cd: &Containerd) -> Result<()> {
    let before = leaks::Census::take(cd);
    for n in 0..PODS {
        let name = format!("churn-{n}");
        let parent = cd.cgroup_parent(&name);
        let config = scenario::pod_config(cd, &name)?.cgroup_parent(&parent);
        let id = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
        scenario::expect_ready(cd, &id).await?;
        let trace = PodTrace::capture(cd, &id, &parent).await?;
        scenario::remove_and_check(cd, &trace)
            .await
            .map_err(|e| e.context(format!("pod {} of {PODS}", n + 1)))?;
    }
    let after = leaks::Census::take(cd);
    let grown = before.grown(&after);
    ensure!(
        grown.is_empty(),
        "after {PODS} pods the instance has more:\n  {}",
        grown.join("\n  ")
    );
    ensure!(
        after.processes.len() == before.processes.len()
            && after.mounts.len() == before.mounts.len(),
        "process/mount counts changed: {}/{} before, {}/{} after",
        before.processes.len(),
        before.mounts.len(),
        after.processes.len(),
        after.mounts.len()
    );
    leaks::check_state_root_empty(&cd.berth_state_root())?;
    // Only the (empty) parents may remain under the instance's cgroup root.
    let root = cd.instance().cgroup_root();
    for top in cgroups::in_every_hierarchy(&root) {
        for dir in cgroups::find_named(&top, "") {
            let rel = dir
                .strip_prefix(&top)
                .unwrap_or(&dir)
                .to_string_lossy()
                .into_owned();
            ensure!(
                !rel.contains('/'),
                "cgroup below a pod parent survived: {}",
                dir.display()
            );
        }
    }
    Ok(())
}

e2e_test!(pod_churn, churn_leaks_nothing, both_modes);
