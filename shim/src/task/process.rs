//! One process of a task, its init or an exec: where it is in its life
//! (Created -> Running -> Stopped, the first exit winning) and, once
//! launched, the OS process and stdio behind it.

use std::sync::OnceLock;
use std::time::SystemTime;

use berth_proto::api::Status;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::io::{Io, Stdio};
use crate::process::Tracked;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Stopped { status: u32, at: SystemTime },
}

impl State {
    pub fn status(&self) -> Status {
        match self {
            State::Created => Status::CREATED,
            State::Running => Status::RUNNING,
            State::Stopped { .. } => Status::STOPPED,
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Stopped { .. } => "stopped",
        }
    }

    /// The exit status and time of a stopped process.
    pub fn exit(&self) -> Option<(u32, SystemTime)> {
        match *self {
            State::Stopped { status, at } => Some((status, at)),
            _ => None,
        }
    }
}

/// A launched process: the OS process the shim tracks, and the shim's side
/// of its stdio.
#[derive(Debug)]
pub struct Launched {
    pub os: Tracked,
    pub io: Io,
}

/// A process of a task: its init, or one of its exec processes.
#[derive(Debug)]
pub struct Process {
    /// What containerd calls it in events: the task's id for the init, the
    /// exec id for an exec.
    pub id: String,
    /// Empty for the init.
    pub exec_id: String,
    /// What error messages call it.
    pub(super) name: String,
    pub stdio: Stdio,
    /// An exec's OCI process, as JSON, until it is launched.
    pub spec: Vec<u8>,
    /// The init's from Create; an exec's from its Start.
    launched: OnceLock<Launched>,
    state: watch::Sender<State>,
}

impl Process {
    pub(super) fn init(task: &str, stdio: Stdio, launched: Launched) -> Process {
        let process = Process::new(task, "", format!("task {task}"), stdio, Vec::new());
        let _ = process.launched.set(launched);
        process
    }

    pub(super) fn exec(task: &str, exec_id: &str, stdio: Stdio, spec: Vec<u8>) -> Process {
        let name = format!("exec {exec_id} of task {task}");
        Process::new(exec_id, exec_id, name, stdio, spec)
    }

    fn new(id: &str, exec_id: &str, name: String, stdio: Stdio, spec: Vec<u8>) -> Process {
        Process {
            id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            name,
            stdio,
            spec,
            launched: OnceLock::new(),
            state: watch::Sender::new(State::Created),
        }
    }

    pub fn is_init(&self) -> bool {
        self.exec_id.is_empty()
    }

    pub fn state(&self) -> State {
        *self.state.borrow()
    }

    /// The OS process and stdio, once launched.
    pub fn launched(&self) -> Option<&Launched> {
        self.launched.get()
    }

    /// An exec's process, now launched.
    pub fn set_launched(&self, launched: Launched) {
        let _ = self.launched.set(launched);
    }

    /// The pid, 0 before an exec is launched.
    pub fn pid(&self) -> i32 {
        self.launched().map_or(0, |l| l.os.pid)
    }

    /// The stdio, for CloseIO and ResizePty: an exec's only once started.
    pub fn io(&self) -> Result<&Io> {
        self.launched()
            .map(|l| &l.io)
            .ok_or_else(|| Error::FailedPrecondition(format!("{} is not started", self.name)))
    }

    /// Created -> Running. Anything else is a bad move.
    pub fn start(&self) -> Result<()> {
        let mut result = Ok(());
        self.state.send_if_modified(|s| match *s {
            State::Created => {
                *s = State::Running;
                true
            }
            other => {
                result = Err(self.not_created(other));
                false
            }
        });
        result
    }

    /// The process exited. Returns false if it was already stopped.
    pub fn exited(&self, status: u32, at: SystemTime) -> bool {
        self.state.send_if_modified(|s| match s {
            State::Stopped { .. } => false,
            _ => {
                *s = State::Stopped { status, at };
                true
            }
        })
    }

    /// Waits until the process has stopped and returns its exit.
    pub async fn wait(&self) -> (u32, SystemTime) {
        let mut rx = self.state.subscribe();
        let stopped = rx
            .wait_for(|s| s.exit().is_some())
            .await
            .expect("the sender lives in self");
        stopped.exit().expect("waited for stopped")
    }

    pub(super) fn not_created(&self, state: State) -> Error {
        Error::FailedPrecondition(format!(
            "{} is {}, not created",
            self.name,
            state.describe()
        ))
    }

    /// The NotFound of a signal that found no process to reach.
    pub fn not_running(&self) -> Error {
        if self.is_init() {
            Error::NotFound(format!("process of {}: already finished", self.name))
        } else {
            Error::NotFound(format!("process of {}: not running", self.name))
        }
    }
}
