//! The frame every end-to-end test runs in, and the pod steps tests share.
//!
//! [`run`] starts a private containerd, runs the scenario against it, stops it, and
//! fails if the scenario failed or the instance had anything left over once
//! containerd was gone. [`crate::e2e_test!`] declares one test per containerd version.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use k8s_cri::v1::{ContainerState, ContainerStatus, PodSandboxState, PodSandboxStatus};

use crate::container_config::{log_lines, ContainerSpec};
use crate::containerd::Containerd;
use crate::containerd_config::{Sandboxer, BERTH_HANDLER, BERTH_OPTION_HANDLERS};
use crate::daemon::Installation;
use crate::pod_config::PodConfig;
use crate::pod_trace::PodTrace;
use crate::version::Version;
use crate::{leaks, procs};

/// Declares `mod $name { containerd_2_1, containerd_1_7 }`: the scenario function
/// `$scenario(&Containerd) -> anyhow::Result<()>` run against each version.
/// `both_modes` adds `containerd_2_1_shim_mode`, the scenario on containerd 2.1
/// with the `berth` handler and the berth handlers with options in shim mode
/// (`sandboxer = "shim"`: the pod made through berth's Sandbox API).
/// `restarts` marks a scenario that stops and restarts containerd: it takes
/// `&mut Containerd`.
#[macro_export]
macro_rules! e2e_test {
    (@test $fn:ident, $run:ident, $scenario:ident $(, $version:ident)?) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $fn() -> ::anyhow::Result<()> {
            $crate::scenario::$run($($crate::Version::$version,)? super::$scenario).await
        }
    };
    ($name:ident, $scenario:ident) => {
        mod $name {
            $crate::e2e_test!(@test containerd_2_1, run, $scenario, V2_1);
            $crate::e2e_test!(@test containerd_1_7, run, $scenario, V1_7);
        }
    };
    ($name:ident, $scenario:ident, both_modes) => {
        mod $name {
            $crate::e2e_test!(@test containerd_2_1, run, $scenario, V2_1);
            $crate::e2e_test!(@test containerd_2_1_shim_mode, run_shim_mode, $scenario);
            $crate::e2e_test!(@test containerd_1_7, run, $scenario, V1_7);
        }
    };
    ($name:ident, $scenario:ident, restarts) => {
        mod $name {
            $crate::e2e_test!(@test containerd_2_1, run_mut, $scenario, V2_1);
            $crate::e2e_test!(@test containerd_1_7, run_mut, $scenario, V1_7);
        }
    };
    ($name:ident, $scenario:ident, restarts, both_modes) => {
        mod $name {
            $crate::e2e_test!(@test containerd_2_1, run_mut, $scenario, V2_1);
            $crate::e2e_test!(@test containerd_2_1_shim_mode, run_mut_shim_mode, $scenario);
            $crate::e2e_test!(@test containerd_1_7, run_mut, $scenario, V1_7);
        }
    };
}

/// Runs `scenario` against a fresh containerd of `version`, then stops containerd and
/// sweeps the instance. On failure the containerd log is kept and its tail printed.
pub async fn run(
    version: Version,
    scenario: impl AsyncFnOnce(&Containerd) -> Result<()>,
) -> Result<()> {
    run_mut(version, async |cd: &mut Containerd| scenario(cd).await).await
}

/// [`run`], for a scenario that may stop and restart containerd.
pub async fn run_mut(
    version: Version,
    scenario: impl AsyncFnOnce(&mut Containerd) -> Result<()>,
) -> Result<()> {
    run_with(version, Installation::built(), scenario).await
}

/// [`run`] on containerd 2.1 with the `berth` handler in shim mode.
pub async fn run_shim_mode(scenario: impl AsyncFnOnce(&Containerd) -> Result<()>) -> Result<()> {
    run_mut_shim_mode(async |cd: &mut Containerd| scenario(cd).await).await
}

/// [`run_mut`] on containerd 2.1 with the `berth` handler in shim mode.
pub async fn run_mut_shim_mode(
    scenario: impl AsyncFnOnce(&mut Containerd) -> Result<()>,
) -> Result<()> {
    let install = Installation::built().with_sandboxer(Sandboxer::Shim);
    run_with(Version::V2_1, install, scenario).await
}

/// [`run_mut`], with berth installed as `install` says.
pub async fn run_with(
    version: Version,
    install: Installation,
    scenario: impl AsyncFnOnce(&mut Containerd) -> Result<()>,
) -> Result<()> {
    let mut cd = Containerd::start_with(version, install).await?;
    let mut result = scenario(&mut cd).await;
    if result.is_ok() {
        // Every scenario removes its pods: none may leave berth state behind.
        result = leaks::wait_state_root_empty(&cd.berth_state_root()).await;
    }
    if let Err(e) = &result {
        cd.mark_failed();
        eprintln!("berth-e2e: {version} scenario failed: {e:#}");
        eprintln!("berth-e2e: containerd log tail:\n{}", cd.log_tail(60));
    }
    let leftovers = cd.stop();
    result?;
    ensure!(
        leftovers.is_empty(),
        "{version}: the instance had leftovers once containerd stopped:\n  {}",
        leftovers.join("\n  ")
    );
    Ok(())
}

