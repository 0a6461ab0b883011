#![cfg(feature = "e2e")]
//! Freezing and thawing through containerd's task API (`ctr task pause` and
//! `resume`): a container of its own, and a whole CRI pod through its
//! sandbox task. A paused task refuses execs and still dies of SIGKILL.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use berth_e2e::container_config::ContainerSpec;
use berth_e2e::containerd_config::BERTH_HANDLER;
use berth_e2e::pod_trace::{self, PodTrace};
use berth_e2e::{e2e_test, scenario, Containerd};

/// Each task's status, as `ctr task ls` shows it.
fn task_statuses(cd: &Containerd) -> Result<HashMap<String, String>> {
    Ok(cd
        .ctr_ok(&["task", "ls"])?
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [id, _pid, status] => Some((id.to_string(), status.to_string())),
                _ => None,
            }
        })
        .collect())
}

/// Fails unless every task in `ids` shows `want`.
fn expect_statuses(cd: &Containerd, ids: &[&str], want: &str) -> Result<()> {
    let all = task_statuses(cd)?;
    for id in ids {
        let status = all.get(*id).map(String::as_str);
        ensure!(
            status == Some(want),
            "task {id} is {status:?}, expected {want}"
        );
    }
    Ok(())
}

/// The freezer state of cgroup `path` as the kernel reports it: v1
/// `freezer.state`, else v2 `cgroup.events`.
fn freezer_state(path: &str) -> Result<String> {
    let rel = path.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/freezer")
        .join(rel)
        .join("freezer.state");
    if v1.exists() {
        return Ok(std::fs::read_to_string(&v1)?.trim().to_owned());
    }
    let v2 = Path::new("/sys/fs/cgroup").join(rel).join("cgroup.events");
    let events = std::fs::read_to_string(&v2).with_context(|| format!("read {}", v2.display()))?;
    Ok(if events.lines().any(|l| l.trim() == "frozen 1") {
        "FROZEN"
    } else {
        "THAWED"
    }
    .to_owned())
}

async fn a_container_pauses_and_resumes(cd: &Containerd) -> Result<()> {
    cd.require_berth()?;
    let id = format!("frozen-{}", cd.instance().slot());
    scenario::run_solo(cd, &id)?;
    let result = pause_resume_and_kill(cd, &id).await;
    // Whatever happened, nothing stays frozen or running.
    scenario::force_remove_solo(cd, &id);
    result?;
    scenario::expect_solo_gone(cd, &id).await
}

async fn pause_resume_and_kill(cd: &Containerd, id: &str) -> Result<()> {
    // ctr puts the container in cgroup /<namespace>/<id>.
    let cgroup = format!("/k8s.io/{id}");
    cd.ctr_ok(&["task", "pause", id])?;
    expect_statuses(cd, &[id], "PAUSED")?;
    ensure!(
        freezer_state(&cgroup)? == "FROZEN",
        "the cgroup of paused task {id} is {}",
        freezer_state(&cgroup)?
    );
    let exec = cd.ctr(&[
        OsStr::new("task"),
        OsStr::new("exec"),
        OsStr::new("--exec-id"),
        OsStr::new("e"),
        OsStr::new(id),
        OsStr::new("true"),
    ])?;
    let refusal = String::from_utf8_lossy(&exec.stderr);
    ensure!(
        !exec.status.success() && refusal.contains("paused"),
        "an exec into a paused task ended {} with {refusal:?}",
        exec.status
    );
    // A signal to all its processes leaves it paused (PID 1 of the
    // container ignores SIGTERM once it runs again).
    cd.ctr_ok(&["task", "kill", "--all", "-s", "SIGTERM", id])?;
    expect_statuses(cd, &[id], "PAUSED")?;
    cd.ctr_ok(&["task", "resume", id])?;
    expect_statuses(cd, &[id], "RUNNING")?;
    ensure!(freezer_state(&cgroup)? == "THAWED");
    cd.ctr_ok(&["task", "exec", "--exec-id", "e", id, "true"])?;

    // SIGKILL lands on a paused task.
    cd.ctr_ok(&["task", "pause", id])?;
    cd.ctr_ok(&["task", "kill", "-s", "SIGKILL", id])?;
    scenario::wait_until(
        "the paused task to die of SIGKILL",
        Duration::from_secs(20),
        || task_statuses(cd).is_ok_and(|s| s.get(id).map(String::as_str) == Some("STOPPED")),
    )
    .await
}

e2e_test!(ctr_pause, a_container_pauses_and_resumes, both_modes);

