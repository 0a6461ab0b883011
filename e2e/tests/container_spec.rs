#![cfg(feature = "e2e")]
//! Everything a CRI-generated spec carries reaches the container. A
//! container is created with what kubelet asks of a restricted pod (a user
//! and groups, dropped capabilities, no_new_privs, RuntimeDefault seccomp, a
//! read-only root, an oom_score_adj, a sysctl, a kubelet-style bind mount),
//! and its init is then compared, part by part, with the OCI spec containerd
//! wrote for it: user, capabilities, no_new_privs, seccomp, oom_score_adj,
//! rlimits, sysctls, mounts, masked and read-only paths, devices and cgroup;
//! an exec in it is compared with the init.

use anyhow::{bail, ensure, Context, Result};
use berth_e2e::container_config::ContainerSpec;
use berth_e2e::containerd_config::{Sandboxer, BERTH_HANDLER, RUNC_HANDLER};
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{e2e_test, procs, scenario, Containerd};
use k8s_cri::v1 as cri;
use serde_json::Value;

/// A kubelet-style container config for a restricted pod.
fn restricted(termination_log: &str) -> cri::ContainerConfig {
    let mut config = ContainerSpec::shell("restricted", "exec sleep 600").to_cri();
    let linux = config.linux.get_or_insert_with(Default::default);
    linux.resources = Some(cri::LinuxContainerResources {
        oom_score_adj: 700,
        ..Default::default()
    });
    let security = linux.security_context.get_or_insert_with(Default::default);
    security.run_as_user = Some(cri::Int64Value { value: 1000 });
    security.run_as_group = Some(cri::Int64Value { value: 1000 });
    security.supplemental_groups = vec![2000, 3000];
    security.no_new_privs = true;
    security.readonly_rootfs = true;
    security.capabilities = Some(cri::Capability {
        drop_capabilities: vec!["ALL".into()],
        add_capabilities: vec!["NET_BIND_SERVICE".into(), "CHOWN".into()],
        ..Default::default()
    });
    // kubelet's defaults for the Default proc mount.
    security.masked_paths = [
        "/proc/asound",
        "/proc/acpi",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ]
    .map(String::from)
    .to_vec();
    security.readonly_paths = [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    .map(String::from)
    .to_vec();
    security.seccomp = Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
        ..Default::default()
    });
    config.mounts = vec![cri::Mount {
        container_path: "/dev/termination-log".into(),
        host_path: termination_log.into(),
        ..Default::default()
    }];
    config
}

/// The bitmask /proc/<pid>/status shows for a list of capability names.
fn cap_mask(caps: &Value) -> Result<u64> {
    const NAMES: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let mut mask = 0u64;
    for cap in caps.as_array().into_iter().flatten() {
        let name = cap.as_str().unwrap_or_default();
        let bit = NAMES
            .iter()
            .position(|n| name.strip_prefix("CAP_") == Some(n))
            .with_context(|| format!("unknown capability {name}"))?;
        mask |= 1 << bit;
    }
    Ok(mask)
}

/// A `Name:\tvalue` line of /proc/<pid>/status.
fn status_field<'a>(status: &'a str, name: &str) -> Result<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(str::trim)
        .with_context(|| format!("no {name} in /proc/1/status"))
}

/// Mount point -> mount options, from a mountinfo.
fn mount_options(mountinfo: &str) -> Vec<(String, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            Some((fields.get(4)?.to_string(), fields.get(5)?.to_string()))
        })
        .collect()
}

/// What the container sees, by ExecSync (as the container's own user).
struct Inside<'a> {
    cd: &'a Containerd,
    id: &'a str,
}

impl Inside<'_> {
    async fn run(&self, script: &str) -> Result<String> {
        let out = self
            .cd
            .cri()
            .exec_sync(self.id, &["sh", "-c", script], 10)
            .await?;
        ensure!(
            out.exit_code == 0,
            "{script:?} failed in the container ({}): {}",
            out.exit_code,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        Ok(self
            .run(&format!("[ -e {path} ] && echo yes || echo no"))
            .await?
            .trim()
            == "yes")
    }
}

