//! Starting berth-pause in a pod's namespaces, for real.

#![cfg(feature = "root-tests")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_sandbox::spec::{Network, SandboxConfig};
use common::*;

fn pod_config(network: Network) -> SandboxConfig {
    SandboxConfig {
        hostname: Some("berth-pod".into()),
        network,
        new_ipc: true,
        new_uts: true,
        new_pid: true,
        cgroup: None,
        scope: None,
        sysctls: Vec::new(),
    }
}

/// Asserts loopback is up in the network namespace of `pid`.
fn assert_lo_up(pid: i32) {
    let (ok, out, err) = run(Command::new("nsenter").args([
        "-t",
        &pid.to_string(),
        "-n",
        "ip",
        "-o",
        "link",
        "show",
        "lo",
    ]));
    assert!(ok, "{err}");
    assert!(out.contains("LOOPBACK,UP"), "lo is not up: {out}");
}

#[test]
fn pause_is_pid_1_of_its_own_namespaces() {
    let pod = TestPod::start("ns", pod_config(Network::New)).unwrap();
    let me = std::process::id() as i32;
    assert_eq!(
        pod.status_field("NSpid").split_whitespace().last(),
        Some("1")
    );
    for ns in ["net", "ipc", "uts", "pid", "mnt"] {
        assert_ne!(
            ns_inode(pod.pid(), ns),
            ns_inode(me, ns),
            "{ns} namespace is the host's"
        );
    }
    let (ok, hostname, err) =
        run(Command::new("nsenter").args(["-t", &pod.pid().to_string(), "-u", "hostname"]));
    assert!(ok, "{err}");
    assert_eq!(hostname.trim(), "berth-pod");
    let environ = std::fs::read(format!("/proc/{}/environ", pod.pid())).unwrap();
    assert_eq!(environ, b"BERTH_SANDBOX_ID=ns\0");
    assert_eq!(pod.stop(), 0, "pause exits 0 on SIGTERM");
}

#[test]
fn sysctls_are_set_in_the_pod_s_namespaces_only() {
    let mut config = pod_config(Network::New);
    config.sysctls = vec![
        ("kernel/shm_rmid_forced".into(), "1".into()),
        ("net/ipv4/ip_unprivileged_port_start".into(), "80".into()),
    ];
    let host = |path: &str| std::fs::read_to_string(format!("/proc/sys/{path}")).unwrap();
    let before = (
        host("kernel/shm_rmid_forced"),
        host("net/ipv4/ip_unprivileged_port_start"),
    );
    let pod = TestPod::start("sysctl", config).unwrap();
    for (ns, path, want) in [
        ("-i", "kernel/shm_rmid_forced", "1"),
        ("-n", "net/ipv4/ip_unprivileged_port_start", "80"),
    ] {
        let (ok, out, err) = run(Command::new("nsenter").args([
            "-t",
            &pod.pid().to_string(),
            ns,
            "cat",
            &format!("/proc/sys/{path}"),
        ]));
        assert!(ok, "{err}");
        assert_eq!(out.trim(), want, "{path} in the pod");
    }
    assert_eq!(
        (
            host("kernel/shm_rmid_forced"),
            host("net/ipv4/ip_unprivileged_port_start")
        ),
        before,
        "the host's sysctls are untouched"
    );
}

#[test]
fn a_sysctl_the_kernel_refuses_is_an_invalid_argument() {
    let mut config = pod_config(Network::New);
    config.sysctls = vec![("net/ipv4/no_such_sysctl".into(), "1".into())];
    match TestPod::start("badsysctl", config) {
        Err(e) => assert_eq!(e.kind(), berth_sandbox::ErrorKind::InvalidArgument, "{e}"),
        Ok(_) => panic!("an unknown sysctl was accepted"),
    }
}

#[test]
fn a_new_network_namespace_has_loopback_up() {
    let pod = TestPod::start("lo", pod_config(Network::New)).unwrap();
    assert_lo_up(pod.pid());
}

#[test]
fn pause_joins_a_pinned_network_namespace() {
    let netns = PinnedNetns::create();
    let pod = TestPod::start("join", pod_config(Network::Join(netns.path()))).unwrap();
    let pinned = std::fs::metadata(netns.path()).unwrap();
    let pause_net = std::fs::metadata(format!("/proc/{}/ns/net", pod.pid())).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        pinned.ino(),
        pause_net.ino(),
        "pause is not in the pinned namespace"
    );
    assert_lo_up(pod.pid());
}

