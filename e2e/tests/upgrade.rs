#![cfg(feature = "e2e")]
//! berth upgraded and downgraded in place under running pods, as a package
//! upgrade does it: the installed binaries are replaced with install(1)
//! while pods run, then containerd restarts.
//!
//! Build A is this tree (`make build`); build B is the same code with its
//! version one patch release on and its state format one revision on
//! (`make build-next`). Upgrade: pods started on A keep their A shims,
//! which report a container's exit code (42) to the restarted containerd;
//! a dead A shim is cleaned up by B's `delete`, which reads A's state; new
//! pods run on B and are stamped with B's format, A's pods keep A's stamp.
//! Downgrade: B's pods keep their B shims (a new container in one is made
//! by its B shim, through A's `start`), and new pods run on A. A's
//! `delete` refuses B's state after a B shim died, by name and touching
//! nothing; with B reinstalled, B's `delete` run by hand cleans up.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use berth_e2e::container_config::ContainerSpec;
use berth_e2e::containerd_config::BERTH_HANDLER;
use berth_e2e::daemon::Installation;
use berth_e2e::pod_config::PodConfig;
use berth_e2e::pod_trace::{self, PodTrace};
use berth_e2e::{leaks, paths, scenario, Containerd, Version};
use k8s_cri::v1::PodSandboxState;

/// What `containerd-shim-berth-v2 -v` says of a build.
#[derive(Debug, Clone, PartialEq)]
struct Build {
    version: String,
    format: u32,
}

fn build_of(shim: &Path) -> Result<Build> {
    let out = Command::new(shim)
        .arg("-v")
        .output()
        .with_context(|| format!("run {} -v", shim.display()))?;
    ensure!(
        out.status.success(),
        "{} -v: {}",
        shim.display(),
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .with_context(|| format!("{} -v has no {name}:\n{text}", shim.display()))
    };
    let format = field("State format:")?;
    let format = format
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .with_context(|| format!("{} -v: state format {format:?}", shim.display()))?;
    Ok(Build {
        version: field("Version:")?,
        format,
    })
}

/// Puts the binaries of `from` into `to` as `make install` does: install(1),
/// which unlinks each file before it writes the new one.
fn install(from: &Path, to: &Path) -> Result<()> {
    let sources: Vec<PathBuf> = paths::BINARIES.iter().map(|b| from.join(b)).collect();
    for source in &sources {
        ensure!(
            source.is_file(),
            "{} is missing: run `make build build-next`",
            source.display()
        );
    }
    let status = Command::new("install")
        .args(["-m", "0755"])
        .args(&sources)
        .arg(to)
        .status()
        .context("run install(1)")?;
    ensure!(status.success(), "install into {}: {status}", to.display());
    Ok(())
}

