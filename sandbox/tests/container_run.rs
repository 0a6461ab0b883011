//! Root tests of app containers: libcontainer through the helper, in a
//! pod's namespaces, with real cgroups and processes.

#![cfg(feature = "root-tests")]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_sandbox::container;
use berth_sandbox::helper::protocol::{ContainerSpec, StdioPaths};
use berth_sandbox::spec::SandboxConfig;
use berth_sandbox::ErrorKind;
use common::*;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

fn cgroup_exists(id: &str) -> bool {
    Path::new("/sys/fs/cgroup/memory")
        .join(test_cgroup(id).trim_start_matches('/'))
        .exists()
}

#[test]
fn a_container_runs_its_process_after_start_and_reports_its_exit_code() {
    let bundle = Bundle::new(
        "exit42",
        &["sh", "-c", "echo hello from $$; exit 42"],
        own_namespaces(),
    );
    let out = bundle.path().join("stdout");
    std::fs::write(&out, b"").unwrap();
    let init = helper()
        .create_container(bundle.spec(Some(out.clone())))
        .unwrap();
    assert!(
        cgroup_exists("exit42"),
        "the container's cgroup exists once it is created"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "",
        "a created container has not run its process"
    );
    helper().start_container(&bundle.reference()).unwrap();
    assert_eq!(exit_code(init.pid), 42);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "hello from 1\n",
        "PID 1 of its own namespace"
    );
    helper().delete_container(&bundle.reference()).unwrap();
    assert!(!cgroup_exists("exit42"), "delete removes the cgroup");
    assert!(
        !bundle.engine_root.join("exit42").exists(),
        "delete removes the engine state"
    );
}

#[test]
fn a_container_joins_the_pods_namespaces() {
    let pod = TestPod::start(
        "ctr-pod",
        SandboxConfig {
            hostname: Some("joined".into()),
            network: berth_sandbox::spec::Network::New,
            new_ipc: true,
            new_uts: true,
            new_pid: true,
            cgroup: None,
            scope: None,
            sysctls: Vec::new(),
        },
    )
    .unwrap();
    use LinuxNamespaceType::*;
    let ns = |t: LinuxNamespaceType, name: &str| {
        (
            t,
            Some(PathBuf::from(format!("/proc/{}/ns/{name}", pod.pid()))),
        )
    };
    let bundle = Bundle::new(
        "joiner",
        &["sh", "-c", "hostname; sleep 30"],
        vec![
            ns(Network, "net"),
            ns(Ipc, "ipc"),
            ns(Uts, "uts"),
            ns(Pid, "pid"),
            (Mount, None),
        ],
    );
    let out = bundle.path().join("stdout");
    std::fs::write(&out, b"").unwrap();
    let init = helper()
        .create_container(bundle.spec(Some(out.clone())))
        .unwrap();
    helper().start_container(&bundle.reference()).unwrap();
    for name in ["net", "ipc", "uts", "pid"] {
        assert_eq!(
            ns_inode(init.pid, name),
            ns_inode(pod.pid(), name),
            "{name} namespace"
        );
    }
    wait_until("the hostname is printed", Duration::from_secs(5), || {
        std::fs::read_to_string(&out).unwrap() == "joined\n"
    });
    helper()
        .kill_container(&bundle.reference(), libc::SIGKILL)
        .unwrap();
    assert_eq!(exit_code(init.pid), 137);
    helper().delete_container(&bundle.reference()).unwrap();
}