async fn the_spec_reaches_the_container(cd: &Containerd) -> Result<()> {
    let mut pod_config = scenario::pod_config(cd, "restricted")?;
    // One sysctl of the pod's IPC namespace and one of its network
    // namespace, both away from their defaults.
    for (key, value) in [
        ("kernel.shm_rmid_forced", "1"),
        ("net.ipv4.ip_unprivileged_port_start", "80"),
    ] {
        pod_config.linux.sysctls.insert(key.into(), value.into());
    }
    let pod = scenario::run_pod(cd, &pod_config, BERTH_HANDLER).await?;
    let pod_trace = PodTrace::capture(cd, &pod, "").await?;
    let termination_log = cd.instance().dir().join("termination-log");
    std::fs::write(&termination_log, "")?;
    let id = cd
        .cri()
        .create_container(
            &pod,
            restricted(&termination_log.to_string_lossy()),
            pod_config.to_cri(),
        )
        .await?;
    cd.cri().start_container(&id).await?;
    let checked = check(cd, &id, &pod_config.linux.sysctls).await;
    scenario::remove_containers(cd, std::slice::from_ref(&id)).await?;
    scenario::remove_and_check(cd, &pod_trace).await?;
    checked
}

async fn check(
    cd: &Containerd,
    id: &str,
    pod_sysctls: &std::collections::HashMap<String, String>,
) -> Result<()> {
    let bundle = cd
        .instance()
        .state()
        .join("io.containerd.runtime.v2.task/k8s.io")
        .join(id)
        .join("config.json");
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(&bundle).with_context(|| format!("read {}", bundle.display()))?,
    )?;
    let process = &spec["process"];
    let linux = &spec["linux"];
    let inside = Inside { cd, id };
    let status = inside.run("cat /proc/1/status").await?;

    // The user, and the groups.
    let uid = process["user"]["uid"].as_u64().context("spec uid")?;
    let gid = process["user"]["gid"].as_u64().context("spec gid")?;
    ensure!(
        uid == 1000 && gid == 1000,
        "CRI asked for 1000:1000: {process}"
    );
    let ids = |field: &str| -> Result<Vec<u64>> {
        Ok(status_field(&status, field)?
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect())
    };
    ensure!(ids("Uid")? == [uid; 4], "uids: {:?}", ids("Uid")?);
    ensure!(ids("Gid")? == [gid; 4], "gids: {:?}", ids("Gid")?);
    let mut groups: Vec<u64> = process["user"]["additionalGids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    groups.sort();
    let mut seen = ids("Groups")?;
    seen.sort();
    ensure!(
        groups.contains(&2000) && groups.contains(&3000) && seen == groups,
        "supplementary groups: spec {groups:?}, seen {seen:?}"
    );

    // Capabilities: each set as the spec has it (a non-root process keeps
    // only its bounding set across exec).
    let caps = &process["capabilities"];
    let bounding = cap_mask(&caps["bounding"])?;
    ensure!(
        bounding == cap_mask(&serde_json::json!(["CAP_NET_BIND_SERVICE", "CAP_CHOWN"]))?,
        "CRI's drop ALL, add two: {caps}"
    );
    let seen_bounding = u64::from_str_radix(status_field(&status, "CapBnd")?, 16)?;
    ensure!(
        seen_bounding == bounding,
        "bounding set {seen_bounding:#x}, spec {bounding:#x}"
    );
    let seen_effective = u64::from_str_radix(status_field(&status, "CapEff")?, 16)?;
    ensure!(
        seen_effective == 0,
        "a non-root user has no effective capabilities, not {seen_effective:#x}"
    );

    // no_new_privs and seccomp (mode 2: a filter).
    ensure!(process["noNewPrivileges"] == true, "spec: {process}");
    ensure!(
        status_field(&status, "NoNewPrivs")? == "1",
        "no_new_privs unset"
    );
    ensure!(
        linux["seccomp"]["syscalls"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "RuntimeDefault gives the spec a seccomp filter"
    );
    ensure!(
        status_field(&status, "Seccomp")? == "2",
        "no seccomp filter"
    );

    // An exec (what `kubectl exec` and exec probes run) is confined as the
    // init is, field by field: runc gives every exec the container's
    // seccomp filter, capabilities, no_new_privs, user, groups and cgroups.
    let exec_status = inside.run("cat /proc/self/status").await?;
    for field in [
        "Seccomp",
        "NoNewPrivs",
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "Uid",
        "Gid",
        "Groups",
    ] {
        let (init, exec) = (
            status_field(&status, field)?,
            status_field(&exec_status, field)?,
        );
        ensure!(init == exec, "{field}: init {init:?}, exec {exec:?}");
    }
    let cgroups = inside
        .run("cat /proc/1/cgroup; echo; cat /proc/self/cgroup")
        .await?;
    let (init_cgroups, exec_cgroups) = cgroups.split_once("\n\n").context("two cgroup listings")?;
    ensure!(
        init_cgroups.trim() == exec_cgroups.trim(),
        "cgroups: init {init_cgroups:?}, exec {exec_cgroups:?}"
    );

    // oom_score_adj.
    let oom = inside.run("cat /proc/1/oom_score_adj").await?;
    ensure!(
        process["oomScoreAdj"] == 700 && oom.trim() == "700",
        "oom_score_adj {oom:?}, spec {}",
        process["oomScoreAdj"]
    );

    // rlimits, as /proc/1/limits shows them.
    let limits = inside.run("cat /proc/1/limits").await?;
    for rlimit in process["rlimits"].as_array().into_iter().flatten() {
        let name = match rlimit["type"].as_str().unwrap_or_default() {
            "RLIMIT_NOFILE" => "Max open files",
            "RLIMIT_NPROC" => "Max processes",
            "RLIMIT_CORE" => "Max core file size",
            "RLIMIT_MEMLOCK" => "Max locked memory",
            other => bail!("no check for {other}"),
        };
        let row = limits
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in {limits}"))?;
        let values: Vec<&str> = row[name.len()..].split_whitespace().collect();
        let want = |key: &str| rlimit[key].as_u64().map(|v| v.to_string());
        ensure!(
            Some(values[0].to_string()) == want("soft")
                && Some(values[1].to_string()) == want("hard"),
            "{name}: {row}, spec {rlimit}"
        );
    }

    // Sysctls: the pod's are set in the namespaces the container shares
    // with it, and the container's own spec's are set too.
    for key in pod_sysctls.keys() {
        // Else the container's engine, not the pod's pause, would set it.
        ensure!(
            linux["sysctl"].get(key).is_none(),
            "containerd copied the pod's sysctl {key} into the container's spec"
        );
    }
    let own = linux["sysctl"].as_object().into_iter().flatten();
    let own = own.map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()));
    let all: Vec<(String, String)> = pod_sysctls.clone().into_iter().chain(own).collect();
    ensure!(all.len() >= 2, "sysctls to check: {all:?}");
    for (key, value) in all {
        let seen = inside
            .run(&format!("cat /proc/sys/{}", key.replace('.', "/")))
            .await?;
        ensure!(
            seen.trim() == value,
            "sysctl {key} is {seen:?}, not {value}"
        );
    }

    // Mounts, masked and read-only paths, the read-only root.
    let mountinfo = mount_options(&inside.run("cat /proc/1/mountinfo").await?);
    let options = |path: &str| -> Option<&str> {
        mountinfo
            .iter()
            .rev()
            .find(|(point, _)| point == path)
            .map(|(_, o)| o.as_str())
    };
    let destinations: Vec<&str> = spec["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["destination"].as_str())
        .collect();
    ensure!(
        destinations.contains(&"/dev/termination-log"),
        "the spec mounts /dev/termination-log: {destinations:?}"
    );
    // The pod's files: CRI's mounts in podsandbox mode; in shim mode
    // containerd's spec has none and berth binds the pod's own. Read-only
    // either way, as the root is.
    for needed in ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"] {
        ensure!(
            cd.sandboxer() == Sandboxer::Shim || destinations.contains(&needed),
            "the spec mounts {needed}: {destinations:?}"
        );
        ensure!(
            options(needed).is_some_and(|o| o.split(',').any(|f| f == "ro")),
            "{needed} is not mounted read-only in the container: {:?}",
            options(needed)
        );
    }
    for destination in &destinations {
        ensure!(
            options(destination).is_some(),
            "{destination} is not mounted"
        );
    }
    ensure!(
        spec["root"]["readonly"] == true,
        "spec root: {}",
        spec["root"]
    );
    ensure!(
        options("/").is_some_and(|o| o.split(',').any(|f| f == "ro")),
        "the root is not read-only: {:?}",
        options("/")
    );
    let masked = linux["maskedPaths"].as_array().context("masked paths")?;
    ensure!(!masked.is_empty(), "CRI masks paths");
    let mut checked = 0;
    for path in masked.iter().filter_map(Value::as_str) {
        if inside.exists(path).await? {
            ensure!(options(path).is_some(), "{path} is not masked");
            checked += 1;
        }
    }
    ensure!(checked > 0, "no masked path exists to check: {masked:?}");
    for path in linux["readonlyPaths"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if inside.exists(path).await? {
            ensure!(
                options(path).is_some_and(|o| o.split(',').any(|f| f == "ro")),
                "{path} is not read-only: {:?}",
                options(path)
            );
        }
    }

    // Devices: the runtime's defaults are there, /dev/kmsg (not allowed)
    // is not.
    for device in [
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
    ] {
        ensure!(
            inside
                .run(&format!("[ -c {device} ] && echo yes"))
                .await?
                .trim()
                == "yes",
            "{device} is not a character device in the container"
        );
    }
    ensure!(
        !inside.exists("/dev/kmsg").await?,
        "/dev/kmsg is in the container"
    );

    // The cgroup: the spec's path, in every v1 hierarchy it names.
    let cgroups_path = linux["cgroupsPath"].as_str().context("cgroupsPath")?;
    let cgroup = inside.run("cat /proc/1/cgroup").await?;
    let cgroupns = linux["namespaces"]
        .as_array()
        .is_some_and(|ns| ns.iter().any(|n| n["type"] == "cgroup"));
    if cgroupns {
        // containerd gives a container its own cgroup namespace on a v2
        // host: it sees its cgroup as the root, and the host sees the
        // spec's path.
        ensure!(
            cgroup.trim() == "0::/",
            "in its cgroup namespace the container's cgroup is {cgroup:?}, not 0::/"
        );
        let line = format!("0::{cgroups_path}");
        let in_it = procs::all_pids()
            .into_iter()
            .filter(|&p| procs::cgroups(p).is_some_and(|c| c.lines().any(|l| l == line)))
            .count();
        ensure!(
            in_it > 0,
            "no process on the host is in the spec's cgroup {cgroups_path}"
        );
        return Ok(());
    }
    // The v1 memory hierarchy's line (the host lane is v1 or hybrid), else
    // the unified one, when the container has no cgroup namespace of its own.
    let memory = cgroup
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == "memory"))
        })
        .or_else(|| cgroup.lines().find(|l| l.starts_with("0::")))
        .with_context(|| format!("no memory hierarchy in {cgroup}"))?;
    ensure!(
        memory.ends_with(&format!(":{cgroups_path}")),
        "the container's memory cgroup {memory:?} is not the spec's {cgroups_path}"
    );
    Ok(())
}

