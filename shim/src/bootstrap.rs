//! The shim binary's actions: `start`, `delete`, and serving a pod.
//!
//! containerd runs `containerd-shim-berth-v2 ... start` in the bundle of each
//! new task. All tasks of one pod share a shim: `start` derives the pod's
//! directory from containerd's address, the namespace and the pod's id (CRI's
//! sandbox id), returns the address of the shim already serving it, or starts
//! one as a daemon and returns its address.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use berth_proto::bootstrap_api::{BootstrapParams, BootstrapResult};
use berth_proto::protobuf::Message;
use berth_sandbox::container;
use berth_sandbox::freezer::Freezer;
use berth_sandbox::helper::{Helper, HELPER_NAME};
use berth_sandbox::journal;
use berth_sandbox::state::{self, PodDir};
use containerd_shim::Flags;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::events::timestamp;

const PROTOCOL: &str = "ttrpc";

/// Runs the action containerd asked for; returns the process exit code.
pub async fn run() -> i32 {
    let args: Vec<OsString> = std::env::args_os().collect();
    let flags = match containerd_shim::parse(&args[1..]) {
        Ok(flags) => flags,
        Err(e) => {
            eprintln!("containerd-shim-berth-v2: {e}");
            return 2;
        }
    };
    if flags.version {
        println!("containerd-shim-berth-v2 {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let result = match flags.action.as_str() {
        "start" => start(&flags).await,
        "delete" => delete(&flags).await,
        "" => crate::server::serve(&flags).await,
        other => Err(Error::InvalidArgument(format!("unknown action {other:?}"))),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let message = berth_sandbox::helper::error_chain(&e);
            log::error!("{}: {message}", flags.action);
            eprintln!("containerd-shim-berth-v2 {}: {message}", flags.action);
            if flags.action.is_empty() {
                // Until the server is ready, stdout is the pipe `start` reads:
                // it relays why the server did not start.
                println!("{message}");
            }
            1
        }
    }
}

/// The pod directory of the shim that serves `grouping` for this containerd
/// and namespace.
pub fn pod_dir(address: &str, namespace: &str, grouping: &str) -> PodDir {
    let mut hash = Sha256::new();
    for part in [address, namespace, grouping] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let key: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    PodDir::new(&state::root(), &key)
}

fn bundle_dir(flags: &Flags) -> PathBuf {
    if flags.bundle.is_empty() {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
    } else {
        PathBuf::from(&flags.bundle)
    }
}

/// Reads containerd 2.3+'s bootstrap parameters from stdin, if it sent any.
fn bootstrap_params(flags: &Flags) -> Option<BootstrapParams> {
    let mut input = Vec::new();
    if std::io::stdin()
        .lock()
        .take(10 << 20)
        .read_to_end(&mut input)
        .is_err()
        || input.is_empty()
    {
        return None;
    }
    BootstrapParams::parse_from_bytes(&input)
        .ok()
        .filter(|p| p.instance_id == flags.id && p.namespace == flags.namespace)
}

async fn start(flags: &Flags) -> Result<()> {
    let params = bootstrap_params(flags);
    let bundle = bundle_dir(flags);
    let grouping = berth_sandbox::spec::grouping(&bundle, &flags.id);
    let dir = pod_dir(&flags.address, &flags.namespace, &grouping);
    let socket = dir.socket();
    let address = format!("unix://{}", socket.display());

    dir.create()?;
    {
        let _lock = dir.lock()?;
        if probe(&socket) != Probe::Serving {
            remove_socket(&socket)?;
            let listener = UnixListener::bind(&socket)
                .map_err(|e| Error::Internal(format!("bind {}: {e}", socket.display())))?;
            spawn_server(flags, &bundle, listener).map_err(|e| match e {
                Error::Unavailable(why) => {
                    Error::Unavailable(format!("the shim for pod {grouping} did not start: {why}"))
                }
                other => other,
            })?;
        }
    }
    // containerd 1.7 reconnects after a restart through this file (2.x
    // through its own bootstrap.json), as it does with Go shims.
    state::write_atomic(&bundle.join("address"), address.as_bytes())?;
    let containerd_version = params
        .as_ref()
        .map_or("", |p| p.containerd_version.as_str());
    let version = crate::api_version::detect(&state::root(), containerd_version);
    let reply = match params {
        Some(_) => BootstrapResult {
            version,
            address,
            protocol: PROTOCOL.into(),
            ..Default::default()
        }
        .write_to_bytes()
        .map_err(|e| Error::Internal(format!("encode bootstrap result: {e}")))?,
        None => serde_json::to_vec(&serde_json::json!({
            "version": version,
            "address": address,
            "protocol": PROTOCOL,
        }))
        .expect("json"),
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(&reply)
        .and_then(|()| out.flush())
        .map_err(|e| Error::Internal(format!("write the bootstrap reply: {e}")))
}

/// Whether a shim answers on a socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    Serving,
    /// The file is there but nobody listens: a dead shim's.
    Stale,
    Absent,
}