#[test]
fn without_a_network_namespace_pause_shares_the_hosts() {
    let mut config = pod_config(Network::Host);
    config.new_pid = false;
    let pod = TestPod::start("host", config).unwrap();
    let me = std::process::id() as i32;
    assert_eq!(ns_inode(pod.pid(), "net"), ns_inode(me, "net"));
    assert_eq!(ns_inode(pod.pid(), "pid"), ns_inode(me, "pid"));
    assert_ne!(ns_inode(pod.pid(), "ipc"), ns_inode(me, "ipc"));
}

#[test]
fn a_missing_netns_path_is_an_invalid_argument_and_leaves_no_cgroup() {
    let mut config = pod_config(Network::Join("/run/netns/berth-none".into()));
    let path = test_cgroup("nonet");
    config.cgroup = Some(path.clone());
    let err = TestPod::start("nonet", config)
        .err()
        .expect("joining a missing namespace must fail");
    assert_eq!(
        err.kind(),
        berth_sandbox::ErrorKind::InvalidArgument,
        "{err}"
    );
    assert!(err.to_string().contains("/run/netns/berth-none"), "{err}");
    assert!(
        !berth_sandbox::cgroup::exists(&path),
        "a failed start left cgroup {path}"
    );
    remove_test_cgroup_parent(&path);
}

#[test]
fn a_failed_start_after_the_cgroup_was_made_removes_it() {
    // The child's exec fails (the "binary" is a directory) in the cgroup the
    // helper made (and, on v1, joined).
    require_root();
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = berth_sandbox::state::PodDir::new(root.path(), "noexec");
    let mut config = pod_config(Network::New);
    let path = test_cgroup("noexec");
    config.cgroup = Some(path.clone());
    let err = berth_sandbox::pod::start_pause(&helper(), &dir, "noexec", &config, "/".into())
        .unwrap_err();
    assert!(err.to_string().contains("exec berth-pause"), "{err}");
    assert!(
        !berth_sandbox::cgroup::exists(&path),
        "a failed start left cgroup {path}"
    );
    remove_test_cgroup_parent(&path);
}

#[test]
fn starting_pause_leaves_the_hosts_mounts_alone() {
    let pod = TestPod::start("mounts", pod_config(Network::New)).unwrap();
    // pause's root tmpfs is mounted on the pod's pause-root directory, but
    // only inside the helper's private mount namespace.
    let pod_dir = pod.dir.path().to_string_lossy().into_owned();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let seen: Vec<_> = mountinfo
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(4)
                .is_some_and(|m| m.starts_with(&pod_dir))
        })
        .collect();
    assert!(seen.is_empty(), "the host sees pause's mounts: {seen:?}");
    // And inside pause's namespace, the root is that tmpfs, read-only.
    let inside = std::fs::read_to_string(format!("/proc/{}/mountinfo", pod.pid())).unwrap();
    let root: Vec<_> = inside.lines().collect();
    assert_eq!(root.len(), 1, "pause sees more than its root: {root:?}");
    let fields: Vec<_> = root[0].split_whitespace().collect();
    assert_eq!(fields[4], "/", "{root:?}");
    assert!(
        fields[5].split(',').any(|o| o == "ro"),
        "pause's root is not read-only: {root:?}"
    );
    assert!(
        root[0].contains(" - tmpfs "),
        "pause's root is not a tmpfs: {root:?}"
    );
}

#[test]
fn pause_runs_unprivileged() {
    let pod = TestPod::start("creds", pod_config(Network::New)).unwrap();
    for field in ["Uid", "Gid"] {
        let ids: Vec<_> = pod
            .status_field(field)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert_eq!(ids, ["65535"; 4], "{field}");
    }
    assert_eq!(pod.status_field("Groups"), "");
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(pod.status_field(caps), "0000000000000000", "{caps}");
    }
    assert_eq!(pod.status_field("NoNewPrivs"), "1");
    // Non-dumpable: its /proc files belong to root, not to uid 65535.
    use std::os::unix::fs::MetadataExt;
    let status = std::fs::metadata(format!("/proc/{}/status", pod.pid())).unwrap();
    assert_eq!(status.uid(), 0, "pause is dumpable");
}

