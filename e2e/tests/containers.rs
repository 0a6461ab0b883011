#![cfg(feature = "e2e")]
//! App containers in a berth pod, through CRI: they share the pod's
//! localhost, hostname and IPC namespace, report their exit codes, and stop
//! within their grace period.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use berth_e2e::container_config::ContainerSpec;
use berth_e2e::containerd_config::{BERTH_HANDLER, RUNC_HANDLER};
use berth_e2e::leaks::{self, LeakKind};
use berth_e2e::pod_config::NamespaceMode;
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{cgroups, e2e_test, procs, scenario, Containerd};

async fn containers_share_localhost(cd: &Containerd) -> Result<()> {
    let config = scenario::pod_config(cd, "web")?;
    let pod = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    scenario::expect_ready(cd, &pod).await?;
    let pod_trace = PodTrace::capture(cd, &pod, "").await?;
    let shim_fds = scenario::shim_fd_count(&pod_trace)?;

    let server = ContainerSpec::http_server("server");
    let server_id = scenario::run_container(cd, &pod, &config, &server).await?;
    // The leak check after removal only means something if it sees the
    // running container's rootfs mount and cgroup now.
    let server_trace = PodTrace {
        id: server_id.clone(),
        ..Default::default()
    };
    leaks::ensure_visible(
        cd,
        &server_trace,
        &[LeakKind::Mount, LeakKind::Cgroup, LeakKind::CgroupMember],
    )?;

    let client = ContainerSpec::http_client("client");
    let client_id = scenario::run_container(cd, &pod, &config, &client).await?;
    let status = scenario::wait_exited(cd, &client_id, Duration::from_secs(30)).await?;
    let lines = scenario::stdout_lines(&config, &client)?;
    ensure!(
        status.exit_code == 0,
        "the client exited {}: {lines:?}",
        status.exit_code
    );
    ensure!(
        lines.iter().any(|l| l == "hello-from-berth"),
        "the client did not get the server's page over 127.0.0.1: {lines:?}"
    );
    for what in ["hostname", "ipc"] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{what} ")))
            .with_context(|| format!("no {what} line in {lines:?}"))?;
        let words: Vec<&str> = line.split(' ').collect();
        ensure!(
            words.len() == 3 && !words[1].is_empty() && words[1] == words[2],
            "the containers' {what} differ: {line:?}"
        );
    }
    ensure!(
        lines.iter().any(|l| l == "hostname web web"),
        "the containers do not have the pod's hostname: {lines:?}"
    );

    // ExecSync in the running server: stdout, stderr and the exit code.
    let exec = cd
        .cri()
        .exec_sync(
            &server_id,
            &[
                "sh",
                "-c",
                "echo out; echo err >&2; cat /tmp/www/index.html; exit 7",
            ],
            10,
        )
        .await?;
    ensure!(
        (
            exec.stdout.as_slice(),
            exec.stderr.as_slice(),
            exec.exit_code
        ) == (&b"out\nhello-from-berth\n"[..], &b"err\n"[..], 7),
        "ExecSync returned stdout {:?}, stderr {:?}, exit code {}",
        String::from_utf8_lossy(&exec.stdout),
        String::from_utf8_lossy(&exec.stderr),
        exec.exit_code
    );

    scenario::remove_containers(cd, &[server_id, client_id]).await?;
    // Pipes, FIFOs, eventfds and sockets of the containers are all closed.
    scenario::expect_shim_fds(&pod_trace, shim_fds).await?;
    scenario::remove_and_check(cd, &pod_trace).await
}