#[test]
fn a_spec_libcontainer_rejects_is_an_invalid_argument_and_leaves_nothing() {
    let bundle = Bundle::new("badspec", &["sh"], own_namespaces());
    let mut spec = Spec::load(bundle.path().join("config.json")).unwrap();
    spec.set_version("0.9.0".into());
    spec.save(bundle.path().join("config.json")).unwrap();
    let err = helper().create_container(bundle.spec(None)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(!bundle.engine_root.join("badspec").exists());
    assert!(!cgroup_exists("badspec"));
}

/// libcontainer's own error says only "failed to prepare rootfs"; what it
/// logged names the mount, and reaches the caller.
#[test]
fn a_failed_mount_is_named_in_the_error() {
    let bundle = Bundle::new("badmount", &["sh"], own_namespaces());
    let config = bundle.path().join("config.json");
    let mut spec = Spec::load(&config).unwrap();
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(
        oci_spec::runtime::MountBuilder::default()
            .destination("/data")
            .typ("bind")
            .source("/nonexistent-berth-mount-source")
            .options(vec!["rbind".to_string()])
            .build()
            .unwrap(),
    );
    spec.set_mounts(Some(mounts));
    spec.save(&config).unwrap();
    let err = helper().create_container(bundle.spec(None)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("libcontainer logged") && text.contains("/nonexistent-berth-mount-source"),
        "{text}"
    );
    assert!(!cgroup_exists("badmount"));
}

/// runc's symlink CVEs, libcontainer 0.7's rootfs/symlink.rs: an image
/// whose /dev is a link to a host directory made libcontainer plant its
/// /dev links (fd, stdin, ptmx, ...) there.
#[test]
fn an_image_whose_dev_is_a_link_out_is_refused_and_the_host_untouched() {
    let canary = Canary::new();
    for (dir, target) in [
        ("dev", canary.path().to_string_lossy().into_owned()),
        ("proc", format!("../../../../..{}", canary.path().display())),
        ("sys", canary.path().to_string_lossy().into_owned()),
    ] {
        let bundle = Bundle::new("linkdev", &["sh"], own_namespaces());
        let link = bundle.path().join("rootfs").join(dir);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = helper().create_container(bundle.spec(None)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains(&format!("rootfs /{dir}")), "{err}");
        canary.check_untouched();
        assert!(!cgroup_exists("linkdev"));
    }
}

/// A mount destination under a link out of the rootfs lands inside the
/// rootfs, where the link points as the container sees it.
#[test]
fn a_mount_under_a_link_out_lands_inside_the_rootfs() {
    let canary = Canary::new();
    let bundle = Bundle::new("linketc", &["sh", "-c", "sleep 30"], own_namespaces());
    let rootfs = bundle.path().join("rootfs");
    std::os::unix::fs::symlink(canary.path(), rootfs.join("etc")).unwrap();
    let source = bundle.path().join("data");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("marker"), b"x").unwrap();
    let config = bundle.path().join("config.json");
    let mut spec = Spec::load(&config).unwrap();
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(
        oci_spec::runtime::MountBuilder::default()
            .destination("/etc/berth-data")
            .typ("bind")
            .source(&source)
            .options(vec!["rbind".to_string()])
            .build()
            .unwrap(),
    );
    spec.set_mounts(Some(mounts));
    spec.save(&config).unwrap();
    let init = helper().create_container(bundle.spec(None)).unwrap();
    canary.check_untouched();
    // The container's mount namespace holds the bind, inside its rootfs.
    let mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", init.pid)).unwrap();
    let inside = format!("{}/berth-data", canary.path().display());
    assert!(
        mounts
            .lines()
            .any(|l| l.split_whitespace().nth(4) == Some(inside.as_str())),
        "the bind is at {inside} in the container: {mounts}"
    );
    helper()
        .kill_container(&bundle.reference(), libc::SIGKILL)
        .unwrap();
    assert_eq!(exit_code(init.pid), 137);
    helper().delete_container(&bundle.reference()).unwrap();
    canary.check_untouched();
}

/// `rro` makes a bind read-only down to its submounts, where `ro` leaves
/// them writable: what CRI's recursive read-only mounts ask for, and what
/// the shim's `-info` claims (the `rro` mount option).
#[test]
fn an_rro_bind_is_read_only_down_to_its_submounts() {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};

    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = umount2(&self.0, MntFlags::MNT_DETACH);
        }
    }
    let host = tempfile::tempdir().unwrap();
    let sub = host.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let _unmount = Unmount(sub);
    let script = "for d in /ro /rro; do \
        busybox touch $d/top 2>/dev/null && echo $d/top; \
        busybox touch $d/sub/x 2>/dev/null && echo $d/sub; done; true";
    let (code, out) = run_init("rro", script, |_, spec| {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for (destination, read_only) in [("/ro", "ro"), ("/rro", "rro")] {
            mounts.push(
                oci_spec::runtime::MountBuilder::default()
                    .destination(destination)
                    .typ("bind")
                    .source(host.path())
                    .options(vec!["rbind".to_string(), read_only.to_string()])
                    .build()
                    .unwrap(),
            );
        }
        spec.set_mounts(Some(mounts));
    });
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out, "/ro/sub\n",
        "ro leaves the submount writable, rro nothing"
    );
    assert!(!host.path().join("top").exists());
}

#[test]
fn deleting_a_container_that_was_never_created_is_not_an_error() {
    let bundle = Bundle::new("never", &["sh"], own_namespaces());
    helper().delete_container(&bundle.reference()).unwrap();
}

