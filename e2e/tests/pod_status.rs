#![cfg(feature = "e2e")]
//! PodSandboxStatus of a berth pod reports what was asked for and what happened:
//! metadata, state, IP, namespace options, runtime handler, labels and creation time.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use berth_e2e::containerd_config::BERTH_HANDLER;
use berth_e2e::pod_config::NamespaceMode;
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{e2e_test, procs, scenario, Containerd};
use k8s_cri::v1::{NamespaceMode as CriMode, PodSandboxState};

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

async fn status_is_right(cd: &Containerd) -> Result<()> {
    let config = scenario::pod_config(cd, "status")?
        .pid_mode(NamespaceMode::Pod)
        .label("app", "berth-e2e-status");
    let before = now_nanos();
    let id = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    let after = now_nanos();
    let st = scenario::status(cd, &id).await?;

    ensure!(st.id == id, "status id {} != {id}", st.id);
    let meta = st.metadata.clone().context("no metadata")?;
    ensure!(
        meta.name == config.metadata.name,
        "metadata name {:?}",
        meta.name
    );
    ensure!(
        meta.namespace == config.metadata.namespace,
        "metadata namespace {:?}",
        meta.namespace
    );
    ensure!(
        meta.uid == config.metadata.uid,
        "metadata uid {:?}",
        meta.uid
    );
    ensure!(
        meta.attempt == config.metadata.attempt,
        "metadata attempt {}",
        meta.attempt
    );
    ensure!(
        scenario::state(&st) == PodSandboxState::SandboxReady,
        "state {:?}",
        scenario::state(&st)
    );
    let ip = scenario::pod_ip(&st);
    ensure!(
        cd.instance().owns_pod_ip(&ip),
        "IP {ip:?} not in {}",
        cd.instance().subnet()
    );
    let ns = st
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
        .context("no linux namespace options in the status")?;
    ensure!(
        ns.network == CriMode::Pod as i32,
        "network namespace mode {}",
        ns.network
    );
    ensure!(
        ns.pid == CriMode::Pod as i32,
        "pid namespace mode {}",
        ns.pid
    );
    ensure!(
        ns.ipc == CriMode::Pod as i32,
        "ipc namespace mode {}",
        ns.ipc
    );
    // The status only echoes the config: check the namespaces pause really holds.
    let pause = scenario::pause_of(&id)?;
    let me = std::process::id() as i32;
    for kind in ["net", "ipc", "uts", "pid"] {
        let (theirs, ours) = (procs::ns_inode(pause, kind), procs::ns_inode(me, kind));
        ensure!(
            theirs.is_some() && theirs != ours,
            "pod {id}: pause {pause} shares the host's {kind} namespace"
        );
    }
    let nspid = std::fs::read_to_string(format!("/proc/{pause}/status"))?
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:").map(str::to_owned))
        .context("no NSpid")?;
    ensure!(
        nspid.split_whitespace().last() == Some("1"),
        "pod {id}: pause is not PID 1 of its namespace (NSpid {nspid})"
    );
    let trace = PodTrace::capture(cd, &id, "").await?;
    let pinned = trace.netns.as_ref().context("no pinned netns")?;
    ensure!(
        std::fs::metadata(pinned)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .ok()
            == procs::ns_inode(pause, "net"),
        "pod {id}: pause is not in the pinned netns {}",
        pinned.display()
    );
    ensure!(
        (before..=after).contains(&st.created_at),
        "created_at {} outside the RunPodSandbox call [{before}, {after}]",
        st.created_at
    );
    ensure!(
        st.runtime_handler == BERTH_HANDLER,
        "runtime handler {:?}",
        st.runtime_handler
    );
    ensure!(
        st.labels.get("app").map(String::as_str) == Some("berth-e2e-status"),
        "labels {:?}",
        st.labels
    );

    let listed = cd.cri().list_pod_sandbox(None).await?;
    let item = listed
        .iter()
        .find(|p| p.id == id)
        .context("ListPodSandbox lacks the pod")?;
    ensure!(
        item.state == PodSandboxState::SandboxReady as i32,
        "listed state {}",
        item.state
    );
    ensure!(
        item.runtime_handler == BERTH_HANDLER,
        "listed handler {:?}",
        item.runtime_handler
    );

    scenario::remove_and_check(cd, &trace).await
}

e2e_test!(pod_status, status_is_right, both_modes);