async fn exit_codes_are_reported(cd: &Containerd) -> Result<()> {
    let config = scenario::pod_config(cd, "exits")?;
    let pod = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    let pod_trace = PodTrace::capture(cd, &pod, "").await?;

    let exit42 = ContainerSpec::shell("exit42", "echo bye; exit 42");
    let exit42_id = scenario::run_container(cd, &pod, &config, &exit42).await?;
    let status = scenario::wait_exited(cd, &exit42_id, Duration::from_secs(20)).await?;
    ensure!(
        status.exit_code == 42,
        "exit 42 reported as {}",
        status.exit_code
    );
    ensure!(
        scenario::stdout_lines(&config, &exit42)? == ["bye"],
        "the output before the exit is in the log"
    );

    // PID 1 of its namespace cannot SIGKILL itself: the kill comes from
    // outside, as StopContainer with no grace period sends it.
    let killed = ContainerSpec::shell("killed", "echo ready; sleep 1000; exit 3");
    let killed_id = scenario::run_container(cd, &pod, &config, &killed).await?;
    scenario::wait_ready(&config, &killed).await?;
    cd.cri().stop_container(&killed_id, 0).await?;
    let status = scenario::wait_exited(cd, &killed_id, Duration::from_secs(20)).await?;
    ensure!(
        status.exit_code == 137,
        "SIGKILL reported as {}",
        status.exit_code
    );

    // On a terminal: its stdio is a tty, its output reaches the log, and
    // its exit code is reported.
    let terminal = ContainerSpec::shell(
        "terminal",
        "[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo on-a-tty; exit 3",
    )
    .tty();
    let terminal_id = scenario::run_container(cd, &pod, &config, &terminal).await?;
    let status = scenario::wait_exited(cd, &terminal_id, Duration::from_secs(20)).await?;
    let lines = scenario::stdout_lines(&config, &terminal)?;
    ensure!(
        status.exit_code == 3 && lines.iter().any(|l| l.trim_end_matches('\r') == "on-a-tty"),
        "a tty container exited {} and logged {lines:?}",
        status.exit_code
    );

    scenario::remove_containers(cd, &[exit42_id, killed_id, terminal_id]).await?;
    scenario::remove_and_check(cd, &pod_trace).await
}

async fn stop_honours_the_grace_period(cd: &Containerd) -> Result<()> {
    let config = scenario::pod_config(cd, "stop")?;
    let pod = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    let pod_trace = PodTrace::capture(cd, &pod, "").await?;

    let stubborn = ContainerSpec::shell(
        "stubborn",
        "trap '' TERM; echo ready; while :; do sleep 1; done",
    );
    let polite = ContainerSpec::shell(
        "polite",
        "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.1; done",
    );
    let stubborn_id = scenario::run_container(cd, &pod, &config, &stubborn).await?;
    let polite_id = scenario::run_container(cd, &pod, &config, &polite).await?;
    for spec in [&stubborn, &polite] {
        scenario::wait_ready(&config, spec).await?;
    }

    let started = Instant::now();
    cd.cri().stop_container(&polite_id, 10).await?;
    let polite_took = started.elapsed();
    let status = cd.cri().container_status(&polite_id).await?;
    ensure!(
        status.exit_code == 0,
        "a container that handles SIGTERM exited {}",
        status.exit_code
    );
    ensure!(
        polite_took < Duration::from_secs(10),
        "stopping a container that handles SIGTERM waited out the grace period ({polite_took:?})"
    );
    ensure!(
        scenario::stdout_lines(&config, &polite)?
            .iter()
            .any(|l| l == "bye"),
        "the SIGTERM handler ran"
    );

    let started = Instant::now();
    cd.cri().stop_container(&stubborn_id, 1).await?;
    let stubborn_took = started.elapsed();
    let status = cd.cri().container_status(&stubborn_id).await?;
    ensure!(
        status.exit_code == 137,
        "a container that ignores SIGTERM exited {}",
        status.exit_code
    );
    ensure!(
        stubborn_took >= Duration::from_secs(1),
        "the container was killed before its grace period ran out ({stubborn_took:?})"
    );

    scenario::remove_containers(cd, &[stubborn_id, polite_id]).await?;
    scenario::remove_and_check(cd, &pod_trace).await
}

/// Processes in the PID namespace of pod pause `pause` that are zombies.
fn zombies_in_pod(pause: i32) -> Vec<String> {
    let Some(ns) = procs::ns_inode(pause, "pid") else {
        return vec![format!("pause {pause} is gone")];
    };
    procs::all_pids()
        .into_iter()
        .filter(|&pid| procs::ns_inode(pid, "pid") == Some(ns))
        .filter(|&pid| procs::stat(pid).is_some_and(|s| s.state == 'Z'))
        .map(procs::describe)
        .collect()
}