#[test]
fn an_exec_runs_in_the_containers_namespaces_with_its_own_stdio_and_exit_code() {
    let bundle = Bundle::new("execd", &["sh", "-c", "sleep 30"], own_namespaces());
    let dir = bundle.pod_dir();
    let spec = ContainerSpec {
        engine_root: dir.engine_root(),
        work_dir: dir.container_dir("execd"),
        ..bundle.spec(None)
    };
    let reference = container::reference(&dir, "execd");
    let init = helper().create_container(spec.clone()).unwrap();
    helper().start_container(&reference).unwrap();

    let out = bundle.path().join("exec-out");
    std::fs::write(&out, b"").unwrap();
    let process = br#"{"args":["sh","-c","echo exec as $$; exit 5"],"cwd":"/","env":["PATH=/bin"],"user":{"uid":0,"gid":0}}"#;
    let stdio = StdioPaths {
        stdout: Some(out.clone()),
        ..Default::default()
    };
    let exec = container::exec_in_pod(&helper(), &dir, "execd", "e1", process, stdio).unwrap();
    assert_eq!(exit_code(exec.pid), 5);
    let said = std::fs::read_to_string(&out).unwrap();
    assert!(
        said.starts_with("exec as ") && said.trim() != "exec as 1",
        "the exec runs beside the init, in its PID namespace: {said:?}"
    );
    assert!(
        !dir.container_dir("execd").join("exec-e1.json").exists(),
        "the exec's process file is removed once it runs"
    );

    let stay = br#"{"args":["sleep","30"],"cwd":"/","env":["PATH=/bin"],"user":{"uid":0,"gid":0}}"#;
    let staying =
        container::exec_in_pod(&helper(), &dir, "execd", "e2", stay, StdioPaths::default())
            .unwrap();
    for ns in ["pid", "mnt", "net", "ipc", "uts"] {
        assert_eq!(
            ns_inode(staying.pid, ns),
            ns_inode(init.pid, ns),
            "{ns} namespace"
        );
    }
    nix::sys::signal::kill(
        Pid::from_raw(staying.pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(exit_code(staying.pid), 137);

    let bad = container::exec_in_pod(
        &helper(),
        &dir,
        "execd",
        "e3",
        br#"{"args":[]}"#,
        StdioPaths::default(),
    )
    .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidArgument, "{bad}");
    let missing = container::exec_in_pod(
        &helper(),
        &dir,
        "nope",
        "e4",
        process,
        StdioPaths::default(),
    )
    .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");

    helper().kill_container(&reference, libc::SIGKILL).unwrap();
    assert_eq!(exit_code(init.pid), 137);
    helper().delete_container(&reference).unwrap();
}

/// The container's init and an exec compared: runc gives an exec the
/// container's seccomp filter, and so must berth (libcontainer's tenant
/// builder dropped it: an exec ran unfiltered).
#[test]
fn an_exec_runs_under_the_containers_seccomp_filter_and_privileges() {
    let bundle = Bundle::new("filtered", &["sh", "-c", "sleep 30"], own_namespaces());
    // Every sethostname fails with EPERM, in the init and in every exec.
    let config = bundle.path().join("config.json");
    let mut oci = Spec::load(&config).unwrap();
    let mut linux = oci.linux().clone().unwrap();
    let seccomp: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    }))
    .unwrap();
    linux.set_seccomp(Some(seccomp));
    oci.set_linux(Some(linux));
    oci.save(&config).unwrap();
    let dir = bundle.pod_dir();
    let spec = ContainerSpec {
        engine_root: dir.engine_root(),
        work_dir: dir.container_dir("filtered"),
        ..bundle.spec(None)
    };
    let reference = container::reference(&dir, "filtered");
    let init = helper().create_container(spec).unwrap();
    helper().start_container(&reference).unwrap();

    let stay = br#"{"args":["sleep","30"],"cwd":"/","env":["PATH=/bin"],"user":{"uid":0,"gid":0},"noNewPrivileges":true}"#;
    let exec = container::exec_in_pod(
        &helper(),
        &dir,
        "filtered",
        "e1",
        stay,
        StdioPaths::default(),
    )
    .unwrap();
    for field in ["Seccomp", "NoNewPrivs", "CapEff", "CapBnd", "CapPrm"] {
        assert_eq!(
            status_field(exec.pid, field),
            status_field(init.pid, field),
            "{field}"
        );
    }
    assert_eq!(status_field(exec.pid, "Seccomp"), "2", "a filter, not none");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/cgroup", exec.pid)).unwrap(),
        std::fs::read_to_string(format!("/proc/{}/cgroup", init.pid)).unwrap(),
        "the exec joins the container's cgroups"
    );
    nix::sys::signal::kill(Pid::from_raw(exec.pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert_eq!(exit_code(exec.pid), 137);

    // What the filter blocks fails in the exec too.
    let out = bundle.path().join("exec-out");
    std::fs::write(&out, b"").unwrap();
    let rename = br#"{"args":["/bin/busybox","hostname","escaped"],"cwd":"/","env":["PATH=/bin"],"user":{"uid":0,"gid":0},"noNewPrivileges":true}"#;
    let stdio = StdioPaths {
        stderr: Some(out.clone()),
        ..Default::default()
    };
    let renamed = container::exec_in_pod(&helper(), &dir, "filtered", "e2", rename, stdio).unwrap();
    assert_ne!(exit_code(renamed.pid), 0, "sethostname was let through");
    let said = std::fs::read_to_string(&out).unwrap();
    assert!(said.contains("not permitted"), "{said:?}");

    // A label berth cannot apply is refused, never dropped.
    let labelled = br#"{"args":["true"],"cwd":"/","user":{"uid":0,"gid":0},"selinuxLabel":"system_u:system_r:container_t:s0"}"#;
    let refused = container::exec_in_pod(
        &helper(),
        &dir,
        "filtered",
        "e3",
        labelled,
        StdioPaths::default(),
    )
    .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Unimplemented, "{refused}");

    let left: Vec<_> = std::fs::read_dir(dir.engine_root().join("filtered"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("exec-"))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "no socket left per exec");

    helper().kill_container(&reference, libc::SIGKILL).unwrap();
    assert_eq!(exit_code(init.pid), 137);
    helper().delete_container(&reference).unwrap();
}
