//! The helper's client: how the shim (and `delete`) run one helper per
//! request.
//!
//! Every fork, unshare and setns happens in a helper process: the shim is
//! multi-threaded, and namespaces are per thread, so it never changes its
//! own. Children the helper leaves behind reparent to the caller, which is
//! their subreaper.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::sync::Arc;

use crate::error::{Error, ErrorKind, HelperError, Result};
use crate::helper::protocol::{
    ContainerRef, ContainerSpec, ExecSpec, PauseSpec, Request, Response, HELPER_ARG, HELPER_NAME,
    PROTOCOL,
};
use crate::state::ProcessRecord;

/// The helper's whole environment. It needs none of its caller's, and
/// libcontainer reads some (`LISTEN_FDS` from containerd's or systemd's
/// environment would keep that many of the helper's descriptors open in
/// the container).
pub const HELPER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A helper's answer was not there in time.
struct Timeout;

/// The longest answer read: every answer is a few hundred bytes. More is a
/// helper gone wrong, or a process that got hold of its stdout and writes
/// for ever; the shim's memory must not pay for either.
const MAX_ANSWER: usize = 1 << 20;

/// Reads the helper's answer to its end, or until `deadline`; an answer
/// longer than [`MAX_ANSWER`] is an error.
fn read_until(
    from: &mut ChildStdout,
    deadline: Instant,
) -> std::result::Result<std::io::Result<Vec<u8>>, Timeout> {
    let mut output = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Timeout);
        }
        let wait = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, wait) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Ok(Err(e.into())),
        }
        match from.read(&mut chunk) {
            Ok(0) => return Ok(Ok(output)),
            Ok(n) if output.len() + n > MAX_ANSWER => {
                return Ok(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the answer is longer than {MAX_ANSWER} bytes"),
                )))
            }
            Ok(n) => output.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Ok(Err(e)),
        }
    }
}

/// How the caller runs helpers: which binary, and who reaps them.
#[derive(Debug, Clone)]
pub struct Helper {
    /// What is executed: the binary's path, or `/proc/self/fd/<n>`.
    exe: PathBuf,
    /// What messages call it: the binary's path.
    path: PathBuf,
    /// The descriptor `exe` goes through, open while any clone lives.
    _file: Option<Arc<File>>,
    reap: bool,
    /// How long one helper may take before it is killed.
    timeout: Duration,
}

/// How long a helper may take by default: a container's create mounts and
/// starts a process, which is seconds even on a loaded node; a helper
/// still silent after this is hung, and the pod must not wait for it.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(120);

impl Helper {
    /// Helpers run from the binary at `path`, looked up at every call.
    ///
    /// With `reap`, [`Helper::call`] waits for the helper itself; without it,
    /// the caller's own reaper owns that exit (the shim's case: it reaps every
    /// child with `waitpid(-1)` and must not have exits taken from it).
    pub fn new(path: impl Into<PathBuf>, reap: bool) -> Self {
        let path = path.into();
        Helper {
            exe: path.clone(),
            path,
            _file: None,
            reap,
            timeout: HELPER_TIMEOUT,
        }
    }

    /// The same helper, with calls bounded by `timeout` instead.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Helpers run from the binary at `path` as it is now: it is opened
    /// here and run through that descriptor, so a file replaced later (an
    /// upgrade) changes nothing for this caller. The binary must be an
    /// executable file, not a script: the descriptor is close-on-exec, so
    /// an interpreter could not open it again.
    pub fn open(path: impl Into<PathBuf>, reap: bool) -> Result<Self> {
        let path = path.into();
        nix::unistd::access(&path, nix::unistd::AccessFlags::X_OK).map_err(|e| Error::Sys {
            op: format!("use {} as the helper", path.display()),
            source: e.into(),
        })?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(&path)
            .map_err(Error::io("open", &path))?;
        // A child resolves the link in its own copy of the descriptor table
        // before the exec that closes it.
        Ok(Helper {
            exe: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
            path,
            _file: Some(Arc::new(file)),
            reap,
            timeout: HELPER_TIMEOUT,
        })
    }

