//! Starting a pod's berth-pause, inside the helper process.
//!
//! The helper enters or creates the pod's namespaces itself, gives itself a
//! mount namespace whose root is an empty read-only tmpfs, then forks once:
//! the child (PID 1 of the new PID namespace, when there is one) drops to
//! uid/gid 65535 with no capabilities and no_new_privs, and execs berth-pause
//! from a file descriptor opened before the root changed (on the unified
//! hierarchy the fork is a clone3 straight into the pod's cgroup). Nothing
//! of the host filesystem is reachable from pause: its root, cwd and fds
//! hold nothing.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, fork, pivot_root, ForkResult, Gid, Pid, Uid};

use crate::cgroup::Placement;
use crate::error::{Error, Result};
use crate::helper::protocol::PauseSpec;
use crate::spec::Network;
use crate::state::ProcessRecord;
use crate::sys;

/// The uid and gid berth-pause runs as: nobody's, in Kubernetes' convention.
pub const PAUSE_ID: u32 = 65535;

/// Environment variable naming the pod in berth-pause's environment, so
/// operators (and leak checks) can tell which pod a pause belongs to.
pub const SANDBOX_ID_ENV: &str = "BERTH_SANDBOX_ID";

/// Steps of the child after fork, reported back when one fails.
#[derive(Clone, Copy, Debug)]
#[repr(u32)]
enum ChildStep {
    Stdio = 1,
    Signals,
    Fds,
    Groups,
    Bounding,
    Gid,
    Uid,
    Caps,
    Ambient,
    NoNewPrivs,
    Exec,
}

impl ChildStep {
    /// Every step, in the order the child takes them.
    const ALL: [ChildStep; 11] = [
        ChildStep::Stdio,
        ChildStep::Signals,
        ChildStep::Fds,
        ChildStep::Groups,
        ChildStep::Bounding,
        ChildStep::Gid,
        ChildStep::Uid,
        ChildStep::Caps,
        ChildStep::Ambient,
        ChildStep::NoNewPrivs,
        ChildStep::Exec,
    ];

    fn from_u32(v: u32) -> Option<Self> {
        ChildStep::ALL.into_iter().find(|s| *s as u32 == v)
    }

    fn describe(self) -> &'static str {
        match self {
            ChildStep::Stdio => "redirect stdio",
            ChildStep::Signals => "block signals",
            ChildStep::Fds => "mark descriptors close-on-exec",
            ChildStep::Groups => "setgroups",
            ChildStep::Bounding => "drop bounding capabilities",
            ChildStep::Gid => "setresgid",
            ChildStep::Uid => "setresuid",
            ChildStep::Caps => "clear capabilities",
            ChildStep::Ambient => "clear ambient capabilities",
            ChildStep::NoNewPrivs => "set no_new_privs",
            ChildStep::Exec => "exec berth-pause",
        }
    }
}

