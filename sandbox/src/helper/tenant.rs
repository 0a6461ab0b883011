//! Exec: an extra process in a running container, built from libcontainer's
//! public parts. Compiled only with the `helper` feature.
//!
//! libcontainer's own tenant builder rebuilds the spec's `linux` section from
//! the namespaces, the cgroup path, the personality and the time offsets
//! alone, so an exec'd process ran with no seccomp filter at all while the
//! container's init had one. runc applies the container's filter to every
//! exec, and so does this: the exec's spec is the container's, with the
//! process containerd sent, the init's namespaces joined by path, and the
//! `linux` fields an exec takes (seccomp among them) kept.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use libcontainer::container::{Container, ContainerStatus};
use libcontainer::error::LibcontainerError;
use libcontainer::notify_socket::{NotifyListener, NotifySocket};
use libcontainer::process::args::{ContainerArgs, ContainerType};
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::user_ns::UserNamespaceConfig;
use nix::fcntl::OFlag;
use oci_spec::runtime::{
    LinuxBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, Process, Spec,
};

use crate::error::{Error, Result};

/// What an exec needs, apart from its stdio.
pub(crate) struct Tenant<'a> {
    pub container: &'a Container,
    /// The exec's OCI process, as containerd sent it.
    pub process: Process,
    pub console_socket: Option<&'a Path>,
}

/// The name of each namespace type under `/proc/<pid>/ns`.
fn ns_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The exec's spec: the container's, with `process` to run, every
/// namespace the container's spec names joined through its init's, and of
/// `linux` only what applies to a process joining a container that is set
/// up already.
pub(crate) fn exec_spec(container_spec: &Spec, process: Process, init_pid: i32) -> Result<Spec> {
    let process = inherit(process, container_spec.process().as_ref());
    fn invalid(what: &'static str) -> impl FnOnce(oci_spec::OciSpecError) -> Error {
        move |e| Error::invalid(what, e.to_string())
    }
    let linux = container_spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::invalid("linux", "the container's spec has no linux section"))?;
    let namespaces = linux
        .namespaces()
        .iter()
        .flatten()
        .map(|ns| {
            LinuxNamespaceBuilder::default()
                .typ(ns.typ())
                .path(format!("/proc/{init_pid}/ns/{}", ns_name(ns.typ())))
                .build()
                .map_err(invalid("linux.namespaces"))
        })
        .collect::<Result<Vec<LinuxNamespace>>>()?;
    let mut kept = LinuxBuilder::default().namespaces(namespaces);
    if let Some(path) = linux.cgroups_path() {
        kept = kept.cgroups_path(path.clone());
    }
    if let Some(personality) = linux.personality() {
        kept = kept.personality(personality.clone());
    }
    if let Some(offsets) = linux.time_offsets() {
        kept = kept.time_offsets(offsets.clone());
    }
    if let Some(seccomp) = linux.seccomp() {
        kept = kept.seccomp(seccomp.clone());
    }
    let mut spec = container_spec.clone();
    // Hooks are the container's life's, never an exec's.
    spec.set_hooks(None);
    spec.set_process(Some(process))
        .set_linux(Some(kept.build().map_err(invalid("linux"))?));
    Ok(spec)
}

/// What the exec's process leaves unsaid is the container's, as runc has
/// it: capabilities, rlimits, no_new_privs and the AppArmor profile. (An
/// exec without capabilities would otherwise keep all of root's.)
fn inherit(mut process: Process, init: Option<&Process>) -> Process {
    let Some(init) = init else {
        return process;
    };
    if process.capabilities().is_none() {
        process.set_capabilities(init.capabilities().clone());
    }
    if process.rlimits().as_ref().is_none_or(|r| r.is_empty()) {
        process.set_rlimits(init.rlimits().clone());
    }
    if process.no_new_privileges().is_none() {
        process.set_no_new_privileges(init.no_new_privileges());
    }
    if process
        .apparmor_profile()
        .as_ref()
        .is_none_or(|p| p.is_empty())
    {
        process.set_apparmor_profile(init.apparmor_profile().clone());
    }
    process
}

/// The security labels of an init's or an exec's process: what
/// libcontainer would drop without a word is refused instead.
pub(crate) fn check_labels(process: &Process) -> Result<()> {
    if process
        .selinux_label()
        .as_ref()
        .is_some_and(|l| !l.is_empty())
    {
        return Err(Error::Unsupported {
            field: "process.selinuxLabel".into(),
            reason: "berth cannot apply SELinux labels".into(),
        });
    }
    if process
        .apparmor_profile()
        .as_ref()
        .is_some_and(|p| !p.is_empty())
        && !libcontainer::apparmor::is_enabled().unwrap_or(false)
    {
        return Err(Error::invalid(
            "process.apparmorProfile",
            "AppArmor is not enabled on this host",
        ));
    }
    Ok(())
}

/// A name for a socket of this exec in the container's engine directory.
fn unique_name(dir: &Path, prefix: &str) -> PathBuf {
    let mut n = std::process::id();
    loop {
        let path = dir.join(format!("{prefix}-{n:x}.sock"));
        if !path.exists() {
            return path;
        }
        n = n.wrapping_add(1);
    }
}

