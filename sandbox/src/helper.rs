//! The helper process: where every fork, unshare and setns happens.
//!
//! The shim is multi-threaded, and namespaces are per thread, so it never
//! changes its own. It runs the `berth-sandbox-helper` binary with
//! [`HELPER_ARG`] and [`PROTOCOL`] as arguments; its `main()` calls [`main`]
//! before any runtime or thread exists. The request is one JSON document on
//! the helper's stdin, the answer one on its stdout: a result, or a
//! structured [`HelperError`], never a bare exit code. Children the helper
//! leaves behind reparent to the shim, which is their subreaper.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::container::{ContainerRef, ContainerSpec, ExecSpec};
use crate::error::{Error, ErrorKind, Result};
use crate::pause::PauseSpec;
use crate::state::ProcessRecord;

/// First argument of every helper run.
pub const HELPER_ARG: &str = "__berth-helper";

/// Second argument: the version of the requests and answers below. A helper
/// refuses a caller of another version (a shim and helper from two builds)
/// rather than misread it. Changed whenever [`Request`] or [`Response`]
/// change in a way the other side would misread.
pub const PROTOCOL: &str = "1";

/// The helper binary's file name, and its `argv[0]` however it is reached.
pub const HELPER_NAME: &str = "berth-sandbox-helper";

/// What the shim asks of a helper.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Set up a pod's namespaces and exec berth-pause in them.
    SpawnPause(PauseSpec),
    /// Create an app container; its init waits for `StartContainer`.
    CreateContainer(ContainerSpec),
    /// Run an extra process in a container.
    ExecContainer(ExecSpec),
    /// Let a created container's init exec its process.
    StartContainer(ContainerRef),
    /// Signal every process of a container.
    KillContainer {
        container: ContainerRef,
        signal: i32,
    },
    /// Remove a container's cgroup and engine state.
    DeleteContainer(ContainerRef),
}

/// A helper's answer.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// berth-pause runs, with this pid in the shim's PID namespace and this
    /// start time (see [`crate::process::start_time`]).
    Pause {
        pid: i32,
        start_time: u64,
    },
    /// A container was created: its init has this pid and start time.
    Created {
        pid: i32,
        start_time: u64,
    },
    /// The request was carried out.
    Done,
    Error(HelperError),
}

/// An error reported by a helper, with the class it maps to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HelperError {
    pub kind: ErrorKind,
    pub message: String,
}

impl From<&Error> for HelperError {
    fn from(e: &Error) -> Self {
        HelperError {
            kind: e.kind(),
            message: error_chain(e),
        }
    }
}

/// Formats an error with all its sources, for a message that crosses a pipe.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
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
}

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
        }
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
        })
    }

    /// Runs one helper for `request` and returns its answer.
    pub fn call(&self, request: &Request) -> Result<Response> {
        let mut child = Command::new(&self.exe)
            .arg0(HELPER_NAME)
            .arg(HELPER_ARG)
            .arg(PROTOCOL)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                Error::from(HelperError {
                    kind: ErrorKind::Internal,
                    message: format!("run helper {}: {e}", self.path.display()),
                })
            })?;
        let input = serde_json::to_vec(request).expect("requests always serialize");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let written = stdin.write_all(&input);
        drop(stdin);
        let mut output = Vec::new();
        let read = child
            .stdout
            .take()
            .expect("stdout is piped")
            .read_to_end(&mut output);
        if self.reap {
            let _ = child.wait();
        }
        written.map_err(Error::io("write helper request", &self.path))?;
        read.map_err(Error::io("read helper response", &self.path))?;
        match serde_json::from_slice(&output) {
            Ok(Response::Error(e)) => Err(e.into()),
            Ok(response) => Ok(response),
            Err(_) => Err(HelperError {
                kind: ErrorKind::Internal,
                message: format!(
                    "helper {} exited without an answer ({} bytes of output)",
                    self.path.display(),
                    output.len()
                ),
            }
            .into()),
        }
    }
}

/// The helper's entry point: reads one request, serves it, answers, exits.
///
/// Must run before any other thread exists in the process.
#[cfg(feature = "helper")]
pub fn main() -> ! {
    // Run as /proc/self/fd/<n>, the helper would be called "<n>" by ps.
    let _ = nix::sys::prctl::set_name(c"berth-helper");
    let mut input = Vec::new();
    let protocol = std::env::args().nth(2).unwrap_or_default();
    let response = match std::io::stdin().read_to_end(&mut input) {
        Ok(_) if protocol != PROTOCOL => Response::Error(HelperError {
            kind: ErrorKind::FailedPrecondition,
            message: format!(
                "{HELPER_NAME} speaks helper protocol {PROTOCOL}, its caller {protocol:?}: \
                 install the shim and its helper from one build"
            ),
        }),
        Err(e) => Response::Error(HelperError {
            kind: ErrorKind::Internal,
            message: format!("read request: {e}"),
        }),
        Ok(_) => match serde_json::from_slice::<Request>(&input) {
            Err(e) => Response::Error(HelperError {
                kind: ErrorKind::InvalidArgument,
                message: format!("malformed helper request: {e}"),
            }),
            Ok(request) => serve(request),
        },
    };
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, &response);
    let _ = out.flush();
    std::process::exit(0)
}

#[cfg(feature = "helper")]
fn serve(request: Request) -> Response {
    let result = match request {
        Request::SpawnPause(spec) => crate::pause::spawn(&spec).map(|p| Response::Pause {
            pid: p.pid,
            start_time: p.start_time,
        }),
        Request::CreateContainer(spec) => crate::engine::create(&spec).map(|p| Response::Created {
            pid: p.pid,
            start_time: p.start_time,
        }),
        Request::ExecContainer(spec) => crate::engine::exec(&spec).map(|p| Response::Created {
            pid: p.pid,
            start_time: p.start_time,
        }),
        Request::StartContainer(c) => crate::engine::start(&c).map(|()| Response::Done),
        Request::KillContainer { container, signal } => {
            crate::engine::kill_all(&container, signal).map(|()| Response::Done)
        }
        Request::DeleteContainer(c) => crate::engine::delete(&c).map(|()| Response::Done),
    };
    result.unwrap_or_else(|e| Response::Error(HelperError::from(&e)))
}

impl Response {
    /// The process a `SpawnPause` or `CreateContainer` answer names.
    pub fn into_process(self) -> Result<ProcessRecord> {
        match self {
            Response::Pause { pid, start_time } | Response::Created { pid, start_time } => {
                Ok(ProcessRecord { pid, start_time })
            }
            other => Err(other.unexpected()),
        }
    }

    /// Succeeds for a `Done` answer.
    pub fn into_done(self) -> Result<()> {
        match self {
            Response::Done => Ok(()),
            other => Err(other.unexpected()),
        }
    }

    fn unexpected(self) -> Error {
        match self {
            Response::Error(e) => e.into(),
            other => HelperError {
                kind: ErrorKind::Internal,
                message: format!("unexpected helper answer {other:?}"),
            }
            .into(),
        }
    }
}