/// Probes `socket`. Only a refused connection or a missing file count as
/// "nobody there"; any other failure (a full backlog, say) is taken as a live
/// shim, never as licence to replace its socket.
pub fn probe(socket: &Path) -> Probe {
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(_) => Probe::Serving,
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Probe::Stale,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Probe::Absent,
        Err(e) => {
            log::warn!("probe {}: {e}; taking it as served", socket.display());
            Probe::Serving
        }
    }
}

fn remove_socket(socket: &Path) -> Result<()> {
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Internal(format!(
            "remove stale {}: {e}",
            socket.display()
        ))),
        _ => Ok(()),
    }
}

/// The descriptor number the serving shim finds its listening socket on.
pub const LISTEN_FD: RawFd = 3;
/// Set in the serving shim's environment when `start` hands it the socket.
pub const LISTEN_FD_ENV: &str = "BERTH_LISTEN_FD";

/// Starts the serving shim as a daemon on `listener` and waits until it is
/// ready: it closes its stdout (our pipe) once it accepts connections, or
/// writes why it failed there and exits.
fn spawn_server(flags: &Flags, bundle: &Path, listener: UnixListener) -> Result<()> {
    let mut command = Command::new("/proc/self/exe");
    command
        // The running binary, named as containerd named it (for ps).
        .arg0(
            std::env::args_os()
                .next()
                .unwrap_or_else(|| "containerd-shim-berth-v2".into()),
        )
        .current_dir(bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env(LISTEN_FD_ENV, LISTEN_FD.to_string())
        .args([
            "-namespace",
            &flags.namespace,
            "-id",
            &flags.id,
            "-address",
            &flags.address,
        ]);
    if !flags.publish_binary.is_empty() {
        command.args(["-publish-binary", &flags.publish_binary]);
    }
    if flags.debug {
        command.arg("-debug");
    }
    let fd = listener.as_raw_fd();
    // SAFETY: between fork and exec the closure calls only async-signal-safe
    // functions (dup2, fcntl, setsid), allocates nothing and takes no lock.
    // It puts the listener on LISTEN_FD without close-on-exec and detaches
    // the daemon from containerd's session.
    unsafe {
        command.pre_exec(move || {
            let ret = if fd == LISTEN_FD {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, LISTEN_FD)
            };
            if ret == -1 || libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| Error::Internal(format!("spawn the shim server: {e}")))?;
    // Our copy must go, or the socket would look served even if the child died.
    drop(listener);
    let mut said = String::new();
    let _ = child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut said);
    if probe_served(&PathBuf::from(bundle), flags) {
        // The daemon outlives us; its parent becomes containerd's subreaper or init.
        return Ok(());
    }
    let said = said.trim();
    Err(Error::Unavailable(if said.is_empty() {
        "it exited without a word".into()
    } else {
        said.to_owned()
    }))
}

fn probe_served(bundle: &Path, flags: &Flags) -> bool {
    let grouping = berth_sandbox::spec::grouping(bundle, &flags.id);
    probe(&pod_dir(&flags.address, &flags.namespace, &grouping).socket()) == Probe::Serving
}

/// containerd's clean-up after a shim died: kill what is left of the task,
/// remove its cgroup and state, and report its exit: the journal's real one
/// where the shim recorded it, else SIGKILL now (the clean-up killed it).
async fn delete(flags: &Flags) -> Result<()> {
    let bundle = bundle_dir(flags);
    let grouping = berth_sandbox::spec::grouping(&bundle, &flags.id);
    let dir = pod_dir(&flags.address, &flags.namespace, &grouping);
    let id = flags.id.clone();
    let cleaned = tokio::task::spawn_blocking(move || cleanup_dead_pod(&dir, &id))
        .await
        .map_err(|e| Error::Internal(format!("clean-up task: {e}")))??;
    let (pid, status, at) = match cleaned.exit {
        Some(exit) => (exit.pid as u32, exit.status, exit.at()),
        None => (
            cleaned.pid.unwrap_or(0) as u32,
            128 + libc::SIGKILL as u32,
            SystemTime::now(),
        ),
    };
    let response = berth_proto::api::DeleteResponse {
        pid,
        exit_status: status,
        exited_at: Some(timestamp(at)).into(),
        ..Default::default()
    };
    let bytes = response
        .write_to_bytes()
        .map_err(|e| Error::Internal(format!("encode delete response: {e}")))?;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Error::Internal(format!("write the delete response: {e}")))
}

