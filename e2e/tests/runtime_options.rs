#![cfg(feature = "e2e")]
//! The `options` table of a berth runtime in containerd's config reaches the
//! shim (CRI sends it as `runtimeoptions.v1.Options` on `shim start`'s stdin
//! and in each CreateTask), and berth does what it says; and a cgroup
//! parent ending in `.slice`, which containerd turns into a systemd
//! `slice:prefix:name` path whatever the driver, is a literal cgroupfs
//! directory when no driver is configured, as with runc.
//!
//! The handlers are in the generated config ([`berth_e2e::containerd_config`]):
//! - `berth-options`: `IoUid`/`IoGid` 1000, `NoNewKeyring`, a `StateRoot` of
//!   its own and a key berth does not know;
//! - `berth-systemd`: `SystemdCgroup = true`: refused on a host without
//!   systemd, scope units on one with it (the VM lane);
//! - `berth-shim-cgroup`: `ShimCgroup` under the instance's cgroup root.
//!
//! Each is compared with the plain `berth` handler in the same run, so the
//! difference is the options' doing.
//!
//! In shim mode the options reach the pod's shim the same way, but
//! containerd 2.1 starts no container on a handler with options
//! ([`scenario::options_break_container_start`]): there the scenarios check
//! the pod and that failure.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use berth_e2e::container_config::ContainerSpec;
use berth_e2e::containerd_config::{
    BERTH_HANDLER, BERTH_OPTIONS_HANDLER, BERTH_SHIM_CGROUP_HANDLER, BERTH_SYSTEMD_HANDLER,
    OPTIONS_IO_ID, OPTIONS_UNKNOWN_KEY,
};
use berth_e2e::pod_config::PodConfig;
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::systemd::{self, systemctl, PodSlice};
use berth_e2e::{cgroups, e2e_test, leaks, procs, scenario, Containerd, Version};
use k8s_cri::v1 as cri;

/// Reopens its stdout by path, as a process of another user writing to
/// `/dev/stdout` does, and says how that went.
const REOPEN: &str = "if echo reopened > /dev/stdout; then :; else echo reopen-failed; fi; \
    echo ready; exec sleep 600";

/// The CRI config of `spec`, run as user [`OPTIONS_IO_ID`] with no
/// capabilities: only the owner of its stdio pipes may reopen them.
fn as_unprivileged_user(spec: &ContainerSpec) -> cri::ContainerConfig {
    let mut config = spec.to_cri();
    let context = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .expect("every test container has a security context");
    context.run_as_user = Some(cri::Int64Value {
        value: OPTIONS_IO_ID as i64,
    });
    context.run_as_group = Some(cri::Int64Value {
        value: OPTIONS_IO_ID as i64,
    });
    context.capabilities = Some(cri::Capability {
        drop_capabilities: vec!["ALL".into()],
        ..Default::default()
    });
    config
}

/// Runs pod `name` with `handler` and in it the [`REOPEN`] container as an
/// unprivileged user; returns the pod's trace, its config, the container's
/// spec and id.
async fn reopening_pod(
    cd: &Containerd,
    name: &str,
    handler: &str,
) -> Result<(PodTrace, PodConfig, ContainerSpec, String)> {
    let parent = cd.cgroup_parent(name);
    let config = scenario::pod_config(cd, name)?.cgroup_parent(&parent);
    let pod = cd.cri().run_pod_sandbox(config.to_cri(), handler).await?;
    let trace = PodTrace::capture(cd, &pod, &parent).await?;
    let spec = ContainerSpec::shell("reopen", REOPEN);
    let id = cd
        .cri()
        .create_container(&pod, as_unprivileged_user(&spec), config.to_cri())
        .await?;
    cd.cri().start_container(&id).await?;
    scenario::wait_ready(&config, &spec).await?;
    Ok((trace, config, spec, id))
}

/// The line of the host's `/proc/keys` for the session keyring runc and
/// berth name after container `id`.
fn session_keyring(id: &str) -> Result<Option<String>> {
    let keys = std::fs::read_to_string("/proc/keys").context("read /proc/keys")?;
    let name = format!(" _ses.{id}:");
    Ok(keys.lines().find(|l| l.contains(&name)).map(str::to_owned))
}