async fn pausing_the_sandbox_pauses_the_pod(cd: &Containerd) -> Result<()> {
    let parent = cd.cgroup_parent("frozen");
    let config = scenario::pod_config(cd, "frozen")?.cgroup_parent(&parent);
    let pod = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    let trace = PodTrace::capture(cd, &pod, &parent).await?;
    let mut containers = Vec::new();
    for name in ["one", "two"] {
        let spec = ContainerSpec::shell(name, "echo ready; exec sleep 1000");
        containers.push(scenario::run_container(cd, &pod, &config, &spec).await?);
        scenario::wait_ready(&config, &spec).await?;
    }
    let mut tasks: Vec<&str> = containers.iter().map(String::as_str).collect();
    tasks.push(&pod);
    // CRI names each cgroup <parent>/<id>.
    let frozen = |want: &str| -> Result<()> {
        for id in &tasks {
            let state = freezer_state(&format!("{parent}/{id}"))?;
            if state != want {
                bail!("the cgroup of {id} is {state}, expected {want}");
            }
        }
        Ok(())
    };

    cd.ctr_ok(&["task", "pause", &pod])?;
    expect_statuses(cd, &tasks, "PAUSED")?;
    frozen("FROZEN")?;
    let exec = cd.cri().exec_sync(&containers[0], &["true"], 10).await;
    ensure!(
        exec.is_err(),
        "ExecSync into a container of a paused pod: {exec:?}"
    );
    cd.ctr_ok(&["task", "resume", &pod])?;
    expect_statuses(cd, &tasks, "RUNNING")?;
    frozen("THAWED")?;
    let exec = cd.cri().exec_sync(&containers[0], &["true"], 10).await?;
    ensure!(exec.exit_code == 0, "ExecSync after the resume: {exec:?}");

    // A frozen pod still stops: each SIGKILL thaws its task.
    cd.ctr_ok(&["task", "pause", &pod])?;
    frozen("FROZEN")?;
    scenario::remove_and_check(cd, &trace).await
}

// Podsandbox mode only: in shim mode containerd has no sandbox container
// for `ctr task pause` to name.
e2e_test!(pod_pause, pausing_the_sandbox_pauses_the_pod);

/// Paused tasks across a containerd restart. A container of its own stays
/// PAUSED (the state is read from the freezer), resumes and dies of
/// SIGKILL. A CRI pod found paused is killed by containerd's CRI when it
/// recovers (it only keeps running or stopped sandboxes): the kill must
/// land on the frozen pause, and the frozen container must still stop and
/// go with the pod.
async fn paused_tasks_across_a_containerd_restart(cd: &mut Containerd) -> Result<()> {
    cd.require_berth()?;
    let solo = format!("frozen-solo-{}", cd.instance().slot());
    scenario::run_solo(cd, &solo)?;
    let parent = cd.cgroup_parent("restarted");
    let config = scenario::pod_config(cd, "restarted")?.cgroup_parent(&parent);
    let pod = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    let trace = PodTrace::capture(cd, &pod, &parent).await?;
    let spec = ContainerSpec::shell("one", "echo ready; exec sleep 1000");
    let container = scenario::run_container(cd, &pod, &config, &spec).await?;
    scenario::wait_ready(&config, &spec).await?;

    cd.ctr_ok(&["task", "pause", &solo])?;
    cd.ctr_ok(&["task", "pause", &pod])?;
    expect_statuses(cd, &[&solo, &container, &pod], "PAUSED")?;
    cd.halt(libc::SIGKILL)?;
    cd.restart().await?;

    expect_statuses(cd, &[&solo], "PAUSED")?;
    ensure!(freezer_state(&format!("/k8s.io/{solo}"))? == "FROZEN");
    cd.ctr_ok(&["task", "resume", &solo])?;
    expect_statuses(cd, &[&solo], "RUNNING")?;
    cd.ctr_ok(&["task", "exec", "--exec-id", "e", &solo, "true"])?;
    cd.ctr_ok(&["task", "pause", &solo])?;
    cd.ctr_ok(&["task", "kill", "-s", "SIGKILL", &solo])?;
    scenario::wait_until(
        "the paused task to die of SIGKILL",
        Duration::from_secs(20),
        || task_statuses(cd).is_ok_and(|s| s.get(&solo).map(String::as_str) == Some("STOPPED")),
    )
    .await?;
    cd.ctr_ok(&["task", "rm", &solo])?;
    cd.ctr_ok(&["container", "rm", &solo])?;

    scenario::wait_until("CRI to end the paused pod", Duration::from_secs(20), || {
        pod_trace::pause_pids(&pod).is_empty()
    })
    .await?;
    scenario::remove_and_check(cd, &trace).await?;
    scenario::expect_solo_gone(cd, &solo).await
}

e2e_test!(
    pause_restart,
    paused_tasks_across_a_containerd_restart,
    restarts
);
