#![cfg(feature = "e2e")]
//! `berth-cri`, the command line, against a real containerd: a pod and a
//! container go through runp, create, start, ps, exec, logs, stats, stop,
//! rm, stopp and rmp, and nothing is left behind.

use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use berth_e2e::images::BUSYBOX;
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{e2e_test, leaks, scenario, Containerd};

/// Runs the berth-cri binary built with these tests against `cd`.
fn berth_cri(cd: &Containerd, args: &[&str]) -> Result<Output> {
    let endpoint = format!("unix://{}", cd.instance().grpc_socket().display());
    Command::new(env!("CARGO_BIN_EXE_berth-cri"))
        .args(["--endpoint", &endpoint])
        .args(args)
        .output()
        .with_context(|| format!("run berth-cri {args:?}"))
}

/// berth-cri's stdout, once it succeeded.
fn ok(cd: &Containerd, args: &[&str]) -> Result<String> {
    let out = berth_cri(cd, args)?;
    ensure!(
        out.status.success(),
        "berth-cri {args:?} ended {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn berth_cri_runs_a_container(cd: &Containerd) -> Result<()> {
    cd.require_berth()?;
    let config = scenario::pod_config(cd, "cli")?;
    let dir = cd.instance().dir().join("berth-cri");
    std::fs::create_dir_all(&dir)?;
    let pod_json = dir.join("pod.json");
    std::fs::write(&pod_json, serde_json::to_string(&config)?)?;
    let container_json = dir.join("container.json");
    std::fs::write(
        &container_json,
        serde_json::json!({
            "metadata": {"name": "talker"},
            "image": {"image": BUSYBOX},
            "command": ["sh", "-c"],
            "args": ["echo hello-from-cli; echo to-stderr >&2; exec sleep 600"],
            "log_path": "talker.log",
        })
        .to_string(),
    )?;
    let (pod_json, container_json) = (
        pod_json.to_string_lossy().into_owned(),
        container_json.to_string_lossy().into_owned(),
    );

    let pod = ok(cd, &["runp", &pod_json])?.trim().to_owned();
    let pod_trace = PodTrace::capture(cd, &pod, "").await?;
    let id = ok(cd, &["create", &pod, &container_json, &pod_json])?
        .trim()
        .to_owned();
    ensure!(!id.is_empty(), "create printed no id");
    ok(cd, &["start", &id])?;

    let ps = ok(cd, &["ps", "--pod", &pod])?;
    let short: String = id.chars().take(13).collect();
    ensure!(
        ps.lines()
            .any(|l| l.starts_with(&short) && l.contains("Running") && l.contains("talker")),
        "ps shows the running container: {ps}"
    );

    let exec = berth_cri(cd, &["exec", &id, "sh", "-c", "echo in-exec; exit 3"])?;
    ensure!(
        exec.status.code() == Some(3) && String::from_utf8_lossy(&exec.stdout) == "in-exec\n",
        "exec ends with its command's code and output: {exec:?}"
    );

    let mut logs = Output {
        status: exec.status,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    for _ in 0..100 {
        logs = berth_cri(cd, &["logs", &id])?;
        if !logs.stderr.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        logs.status.success()
            && String::from_utf8_lossy(&logs.stdout) == "hello-from-cli\n"
            && String::from_utf8_lossy(&logs.stderr) == "to-stderr\n",
        "logs shows stdout and stderr on theirs: {logs:?}"
    );

    let stats = ok(cd, &["stats", &id])?;
    let row = stats
        .lines()
        .find(|l| l.starts_with(&short))
        .with_context(|| format!("stats has a row for the container: {stats}"))?;
    ensure!(
        row.contains("talker") && !row.contains(" 0.0MiB"),
        "stats shows the container's memory: {stats}"
    );

    ok(cd, &["stop", "--timeout", "1", &id])?;
    let inspect: serde_json::Value = serde_json::from_str(&ok(cd, &["inspect", &id])?)?;
    ensure!(inspect["state"] == "CONTAINER_EXITED", "stopped: {inspect}");
    ok(cd, &["rm", &id])?;
    ensure!(
        !ok(cd, &["ps"])?.contains(&short),
        "rm removed the container"
    );
    leaks::check_pod_removed(
        cd,
        &PodTrace {
            id: id.clone(),
            ..Default::default()
        },
    )
    .await?;
    ok(cd, &["stopp", &pod])?;
    ok(cd, &["rmp", &pod])?;
    leaks::check_pod_removed(cd, &pod_trace).await
}

e2e_test!(berth_cri, berth_cri_runs_a_container, both_modes);