async fn a_shared_pid_namespace_is_the_pods(cd: &Containerd) -> Result<()> {
    let config = scenario::pod_config(cd, "shared")?.pid_mode(NamespaceMode::Pod);
    let pod = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    let pod_trace = PodTrace::capture(cd, &pod, "").await?;
    let pause = scenario::pause_of(&pod)?;

    let worker = ContainerSpec::shell("worker", "echo ready; exec sleep 1000").share_pod_pids();
    let worker_id = scenario::run_container(cd, &pod, &config, &worker).await?;
    scenario::wait_ready(&config, &worker).await?;
    // The second container sees the first's process and pause as PID 1, and
    // leaves 100 orphans behind for pause to reap.
    let looker = ContainerSpec::shell(
        "looker",
        "echo \"init $(cat /proc/1/comm)\"; \
         for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" = sleep ] && echo \"sees sleep\"; done; \
         i=0; while [ $i -lt 100 ]; do (sleep 0.2 &); i=$((i+1)); done; echo forked",
    )
    .share_pod_pids();
    let looker_id = scenario::run_container(cd, &pod, &config, &looker).await?;
    let status = scenario::wait_exited(cd, &looker_id, Duration::from_secs(30)).await?;
    let lines = scenario::stdout_lines(&config, &looker)?;
    ensure!(
        status.exit_code == 0,
        "the looker exited {}: {lines:?}",
        status.exit_code
    );
    ensure!(
        lines.iter().any(|l| l == "init berth-pause"),
        "pause is not PID 1: {lines:?}"
    );
    ensure!(
        lines.iter().any(|l| l == "sees sleep"),
        "the worker's process is not visible: {lines:?}"
    );
    ensure!(
        lines.iter().any(|l| l == "forked"),
        "the forks did not run: {lines:?}"
    );
    let mut zombies = Vec::new();
    scenario::wait_until("the orphans are reaped", Duration::from_secs(10), || {
        zombies = zombies_in_pod(pause);
        zombies.is_empty()
            && procs::all_pids()
                .into_iter()
                .all(|p| procs::stat(p).is_none_or(|s| !(s.ppid == pause && s.comm == "sleep")))
    })
    .await
    .with_context(|| format!("zombies: {zombies:?}"))?;

    scenario::remove_containers(cd, &[worker_id, looker_id]).await?;
    scenario::remove_and_check(cd, &pod_trace).await
}

/// The cgroup directory of process `pid` for `controller`: its v1 one, or on a
/// v2 host its only one.
fn cgroup_dir(pid: i32, controller: &str) -> Result<std::path::PathBuf> {
    let cgroups = procs::cgroups(pid).with_context(|| format!("cgroups of {pid}"))?;
    if cgroups::is_v2() {
        let path = cgroups
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .with_context(|| format!("no unified cgroup for {pid}:\n{cgroups}"))?;
        return Ok(std::path::Path::new(cgroups::CGROUP_ROOT).join(path.trim_start_matches('/')));
    }
    let path = cgroups
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _ = parts.next();
            let controllers = parts.next()?;
            controllers
                .split(',')
                .any(|c| c == controller)
                .then(|| parts.next())
                .flatten()
                .map(|path| (controllers, path))
        })
        .with_context(|| format!("no {controller} cgroup for {pid}:\n{cgroups}"))?;
    let (mount, path) = path;
    Ok(std::path::Path::new("/sys/fs/cgroup")
        .join(mount)
        .join(path.trim_start_matches('/')))
}

/// The contents of `file` in `pid`'s cgroup of `controller`, trimmed.
fn cgroup_file(pid: i32, controller: &str, file: &str) -> Result<String> {
    let path = cgroup_dir(pid, controller)?.join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    Ok(text.trim().to_owned())
}

