//! A task's state machine: the only place its transitions are decided.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use berth_proto::api::Status;
use berth_sandbox::freezer::{Freezer, FreezerState};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::io::Io;
use crate::metrics::TaskCgroup;
use crate::oom::OomWatch;
use crate::process::Process;

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
}

/// The IO paths containerd gave a task, reported back by State.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stdio {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Where a process is in its life: the only place its transitions are
/// decided, for a task's init and its exec processes alike.
#[derive(Debug)]
pub struct Lifecycle {
    /// What the process is called in error messages.
    name: String,
    state: watch::Sender<State>,
}

impl Lifecycle {
    pub fn new(name: String) -> Self {
        Lifecycle {
            name,
            state: watch::Sender::new(State::Created),
        }
    }

    pub fn state(&self) -> State {
        *self.state.borrow()
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
                result = Err(Error::FailedPrecondition(format!(
                    "{} is {}, not created",
                    self.name,
                    describe(other)
                )));
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
            .wait_for(|s| matches!(s, State::Stopped { .. }))
            .await
            .expect("the sender lives in self");
        match *stopped {
            State::Stopped { status, at } => (status, at),
            _ => unreachable!("waited for stopped"),
        }
    }
}

/// One task of the pod: its init process and where it is in its life.
#[derive(Debug)]
pub struct Task {
    pub id: String,
    pub bundle: String,
    pub stdio: Stdio,
    pub process: Process,
    /// The shim's side of the init's stdio.
    pub io: Io,
    /// The task's cgroup, for Stats, Update and Pids.
    pub cgroup: Option<TaskCgroup>,
    /// OOM kills in the task's memory cgroup.
    pub oom: Option<OomWatch>,
    /// The freezer of the task's cgroup, for Pause and Resume.
    pub freezer: Option<Freezer>,
    /// Signalled when Delete removes the task.
    pub deleted: tokio::sync::Notify,
    pub life: Lifecycle,
    /// The task's exec processes, by exec id.
    pub execs: Mutex<HashMap<String, Arc<Exec>>>,
    /// Held across a transition and the event announcing it, so events leave
    /// in the order the transitions happened (no TaskExit before TaskStart).
    /// Exec processes' events are ordered by it too.
    pub events: tokio::sync::Mutex<()>,
}

impl Task {
    pub fn new(id: &str, bundle: &str, stdio: Stdio, process: Process, io: Io) -> Self {
        Task {
            id: id.to_owned(),
            bundle: bundle.to_owned(),
            stdio,
            process,
            io,
            cgroup: None,
            oom: None,
            freezer: None,
            deleted: tokio::sync::Notify::new(),
            life: Lifecycle::new(format!("task {id}")),
            execs: Mutex::new(HashMap::new()),
            events: tokio::sync::Mutex::new(()),
        }
    }

    /// The task's cgroup, the OOM watch on it and its freezer.
    pub fn with_cgroup(
        self,
        cgroup: Option<TaskCgroup>,
        oom: Option<OomWatch>,
        freezer: Option<Freezer>,
    ) -> Self {
        Task {
            cgroup,
            oom,
            freezer,
            ..self
        }
    }

    /// Where the task's freezer is: frozen, freezing or thawed. A task
    /// without a cgroup, or whose cgroup is gone, is never frozen.
    pub fn frozen(&self) -> FreezerState {
        self.freezer
            .as_ref()
            .and_then(|f| f.state().ok())
            .unwrap_or(FreezerState::Thawed)
    }

    /// The status State reports for a process of the task (its init's
    /// `life`, or an exec's): a running process in a frozen cgroup is
    /// paused, or pausing while the kernel is still at it.
    pub fn status_of(&self, life: &Lifecycle) -> Status {
        match life.state() {
            State::Running => match self.frozen() {
                FreezerState::Frozen => Status::PAUSED,
                FreezerState::Freezing => Status::PAUSING,
                FreezerState::Thawed => Status::RUNNING,
            },
            state => state.status(),
        }
    }

    /// Fails unless the task runs and is not frozen: what Exec and the start
    /// of an exec need.
    pub fn check_runnable(&self, what: &str) -> Result<()> {
        match (self.life.state(), self.frozen()) {
            (State::Running, FreezerState::Thawed) => Ok(()),
            (State::Running, _) => Err(Error::FailedPrecondition(format!(
                "task {} is paused: {what}",
                self.id
            ))),
            (state, _) => Err(Error::FailedPrecondition(format!(
                "task {} is {}: {what}",
                self.id,
                describe(state)
            ))),
        }
    }

    pub fn exec(&self, exec_id: &str) -> Result<Arc<Exec>> {
        self.execs
            .lock()
            .expect("execs lock")
            .get(exec_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("exec {exec_id} of task {}", self.id)))
    }
}

/// An exec process of a task: added by Exec, run by Start.
#[derive(Debug)]
pub struct Exec {
    pub id: String,
    pub stdio: Stdio,
    /// The OCI process to run, as JSON.
    pub spec: Vec<u8>,
    /// The process and its stdio, once started.
    pub started: OnceLock<Started>,
    pub life: Lifecycle,
}

/// A started exec process.
#[derive(Debug)]
pub struct Started {
    pub process: Process,
    pub io: Io,
}

impl Exec {
    pub fn new(task: &str, id: &str, stdio: Stdio, spec: Vec<u8>) -> Self {
        Exec {
            id: id.to_owned(),
            stdio,
            spec,
            started: OnceLock::new(),
            life: Lifecycle::new(format!("exec {id} of task {task}")),
        }
    }

    /// The exec's pid, 0 before it started.
    pub fn pid(&self) -> i32 {
        self.started.get().map_or(0, |s| s.process.pid)
    }
}

pub fn describe(state: State) -> &'static str {
    match state {
        State::Created => "created",
        State::Running => "running",
        State::Stopped { .. } => "stopped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> Task {
        Task::new("t", "/b", Stdio::default(), Process::gone(1), Io::none())
    }

    #[test]
    fn start_only_from_created() {
        let t = task();
        t.life.start().unwrap();
        assert_eq!(t.life.state(), State::Running);
        assert!(matches!(t.life.start(), Err(Error::FailedPrecondition(_))));
        assert!(t.life.exited(0, SystemTime::UNIX_EPOCH));
        assert!(matches!(t.life.start(), Err(Error::FailedPrecondition(_))));
    }

    #[test]
    fn the_first_exit_wins() {
        let t = task();
        assert!(t.life.exited(42, SystemTime::UNIX_EPOCH));
        assert!(!t.life.exited(137, SystemTime::now()));
        assert_eq!(
            t.life.state(),
            State::Stopped {
                status: 42,
                at: SystemTime::UNIX_EPOCH
            }
        );
    }

    #[tokio::test]
    async fn wait_returns_the_exit() {
        let t = std::sync::Arc::new(task());
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.life.wait().await }
        });
        tokio::task::yield_now().await;
        t.life.exited(3, SystemTime::UNIX_EPOCH);
        assert_eq!(waiter.await.unwrap(), (3, SystemTime::UNIX_EPOCH));
        assert_eq!(
            t.life.wait().await.0,
            3,
            "waiting on a stopped task returns at once"
        );
    }
}