/// Pod directories under a berth state root.
fn pod_dirs(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The options handler's one pod is under its StateRoot, the plain one
/// under the default root.
fn expect_own_state_root(cd: &Containerd) -> Result<()> {
    let own_root = cd.instance().options_state_root();
    ensure!(
        pod_dirs(&own_root).len() == 1,
        "StateRoot {} holds {:?}, not the one pod of the handler",
        own_root.display(),
        pod_dirs(&own_root)
    );
    ensure!(
        pod_dirs(&cd.berth_state_root()).len() == 1,
        "the default state root holds {:?}, not only the plain pod",
        pod_dirs(&cd.berth_state_root())
    );
    Ok(())
}

async fn the_options_reach_the_shim(cd: &Containerd) -> Result<()> {
    let log_start = cd.log_len();
    let own_root = cd.instance().options_state_root();

    // The plain handler: pipes of root's, a keyring of the container's own.
    let (plain, plain_config, spec, plain_id) = reopening_pod(cd, "plain", BERTH_HANDLER).await?;
    let lines = scenario::stdout_lines(&plain_config, &spec)?;
    ensure!(
        lines.iter().any(|l| l == "reopen-failed"),
        "without IoUid, user {OPTIONS_IO_ID} reopened a pipe of root's: {lines:?}"
    );
    let keyring = session_keyring(&plain_id)?
        .with_context(|| format!("container {plain_id} has no session keyring of its own"))?;
    // An exec joins the container's keyring, as runc's does: the one
    // session keyring it holds is the container's.
    let exec = cd
        .cri()
        .exec_sync(&plain_id, &["grep", " _ses", "/proc/keys"], 10)
        .await?;
    ensure!(exec.exit_code == 0, "an exec in {plain_id}: {exec:?}");
    let seen = String::from_utf8_lossy(&exec.stdout).into_owned();
    let serial = |line: &str| line.split_whitespace().next().map(str::to_owned);
    let sessions: Vec<&str> = seen.lines().collect();
    ensure!(
        sessions.len() == 1 && serial(sessions[0]) == serial(&keyring),
        "an exec in {plain_id} has the session keyrings {sessions:?}, not the container's {keyring:?}"
    );

    // The options' handler.
    if scenario::options_break_container_start(cd, BERTH_OPTIONS_HANDLER) {
        // The pod runs, with its state under StateRoot; no container starts.
        let config = scenario::pod_config(cd, "options")?;
        let opts = scenario::run_pod(cd, &config, BERTH_OPTIONS_HANDLER).await?;
        let opts = PodTrace::capture(cd, &opts, "").await?;
        let spec = ContainerSpec::shell("options", "exit 0");
        scenario::expect_options_break_start(cd, &opts.id, &config, &spec).await?;
        expect_own_state_root(cd)?;
        scenario::remove_containers(cd, std::slice::from_ref(&plain_id)).await?;
        scenario::remove_and_check(cd, &plain).await?;
        scenario::remove_and_check(cd, &opts).await?;
        return leaks::wait_state_root_empty(&own_root).await;
    }
    let (opts, opts_config, spec, opts_id) =
        reopening_pod(cd, "options", BERTH_OPTIONS_HANDLER).await?;
    let lines = scenario::stdout_lines(&opts_config, &spec)?;
    ensure!(
        lines.iter().any(|l| l == "reopened") && !lines.iter().any(|l| l == "reopen-failed"),
        "with IoUid = {OPTIONS_IO_ID}, its pipes are not user {OPTIONS_IO_ID}'s: {lines:?}"
    );
    ensure!(
        session_keyring(&opts_id)?.is_none(),
        "NoNewKeyring, yet container {opts_id} has a session keyring of its own"
    );
    let exec = cd.cri().exec_sync(&opts_id, &["true"], 10).await?;
    ensure!(exec.exit_code == 0, "an exec in {opts_id}: {exec:?}");
    expect_own_state_root(cd)?;
    if cd.version() == Version::V2_1 {
        // containerd 1.7 drops a pod shim's log once the sandbox's bundle
        // is gone; 2.1 keeps it.
        let log = cd.log_since(log_start)?;
        ensure!(
            log.lines().any(|l| l.contains(OPTIONS_UNKNOWN_KEY)
                && l.contains("is ignored")
                && l.contains(&opts_id)),
            "no warning about {OPTIONS_UNKNOWN_KEY} naming container {opts_id} in the log"
        );
    }

    scenario::remove_containers(cd, &[plain_id.clone(), opts_id.clone()]).await?;
    scenario::remove_and_check(cd, &plain).await?;
    scenario::remove_and_check(cd, &opts).await?;
    leaks::wait_state_root_empty(&own_root).await?;
    // The kernel collects a keyring nothing holds any more.
    scenario::wait_until(
        &format!("container {plain_id}'s keyring ({keyring}) to go"),
        leaks::GRACE,
        || session_keyring(&plain_id).is_ok_and(|k| k.is_none()),
    )
    .await
}

e2e_test!(runtime_options, the_options_reach_the_shim, both_modes);

async fn the_cgroup_options_are_obeyed(cd: &Containerd) -> Result<()> {
    let before = leaks::Census::take(cd);
    // ShimCgroup: the shim runs there.
    let shim_cgroup = cd.instance().shim_cgroup();
    cgroups::create(&shim_cgroup).with_context(|| format!("make cgroup {shim_cgroup}"))?;
    let parent = cd.cgroup_parent("shim-cgroup");
    let config = scenario::pod_config(cd, "shim-cgroup")?.cgroup_parent(&parent);
    let pod = cd
        .cri()
        .run_pod_sandbox(config.to_cri(), BERTH_SHIM_CGROUP_HANDLER)
        .await?;
    let trace = PodTrace::capture(cd, &pod, &parent).await?;
    let shim = match trace.shims.as_slice() {
        [shim] => shim.pid,
        other => anyhow::bail!("pod {pod} has {} shims", other.len()),
    };
    let cgroups = procs::cgroups(shim).context("the shim's cgroups")?;
    if cgroups::is_v2() {
        ensure!(
            cgroups.lines().any(|l| l == format!("0::{shim_cgroup}")),
            "the shim's cgroup is not ShimCgroup {shim_cgroup}: {cgroups}"
        );
    }
    for controller in ["memory", "pids", "cpu"]
        .into_iter()
        .filter(|_| !cgroups::is_v2())
    {
        let line = cgroups
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|c| c == controller))
            })
            .with_context(|| format!("no {controller} line in {cgroups}"))?;
        ensure!(
            line.ends_with(&format!(":{shim_cgroup}")),
            "the shim's {controller} cgroup is not ShimCgroup {shim_cgroup}: {line}"
        );
    }
    scenario::remove_and_check(cd, &trace).await?;

    // A ShimCgroup that does not exist fails the pod, and names the cgroup.
    for dir in cgroups::in_every_hierarchy(&shim_cgroup) {
        std::fs::remove_dir(&dir).with_context(|| format!("rmdir {}", dir.display()))?;
    }
    let config = scenario::pod_config(cd, "no-shim-cgroup")?;
    let refused = cd
        .cri()
        .run_pod_sandbox(config.to_cri(), BERTH_SHIM_CGROUP_HANDLER)
        .await;
    let why = format!(
        "{:#}",
        refused.err().context("a pod ran without its ShimCgroup")?
    );
    ensure!(
        why.contains(&format!("cgroup {shim_cgroup} not found")),
        "the refusal does not name the cgroup: {why}"
    );

    let settled = scenario::wait_until("the refused pods' shims to go", leaks::GRACE, || {
        before.grown(&leaks::Census::take(cd)).is_empty()
    })
    .await;
    settled.with_context(|| {
        format!(
            "left after the refusals:\n  {}",
            before.grown(&leaks::Census::take(cd)).join("\n  ")
        )
    })
}