async fn stats_and_updates_reach_the_cgroup(cd: &Containerd) -> Result<()> {
    // kubelet always gives a pod a cgroup parent: PodSandboxStats reads it.
    let parent = cd.cgroup_parent("res");
    let config = scenario::pod_config(cd, "res")?.cgroup_parent(&parent);
    let pod = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    let pod_trace = PodTrace::capture(cd, &pod, &parent).await?;
    let shim_fds = scenario::shim_fd_count(&pod_trace)?;
    let busy = ContainerSpec::shell(
        "busy",
        "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo ready; exec sleep 1000",
    )
    .cpu_shares(512);
    let busy_id = scenario::run_container(cd, &pod, &config, &busy).await?;
    scenario::wait_ready(&config, &busy).await?;

    let stats = cd.cri().container_stats(&busy_id).await?;
    let cpu = stats
        .cpu
        .and_then(|c| c.usage_core_nano_seconds)
        .map_or(0, |v| v.value);
    let memory = stats
        .memory
        .and_then(|m| m.working_set_bytes)
        .map_or(0, |v| v.value);
    ensure!(
        cpu > 0,
        "ContainerStats reports no CPU time for a container that counted to 200000"
    );
    ensure!(memory > 0, "ContainerStats reports no memory in use");
    // The pod's stats carry its containers' (each one through berth's
    // Stats).
    let pod_stats = cd.cri().pod_sandbox_stats(&pod).await?;
    let listed = pod_stats
        .linux
        .as_ref()
        .map(|l| {
            l.containers
                .iter()
                .map(|c| c.attributes.as_ref().map(|a| a.id.clone()))
        })
        .into_iter()
        .flatten()
        .flatten()
        .collect::<Vec<_>>();
    ensure!(
        listed.contains(&busy_id),
        "PodSandboxStats lists {listed:?}, not the running container"
    );

    let limit: i64 = 48 * 1024 * 1024;
    // On v2, `unified` keys are written as they are (in-place pod resize
    // and NRI use them); a v1 host has none.
    let high: i64 = 40 * 1024 * 1024;
    let unified: std::collections::HashMap<String, String> = if cgroups::is_v2() {
        [("memory.high".to_owned(), high.to_string())].into()
    } else {
        Default::default()
    };
    let status = cd.cri().container_status(&busy_id).await?;
    let pid = procs::all_pids()
        .into_iter()
        .find(|&p| procs::cgroups(p).is_some_and(|c| c.contains(&busy_id)))
        .with_context(|| format!("no process of container {busy_id} ({:?})", status.state))?;
    let (cpu_file, weight_at_512, weight_at_2048) = if cgroups::is_v2() {
        // The curve runc (1.3.2 on) and libcontainer use: 1024 shares are
        // weight 100.
        ("cpu.weight", "59", "174")
    } else {
        ("cpu.shares", "512", "2048")
    };
    let created = cgroup_file(pid, "cpu", cpu_file)?;
    ensure!(
        created == weight_at_512,
        "{cpu_file} is {created:?} for a container created with 512 CPU shares"
    );
    let update = |cpu_shares: i64| k8s_cri::v1::LinuxContainerResources {
        memory_limit_in_bytes: limit,
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares,
        unified: unified.clone(),
        ..Default::default()
    };
    cd.cri()
        .update_container_resources(&busy_id, update(2048))
        .await?;
    let written: Vec<(&str, &str, String)> = if cgroups::is_v2() {
        vec![
            ("memory", "memory.max", limit.to_string()),
            ("cpu", "cpu.max", "50000 100000".into()),
            ("cpu", cpu_file, weight_at_2048.into()),
            ("memory", "memory.high", high.to_string()),
        ]
    } else {
        vec![
            ("memory", "memory.limit_in_bytes", limit.to_string()),
            ("cpu", "cpu.cfs_period_us", "100000".into()),
            ("cpu", "cpu.cfs_quota_us", "50000".into()),
            ("cpu", cpu_file, weight_at_2048.into()),
        ]
    };
    for (controller, file, want) in written {
        let written = cgroup_file(pid, controller, file)?;
        ensure!(
            written == want,
            "{file} is {written:?} after the update to {want}"
        );
    }
    // Update converts shares as create does: back to 512, the weight is
    // what create gave.
    cd.cri()
        .update_container_resources(&busy_id, update(512))
        .await?;
    let updated = cgroup_file(pid, "cpu", cpu_file)?;
    ensure!(
        updated == created,
        "{cpu_file} is {updated:?} after an update to 512 CPU shares, {created:?} after create"
    );

    // Past its limit, a container is OOM-killed, and CRI says so. (That
    // TaskOOM comes before TaskExit is proved by the service's unit test.)
    let hog = ContainerSpec::shell(
        "hog",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    )
    .memory_limit(limit);
    let hog_id = scenario::run_container(cd, &pod, &config, &hog).await?;
    let status = scenario::wait_exited(cd, &hog_id, Duration::from_secs(60)).await?;
    ensure!(
        (status.reason.as_str(), status.exit_code) == ("OOMKilled", 137),
        "a container past its memory limit ended {:?} with {}: {:?}",
        status.reason,
        status.exit_code,
        scenario::stdout_lines(&config, &hog)
    );
    // The reason came from berth's OOM watch (its shim log is in
    // containerd's).
    let log = std::fs::read_to_string(cd.instance().log_path())?;
    ensure!(
        log.lines()
            .any(|l| l.contains("msg=\"OOM kill in its memory cgroup\"")
                && l.contains(&format!(" container={hog_id}"))),
        "berth saw no OOM kill of {hog_id}"
    );

    scenario::remove_containers(cd, &[busy_id, hog_id]).await?;
    scenario::expect_shim_fds(&pod_trace, shim_fds).await?;
    scenario::remove_and_check(cd, &pod_trace).await
}