/// What the clean-up of a dead shim's task found.
#[derive(Debug, Default, PartialEq)]
struct Cleaned {
    /// The task's exit, as the shim journaled it.
    exit: Option<journal::Exit>,
    /// The pid of the pod's berth-pause, for the sandbox task.
    pid: Option<i32>,
}

fn cleanup_dead_pod(dir: &PodDir, id: &str) -> Result<Cleaned> {
    if !dir.path().exists() {
        return Ok(Cleaned::default());
    }
    // containerd runs `delete` for each task of the pod, maybe at once.
    let _lock = match dir.lock() {
        Ok(lock) => lock,
        // Removed by the `delete` of another task meanwhile.
        Err(_) if !dir.path().exists() => return Ok(Cleaned::default()),
        Err(e) => return Err(e.into()),
    };
    if !dir.path().exists() {
        return Ok(Cleaned::default());
    }
    if probe(&dir.socket()) == Probe::Serving {
        log::warn!("task {id}: its pod is still served by a live shim; leaving it alone");
        return Ok(Cleaned::default());
    }
    let records = journal::read(dir);
    let mut cleaned = Cleaned {
        exit: journal::exit_of(&records, id),
        pid: None,
    };
    // The pod's directory outlives this clean-up while the journal holds
    // an exit another task's `delete` is still to report.
    let others_unreported = !journal::unreported(&records, id).is_empty();
    let helper = Helper::new(helper_binary(), true);
    if dir.container_ids().iter().any(|c| c == id) {
        // An app container: its processes, cgroup, rootfs and state.
        container::remove_from_pod(&helper, dir, id)?;
        log::info!("container {id}: removed what a dead shim left");
    }
    let record = dir.read_record().unwrap_or_else(|e| {
        log::warn!("task {id}: unreadable pod record: {e}");
        None
    });
    let Some(record) = record else {
        if dir.container_ids().is_empty() && !others_unreported {
            dir.remove()?;
        } else {
            journal::append(dir, &journal::Record::Deleted { id: id.to_owned() })?;
        }
        return Ok(cleaned);
    };
    if !record.sandbox_id.is_empty() && record.sandbox_id != id {
        journal::append(dir, &journal::Record::Deleted { id: id.to_owned() })?;
        return Ok(cleaned);
    }
    // Every step is tried; the directory goes last, and only once pause is
    // gone, so a failed clean-up can be retried from what is left.
    let mut failures = Vec::new();
    // The pod goes, and every container still in it.
    if let Err(e) = container::remove_all_in_pod(&helper, dir) {
        failures.push(e);
    }
    let mut pause_gone = true;
    if let Some(pause) = record.pause {
        match berth_sandbox::pod::signal(pause, nix::sys::signal::Signal::SIGKILL) {
            Ok(true) => log::info!(
                "pod {id}: killed berth-pause {} left by a dead shim",
                pause.pid
            ),
            Ok(false) => {}
            Err(e) => {
                pause_gone = false;
                failures.push(e);
            }
        }
    }
    if let Some(cgroup) = &record.cgroup {
        // A pod paused when its shim died: pause dies only once thawed.
        let freezer = Freezer::of_path(cgroup);
        if freezer.exists() {
            if let Err(e) = freezer.thaw(berth_sandbox::freezer::TIMEOUT) {
                failures.push(e);
            }
        }
        if let Err(e) = berth_sandbox::pod::remove_cgroup(cgroup) {
            failures.push(e);
        }
    }
    if pause_gone {
        let removed = if others_unreported {
            // Only the journal stays, for the other tasks' `delete`.
            dir.remove_record().and_then(|()| {
                journal::append(dir, &journal::Record::Deleted { id: id.to_owned() })
            })
        } else {
            dir.remove()
        };
        if let Err(e) = removed {
            failures.push(e);
        }
    }
    match failures.into_iter().next() {
        Some(e) => Err(e.into()),
        None => {
            cleaned.pid = record.pause.map(|p| p.pid);
            Ok(cleaned)
        }
    }
}