/// A pod config named `name` with a log directory inside the instance (created).
pub fn pod_config(cd: &Containerd, name: &str) -> Result<PodConfig> {
    let dir = cd.instance().pod_logs_dir().join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    Ok(PodConfig::new(name).log_directory(dir.to_string_lossy()))
}

/// RunPodSandbox with `handler`; checks the berth shim exists first when the handler
/// is berth's. Returns the sandbox id.
pub async fn run_pod(cd: &Containerd, config: &PodConfig, handler: &str) -> Result<String> {
    if handler == BERTH_HANDLER {
        cd.require_berth()?;
    }
    cd.cri().run_pod_sandbox(config.to_cri(), handler).await
}

/// PodSandboxStatus's status part.
pub async fn status(cd: &Containerd, id: &str) -> Result<PodSandboxStatus> {
    let resp = cd.cri().pod_sandbox_status(id, false).await?;
    resp.status
        .with_context(|| format!("PodSandboxStatus {id} has no status"))
}

/// The pod's state, as CRI's enum.
pub fn state(status: &PodSandboxStatus) -> PodSandboxState {
    PodSandboxState::try_from(status.state).unwrap_or(PodSandboxState::SandboxNotready)
}

/// Waits up to `timeout` for pod `id` to be SANDBOX_NOTREADY.
pub async fn wait_notready(cd: &Containerd, id: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = state(&status(cd, id).await?);
        if now == PodSandboxState::SandboxNotready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("pod {id} is still {now:?} after {timeout:?}, expected SANDBOX_NOTREADY");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pod's primary IP ("" if none).
pub fn pod_ip(status: &PodSandboxStatus) -> String {
    status
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .unwrap_or_default()
}

/// Asserts pod `id` is ready with an IP from the instance's subnet; returns the IP.
pub async fn expect_ready(cd: &Containerd, id: &str) -> Result<String> {
    let st = status(cd, id).await?;
    ensure!(
        state(&st) == PodSandboxState::SandboxReady,
        "pod {id} is {:?}, not SANDBOX_READY",
        state(&st)
    );
    let ip = pod_ip(&st);
    ensure!(
        cd.instance().owns_pod_ip(&ip),
        "pod {id} has IP {ip:?}, not a host address of {}",
        cd.instance().subnet()
    );
    Ok(ip)
}

/// StopPodSandbox then RemovePodSandbox, then the leak check.
pub async fn remove_and_check(cd: &Containerd, trace: &PodTrace) -> Result<()> {
    cd.cri().stop_pod_sandbox(&trace.id).await?;
    cd.cri().remove_pod_sandbox(&trace.id).await?;
    leaks::check_pod_removed(cd, trace).await
}

/// Waits until `pred` holds, polling every 50 ms, or fails with `what`.
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    mut pred: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !pred() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The single berth-pause of pod `id` (found by `BERTH_SANDBOX_ID`).
pub fn pause_of(id: &str) -> Result<i32> {
    let pids = crate::pod_trace::pause_pids(id);
    match pids.as_slice() {
        [pid] => Ok(*pid),
        [] => bail!("no process carries BERTH_SANDBOX_ID={id}: where is the pod's berth-pause?"),
        many => {
            let list: Vec<String> = many.iter().map(|&p| procs::describe(p)).collect();
            bail!(
                "several processes carry BERTH_SANDBOX_ID={id}:\n  {}",
                list.join("\n  ")
            )
        }
    }
}

/// Whether the pod's tasks on `handler` cannot start, as on containerd
/// 2.1 and 2.2 in shim mode for a handler with an options table: CRI
/// hands the sandbox's task API address to each container through runc's
/// options, and fails StartContainer when the handler's options are of
/// another type (containerd#12986; containerd#13360 moves the address out
/// of runc's options). With such a handler a scenario checks that the pod
/// runs and that this is the failure, so a containerd that fixes it is
/// noticed.
pub fn options_break_container_start(cd: &Containerd, handler: &str) -> bool {
    cd.sandboxer() == Sandboxer::Shim && BERTH_OPTION_HANDLERS.contains(&handler)
}

/// Creates a container of `spec` in `pod` and expects StartContainer to
/// fail as [`options_break_container_start`] says; removes the container.
pub async fn expect_options_break_start(
    cd: &Containerd,
    pod: &str,
    pod_config: &PodConfig,
    spec: &ContainerSpec,
) -> Result<()> {
    let id = cd
        .cri()
        .create_container(pod, spec.to_cri(), pod_config.to_cri())
        .await?;
    let started = cd.cri().start_container(&id).await;
    cd.cri().remove_container(&id).await?;
    let why = match started {
        Ok(()) => bail!(
            "container {id} started in shim mode with runtime options: \
             has containerd stopped passing the task API address in runc's options?"
        ),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        why.contains("failed to get runtime v2 options")
            && why.contains("runtimeoptions.v1.Options"),
        "container {id} failed to start otherwise than containerd's options bug: {why}"
    );
    Ok(())
}

/// CreateContainer then StartContainer of `spec` in pod `pod`; returns its id.
pub async fn run_container(
    cd: &Containerd,
    pod: &str,
    pod_config: &PodConfig,
    spec: &ContainerSpec,
) -> Result<String> {
    let id = cd
        .cri()
        .create_container(pod, spec.to_cri(), pod_config.to_cri())
        .await?;
    cd.cri().start_container(&id).await?;
    Ok(id)
}

/// Waits until container `id` has exited and returns its status.
pub async fn wait_exited(cd: &Containerd, id: &str, timeout: Duration) -> Result<ContainerStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        let status = cd.cri().container_status(id).await?;
        if ContainerState::try_from(status.state) == Ok(ContainerState::ContainerExited) {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!(
                "container {id} is still {:?} after {timeout:?}",
                ContainerState::try_from(status.state)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stdout lines container `spec` of the pod logged so far.
pub fn stdout_lines(pod_config: &PodConfig, spec: &ContainerSpec) -> Result<Vec<String>> {
    let path = std::path::Path::new(&pod_config.log_directory).join(&spec.log_path);
    let log = std::fs::read_to_string(&path)
        .with_context(|| format!("read the CRI log {}", path.display()))?;
    Ok(log_lines(&log)
        .into_iter()
        .filter(|(stream, _)| stream == "stdout")
        .map(|(_, text)| text)
        .collect())
}

/// Waits (at most 30 s) until container `spec` of the pod has logged the
/// line `ready`, as the test containers do once they are set up.
pub async fn wait_ready(pod_config: &PodConfig, spec: &ContainerSpec) -> Result<()> {
    wait_until(
        &format!("container {} to log `ready`", spec.name),
        Duration::from_secs(30),
        || stdout_lines(pod_config, spec).is_ok_and(|l| l.iter().any(|l| l == "ready")),
    )
    .await
}

/// StopContainer and RemoveContainer of every container in `ids`, then the
/// leak check for each: no process, mount, cgroup or state of it is left.
pub async fn remove_containers(cd: &Containerd, ids: &[String]) -> Result<()> {
    for id in ids {
        cd.cri().stop_container(id, 2).await?;
        cd.cri().remove_container(id).await?;
    }
    for id in ids {
        let trace = PodTrace {
            id: id.clone(),
            ..Default::default()
        };
        leaks::check_pod_removed(cd, &trace)
            .await
            .with_context(|| format!("container {id}"))?;
    }
    Ok(())
}

/// The number of open file descriptors of the shim serving pod `trace`.
pub fn shim_fd_count(trace: &PodTrace) -> Result<usize> {
    let shim = match trace.shims.as_slice() {
        [shim] => shim.pid,
        other => bail!("pod {} has {} shims, not one", trace.id, other.len()),
    };
    let dir = format!("/proc/{shim}/fd");
    Ok(std::fs::read_dir(&dir)
        .with_context(|| format!("read {dir}"))?
        .count())
}

/// Fails unless the pod's shim has `before` fds open again (it settles
/// within a second: closing is asynchronous).
pub async fn expect_shim_fds(trace: &PodTrace, before: usize) -> Result<()> {
    let mut now = 0;
    let settled = wait_until("the shim's fds to settle", Duration::from_secs(2), || {
        now = shim_fd_count(trace).unwrap_or(usize::MAX);
        now == before
    })
    .await;
    settled.with_context(|| {
        format!(
            "pod {}: the shim had {before} fds open, now {now}",
            trace.id
        )
    })
}

/// berth's runtime type, for `ctr run --runtime`.
pub const BERTH_RUNTIME: &str = "io.containerd.berth.v2";

/// `ctr run -d` of a busybox `sleep 600` with berth: a container of its own.
pub fn run_solo(cd: &Containerd, id: &str) -> Result<()> {
    cd.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        BERTH_RUNTIME,
        crate::images::BUSYBOX,
        id,
        "sleep",
        "600",
    ])
    .map(drop)
}

/// Kills and removes container `id` of its own, whatever state it is in;
/// best effort, for the end of a test.
pub fn force_remove_solo(cd: &Containerd, id: &str) {
    for args in [
        ["task", "kill", "-s", "SIGKILL", id].as_slice(),
        &["task", "rm", "-f", id],
        &["container", "rm", id],
    ] {
        let _ = cd.ctr_ok(args);
    }
}

/// Fails unless nothing of container `id` of its own is left: no process,
/// mount, cgroup or berth state.
pub async fn expect_solo_gone(cd: &Containerd, id: &str) -> Result<()> {
    let trace = PodTrace {
        id: id.to_owned(),
        ..Default::default()
    };
    leaks::check_pod_removed(cd, &trace).await?;
    leaks::wait_state_root_empty(&cd.berth_state_root()).await
}