/// The format stamp of pod `id`'s state directory (1 for a pod without one).
fn stamp_of(root: &Path, id: &str) -> Result<u32> {
    for entry in std::fs::read_dir(root).with_context(|| format!("read {}", root.display()))? {
        let dir = entry?.path();
        let Ok(record) = std::fs::read(dir.join("pod.json")) else {
            continue;
        };
        let record: serde_json::Value = serde_json::from_slice(&record)?;
        if record["sandbox_id"] != id {
            continue;
        }
        return match std::fs::read(dir.join("format")) {
            Ok(stamp) => {
                let stamp: serde_json::Value = serde_json::from_slice(&stamp)?;
                stamp["format"]
                    .as_u64()
                    .map(|f| f as u32)
                    .with_context(|| format!("{}: no format in {stamp}", dir.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(1),
            Err(e) => Err(e).with_context(|| format!("read {}/format", dir.display())),
        };
    }
    bail!("no pod directory under {} records pod {id}", root.display())
}

/// The binary shim `pid` runs, and whether it was replaced since it started.
fn shim_exe(pid: i32) -> Result<(PathBuf, bool)> {
    let link = std::fs::read_link(format!("/proc/{pid}/exe"))
        .with_context(|| format!("shim {pid} is gone"))?;
    let text = link.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => (PathBuf::from(path), true),
        None => (link, false),
    })
}

/// A pod and its one container, running.
struct Pod {
    config: PodConfig,
    trace: PodTrace,
    container: String,
}

impl Pod {
    fn shim(&self) -> Result<i32> {
        match self.trace.shims.as_slice() {
            [shim] => Ok(shim.pid),
            other => bail!("pod {} has shims {other:?}, expected one", self.trace.id),
        }
    }
}

/// A pod named `name` with a container that exits `code` on SIGTERM.
async fn run_pod(cd: &Containerd, name: &str, code: i32) -> Result<Pod> {
    let parent = cd.cgroup_parent(name);
    let config = scenario::pod_config(cd, name)?.cgroup_parent(&parent);
    let id = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    scenario::expect_ready(cd, &id).await?;
    let trace = PodTrace::capture(cd, &id, &parent).await?;
    let container = run_container(cd, &id, &config, "app", code).await?;
    Ok(Pod {
        config,
        trace,
        container,
    })
}

async fn run_container(
    cd: &Containerd,
    pod: &str,
    config: &PodConfig,
    name: &str,
    code: i32,
) -> Result<String> {
    let spec = ContainerSpec::shell(
        name,
        &format!("trap 'exit {code}' TERM; echo ready; while :; do sleep 1 & wait $!; done"),
    );
    let id = scenario::run_container(cd, pod, config, &spec).await?;
    scenario::wait_ready(config, &spec).await?;
    Ok(id)
}

/// Checks that pod's shim runs `dir`'s shim binary, replaced since or not.
fn expect_shim(pod: &Pod, dir: &Path, replaced: bool) -> Result<()> {
    let pid = pod.shim()?;
    let (exe, was_replaced) = shim_exe(pid)?;
    ensure!(
        exe == dir.join(paths::SHIM) && was_replaced == replaced,
        "pod {}: shim {pid} runs {} (replaced: {was_replaced}), expected {} (replaced: {replaced})",
        pod.trace.id,
        exe.display(),
        dir.join(paths::SHIM).display()
    );
    Ok(())
}

fn expect_stamp(cd: &Containerd, pod: &Pod, build: &Build) -> Result<()> {
    let stamp = stamp_of(&cd.berth_state_root(), &pod.trace.id)?;
    ensure!(
        stamp == build.format,
        "pod {}: its state is stamped format {stamp}, expected {} (berth {})",
        pod.trace.id,
        build.format,
        build.version
    );
    Ok(())
}

/// StopContainer (SIGTERM, then the grace period) and the code CRI reports.
async fn stop_expecting(cd: &Containerd, id: &str, code: i32) -> Result<()> {
    cd.cri().stop_container(id, 10).await?;
    let status = scenario::wait_exited(cd, id, Duration::from_secs(20)).await?;
    ensure!(
        status.exit_code == code,
        "container {id} reported exit code {}, expected {code}",
        status.exit_code
    );
    Ok(())
}

/// SIGKILLs the pod's shim and waits until containerd's clean-up (the
/// installed shim's `delete`) has killed pause and the pod is NOTREADY.
async fn kill_shim(cd: &Containerd, pod: &Pod) -> Result<()> {
    let id = &pod.trace.id;
    let shim = pod.shim()?;
    let killed = std::time::Instant::now();
    // SAFETY: kill takes plain integers and touches no memory.
    let ret = unsafe { libc::kill(shim, libc::SIGKILL) };
    ensure!(
        ret == 0,
        "kill -9 {shim}: {}",
        std::io::Error::last_os_error()
    );
    scenario::wait_until(
        "berth-pause to be killed by the installed shim's delete",
        Duration::from_secs(20),
        || pod_trace::pause_pids(id).is_empty(),
    )
    .await
    .with_context(|| {
        // What containerd did with the pod's tasks, from its restart on:
        // loaded them, saw their shim go, ran `delete`.
        let tasks: Vec<String> = cd
            .log_since(0)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(id.as_str()) || l.contains(pod.container.as_str()))
            .filter(|l| !l.contains("level=debug"))
            .map(str::to_owned)
            .collect();
        format!(
            "pod {id}: pause survived its shim's death (killed {:?} ago); containerd logged:\n{}",
            killed.elapsed(),
            tasks[tasks.len().saturating_sub(40)..].join("\n")
        )
    })?;
    let mut state = PodSandboxState::SandboxReady;
    for _ in 0..100 {
        state = scenario::state(&scenario::status(cd, id).await?);
        if state == PodSandboxState::SandboxNotready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        state == PodSandboxState::SandboxNotready,
        "pod {id} is {state:?} after its shim died"
    );
    scenario::wait_exited(cd, &pod.container, Duration::from_secs(20)).await?;
    Ok(())
}

/// A package upgrade (or downgrade) to `build`: its binaries from `from`
/// installed into `dir`, then containerd restarted.
async fn switch_to(cd: &mut Containerd, from: &Path, dir: &Path, build: &Build) -> Result<()> {
    install(from, dir)?;
    let installed = build_of(&dir.join(paths::SHIM))?;
    ensure!(
        installed == *build,
        "{} holds {installed:?}, expected {build:?}",
        dir.display()
    );
    cd.halt(libc::SIGTERM)?;
    cd.restart().await
}