e2e_test!(cgroup_options, the_cgroup_options_are_obeyed, both_modes);

async fn a_slice_parent_is_a_literal_cgroupfs_directory(cd: &Containerd) -> Result<()> {
    // Named for the instance: it is not under the instance's cgroup root.
    let parent = format!("berth-e2e-{}-pods.slice", cd.instance().slot());
    let config = scenario::pod_config(cd, "slice")?.cgroup_parent(&parent);
    let result = slice_pod(cd, &config, &parent).await;
    let left = cgroups::find_named_anywhere(&parent);
    for dir in &left {
        let _ = std::fs::remove_dir(dir);
    }
    result?;
    ensure!(left.is_empty(), "cgroups left: {left:?}");
    Ok(())
}

async fn slice_pod(cd: &Containerd, config: &PodConfig, parent: &str) -> Result<()> {
    let pod = scenario::run_pod(cd, config, BERTH_HANDLER).await?;
    let trace = PodTrace::capture(cd, &pod, "").await?;
    let pause = scenario::pause_of(&pod)?;
    let literal = format!("/{parent}:cri-containerd:{pod}");
    let cgroups = procs::cgroups(pause).context("pause's cgroups")?;
    ensure!(
        cgroups.lines().any(|l| l.ends_with(&format!(":{literal}"))),
        "pause is not in {literal}:\n{cgroups}"
    );
    let spec = ContainerSpec::shell("app", "echo ready; exec sleep 600");
    let id = scenario::run_container(cd, &pod, config, &spec).await?;
    scenario::wait_ready(config, &spec).await?;
    let own = format!("/{parent}:cri-containerd:{id}");
    ensure!(
        cgroups::in_every_hierarchy(&own).iter().any(|d| d.is_dir()),
        "container {id} has no cgroup {own}"
    );
    scenario::remove_containers(cd, std::slice::from_ref(&id)).await?;
    scenario::remove_and_check(cd, &trace).await
}