/// Starts the exec's process in the container and returns its pid once it
/// has exec'd (or the reason it could not).
pub(crate) fn run(
    tenant: Tenant<'_>,
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
) -> std::result::Result<i32, LibcontainerError> {
    let container = tenant.container;
    if container.status() != ContainerStatus::Running {
        return Err(LibcontainerError::IncorrectStatus(container.status()));
    }
    let init_pid = container
        .pid()
        .ok_or_else(|| LibcontainerError::Other("the container has no init process".into()))?
        .as_raw();
    let container_spec = load_container_spec(container)?;
    let spec = exec_spec(&container_spec, tenant.process, init_pid)
        .map_err(|e| LibcontainerError::Other(crate::error_chain(&e)))?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal != tenant.console_socket.is_some() {
        return Err(LibcontainerError::Other(
            "a terminal needs a console socket, and a console socket a terminal".into(),
        ));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| LibcontainerError::Other("the container's spec has no root".into()))?;
    let rootfs = fs::canonicalize(root.path()).map_err(LibcontainerError::OtherIO)?;

    let dir = &container.root;
    let notify = Removed(unique_name(dir, "exec-notify"));
    let notify_listener = NotifyListener::new(&notify.0)?;
    let tty = Removed(unique_name(dir, "exec-tty"));
    let console = match tenant.console_socket {
        Some(socket) => {
            let name = tty
                .0
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("exec-tty");
            Some(libcontainer::tty::setup_console_socket(dir, socket, name)?)
        }
        None => None,
    };
    let user_ns_config = UserNamespaceConfig::new(&spec)?;
    // The process says when it has exec'd by closing its end (close on
    // exec); before that, it writes why it could not.
    let (exec_done_r, exec_done_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io_error)?;
    // On v2, the init's own cgroup (a systemd scope's, or a cgroupfs one),
    // joined directly, as runc's exec does: no D-Bus round trip on every
    // probe, and never a cgroup made anew from the spec's path.
    let spec_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref());
    // Where the container's cgroup is: the init may be there or below it
    // (a nested init), never elsewhere (a reused pid).
    let top = match spec_path {
        Some(p) if container.systemd() => {
            crate::cgroup::systemd::Scope::parse(&p.to_string_lossy())
                .ok()
                .map(|s| PathBuf::from(s.cgroup_path()))
        }
        Some(p) if p.is_absolute() => Some(p.clone()),
        _ => None,
    };
    let cgroup_path = match crate::cgroup::TaskCgroup::of_pid(init_pid) {
        Ok(crate::cgroup::TaskCgroup::V2(path)) => {
            let path = Path::new("/").join(path);
            if let Some(top) = top.filter(|top| !path.starts_with(top)) {
                return Err(LibcontainerError::Other(format!(
                    "process {init_pid} is in cgroup {}, outside the container's {}",
                    path.display(),
                    top.display()
                )));
            }
            path
        }
        Ok(crate::cgroup::TaskCgroup::V1(_)) if !container.systemd() => {
            libcontainer::utils::get_cgroup_path(
                spec.linux().as_ref().map_or(&None, |l| l.cgroups_path()),
                container.id(),
            )
        }
        Ok(other) => {
            return Err(LibcontainerError::Other(format!(
                "the init of a systemd-driven container is in {}, not a v2 cgroup",
                other.name()
            )))
        }
        Err(e) => return Err(LibcontainerError::Other(crate::error_chain(&e))),
    };
    if let Some(score) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
        // Inherited across the forks, as libcontainer's builder does it.
        fs::write("/proc/self/oom_score_adj", score.to_string())
            .map_err(LibcontainerError::OtherIO)?;
    }
    // Joining a container's namespaces: nothing in them may ptrace this
    // process or open its files meanwhile.
    nix::sys::prctl::set_dumpable(false).map_err(io_error)?;
    let args = ContainerArgs {
        container_type: ContainerType::TenantContainer {
            exec_notify_fd: exec_done_w.as_raw_fd(),
        },
        syscall: SyscallType::Linux,
        spec: Rc::new(spec),
        rootfs,
        console_socket: console.as_ref().map(|c| c.as_raw_fd()),
        notify_listener,
        preserve_fds: 0,
        // Its state names the container to a seccomp listener.
        container: Some(container.clone()),
        user_ns_config,
        cgroup_config: libcgroups::common::CgroupConfig {
            cgroup_path,
            systemd_cgroup: false,
            container_name: container.id().to_owned(),
        },
        detached: true,
        executor: libcontainer::workload::default::get_executor(),
        no_pivot: false,
        stdin: Some(stdin.as_raw_fd()),
        stdout: Some(stdout.as_raw_fd()),
        stderr: Some(stderr.as_raw_fd()),
        as_sibling: false,
        pid_file: None,
    };
    let pid = libcontainer::process::container_main_process::container_main_process(&args)?;
    NotifySocket::new(&notify.0).notify_container_start()?;
    drop(exec_done_w);
    let mut why = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match nix::unistd::read(&exec_done_r, &mut buf) {
            Ok(0) => break,
            Ok(n) => why.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io_error(e)),
        }
    }
    if !why.is_empty() {
        return Err(LibcontainerError::Other(
            String::from_utf8_lossy(&why).into_owned(),
        ));
    }
    Ok(pid.as_raw())
}

/// A failed call of ours, as libcontainer's error (its nix is another).
fn io_error(e: nix::errno::Errno) -> LibcontainerError {
    LibcontainerError::OtherIO(e.into())
}

/// A socket file of one exec, removed when it is done with: a container
/// exec'd in a thousand times does not keep a thousand of them.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The spec the container was created from, its root made absolute.
fn load_container_spec(container: &Container) -> std::result::Result<Spec, LibcontainerError> {
    let bundle = container.bundle();
    let mut spec = Spec::load(bundle.join("config.json"))?;
    spec.canonicalize_rootfs(bundle)?;
    Ok(spec)
}
