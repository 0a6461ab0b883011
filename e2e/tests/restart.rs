#![cfg(feature = "e2e")]
//! Exit statuses that happen while containerd is down reach it once it is
//! back: containers exit (with a code, or by SIGKILL) while containerd is
//! crashed (SIGKILL) or cleanly stopped (SIGTERM) for a minute, longer than
//! other shims keep retrying their events. After the restart CRI reports
//! each exit code and time, and the shim's TaskExit events, held while
//! containerd was down, are taken by containerd.

use std::time::{Duration, SystemTime};

use anyhow::{ensure, Context, Result};
use berth_e2e::container_config::ContainerSpec;
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::systemd::{self, Driver, Placement};
use berth_e2e::{cgroups, e2e_test, scenario, Containerd};
use k8s_cri::v1::ContainerState;

/// How long containerd stays down: longer than the ~20 s other shims'
/// publishers retry before they drop an event.
const DOWNTIME: Duration = Duration::from_secs(60);

/// How a container is made to exit while containerd is down.
enum Ending {
    /// SIGTERM, which its shell turns into `exit <code>`.
    Code(i32),
    /// SIGKILL: 137.
    Killed,
}

impl Ending {
    fn expected(&self) -> i32 {
        match self {
            Ending::Code(code) => *code,
            Ending::Killed => 137,
        }
    }
}