e2e_test!(
    slice_parent,
    a_slice_parent_is_a_literal_cgroupfs_directory,
    both_modes
);

async fn the_systemd_driver_makes_scopes(cd: &Containerd) -> Result<()> {
    let before = leaks::Census::take(cd);
    let pod_slice = PodSlice::of(cd);
    let config = scenario::pod_config(cd, "systemd")?.cgroup_parent(&pod_slice.slice);
    if !systemd::runs() {
        // Refused, by name, where there is no systemd to ask.
        return systemd::expect_refused(cd, &config).await;
    }
    ensure!(cgroups::is_v2(), "a systemd host in the lane is cgroup v2");
    let slice_dir = &pod_slice.dir;
    let pod = scenario::run_pod(cd, &config, BERTH_SYSTEMD_HANDLER).await?;
    let trace = PodTrace::capture(cd, &pod, "").await?;
    let pause = scenario::pause_of(&pod)?;
    let pod_unit = PodSlice::unit(&pod);
    let line = format!("0::{slice_dir}/{pod_unit}");
    let cgroups = procs::cgroups(pause).context("pause's cgroups")?;
    ensure!(
        cgroups.lines().any(|l| l == line),
        "pause is not in systemd's scope {pod_unit} ({line}):\n{cgroups}"
    );
    let state = systemctl(&["is-active", &pod_unit])?;
    ensure!(state == "active", "unit {pod_unit} is {state:?}");
    if scenario::options_break_container_start(cd, BERTH_SYSTEMD_HANDLER) {
        let spec = ContainerSpec::shell("server", "exit 0");
        scenario::expect_options_break_start(cd, &pod, &config, &spec).await?;
        scenario::remove_and_check(cd, &trace).await?;
        pod_slice.expect_gone(&[&pod]).await?;
        return scenario::wait_until("the pod's shim to go", leaks::GRACE, || {
            before.grown(&leaks::Census::take(cd)).is_empty()
        })
        .await;
    }

    // Two containers, each in its scope, talk over the pod's localhost.
    const LIMIT: i64 = 64 * 1024 * 1024;
    let server = ContainerSpec::http_server("server")
        .memory_limit(LIMIT)
        .cpu_quota(50_000);
    let id = scenario::run_container(cd, &pod, &config, &server).await?;
    let client = ContainerSpec::http_client("client");
    let client_id = scenario::run_container(cd, &pod, &config, &client).await?;
    let client_unit = PodSlice::unit(&client_id);
    let status = scenario::wait_exited(cd, &client_id, std::time::Duration::from_secs(60)).await?;
    let lines = scenario::stdout_lines(&config, &client)?;
    ensure!(
        status.exit_code == 0 && lines.iter().any(|l| l == "hello-from-berth"),
        "the client in {client_unit} exited {} without the server's page: {lines:?}",
        status.exit_code
    );
    let unit = PodSlice::unit(&id);
    let state = systemctl(&["is-active", &unit])?;
    ensure!(state == "active", "unit {unit} is {state:?}");
    // The limit is the unit's, so that systemd keeps it, and the cgroup's.
    let max = systemctl(&["show", "-p", "MemoryMax", "--value", &unit])?;
    ensure!(
        max == LIMIT.to_string(),
        "{unit} has MemoryMax {max:?}, not {LIMIT}"
    );
    let dir = format!("/sys/fs/cgroup{slice_dir}/{unit}");
    let written = std::fs::read_to_string(format!("{dir}/memory.max"))
        .with_context(|| format!("read {dir}/memory.max"))?;
    ensure!(
        written.trim() == LIMIT.to_string(),
        "{dir}/memory.max is {written:?}"
    );
    // An Update sets the unit's property and the file, so systemd keeps
    // the new limit when it writes its units' properties again.
    const LOWER: i64 = 48 * 1024 * 1024;
    cd.cri()
        .update_container_resources(
            &id,
            cri::LinuxContainerResources {
                memory_limit_in_bytes: LOWER,
                ..Default::default()
            },
        )
        .await?;
    systemctl(&["daemon-reload"])?;
    let max = systemctl(&["show", "-p", "MemoryMax", "--value", &unit])?;
    ensure!(
        max == LOWER.to_string(),
        "{unit} has MemoryMax {max:?} after the update to {LOWER}"
    );
    let written = std::fs::read_to_string(format!("{dir}/memory.max"))?;
    ensure!(
        written.trim() == LOWER.to_string(),
        "{dir}/memory.max is {written:?} after the update to {LOWER} and a daemon-reload"
    );
    // An Update of memory alone leaves the CPU limit as it was, on the
    // unit (whose driver reads an unset quota as none) and in the file.
    let quota = systemctl(&["show", "-p", "CPUQuotaPerSecUSec", "--value", &unit])?;
    ensure!(
        quota == "500ms",
        "{unit} has CPUQuotaPerSecUSec {quota:?} after a memory update, not 500ms"
    );
    let cpu_max = std::fs::read_to_string(format!("{dir}/cpu.max"))?;
    ensure!(
        cpu_max.trim() == "50000 100000",
        "{dir}/cpu.max is {cpu_max:?} after a memory update and a daemon-reload"
    );
    // An exec joins the container's scope; Stats reads it.
    // (The container's cgroup namespace has the scope as its root.)
    let exec = cd
        .cri()
        .exec_sync(
            &id,
            &[
                "sh",
                "-c",
                "grep -qx $$ /sys/fs/cgroup/cgroup.procs && echo in-scope",
            ],
            10,
        )
        .await?;
    ensure!(
        exec.exit_code == 0 && String::from_utf8_lossy(&exec.stdout).trim() == "in-scope",
        "an exec in {id} is not in the container's scope: {exec:?}"
    );
    let stats = cd.cri().container_stats(&id).await?;
    let memory = stats
        .memory
        .and_then(|m| m.working_set_bytes)
        .map_or(0, |v| v.value);
    ensure!(memory > 0, "ContainerStats reports no memory for {id}");

    scenario::remove_containers(cd, &[id.clone(), client_id.clone()]).await?;
    scenario::remove_and_check(cd, &trace).await?;
    pod_slice.expect_gone(&[&id, &client_id, &pod]).await?;
    scenario::wait_until("the pod's shim to go", leaks::GRACE, || {
        before.grown(&leaks::Census::take(cd)).is_empty()
    })
    .await
}

e2e_test!(systemd_driver, the_systemd_driver_makes_scopes, both_modes);