/// `containerd-shim-berth-v2 delete` for task `id`, as containerd runs it
/// after a shim died (its bundle may be gone by now).
fn delete_by_hand(cd: &Containerd, dir: &Path, id: &str) -> Result<()> {
    let bundle = cd
        .instance()
        .state()
        .join("io.containerd.runtime.v2.task/k8s.io")
        .join(id);
    let out = Command::new(dir.join(paths::SHIM))
        .args(["-namespace", "k8s.io", "-id", id, "-address"])
        .arg(cd.address())
        .arg("-bundle")
        .arg(&bundle)
        .arg("delete")
        .env("BERTH_STATE_ROOT", cd.berth_state_root())
        .output()
        .context("run the shim's delete")?;
    ensure!(
        out.status.success(),
        "delete {id}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

async fn upgraded_and_downgraded(
    cd: &mut Containerd,
    dir: &Path,
    a: &Build,
    b: &Build,
) -> Result<()> {
    // Build A installed.
    let kept = run_pod(cd, "kept", 42).await?;
    let crashed = run_pod(cd, "crashed", 0).await?;
    for pod in [&kept, &crashed] {
        expect_shim(pod, dir, false)?;
        expect_stamp(cd, pod, a)?;
    }

    // Upgrade to B, then containerd restarts.
    switch_to(cd, &paths::next_bin_dir(), dir, b).await?;
    // A's pods keep their A shims, which report to the new containerd.
    for pod in [&kept, &crashed] {
        expect_shim(pod, dir, true)?;
    }
    stop_expecting(cd, &kept.container, 42).await?;
    expect_stamp(cd, &kept, a)?;
    // A dead A shim is cleaned up by B's `delete`, from A's state.
    let log_from = cd.log_len();
    kill_shim(cd, &crashed).await?;
    let log = cd.log_since(log_from)?;
    ensure!(
        !log.contains("pod state"),
        "B's delete complained of A's state:\n{log}"
    );
    // New pods run on B, stamped with B's format.
    let newer = run_pod(cd, "newer", 7).await?;
    expect_shim(&newer, dir, false)?;
    expect_stamp(cd, &newer, b)?;
    let stranded = run_pod(cd, "stranded", 0).await?;
    for pod in [&kept, &crashed] {
        scenario::remove_and_check(cd, &pod.trace).await?;
    }

    // Downgrade to A while B's pod runs.
    switch_to(cd, &paths::bin_dir(), dir, a).await?;
    expect_shim(&newer, dir, true)?;
    // A's `start` finds B's shim serving the pod: B makes the container,
    // and the pod keeps B's stamp.
    let second = run_container(cd, &newer.trace.id, &newer.config, "second", 8).await?;
    stop_expecting(cd, &second, 8).await?;
    stop_expecting(cd, &newer.container, 7).await?;
    expect_stamp(cd, &newer, b)?;
    // A dead B shim is more than A's `delete` can read: refused by name,
    // and nothing of the pod is touched.
    let log_from = cd.log_len();
    let pause = scenario::pause_of(&stranded.trace.id)?;
    // SAFETY: kill takes plain integers and touches no memory.
    unsafe { libc::kill(stranded.shim()?, libc::SIGKILL) };
    let refusal = format!(
        "it is in format {} (berth {}), and this berth {} writes format {}",
        b.format, b.version, a.version, a.format
    );
    scenario::wait_until(
        "containerd to report A's delete refusing B's pod",
        Duration::from_secs(20),
        || cd.log_since(log_from).is_ok_and(|l| l.contains(&refusal)),
    )
    .await?;
    ensure!(
        scenario::pause_of(&stranded.trace.id)? == pause,
        "A's refused delete touched the pod's pause"
    );
    expect_stamp(cd, &stranded, b)?;
    // What the README says to do: B again, B's `delete` run by hand for
    // the pod's tasks (its containers first), and containerd restarted.
    install(&paths::next_bin_dir(), dir)?;
    for id in [&stranded.container, &stranded.trace.id] {
        delete_by_hand(cd, dir, id)?;
    }
    ensure!(
        pod_trace::pause_pids(&stranded.trace.id).is_empty(),
        "B's delete left the stranded pod's pause"
    );
    // containerd 2.1 keeps the bundles whose `delete` failed, and removes
    // them at its next start, through a `delete` that now finds nothing.
    cd.halt(libc::SIGTERM)?;
    cd.restart().await?;
    scenario::wait_exited(cd, &stranded.container, Duration::from_secs(30)).await?;
    scenario::remove_and_check(cd, &stranded.trace).await?;
    install(&paths::bin_dir(), dir)?;

    let older = run_pod(cd, "older", 9).await?;
    expect_shim(&older, dir, false)?;
    expect_stamp(cd, &older, a)?;
    stop_expecting(cd, &older.container, 9).await?;
    for pod in [&newer, &older] {
        scenario::remove_and_check(cd, &pod.trace).await?;
    }
    leaks::check_state_root_empty(&cd.berth_state_root())
}

async fn upgrade(version: Version) -> Result<()> {
    let a = build_of(&paths::shim_binary())?;
    let b = build_of(&paths::next_bin_dir().join(paths::SHIM))
        .context("the upgrade test needs build B: run `make build-next`")?;
    ensure!(
        a.version != b.version && b.format == a.format + 1,
        "build B ({b:?}) is not one version and one state format on from A ({a:?}): run `make build-next`"
    );
    let target = paths::workspace().join("target");
    std::fs::create_dir_all(&target)?;
    let installed = tempfile::Builder::new()
        .prefix("upgrade-bin.")
        .tempdir_in(&target)?;
    let dir = installed.path().to_owned();
    install(&paths::bin_dir(), &dir)?;
    scenario::run_with(version, Installation::installed(dir.clone()), async |cd| {
        upgraded_and_downgraded(cd, &dir, &a, &b).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_2_1() -> Result<()> {
    upgrade(Version::V2_1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_1_7() -> Result<()> {
    upgrade(Version::V1_7).await
}
