//! Root tests of the escape classes of runc's security advisories, one test
//! per class, through the helper as the shim drives it. Each names the
//! advisories it covers; what an image or spec author would do is done
//! here, and the host is checked afterwards.

#![cfg(feature = "root-tests")]

mod common;

use berth_sandbox::container;
use berth_sandbox::helper::protocol::{ContainerSpec, StdioPaths};
use berth_sandbox::ErrorKind;
use common::*;
use oci_spec::runtime::MountBuilder;

/// A running container (`sleep`) in a pod directory, for execs.
struct Running {
    bundle: Bundle,
    init: i32,
}

impl Running {
    fn new(id: &str) -> Self {
        let bundle = Bundle::new(id, &["sleep", "60"], own_namespaces());
        let dir = bundle.pod_dir();
        let spec = ContainerSpec {
            engine_root: dir.engine_root(),
            work_dir: dir.container_dir(id),
            ..bundle.spec(None)
        };
        let init = helper().create_container(spec).unwrap();
        helper()
            .start_container(&container::reference(&dir, id))
            .unwrap();
        Running {
            bundle,
            init: init.pid,
        }
    }

    /// Runs `process` (an OCI process, JSON) as exec `exec_id`; its exit
    /// code and output, or the error that refused it.
    fn exec(&self, exec_id: &str, process: &str) -> berth_sandbox::Result<(i32, String)> {
        let out = self.bundle.path().join(format!("{exec_id}.out"));
        std::fs::write(&out, b"").unwrap();
        let stdio = StdioPaths {
            stdout: Some(out.clone()),
            stderr: Some(out.clone()),
            ..Default::default()
        };
        let dir = self.bundle.pod_dir();
        let exec = container::exec_in_pod(
            &helper(),
            &dir,
            &self.bundle.id,
            exec_id,
            process.as_bytes(),
            stdio,
        )?;
        let code = exit_code(exec.pid);
        Ok((code, std::fs::read_to_string(&out).unwrap()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let reference = container::reference(&self.bundle.pod_dir(), &self.bundle.id);
        if let Err(e) = helper().kill_container(&reference, libc::SIGKILL) {
            eprintln!("kill container {}: {e}", self.bundle.id);
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.init),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // The processes of execs that failed are children of this test, and
        // a PID namespace's init does not finish dying until every process
        // of its namespace is reaped: reap them all, as the shim does.
        let init = nix::unistd::Pid::from_raw(self.init);
        while let Ok(status) = nix::sys::wait::waitpid(None, None) {
            if status.pid() == Some(init) {
                break;
            }
        }
        let _ = helper().delete_container(&reference);
    }
}

fn process(args: &[&str], cwd: &str) -> String {
    serde_json::json!({
        "args": args,
        "cwd": cwd,
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
        "noNewPrivileges": true,
    })
    .to_string()
}

/// The descriptors a shell in the container sees of its own, and its
/// working directory.
const FDS_AND_CWD: &str = "busybox ls /proc/self/fd; busybox readlink /proc/self/cwd";

/// CVE-2024-21626 ("Leaky Vessels"): runc leaked a descriptor of the host's
/// cgroupfs into the container's init and execs, and a process cwd of
/// `/proc/self/fd/<n>` put the process on the host's filesystem.
#[test]
fn no_host_descriptor_or_directory_reaches_init_or_exec() {
    // `ls` sees its own three and the directory it reads.
    let (code, out) = run_init("fds", FDS_AND_CWD, |_, _| {});
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "0\n1\n2\n3\n/\n", "the init's descriptors and cwd");

    let running = Running::new("fdexec");
    let (code, out) = running
        .exec("e1", &process(&["sh", "-c", FDS_AND_CWD], "/"))
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "0\n1\n2\n3\n/\n", "the exec's descriptors and cwd");
    // Whatever descriptor the cwd names, it is no way out.
    for n in 3..16 {
        let cwd = format!("/proc/self/fd/{n}");
        match running.exec(
            &format!("cwd{n}"),
            &process(&["busybox", "readlink", "/proc/self/cwd"], &cwd),
        ) {
            // Refused where the process enters it: the descriptor is not a
            // directory of the container, or not there at all.
            Err(e) => assert!(
                e.to_string().contains("failed to chdir"),
                "cwd {cwd} was refused, but not by the chdir: {e}"
            ),
            Ok((code, out)) => assert!(
                code != 0 || !out.starts_with('/') || out.trim() == "/",
                "cwd {cwd} led to {out:?}"
            ),
        }
    }
}

/// CVE-2019-5736: a container process reopened the runtime's binary
/// through `/proc/<pid>/exe` while the runtime joined the container, and
/// wrote over it on the host. Here every process the container can see is
/// written to, again and again, while execs join it; the helper's binary
/// must come out unchanged.
#[test]
fn the_helper_binary_cannot_be_written_through_proc_exe() {
    let helper_binary = helper_path();
    let before = std::fs::read(helper_binary).unwrap();
    let running = Running::new("exe");
    let writer = process(
        &[
            "sh",
            "-c",
            "end=$(( $(date +%s) + 4 )); while [ $(date +%s) -lt $end ]; do \
             for e in /proc/[0-9]*/exe; do { echo pwned >> $e; } 2>/dev/null; done; done; echo done",
        ],
        "/",
    );
    let exec_writer = {
        let running = &running;
        let writer = writer.clone();
        move || running.exec("writer", &writer)
    };
    std::thread::scope(|s| {
        let w = s.spawn(exec_writer);
        for i in 0..20 {
            let _ = running.exec(&format!("probe{i}"), &process(&["busybox", "true"], "/"));
        }
        let (code, out) = w.join().unwrap().unwrap();
        assert_eq!((code, out.trim()), (0, "done"));
    });
    assert!(
        std::fs::read(helper_binary).unwrap() == before,
        "the helper binary on the host was changed from inside a container"
    );
    let (_, out) = running
        .exec(
            "self",
            &process(&["busybox", "readlink", "/proc/self/exe"], "/"),
        )
        .unwrap();
    assert_eq!(
        out.trim(),
        "/bin/busybox",
        "an exec is the container's program"
    );
}

