#![cfg(feature = "e2e")]
//! The shim's log, as it reaches containerd's: every record of a pod's
//! shim names the runtime, the namespace and the pod, and a record about
//! one container names it too. The level follows containerd's `-debug`
//! (the harness runs containerd at debug, so the shim logs debug records),
//! unless the runtime options set `LogLevel`: the `berth-quiet` handler's
//! `warn` keeps even info records out.

use std::time::Duration;

use anyhow::{ensure, Result};
use berth_e2e::container_config::ContainerSpec;
use berth_e2e::containerd_config::{BERTH_HANDLER, BERTH_QUIET_HANDLER};
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{e2e_test, scenario, Containerd};

/// The records of berth's shims in containerd's log from `from` on.
fn berth_records(cd: &Containerd, from: u64) -> Result<Vec<String>> {
    Ok(cd
        .log_since(from)?
        .lines()
        .filter(|l| l.contains(" runtime=io.containerd.berth.v2"))
        .map(str::to_owned)
        .collect())
}

/// Runs a pod on `handler` with a container that exits 3, removes it, and
/// returns the pod's and the container's ids (none where
/// [`scenario::options_break_container_start`]).
async fn pod_with_a_container(
    cd: &Containerd,
    name: &str,
    handler: &str,
) -> Result<(String, String)> {
    let parent = cd.cgroup_parent(name);
    let config = scenario::pod_config(cd, name)?.cgroup_parent(&parent);
    let pod = scenario::run_pod(cd, &config, handler).await?;
    let trace = PodTrace::capture(cd, &pod, &parent).await?;
    let spec = ContainerSpec::shell("app", "exit 3");
    if scenario::options_break_container_start(cd, handler) {
        // The pod alone: containerd 2.1 starts no container of it.
        scenario::expect_options_break_start(cd, &pod, &config, &spec).await?;
        scenario::remove_and_check(cd, &trace).await?;
        return Ok((pod, String::new()));
    }
    let container = scenario::run_container(cd, &pod, &config, &spec).await?;
    scenario::wait_exited(cd, &container, Duration::from_secs(20)).await?;
    scenario::remove_containers(cd, std::slice::from_ref(&container)).await?;
    scenario::remove_and_check(cd, &trace).await?;
    Ok((pod, container))
}

async fn records_name_their_pod_and_container(cd: &Containerd) -> Result<()> {
    let from = cd.log_len();
    let (pod, container) = pod_with_a_container(cd, "log", BERTH_HANDLER).await?;
    let records = berth_records(cd, from)?;
    let mine: Vec<&String> = records
        .iter()
        .filter(|l| l.contains(&format!(" pod={pod}")))
        .collect();
    let about = |msg: &str| {
        mine.iter()
            .filter(|l| l.contains(msg))
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
    };
    // Created, exited, removed: each names the container.
    for msg in ["msg=\"created, init pid ", "msg=\"pid ", "msg=\"removed\""] {
        let lines = about(msg);
        ensure!(
            lines
                .iter()
                .any(|l| l.contains(&format!(" container={container}"))),
            "no record {msg}…\" of container {container} in pod {pod}'s shim log:\n{}",
            mine.iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    ensure!(
        about("exited with status 3")
            .iter()
            .any(|l| l.contains(&format!(" container={container}"))),
        "no record of the container's exit status"
    );
    // containerd runs at debug: so does the shim.
    ensure!(
        mine.iter().any(|l| l.contains(" level=debug ")),
        "pod {pod}'s shim logged no debug record under containerd's -debug"
    );
    for line in &mine {
        ensure!(
            line.starts_with("time=\"") && line.contains(" namespace=k8s.io "),
            "a record without its time or namespace: {line}"
        );
    }
    // Every berth record of the time names a pod: this one's or another
    // scenario's running beside it.
    for line in &records {
        ensure!(line.contains(" pod="), "a record that names no pod: {line}");
    }
    Ok(())
}

e2e_test!(shim_log, records_name_their_pod_and_container, both_modes);

async fn log_level_follows_the_options(cd: &Containerd) -> Result<()> {
    let from = cd.log_len();
    let (pod, _) = pod_with_a_container(cd, "log-quiet", BERTH_QUIET_HANDLER).await?;
    let records = berth_records(cd, from)?;
    let loud: Vec<&String> = records
        .iter()
        .filter(|l| l.contains(&format!(" pod={pod}")))
        .filter(|l| !(l.contains(" level=warning ") || l.contains(" level=error ")))
        .collect();
    ensure!(
        loud.is_empty(),
        "pod {pod}'s shim, at LogLevel = 'warn', logged:\n{}",
        loud.iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The same pod on the default handler does log at info (the check above
    // means something).
    let from = cd.log_len();
    let (pod, _) = pod_with_a_container(cd, "log-loud", BERTH_HANDLER).await?;
    ensure!(
        berth_records(cd, from)?
            .iter()
            .any(|l| l.contains(&format!(" pod={pod}")) && l.contains(" level=info ")),
        "pod {pod}'s shim logged no info record at the default level"
    );
    Ok(())
}

e2e_test!(shim_log_level, log_level_follows_the_options, both_modes);