    /// Runs one helper for `request` and returns its answer.
    pub fn call(&self, request: &Request) -> Result<Response> {
        let mut child = Command::new(&self.exe)
            .arg0(HELPER_NAME)
            .arg(HELPER_ARG)
            .arg(PROTOCOL)
            .env_clear()
            .env("PATH", HELPER_PATH)
            // A group of its own, so that a hung helper goes with what it
            // started meanwhile.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                Error::from(HelperError::internal(format!(
                    "run helper {}: {e}",
                    self.path.display()
                )))
            })?;
        let input = serde_json::to_vec(request).expect("requests always serialize");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let written = stdin.write_all(&input);
        drop(stdin);
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let read = read_until(&mut stdout, Instant::now() + self.timeout);
        drop(stdout);
        let too_long = matches!(&read, Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData);
        if matches!(read, Err(Timeout)) || too_long {
            // Hung, or gone wrong: it goes, with the processes of its group
            // (a container init has a session of its own by then), and its
            // caller rolls back what it left.
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
        if self.reap {
            let _ = child.wait();
        }
        let output = read.map_err(|Timeout| HelperError {
            kind: ErrorKind::DeadlineExceeded,
            message: format!(
                "helper {} gave no answer within {:?}; killed",
                self.path.display(),
                self.timeout
            ),
        })?;
        written.map_err(Error::io("write helper request", &self.path))?;
        let output = output.map_err(Error::io("read helper response", &self.path))?;
        match serde_json::from_slice(&output) {
            Ok(Response::Error(e)) => Err(e.into()),
            Ok(response) => Ok(response),
            Err(_) => Err(HelperError::internal(format!(
                "helper {} exited without an answer ({} bytes of output)",
                self.path.display(),
                output.len()
            ))
            .into()),
        }
    }

    /// Starts a pod's berth-pause: see [`Request::SpawnPause`].
    pub fn spawn_pause(&self, spec: PauseSpec) -> Result<ProcessRecord> {
        self.call(&Request::SpawnPause(spec))?.into_process()
    }

    /// Creates a container, its init waiting for [`Helper::start_container`].
    pub fn create_container(&self, spec: ContainerSpec) -> Result<ProcessRecord> {
        self.call(&Request::CreateContainer(spec))?.into_process()
    }

    /// Runs an extra process in a container.
    pub fn exec_container(&self, spec: ExecSpec) -> Result<ProcessRecord> {
        self.call(&Request::ExecContainer(spec))?.into_process()
    }

    /// Lets a created container's init exec its process.
    pub fn start_container(&self, container: &ContainerRef) -> Result<()> {
        self.call(&Request::StartContainer(container.clone()))?
            .into_done()
    }

    /// Signals every process of a container.
    pub fn kill_container(&self, container: &ContainerRef, signal: i32) -> Result<()> {
        self.call(&Request::KillContainer {
            container: container.clone(),
            signal,
        })?
        .into_done()
    }

    /// Sets `resources` on a systemd-driven container's scope unit.
    pub fn update_container_unit(
        &self,
        container: &ContainerRef,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        self.call(&Request::UpdateContainerUnit {
            container: container.clone(),
            resources: Box::new(resources.clone()),
        })?
        .into_done()
    }

    /// Removes a container's cgroup and engine state, killing what is left.
    pub fn delete_container(&self, container: &ContainerRef) -> Result<()> {
        self.call(&Request::DeleteContainer(container.clone()))?
            .into_done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helper::fake::FakeHelper;

    #[test]
    fn a_helper_inherits_nothing_of_its_caller_s_environment() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeHelper::new(&dir.path().join("fake"));
        let seen = dir.path().join("env");
        fake.on("start_container", &format!("env > '{}'", seen.display()));
        let container = ContainerRef {
            id: "c1".into(),
            engine_root: dir.path().into(),
        };
        assert!(
            std::env::vars_os().count() > 1,
            "the test has an environment"
        );
        fake.helper().start_container(&container).unwrap();
        let env = std::fs::read_to_string(&seen).unwrap();
        let vars: Vec<&str> = env
            .lines()
            // The shell running the fake sets its working directory.
            .filter(|l| !l.starts_with("PWD="))
            .collect();
        assert_eq!(vars, [format!("PATH={HELPER_PATH}")]);
    }

    #[test]
    fn a_hung_helper_is_killed_at_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeHelper::new(&dir.path().join("fake"));
        fake.on("start_container", "exec sleep 600");
        let container = ContainerRef {
            id: "c1".into(),
            engine_root: dir.path().into(),
        };
        let helper = fake.helper().with_timeout(Duration::from_millis(300));
        let err = helper.start_container(&container).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DeadlineExceeded, "{err}");
        assert!(err.to_string().contains("killed"), "{err}");
        // The next call is not held up by the last one.
        fake.on("start_container", "true");
        helper.start_container(&container).unwrap();
    }

    #[test]
    fn an_endless_answer_is_cut_off_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeHelper::new(&dir.path().join("fake"));
        // Two MiB of answer.
        let answer = dir.path().join("fake/answers/start_container.json");
        fake.on(
            "start_container",
            &format!("yes | head -c 2097152 > '{}'", answer.display()),
        );
        let container = ContainerRef {
            id: "c1".into(),
            engine_root: dir.path().into(),
        };
        let err = fake.helper().start_container(&container).unwrap_err();
        let chain = crate::error_chain(&err);
        assert!(chain.contains("longer than"), "{chain}");
    }
}