/// A memory limit lowered below what the container uses, answered as runc
/// answers it. On v1 the kernel reclaims what it can and refuses the rest:
/// Update fails naming the usage, and the container runs on under its old
/// limit. On v2 the write succeeds and the kernel OOM-kills the container.
/// The same pod runs on berth and on runc.
async fn a_limit_below_usage(cd: &Containerd, handler: &str) -> Result<()> {
    let config = scenario::pod_config(cd, "below")?;
    let pod = scenario::run_pod(cd, &config, handler).await?;
    let pod_trace = PodTrace::capture(cd, &pod, "").await?;
    let created: i64 = 128 << 20;
    // 40 MB of anonymous memory in a shell variable, held; no swap here.
    let holder = ContainerSpec::shell(
        "holder",
        "x=$(head -c 40000000 /dev/zero | tr '\\0' a); echo ready; while :; do sleep 1; done",
    )
    .memory_limit(created);
    let id = scenario::run_container(cd, &pod, &config, &holder).await?;
    scenario::wait_ready(&config, &holder).await?;
    let lowered = k8s_cri::v1::LinuxContainerResources {
        memory_limit_in_bytes: 16 << 20,
        ..Default::default()
    };
    let result = cd.cri().update_container_resources(&id, lowered).await;
    if cgroups::is_v2() {
        result.with_context(|| format!("{handler}: lower memory.max below usage"))?;
        let status = scenario::wait_exited(cd, &id, Duration::from_secs(60)).await?;
        // containerd 2.1's Go runc shim may publish the exit before the
        // OOM event, and CRI then says "Error" (containerd#8893, fixed
        // upstream by #12714): for runc the kill is what is checked. berth
        // publishes the OOM before the exit.
        let reason_ok =
            status.reason == "OOMKilled" || (handler == RUNC_HANDLER && status.reason == "Error");
        ensure!(
            reason_ok && status.exit_code == 137,
            "{handler}: a container whose limit went below its usage ended {:?} with {}",
            status.reason,
            status.exit_code
        );
    } else {
        let (err, code) = match result {
            Ok(()) => anyhow::bail!("{handler}: a v1 memory limit below usage was accepted"),
            Err(e) => (
                format!("{e:#}"),
                e.downcast_ref::<tonic::Status>().map(tonic::Status::code),
            ),
        };
        ensure!(
            err.contains("current usage: ") && err.contains("peak usage: "),
            "{handler}: the refusal does not name the usage: {err}"
        );
        if handler == BERTH_HANDLER {
            ensure!(
                code == Some(tonic::Code::FailedPrecondition),
                "{handler}: the refusal is {code:?}, not FailedPrecondition: {err}"
            );
        }
        let status = cd.cri().container_status(&id).await?;
        ensure!(
            status.state == k8s_cri::v1::ContainerState::ContainerRunning as i32,
            "{handler}: the container is {:?} after the refused update",
            status.state
        );
        let pid = procs::all_pids()
            .into_iter()
            .find(|&p| procs::cgroups(p).is_some_and(|c| c.contains(&id)))
            .with_context(|| format!("no process of container {id}"))?;
        let limit = cgroup_file(pid, "memory", "memory.limit_in_bytes")?;
        ensure!(
            limit == created.to_string(),
            "{handler}: memory.limit_in_bytes is {limit} after the refused update"
        );
    }
    scenario::remove_containers(cd, &[id]).await?;
    scenario::remove_and_check(cd, &pod_trace).await
}

async fn limit_below_usage_berth(cd: &Containerd) -> Result<()> {
    a_limit_below_usage(cd, BERTH_HANDLER).await
}

async fn limit_below_usage_runc(cd: &Containerd) -> Result<()> {
    a_limit_below_usage(cd, RUNC_HANDLER).await
}