e2e_test!(
    spec_reaches_the_container,
    the_spec_reaches_the_container,
    both_modes
);

/// Capability names a pod may write that runc does not grant: CRI prefixes
/// `CAP_` to each, so `CAP_SYS_ADMIN` arrives as `CAP_CAP_SYS_ADMIN`, and an
/// unknown name as `CAP_<name>`. runc ignores both; so must berth, which
/// would otherwise grant the first (a policy that forbids `SYS_ADMIN` does
/// not see it) and refuse the container for the second.
async fn capability_names_as_runc_reads_them(cd: &Containerd, handler: &str) -> Result<()> {
    let pod_config = scenario::pod_config(cd, "caps")?;
    let pod = scenario::run_pod(cd, &pod_config, handler).await?;
    let pod_trace = PodTrace::capture(cd, &pod, "").await?;
    let mut config = ContainerSpec::shell("caps", "exec sleep 600").to_cri();
    let linux = config.linux.get_or_insert_with(Default::default);
    let security = linux.security_context.get_or_insert_with(Default::default);
    security.capabilities = Some(cri::Capability {
        drop_capabilities: vec!["ALL".into()],
        add_capabilities: vec!["CAP_SYS_ADMIN".into(), "NET_ADMIN".into(), "NO_SUCH".into()],
        ..Default::default()
    });
    let id = cd
        .cri()
        .create_container(&pod, config, pod_config.to_cri())
        .await?;
    cd.cri()
        .start_container(&id)
        .await
        .with_context(|| format!("{handler}: start a container with unknown capability names"))?;
    let inside = Inside { cd, id: &id };
    let want = cap_mask(&serde_json::json!(["CAP_NET_ADMIN"]))?;
    // The init's, and an exec's (whose process containerd sends again).
    for (who, path) in [("init", "/proc/1/status"), ("exec", "/proc/self/status")] {
        let status = inside.run(&format!("cat {path}")).await?;
        for set in ["CapEff", "CapPrm", "CapBnd"] {
            let caps = u64::from_str_radix(status_field(&status, set)?, 16)?;
            ensure!(
                caps == want,
                "{handler}: the {who}'s {set} is {caps:#x}, not CAP_NET_ADMIN's {want:#x} alone"
            );
        }
    }
    scenario::remove_containers(cd, &[id]).await?;
    scenario::remove_and_check(cd, &pod_trace).await
}

async fn capability_names_berth(cd: &Containerd) -> Result<()> {
    capability_names_as_runc_reads_them(cd, BERTH_HANDLER).await
}

async fn capability_names_runc(cd: &Containerd) -> Result<()> {
    capability_names_as_runc_reads_them(cd, RUNC_HANDLER).await
}

e2e_test!(capability_names, capability_names_berth, both_modes);
e2e_test!(capability_names_runc, capability_names_runc);