/// The processes in the cgroup at `path`.
fn processes(path: &str) -> Result<Vec<i32>> {
    let procs = cgroups::in_every_hierarchy(path)
        .into_iter()
        .map(|dir| dir.join("cgroup.procs"))
        .find(|p| p.exists())
        .with_context(|| format!("no cgroup {path}"))?;
    let text = std::fs::read_to_string(&procs)?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

fn signal_all(path: &str, signal: i32) -> Result<()> {
    for pid in processes(path)? {
        // SAFETY: kill(2) takes plain integers and touches no memory.
        unsafe { libc::kill(pid, signal) };
    }
    Ok(())
}

/// Runs one container per ending in a pod, stops containerd with
/// `halt_signal`, ends the containers, restarts containerd after `downtime`
/// and checks what CRI and containerd's log report.
async fn exits_while_containerd_is_down(
    cd: &mut Containerd,
    name: &str,
    driver: Driver,
    halt_signal: i32,
    downtime: Duration,
    endings: &[Ending],
) -> Result<()> {
    let place = Placement::new(cd, name, driver);
    let config = scenario::pod_config(cd, name)?.cgroup_parent(&place.parent);
    let pod = scenario::run_pod(cd, &config, place.handler).await?;
    let trace = PodTrace::capture(cd, &pod, place.traced_parent()).await?;
    let mut containers = Vec::new();
    let mut specs = Vec::new();
    for (i, ending) in endings.iter().enumerate() {
        let code = match ending {
            Ending::Code(code) => *code,
            Ending::Killed => 3,
        };
        let spec = ContainerSpec::shell(
            &format!("c{i}"),
            &format!("trap 'exit {code}' TERM; echo ready; while :; do sleep 1 & wait $!; done"),
        );
        containers.push(scenario::run_container(cd, &pod, &config, &spec).await?);
        specs.push(spec);
    }
    for spec in &specs {
        scenario::wait_ready(&config, spec).await?;
    }

    cd.halt(halt_signal)?;
    let halted = std::time::Instant::now();
    let ended_at = SystemTime::now();
    for (id, ending) in containers.iter().zip(endings) {
        let signal = match ending {
            Ending::Code(_) => libc::SIGTERM,
            Ending::Killed => libc::SIGKILL,
        };
        signal_all(&place.cgroup(id), signal)?;
    }
    for id in &containers {
        scenario::wait_until(
            &format!("container {id} to exit while containerd is down"),
            Duration::from_secs(20),
            // systemd removes a scope's cgroup once it is empty.
            || processes(&place.cgroup(id)).map_or(place.slice.is_some(), |p| p.is_empty()),
        )
        .await?;
    }
    tokio::time::sleep(downtime.saturating_sub(halted.elapsed())).await;
    let log_from = cd.log_len();
    cd.restart().await?;

    for (id, ending) in containers.iter().zip(endings) {
        let status = scenario::wait_exited(cd, id, Duration::from_secs(30)).await?;
        ensure!(
            ContainerState::try_from(status.state) == Ok(ContainerState::ContainerExited)
                && status.exit_code == ending.expected(),
            "container {id} reported exit code {} after the restart, expected {}",
            status.exit_code,
            ending.expected()
        );
        let finished = SystemTime::UNIX_EPOCH + Duration::from_nanos(status.finished_at as u64);
        let after_end = finished.duration_since(ended_at).map_err(|e| {
            anyhow::anyhow!(
                "container {id} finished {:?} before it was ended",
                e.duration()
            )
        })?;
        ensure!(
            after_end < Duration::from_secs(10),
            "container {id} finished {after_end:?} after it was ended: not its real exit time"
        );
    }
    // The shim delivers the exits it queued while containerd was down; it
    // logs each one containerd took (containerd does not log forwarded
    // events), and its log reaches containerd's again after the restart.
    let mut missing = Vec::new();
    scenario::wait_until(
        "containerd to take the shim's held TaskExit events",
        Duration::from_secs(30),
        || {
            let log = cd.log_since(log_from).unwrap_or_default();
            missing = containers
                .iter()
                .filter(|id| !log.contains(&format!("delivered held event /tasks/exit of {id}")))
                .cloned()
                .collect();
            missing.is_empty()
        },
    )
    .await
    .with_context(|| format!("no TaskExit delivered after the restart for {missing:?}"))?;
    // The restarted containerd asks again how the pod is (shim mode:
    // SandboxStatus) and watches it again (WaitSandbox, or the sandbox
    // task's Wait): the pod is still ready, and the end of its pause
    // reaches CRI.
    scenario::expect_ready(cd, &pod)
        .await
        .context("after containerd's restart")?;
    let pause = scenario::pause_of(&pod)?;
    // SAFETY: kill(2) takes plain integers and touches no memory.
    let killed = unsafe { libc::kill(pause, libc::SIGKILL) };
    ensure!(
        killed == 0,
        "kill -9 pause {pause}: {}",
        std::io::Error::last_os_error()
    );
    scenario::wait_notready(cd, &pod, Duration::from_secs(20))
        .await
        .context("once its pause was killed after containerd's restart")?;
    scenario::remove_and_check(cd, &trace).await?;
    let mut ids: Vec<&str> = containers.iter().map(String::as_str).collect();
    ids.push(&pod);
    place.expect_gone(&ids).await
}

async fn exits_survive_a_containerd_crash(cd: &mut Containerd) -> Result<()> {
    exits_while_containerd_is_down(
        cd,
        "crash",
        Driver::Cgroupfs,
        libc::SIGKILL,
        DOWNTIME,
        &[Ending::Code(42), Ending::Killed],
    )
    .await
}

e2e_test!(
    containerd_crash,
    exits_survive_a_containerd_crash,
    restarts,
    both_modes
);

/// The same under the systemd driver, on a host that runs systemd: the
/// scopes outlive containerd and go with the pod. Where there is no
/// systemd, the driver is refused.
async fn exits_survive_a_containerd_restart_with_systemd(cd: &mut Containerd) -> Result<()> {
    if !systemd::runs() {
        let config = scenario::pod_config(cd, "restart-systemd")?;
        return systemd::expect_refused(cd, &config).await;
    }
    exits_while_containerd_is_down(
        cd,
        "restart-systemd",
        Driver::Systemd,
        libc::SIGTERM,
        DOWNTIME,
        &[Ending::Code(42), Ending::Killed],
    )
    .await
}

e2e_test!(
    containerd_restart_systemd,
    exits_survive_a_containerd_restart_with_systemd,
    restarts
);

async fn exits_survive_a_containerd_stop(cd: &mut Containerd) -> Result<()> {
    exits_while_containerd_is_down(
        cd,
        "stop",
        Driver::Cgroupfs,
        libc::SIGTERM,
        DOWNTIME,
        &[Ending::Code(42), Ending::Killed],
    )
    .await
}

e2e_test!(
    containerd_stop,
    exits_survive_a_containerd_stop,
    restarts,
    both_modes
);

async fn a_burst_of_exits_while_containerd_is_down(cd: &mut Containerd) -> Result<()> {
    let endings: Vec<Ending> = (0..50).map(|i| Ending::Code(100 + i)).collect();
    exits_while_containerd_is_down(
        cd,
        "burst",
        Driver::Cgroupfs,
        libc::SIGKILL,
        Duration::from_secs(30),
        &endings,
    )
    .await
}

e2e_test!(
    exit_burst,
    a_burst_of_exits_while_containerd_is_down,
    restarts,
    both_modes
);