/// Runs in the helper: sets up the namespaces, forks pause, and returns it,
/// named by pid and start time while it is still the helper's child (so the
/// pid cannot have been reused, and an early exit cannot have been reaped by
/// anyone else).
pub fn spawn(spec: &PauseSpec) -> Result<ProcessRecord> {
    // Everything that needs the host's filesystem is opened first.
    let binary = open_path(&spec.binary, OFlag::O_RDONLY)?;
    let devnull = open_path(Path::new("/dev/null"), OFlag::O_RDWR)?;
    let proc = open_path(Path::new("/proc"), OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    let netns = match &spec.config.network {
        Network::Join(path) => Some(open_path(path, OFlag::O_RDONLY).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::invalid(
                    "linux.namespaces[network].path",
                    format!("{} does not exist", path.display()),
                )
            }
            other => other,
        })?),
        _ => None,
    };
    // The cgroup is made ready while the helper still sees the host. A
    // systemd scope needs a process to start with, so the helper joins it
    // and pause inherits it; so too on v1 and hybrid hosts. On the unified
    // hierarchy pause is cloned straight into its cgroupfs cgroup.
    let placement = match (&spec.config.scope, &spec.config.cgroup) {
        (Some(scope), _) => {
            let helper = std::process::id() as i32;
            crate::cgroup::systemd::start_scope(scope, helper, &spec.sandbox_id)?;
            Placement::Inherited
        }
        (None, Some(path)) => Placement::prepare(path)?,
        (None, None) => Placement::Inherited,
    };

    if let Some(fd) = &netns {
        setns(fd, CloneFlags::CLONE_NEWNET).map_err(Error::errno("setns network"))?;
    }
    let mut flags = CloneFlags::CLONE_NEWNS;
    flags.set(
        CloneFlags::CLONE_NEWNET,
        spec.config.network == Network::New,
    );
    flags.set(CloneFlags::CLONE_NEWIPC, spec.config.new_ipc);
    flags.set(CloneFlags::CLONE_NEWUTS, spec.config.new_uts);
    flags.set(CloneFlags::CLONE_NEWPID, spec.config.new_pid);
    unshare(flags).map_err(Error::errno(format!("unshare {flags:?}")))?;
    if let Some(hostname) = &spec.config.hostname {
        nix::unistd::sethostname(hostname).map_err(Error::errno("sethostname"))?;
    }
    // Written from inside the new namespaces: each sysctl file belongs to
    // the namespace of whoever opens it.
    for (path, value) in &spec.config.sysctls {
        std::fs::write(Path::new("/proc/sys").join(path), value).map_err(|e| {
            match e.kind() {
                // No such sysctl, or a value it does not take.
                std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput => Error::invalid(
                    format!("linux.sysctl[{}]", path.replace('/', ".")),
                    format!("{value:?}: {e}"),
                ),
                _ => Error::Sys {
                    op: format!("set sysctl {path} to {value:?}"),
                    source: e,
                },
            }
        })?;
    }
    if spec.config.network != Network::Host {
        crate::helper::netlink::loopback_up()?;
    }
    enter_empty_root(&spec.root_dir)?;

    let argv_owned = [CString::new("berth-pause").expect("no NUL")];
    let env_owned = [
        CString::new(format!("{SANDBOX_ID_ENV}={}", spec.sandbox_id))
            .map_err(|_| Error::invalid("id", "contains a NUL byte"))?,
    ];
    let argv: Vec<*const libc::c_char> = argv_owned
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = env_owned
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let (report_r, report_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(Error::errno("pipe2"))?;
    // Pause closes its inherited fds as the last step of its start-up: EOF
    // on this pipe means it is ready (signals blocked, undumpable, no fd).
    let (ready_r, ready_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(Error::errno("pipe2"))?;

    // SAFETY: the helper is single-threaded (it is dispatched from main()
    // before any thread exists, and the netlink runtime was current-thread
    // and is gone), so no lock can be held by a vanished thread and the
    // child may run ordinary code; it leaves only through exec or _exit.
    match unsafe { fork_into(&placement) }? {
        ForkResult::Child => {
            drop(report_r);
            drop(ready_r);
            let (step, err) = become_pause(&devnull, &ready_w, &binary, &argv, &envp);
            let mut report = [0u8; 8];
            report[..4].copy_from_slice(&(step as u32).to_ne_bytes());
            report[4..].copy_from_slice(&err.raw_os_error().unwrap_or(0).to_ne_bytes());
            let _ = nix::unistd::write(&report_w, &report);
            sys::exit_now(127)
        }
        ForkResult::Parent { child } => {
            drop(report_w);
            drop(ready_w);
            let mut report = [0u8; 8];
            let n = read_full(&report_r, &mut report);
            if n == 0 {
                // The pipe closed on exec: pause runs. Wait for its start-up.
                let mut byte = [0u8; 1];
                read_full(&ready_r, &mut byte);
                let pid = child.as_raw();
                let start_time = crate::process::start_time_at(proc.as_fd(), pid).map_err(
                    Error::sys(format!("read the start time of berth-pause {pid}")),
                )?;
                return Ok(ProcessRecord { pid, start_time });
            }
            let _ = nix::sys::wait::waitpid(child, None);
            let step = u32::from_ne_bytes(report[..4].try_into().expect("4 bytes"));
            let errno = i32::from_ne_bytes(report[4..].try_into().expect("4 bytes"));
            let what = ChildStep::from_u32(step).map_or("set up pause", ChildStep::describe);
            Err(Error::Sys {
                op: format!("start berth-pause: {what}"),
                source: std::io::Error::from_raw_os_error(errno),
            })
        }
    }
}

/// Forks pause's process into its cgroup: cloned into it where it is a v2
/// cgroup and the kernel can, else after the helper has joined it.
///
/// # Safety
/// As for fork: the caller is single-threaded and the child leaves only
/// through exec or `exit_now`.
unsafe fn fork_into(placement: &Placement) -> Result<ForkResult> {
    if let Placement::Into { dir, path, .. } = placement {
        // SAFETY: the caller's promise is fork_into_cgroup's.
        match unsafe { sys::fork_into_cgroup(dir.as_fd()) } {
            Ok(0) => return Ok(ForkResult::Child),
            Ok(pid) => {
                return Ok(ForkResult::Parent {
                    child: Pid::from_raw(pid),
                })
            }
            Err(e) if sys::clone3_unsupported(&e) => {
                log::info!("clone3 into cgroup {path}: {e}; joining it before a fork instead");
                placement.join_self()?;
            }
            Err(e) => return Err(Error::sys(format!("clone3 into cgroup {path}"))(e)),
        }
    }
    // SAFETY: the caller's promise is fork's.
    unsafe { fork() }.map_err(Error::errno("fork"))
}

/// The child's part: from the helper's credentials to berth-pause's.
/// Returns only on failure, with the step that failed.
fn become_pause(
    devnull: &OwnedFd,
    ready: &OwnedFd,
    binary: &OwnedFd,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> (ChildStep, std::io::Error) {
    fn step<T>(s: ChildStep, r: nix::Result<T>) -> Result<T, (ChildStep, std::io::Error)> {
        r.map_err(|e| (s, std::io::Error::from(e)))
    }
    let run = || -> Result<(), (ChildStep, std::io::Error)> {
        step(ChildStep::Stdio, nix::unistd::dup2_stdin(devnull))?;
        step(ChildStep::Stdio, nix::unistd::dup2_stdout(devnull))?;
        step(ChildStep::Stdio, nix::unistd::dup2_stderr(devnull))?;
        sys::block_all_signals().map_err(|e| (ChildStep::Signals, e))?;
        sys::cloexec_from(3).map_err(|e| (ChildStep::Fds, e))?;
        sys::keep_on_exec(ready.as_raw_fd()).map_err(|e| (ChildStep::Fds, e))?;
        let id = Gid::from_raw(PAUSE_ID);
        step(ChildStep::Groups, nix::unistd::setgroups(&[]))?;
        sys::drop_bounding_set().map_err(|e| (ChildStep::Bounding, e))?;
        step(ChildStep::Gid, nix::unistd::setresgid(id, id, id))?;
        let uid = Uid::from_raw(PAUSE_ID);
        // Leaving uid 0 without keep-caps clears the effective and permitted sets.
        step(ChildStep::Uid, nix::unistd::setresuid(uid, uid, uid))?;
        sys::clear_capabilities().map_err(|e| (ChildStep::Caps, e))?;
        sys::clear_ambient().map_err(|e| (ChildStep::Ambient, e))?;
        step(ChildStep::NoNewPrivs, nix::sys::prctl::set_no_new_privs())?;
        Err((ChildStep::Exec, sys::execveat(binary.as_fd(), argv, envp)))
    };
    match run() {
        Err(failure) => failure,
        Ok(()) => unreachable!("exec returns only on failure"),
    }
}

/// Gives the calling process a private mount namespace whose root is an
/// empty, read-only tmpfs mounted on `dir`. CLONE_NEWNS must already be done.
fn enter_empty_root(dir: &Path) -> Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(Error::errno("make mounts private"))?;
    let hardening = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        hardening,
        Some("mode=0555,size=16k,nr_inodes=16"),
    )
    .map_err(Error::errno(format!("mount tmpfs on {}", dir.display())))?;
    chdir(dir).map_err(Error::errno("chdir to the new root"))?;
    // Stacking the old root under the new one and detaching it leaves the
    // tmpfs alone at "/", with no directory needed for the old root.
    pivot_root(".", ".").map_err(Error::errno("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(Error::errno("detach the old root"))?;
    chdir("/").map_err(Error::errno("chdir /"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | hardening,
        None::<&str>,
    )
    .map_err(Error::errno("remount the root read-only"))
}

fn open_path(path: &Path, flags: OFlag) -> Result<OwnedFd> {
    open(path, flags | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| Error::Io {
        op: "open",
        path: path.to_owned(),
        source: e.into(),
    })
}

/// Reads until `buf` is full or the pipe closes; returns how much came.
pub(super) fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match nix::unistd::read(fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_child_step_is_reported_by_name() {
        // The steps are numbered from 1 in declaration order, Exec last: each
        // number the child can send back names its step.
        for v in 1..=ChildStep::Exec as u32 {
            let step = ChildStep::from_u32(v).unwrap_or_else(|| panic!("step {v} is unnamed"));
            assert_eq!(step as u32, v);
        }
        assert!(ChildStep::from_u32(0).is_none());
        assert!(ChildStep::from_u32(ChildStep::Exec as u32 + 1).is_none());
        assert_eq!(
            ChildStep::from_u32(ChildStep::Signals as u32).map(ChildStep::describe),
            Some("block signals")
        );
        assert_eq!(
            ChildStep::from_u32(ChildStep::Fds as u32).map(ChildStep::describe),
            Some("mark descriptors close-on-exec")
        );
    }
}