#[test]
fn pause_holds_nothing_of_the_host_filesystem() {
    let pod = TestPod::start("fs", pod_config(Network::New)).unwrap();
    let pid = pod.pid();
    // Even root sees an empty root and cwd, and no fd but /dev/null.
    let root: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/root"))
        .unwrap()
        .collect();
    assert!(root.is_empty(), "pause's root is not empty: {root:?}");
    let cwd: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/cwd"))
        .unwrap()
        .collect();
    assert!(cwd.is_empty(), "pause's cwd is not empty: {cwd:?}");
    let mut fds: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read_link(e.path()).unwrap(),
            )
        })
        .collect();
    fds.sort();
    let expected: Vec<_> = ["0", "1", "2"]
        .iter()
        .map(|f| (f.to_string(), "/dev/null".into()))
        .collect();
    assert_eq!(fds, expected);
    // Its root cannot be written to, even by root.
    let write = std::fs::write(format!("/proc/{pid}/root/x"), b"x");
    assert!(write.is_err(), "pause's root is writable");
}

#[test]
fn a_pod_process_cannot_reach_the_host_through_pause() {
    let pod = TestPod::start("escape", pod_config(Network::New)).unwrap();
    let pid = pod.pid().to_string();
    // A container process of the pod: in its namespaces, with pause's own
    // uid and no capabilities, trying pause's /proc links.
    for link in ["root", "cwd", "fd"] {
        let (ok, out, err) = run(Command::new("nsenter").args([
            "-t",
            &pid,
            "-n",
            "-i",
            "-u",
            "--",
            "setpriv",
            "--reuid=65535",
            "--regid=65535",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "ls",
            "-A",
            &format!("/proc/{pid}/{link}/"),
        ]));
        assert!(!ok, "{link} was reachable: {out}");
        assert!(err.contains("Permission denied"), "{link}: {err}");
    }
}

#[test]
fn pause_starts_in_its_cgroup_and_the_cgroup_is_removable_after() {
    let mut config = pod_config(Network::New);
    let path = test_cgroup("pod");
    config.cgroup = Some(path.clone());
    let pod = TestPod::start("cg", config).unwrap();
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", pod.pid())).unwrap();
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    // On v2 the helper clones pause into the cgroup; on v1 it joins every
    // controller's first. Either way pause is there from its first step.
    let dir = if unified {
        let line = cgroups.lines().find(|l| l.starts_with("0::"));
        assert_eq!(line, Some(format!("0::{path}").as_str()), "{cgroups}");
        format!("/sys/fs/cgroup{path}")
    } else {
        for controller in ["memory", "cpu", "pids", "freezer"] {
            let line = cgroups
                .lines()
                .find(|l| {
                    l.split(':')
                        .nth(1)
                        .is_some_and(|c| c.split(',').any(|c| c == controller))
                })
                .unwrap_or_else(|| panic!("no {controller} line in {cgroups}"));
            assert!(line.ends_with(&path), "{controller}: {line}");
        }
        format!("/sys/fs/cgroup/memory{path}")
    };
    let procs = std::fs::read_to_string(format!("{dir}/cgroup.procs")).unwrap();
    assert_eq!(
        procs.trim(),
        pod.pid().to_string(),
        "pause is alone in its cgroup: the helper has left or was never there"
    );
    assert_eq!(pod.stop(), 0);
    berth_sandbox::cgroup::remove_when_empty(&path).unwrap();
    assert!(!berth_sandbox::cgroup::exists(&path));
    wait_until("the cgroup to go", Duration::from_secs(1), || {
        !Path::new(&dir).exists()
    });
}

#[test]
fn the_helper_reports_a_missing_pause_binary_as_an_error() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let dir = berth_sandbox::state::PodDir::new(root.path(), "nobin");
    let err = berth_sandbox::pod::start_pause(
        &helper(),
        &dir,
        "nobin",
        &pod_config(Network::New),
        "/nonexistent/berth-pause".into(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/berth-pause"),
        "{err}"
    );
}

#[test]
fn pause_is_ready_when_its_start_returns() {
    // No waiting anywhere: the start returns only once pause has finished
    // its start-up, so a SIGTERM sent at once is never lost, and its /proc
    // links are already closed.
    for i in 0..20 {
        let pod = TestPod::start(&format!("ready{i}"), pod_config(Network::New)).unwrap();
        use std::os::unix::fs::MetadataExt;
        let status = std::fs::metadata(format!("/proc/{}/status", pod.pid())).unwrap();
        assert_eq!(status.uid(), 0, "pause {i} is still dumpable");
        let fds = std::fs::read_dir(format!("/proc/{}/fd", pod.pid()))
            .unwrap()
            .count();
        assert_eq!(fds, 3, "pause {i} still holds inherited fds");
        assert_eq!(
            pod.stop(),
            0,
            "pause {i} must exit 0 on an immediate SIGTERM"
        );
    }
}