/// The berth-pause binary: `$BERTH_PAUSE`, else beside this binary.
pub fn pause_binary() -> PathBuf {
    companion_binary("BERTH_PAUSE", "berth-pause")
}

/// The helper binary: `$BERTH_HELPER`, else beside this binary.
pub fn helper_binary() -> PathBuf {
    companion_binary("BERTH_HELPER", HELPER_NAME)
}

/// A binary installed with the shim: `$<var>` if set, else `name` in the
/// shim's own directory.
fn companion_binary(var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pods_are_keyed_by_containerd_namespace_and_group() {
        let a = pod_dir("/run/containerd/containerd.sock", "k8s.io", "pod1");
        assert_eq!(
            a.path(),
            pod_dir("/run/containerd/containerd.sock", "k8s.io", "pod1").path()
        );
        assert_ne!(
            a.path(),
            pod_dir("/run/other.sock", "k8s.io", "pod1").path()
        );
        assert_ne!(
            a.path(),
            pod_dir("/run/containerd/containerd.sock", "default", "pod1").path()
        );
        assert_ne!(
            a.path(),
            pod_dir("/run/containerd/containerd.sock", "k8s.io", "pod2").path()
        );
        // Unix socket paths are limited to 108 bytes.
        let name = a.path().file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name.len(), 32);
    }

    #[test]
    fn cleanup_of_an_unknown_pod_is_a_no_op() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "x");
        assert_eq!(cleanup_dead_pod(&dir, "c1").unwrap(), Cleaned::default());
    }

    #[test]
    fn cleanup_removes_a_pod_dir_without_a_record() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "x");
        dir.create().unwrap();
        std::fs::write(dir.socket(), b"").unwrap();
        assert_eq!(cleanup_dead_pod(&dir, "c1").unwrap(), Cleaned::default());
        assert!(!dir.path().exists());
    }

    #[test]
    fn cleanup_leaves_a_pod_that_a_live_shim_serves() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "x");
        dir.create().unwrap();
        let _listener = UnixListener::bind(dir.socket()).unwrap();
        assert_eq!(probe(&dir.socket()), Probe::Serving);
        assert_eq!(cleanup_dead_pod(&dir, "c1").unwrap(), Cleaned::default());
        assert!(dir.path().exists());
    }

    /// A dead pod whose shim journaled the exits of its sandbox (0) and of
    /// container c1 (42).
    fn dead_pod(root: &Path) -> PodDir {
        let dir = PodDir::new(root, "x");
        dir.create().unwrap();
        dir.write_record(&state::PodRecord {
            sandbox_id: "pod".into(),
            ..Default::default()
        })
        .unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for (id, status) in [("pod", 0), ("c1", 42)] {
            let exit = journal::Exit::new(id, "", 7, status, at);
            journal::append(&dir, &journal::Record::Exit(exit)).unwrap();
        }
        dir
    }

    fn status(cleaned: Cleaned) -> Option<u32> {
        cleaned.exit.map(|e| e.status)
    }

    #[test]
    fn cleanup_reports_journaled_exits_in_any_order() {
        for order in [["pod", "c1"], ["c1", "pod"]] {
            let root = tempfile::tempdir().unwrap();
            let dir = dead_pod(root.path());
            let first = cleanup_dead_pod(&dir, order[0]).unwrap();
            assert!(
                dir.path().exists(),
                "{order:?}: the journal stays for the other task"
            );
            let second = cleanup_dead_pod(&dir, order[1]).unwrap();
            let (pod, c1) = if order[0] == "pod" {
                (first, second)
            } else {
                (second, first)
            };
            assert_eq!((status(pod), status(c1)), (Some(0), Some(42)), "{order:?}");
            assert!(
                !dir.path().exists(),
                "{order:?}: the last delete removes it"
            );
        }
    }

    #[test]
    fn a_task_without_a_journaled_exit_is_reported_killed() {
        let root = tempfile::tempdir().unwrap();
        let dir = dead_pod(root.path());
        assert_eq!(cleanup_dead_pod(&dir, "c2").unwrap().exit, None);
    }

    #[test]
    fn probe_tells_stale_from_absent() {
        let root = tempfile::tempdir().unwrap();
        let socket = root.path().join("s.sock");
        assert_eq!(probe(&socket), Probe::Absent);
        drop(UnixListener::bind(&socket).unwrap());
        assert_eq!(probe(&socket), Probe::Stale);
    }
}