/// CVE-2025-31133 (masked paths through a `/dev/null` the image swapped
/// for a link) and CVE-2019-16884/CVE-2025-52881 (writes redirected
/// through procfs): in the container `/proc/keys` and the other masked
/// paths are the container's own /dev/null, never a file of the image or
/// the host, and `/proc/sys` and `/proc/sysrq-trigger` are read-only.
#[test]
fn masked_and_read_only_proc_paths_hold_against_the_image() {
    let host_core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let script = "busybox stat -c '%F %t:%T' /proc/keys /proc/timer_list; \
                  cat /proc/keys | wc -c; \
                  echo '|/tmp/pwn' > /proc/sys/kernel/core_pattern || echo core_pattern refused; \
                  echo c > /proc/sysrq-trigger || echo sysrq refused; \
                  ls /proc/acpi | wc -l";
    let (_, out) = run_init("masked", script, |bundle, _| {
        // The image's /dev/null leads to the host's core_pattern.
        let dev = bundle.path().join("rootfs/dev");
        std::fs::create_dir_all(&dev).unwrap();
        std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", dev.join("null")).unwrap();
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "character special file 1:3", "{out}");
    assert_eq!(lines[1], "character special file 1:3", "{out}");
    assert_eq!(lines[2].trim(), "0", "keys reads empty: {out}");
    assert!(out.contains("core_pattern refused"), "{out}");
    assert!(out.contains("sysrq refused"), "{out}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        host_core_pattern,
        "the host's core_pattern is unchanged"
    );
}

/// CVE-2025-52565 (`/dev/console` and `/dev/pts` tricks): a container
/// without a terminal has no console of the host's, and its `/dev/pts`
/// is a devpts of its own, where the host's terminals are not.
#[test]
fn a_container_sees_no_terminal_of_the_host() {
    let host = nix::pty::openpty(None, None).unwrap();
    let host_pty = std::fs::read_link(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd;
        host.slave.as_raw_fd()
    }))
    .unwrap();
    let name = host_pty.file_name().unwrap().to_string_lossy().into_owned();
    let script = format!(
        "ls /dev/pts; [ -e /dev/console ] && echo console || echo no console; \
         [ -e /dev/pts/{name} ] && echo host pty || echo no host pty"
    );
    let (code, out) = run_init("ptys", &script, |bundle, _| {
        // The image's /dev/console leads to the host's.
        let dev = bundle.path().join("rootfs/dev");
        std::fs::create_dir_all(&dev).unwrap();
        std::os::unix::fs::symlink("/dev/console", dev.join("console")).unwrap();
    });
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no console"), "{out}");
    assert!(out.contains("no host pty"), "{out}");
    assert_eq!(out.lines().next(), Some("ptmx"), "a fresh devpts: {out}");
}

/// CVE-2019-19921 and CVE-2023-27561 (a mount over procfs redirects what
/// the runtime then writes): a mount whose destination is under `/proc`,
/// other than the files runc allows there, is refused before anything is
/// mounted.
#[test]
fn a_mount_over_proc_is_refused() {
    let canary = Canary::new();
    for destination in ["/proc/sys/kernel", "/proc/self/attr", "/proc/1/../sys"] {
        let bundle = Bundle::new("procmount", &["true"], own_namespaces());
        edit_spec(&bundle, |spec| {
            let mut mounts = spec.mounts().clone().unwrap_or_default();
            mounts.push(
                MountBuilder::default()
                    .destination(destination)
                    .typ("bind")
                    .source(canary.path())
                    .options(vec!["rbind".to_string()])
                    .build()
                    .unwrap(),
            );
            spec.set_mounts(Some(mounts));
        });
        let err = helper().create_container(bundle.spec(None)).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidArgument,
            "{destination}: {err}"
        );
        assert!(err.to_string().contains("/proc"), "{err}");
    }
    canary.check_untouched();
}

/// The same through a volume: the image holds no link, but a directory
/// mounted first (a volume another container of the pod can write to)
/// does, and the next mount's destination runs through it into procfs.
/// Only the container's mount table, read before its process runs, shows
/// it.
#[test]
fn a_mount_led_into_proc_by_a_link_in_a_volume_is_refused() {
    let canary = Canary::new();
    let volume = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/proc/sys", volume.path().join("x")).unwrap();
    let bundle = Bundle::new("volmount", &["sh", "-c", "true"], own_namespaces());
    std::fs::create_dir_all(bundle.path().join("rootfs/data")).unwrap();
    edit_spec(&bundle, |spec| {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for (destination, source) in [("/data", volume.path()), ("/data/x/kernel", canary.path())] {
            mounts.push(
                MountBuilder::default()
                    .destination(destination)
                    .typ("bind")
                    .source(source)
                    .options(vec!["rbind".to_string()])
                    .build()
                    .unwrap(),
            );
        }
        spec.set_mounts(Some(mounts));
    });
    let err = helper().create_container(bundle.spec(None)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("/proc/sys/kernel"), "{err}");
    canary.check_untouched();
}
