#![cfg(feature = "e2e")]
//! When a pod's shim is SIGKILLed, containerd notices and runs the shim's
//! `delete` action for each task, which kills the orphaned berth-pause and
//! containers and removes the pod's cgroups and state. A container that had
//! exited keeps its real exit code, a running one ends; the pod goes
//! NOTREADY and removing it leaves nothing. For a task that had exited and
//! was not deleted, `delete` reports the exit the shim journaled, and
//! containerd passes it on in its TaskExit event. Under the systemd driver
//! the scope units go too.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use berth_e2e::container_config::ContainerSpec;
use berth_e2e::pod_trace::{self, PodTrace};
use berth_e2e::systemd::{self, Driver, Placement};
use berth_e2e::{e2e_test, leaks, scenario, Containerd};

async fn a_dead_shim_is_cleaned_up(cd: &Containerd) -> Result<()> {
    dead_shim_cleaned_up(cd, "killed", Driver::Cgroupfs).await
}

/// The same under the systemd driver: `delete` leaves no scope unit of the
/// pod or its containers behind. Where there is no systemd (the host lane)
/// this is only the check that the driver is refused, by name.
async fn a_dead_shim_leaves_no_unit(cd: &Containerd) -> Result<()> {
    if !systemd::runs() {
        let config = scenario::pod_config(cd, "killed-systemd")?;
        return systemd::expect_refused(cd, &config).await;
    }
    dead_shim_cleaned_up(cd, "killed-systemd", Driver::Systemd).await
}

async fn dead_shim_cleaned_up(cd: &Containerd, name: &str, driver: Driver) -> Result<()> {
    let place = Placement::new(cd, name, driver);
    let config = scenario::pod_config(cd, name)?.cgroup_parent(&place.parent);
    let id = scenario::run_pod(cd, &config, place.handler).await?;
    scenario::expect_ready(cd, &id).await?;
    let pause = scenario::pause_of(&id)?;
    let trace = PodTrace::capture(cd, &id, place.traced_parent()).await?;
    let exited = ContainerSpec::shell("exited", "exit 42");
    let exited_id = scenario::run_container(cd, &id, &config, &exited).await?;
    scenario::wait_exited(cd, &exited_id, Duration::from_secs(20)).await?;
    let running = ContainerSpec::shell("running", "echo ready; exec sleep 1000");
    let running_id = scenario::run_container(cd, &id, &config, &running).await?;
    scenario::wait_ready(&config, &running).await?;
    let [shim] = trace.shims.as_slice() else {
        anyhow::bail!("pod {id} has shims {:?}, expected one", trace.shims);
    };

    ensure!(
        shim.is_alive(),
        "pod {id}: its shim {} is gone already",
        shim.pid
    );
    // Under the systemd driver the units are there to be left behind.
    place.expect_scopes(&[&id, &running_id])?;
    nix_kill(shim.pid)?;
    // The orphaned pause must not outlive the clean-up: `delete` kills it.
    scenario::wait_until(
        "berth-pause to be killed by the shim's delete",
        Duration::from_secs(20),
        || pod_trace::pause_pids(&id).is_empty(),
    )
    .await
    .with_context(|| format!("pod {id}: pause {pause} survived its shim's death"))?;
    scenario::wait_notready(cd, &id, Duration::from_secs(10))
        .await
        .context("after its shim died")?;
    let status = scenario::wait_exited(cd, &exited_id, Duration::from_secs(20)).await?;
    ensure!(
        status.exit_code == 42,
        "the container that had exited reported {} after its shim died",
        status.exit_code
    );
    // CRI ends the running one itself (with 255) when its Wait on the dead
    // shim fails; it must be exited either way.
    scenario::wait_exited(cd, &running_id, Duration::from_secs(20)).await?;
    scenario::remove_and_check(cd, &trace).await?;
    place.expect_gone(&[&id, &exited_id, &running_id]).await?;
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

e2e_test!(shim_killed, a_dead_shim_is_cleaned_up, both_modes);
e2e_test!(shim_killed_systemd, a_dead_shim_leaves_no_unit);

/// A task that exited and was not deleted when its shim died: containerd's
/// clean-up runs `delete`, which answers with the exit the shim journaled,
/// and containerd's TaskExit for it carries that status and time.
async fn delete_reports_the_journaled_exit(cd: &Containerd) -> Result<()> {
    cd.require_berth()?;
    let id = format!("journaled-{}", cd.instance().slot());
    let ctr = cd.version().bin_dir().join("ctr");
    let mut events = std::process::Command::new(&ctr)
        .arg("-a")
        .arg(cd.address())
        .arg("events")
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .spawn()
        .context("ctr events")?;
    let stdout = events.stdout.take().context("ctr events' stdout")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(|l| l.ok())
        {
            let _ = tx.send(line);
        }
    });
    // ctr subscribes in a few milliseconds; the task's first exit must not
    // come before.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let result = journaled_exit(cd, &id, &rx).await;
    let _ = events.kill();
    let _ = events.wait();
    scenario::force_remove_solo(cd, &id);
    result?;
    scenario::expect_solo_gone(cd, &id).await
}

/// The exit status and time of the next TaskExit of task `id` on the event
/// stream `rx` (lines of `ctr events`).
fn next_exit(rx: &std::sync::mpsc::Receiver<String>, id: &str) -> Result<(u64, String)> {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .with_context(|| format!("no TaskExit of {id} within 30 s"))?;
        if !line.contains("/tasks/exit") || !line.contains(id) {
            continue;
        }
        let json = &line[line.find('{').context("an event without a body")?..];
        let event: serde_json::Value = serde_json::from_str(json)?;
        let status = event["exit_status"].as_u64().unwrap_or(0);
        return Ok((status, event["exited_at"].to_string()));
    }
}

async fn journaled_exit(
    cd: &Containerd,
    id: &str,
    rx: &std::sync::mpsc::Receiver<String>,
) -> Result<()> {
    cd.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        scenario::BERTH_RUNTIME,
        berth_e2e::images::BUSYBOX,
        id,
        "sh",
        "-c",
        "exit 42",
    ])?;
    let (status, exited_at) = next_exit(rx, id)?;
    ensure!(status == 42, "the live shim reported exit {status}");
    let shims = berth_e2e::procs::shims_of(&cd.address(), id);
    let [shim] = shims.as_slice() else {
        anyhow::bail!("task {id} has shims {shims:?}, expected one");
    };
    nix_kill(*shim)?;
    let (again, again_at) = next_exit(rx, id)?;
    ensure!(
        (again, &again_at) == (42, &exited_at),
        "after the shim died containerd reported exit {again} at {again_at}, \
         not the journaled 42 at {exited_at}"
    );
    Ok(())
}

e2e_test!(journaled_exit, delete_reports_the_journaled_exit);