/// The spec's device allow-list holds: a container may make any device node
/// (CRI allows `m` for all, and gives it CAP_MKNOD) but may open only the
/// devices the list allows. On v1 that is the devices controller; on v2
/// berth's eBPF filter on the container's cgroup.
async fn only_allowed_devices_open(cd: &Containerd) -> Result<()> {
    let config = scenario::pod_config(cd, "devices")?;
    let pod = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    let pod_trace = PodTrace::capture(cd, &pod, "").await?;
    let spec = ContainerSpec::shell("devices", "echo ready; exec sleep 1000");
    let id = scenario::run_container(cd, &pod, &config, &spec).await?;
    scenario::wait_ready(&config, &spec).await?;
    // /dev/kmsg (c 1:11) is not on CRI's list (and anyone may write to it
    // where no list stops them); /dev/null (c 1:3) is, and a node of it
    // made beside the kmsg node shows that /tmp allows devices at all.
    let script = "mknod /tmp/kmsg c 1 11 && mknod /tmp/null c 1 3 && echo made; \
                  (echo berth-e2e > /tmp/kmsg) 2>/dev/null && echo kmsg-written || echo kmsg-refused; \
                  (echo x > /tmp/null) && echo null-written";
    let out = cd.cri().exec_sync(&id, &["sh", "-c", script], 20).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    ensure!(
        lines == ["made", "kmsg-refused", "null-written"],
        "devices in the container: {lines:?} (stderr {:?})",
        String::from_utf8_lossy(&out.stderr)
    );
    scenario::remove_containers(cd, &[id]).await?;
    scenario::remove_and_check(cd, &pod_trace).await
}

/// A `unified` key names a limit in the container's own cgroup, never a
/// path: an absolute or climbing key would have libcontainer write a host
/// file at create, and Update would write it too. Both refuse the key by
/// name, and the host file keeps its contents; the runtime's own
/// `cgroup.*` files are refused the same way.
async fn unified_keys_stay_in_the_cgroup(cd: &Containerd) -> Result<()> {
    const HOST_TEXT: &str = "host file, must stay\n";
    let host_file = cd.instance().dir().join("unified-canary");
    std::fs::write(&host_file, HOST_TEXT)?;
    let host_path = host_file.to_string_lossy().into_owned();
    let climbing = format!("{}{}", "../".repeat(12), &host_path[1..]);
    let config = scenario::pod_config(cd, "unified")?;
    let pod = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    let pod_trace = PodTrace::capture(cd, &pod, "").await?;
    let mut ids = Vec::new();
    for key in [host_path.as_str(), climbing.as_str(), "cgroup.procs"] {
        let spec = ContainerSpec::shell(&format!("unified-{}", ids.len()), "exec sleep 600");
        let mut cri_config = spec.to_cri();
        let linux = cri_config.linux.get_or_insert_with(Default::default);
        linux.resources.get_or_insert_with(Default::default).unified =
            [(key.to_owned(), "1".to_owned())].into();
        let id = cd
            .cri()
            .create_container(&pod, cri_config, config.to_cri())
            .await?;
        ids.push(id.clone());
        let err = match cd.cri().start_container(&id).await {
            Ok(()) => anyhow::bail!("a container with the unified key {key:?} started"),
            Err(e) => format!("{e:#}"),
        };
        let named = format!("linux.resources.unified.{key}");
        ensure!(
            err.contains(&named) && err.contains("invalid argument"),
            "create with unified key {key:?}: the error is not an InvalidArgument naming {named:?}: {err}"
        );
        let text = std::fs::read_to_string(&host_file)?;
        ensure!(text == HOST_TEXT, "the host file now reads {text:?}");
    }
    // Update: the same keys are refused on a running container.
    let spec = ContainerSpec::shell("unified-update", "echo ready; exec sleep 600");
    let id = scenario::run_container(cd, &pod, &config, &spec).await?;
    scenario::wait_ready(&config, &spec).await?;
    ids.push(id.clone());
    for key in [host_path.as_str(), climbing.as_str(), "cgroup.kill"] {
        let resources = k8s_cri::v1::LinuxContainerResources {
            unified: [(key.to_owned(), "1".to_owned())].into(),
            ..Default::default()
        };
        let err = match cd.cri().update_container_resources(&id, resources).await {
            Ok(()) => anyhow::bail!("an update with the unified key {key:?} was taken"),
            Err(e) => format!("{e:#}"),
        };
        ensure!(
            err.contains(&format!("resources.unified.{key}")),
            "update with unified key {key:?}: the error does not name it: {err}"
        );
        let text = std::fs::read_to_string(&host_file)?;
        ensure!(text == HOST_TEXT, "the host file now reads {text:?}");
    }
    let status = cd.cri().container_status(&id).await?;
    ensure!(
        status.state == k8s_cri::v1::ContainerState::ContainerRunning as i32,
        "the container is {:?} after the refused updates",
        status.state
    );
    scenario::remove_containers(cd, &ids).await?;
    scenario::remove_and_check(cd, &pod_trace).await
}

/// An exec probe every few seconds is a container's whole life on a real
/// node: a thousand ExecSyncs leave the shim with the descriptors it had
/// and about the memory it had, and the container with its init alone.
async fn a_thousand_execs_leave_nothing_behind(cd: &Containerd) -> Result<()> {
    const EXECS: usize = 1000;
    // Resident memory the shim may gain over them: allocator noise (tens
    // of KiB seen), not a leak of 1 KiB an exec.
    const RSS_SLACK_KIB: u64 = 1024;
    let config = scenario::pod_config(cd, "probed")?;
    let pod = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    let pod_trace = PodTrace::capture(cd, &pod, "").await?;
    let probed = ContainerSpec::shell("probed", "echo ready; exec sleep 1000");
    let id = scenario::run_container(cd, &pod, &config, &probed).await?;
    scenario::wait_ready(&config, &probed).await?;
    let shim = match pod_trace.shims.as_slice() {
        [shim] => shim.pid,
        other => anyhow::bail!("pod {pod} has {} shims", other.len()),
    };
    let probe = async |n: usize| -> Result<()> {
        let out = cd.cri().exec_sync(&id, &["sh", "-c", "exit 3"], 10).await?;
        ensure!(out.exit_code == 3, "exec {n} exited {}", out.exit_code);
        Ok(())
    };
    // Warmed up: the first execs grow the shim's heap and runtime once.
    for n in 0..50 {
        probe(n).await?;
    }
    let fds = scenario::shim_fd_count(&pod_trace)?;
    let rss = procs::rss_kib(shim).context("the shim's RSS")?;
    let started = Instant::now();
    for n in 0..EXECS {
        probe(n).await?;
    }
    let took = started.elapsed();
    scenario::expect_shim_fds(&pod_trace, fds).await?;
    let rss_after = procs::rss_kib(shim).context("the shim's RSS")?;
    eprintln!(
        "{EXECS} execs in {took:?}; shim RSS {rss} KiB before, {rss_after} KiB after; {fds} fds"
    );
    ensure!(
        rss_after <= rss + RSS_SLACK_KIB,
        "the shim grew from {rss} KiB to {rss_after} KiB over {EXECS} execs"
    );
    // Pause and the container's init; no exec process, live or a zombie.
    let children: Vec<(i32, char)> = procs::all_pids()
        .into_iter()
        .filter_map(|p| {
            procs::stat(p)
                .filter(|s| s.ppid == shim)
                .map(|s| (p, s.state))
        })
        .collect();
    ensure!(
        children.len() == 2 && children.iter().all(|&(_, state)| state != 'Z'),
        "the shim has children left after the execs: {children:?}"
    );
    scenario::remove_containers(cd, &[id]).await?;
    scenario::remove_and_check(cd, &pod_trace).await
}

e2e_test!(share_localhost, containers_share_localhost, both_modes);
e2e_test!(
    thousand_execs,
    a_thousand_execs_leave_nothing_behind,
    both_modes
);
e2e_test!(
    stats_and_update,
    stats_and_updates_reach_the_cgroup,
    both_modes
);
e2e_test!(shared_pid, a_shared_pid_namespace_is_the_pods, both_modes);
e2e_test!(device_allow_list, only_allowed_devices_open, both_modes);
e2e_test!(unified_keys, unified_keys_stay_in_the_cgroup, both_modes);
e2e_test!(limit_below_usage, limit_below_usage_berth, both_modes);
e2e_test!(limit_below_usage_runc, limit_below_usage_runc, both_modes);
e2e_test!(exit_codes, exit_codes_are_reported, both_modes);
e2e_test!(stop_grace_period, stop_honours_the_grace_period, both_modes);
