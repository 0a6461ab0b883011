//! A task and its processes: the state machine, and every rule of what may
//! happen to them. The service asks here; it does not decide.
//!
//! A task has one init process and any number of exec processes; both are
//! a [`Process`], found with [`Task::process`] by exec id (empty for the
//! init). Each moves Created -> Running (Start) -> Stopped (its first exit).

mod process;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use berth_proto::api::Status;
use berth_sandbox::cgroup::freezer::{Freezer, FreezerState};
use berth_sandbox::cgroup::TaskCgroup;

pub use self::process::{Launched, Process, State};
use crate::error::{Error, Result};
use crate::io::Stdio;
use crate::oom::OomWatch;
use crate::process::Tracked;

/// One task of the pod: its init and exec processes, and its cgroup.
#[derive(Debug)]
pub struct Task {
    pub id: String,
    pub bundle: String,
    init: Arc<Process>,
    /// The task's exec processes, by exec id.
    execs: Mutex<HashMap<String, Arc<Process>>>,
    /// The task's cgroup, for Stats, Update and Pids.
    pub cgroup: Option<TaskCgroup>,
    /// OOM kills in the task's memory cgroup.
    pub oom: Option<OomWatch>,
    /// The freezer of the task's cgroup, for Pause and Resume.
    pub freezer: Option<Freezer>,
    /// Signalled when Delete removes the task.
    pub deleted: tokio::sync::Notify,
    /// Held across a transition and the event announcing it, so events leave
    /// in the order the transitions happened (no TaskExit before TaskStart).
    /// Exec processes' events are ordered by it too.
    pub events: tokio::sync::Mutex<()>,
}

impl Task {
    /// A created task whose init is `init`.
    pub fn new(id: &str, bundle: &str, stdio: Stdio, init: Launched) -> Self {
        Task {
            id: id.to_owned(),
            bundle: bundle.to_owned(),
            init: Arc::new(Process::init(id, stdio, init)),
            execs: Mutex::new(HashMap::new()),
            cgroup: None,
            oom: None,
            freezer: None,
            deleted: tokio::sync::Notify::new(),
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

    pub fn init(&self) -> &Arc<Process> {
        &self.init
    }

    /// The init's OS process: there from Create.
    pub fn init_os(&self) -> &Tracked {
        &self
            .init
            .launched()
            .expect("an init is launched by Create")
            .os
    }

    fn execs(&self) -> MutexGuard<'_, HashMap<String, Arc<Process>>> {
        // The map is left whole by every holder: a panic elsewhere
        // does not make it unusable.
        self.execs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The process `exec_id` names: the init for an empty one.
    pub fn process(&self, exec_id: &str) -> Result<Arc<Process>> {
        if exec_id.is_empty() {
            return Ok(Arc::clone(&self.init));
        }
        self.execs()
            .get(exec_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("exec {exec_id} of task {}", self.id)))
    }

    /// The exec processes that were launched.
    pub fn launched_execs(&self) -> Vec<Arc<Process>> {
        self.execs()
            .values()
            .filter(|e| e.launched().is_some())
            .cloned()
            .collect()
    }

    /// The pids of the running exec processes.
    pub fn running_exec_pids(&self) -> Vec<u32> {
        self.execs()
            .values()
            .filter(|e| e.state() == State::Running)
            .map(|e| e.pid() as u32)
            .collect()
    }

    /// Where the task's freezer is: frozen, freezing or thawed. A task
    /// without a cgroup, or whose cgroup is gone, is never frozen.
    pub fn frozen(&self) -> FreezerState {
        self.freezer
            .as_ref()
            .and_then(|f| f.state().ok())
            .unwrap_or(FreezerState::Thawed)
    }

    /// The status State reports for a process of the task: a running
    /// process in a frozen cgroup is paused, or pausing while the kernel is
    /// still at it.
    pub fn status_of(&self, process: &Process) -> Status {
        match process.state() {
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
    fn check_runnable(&self, what: &str) -> Result<()> {
        match (self.init.state(), self.frozen()) {
            (State::Running, FreezerState::Thawed) => Ok(()),
            (State::Running, _) => Err(Error::FailedPrecondition(format!(
                "task {} is paused: {what}",
                self.id
            ))),
            (state, _) => Err(Error::FailedPrecondition(format!(
                "task {} is {}: {what}",
                self.id,
                state.describe()
            ))),
        }
    }

    /// Start: only a created process starts (never twice), and an exec
    /// only in a running, unpaused task.
    pub fn check_start(&self, process: &Process) -> Result<()> {
        if !process.is_init() {
            self.check_runnable("its execs cannot start")?;
        }
        match process.state() {
            State::Created => Ok(()),
            other => Err(process.not_created(other)),
        }
    }

    /// Exec: adds exec process `exec_id`, to be launched by its Start. The
    /// task must run, unpaused, and the id be new.
    pub fn add_exec(&self, exec_id: &str, stdio: Stdio, spec: Vec<u8>) -> Result<()> {
        if exec_id.is_empty() {
            return Err(Error::InvalidArgument("exec_id: must not be empty".into()));
        }
        self.check_runnable("exec needs a running task")?;
        let mut execs = self.execs();
        if execs.contains_key(exec_id) {
            return Err(Error::AlreadyExists(format!(
                "exec {exec_id} of task {}",
                self.id
            )));
        }
        let exec = Process::exec(&self.id, exec_id, stdio, spec);
        execs.insert(exec_id.to_owned(), Arc::new(exec));
        Ok(())
    }

    /// Kill: the OS process a signal to `process` goes to. An exec never
    /// launched cannot be signalled; one reaches its process only while it
    /// runs, the init also while it waits to start. A stopped process is
    /// gone.
    pub fn signal_target<'p>(&self, process: &'p Process) -> Result<&'p Tracked> {
        let launched = process
            .launched()
            .ok_or_else(|| Error::FailedPrecondition(format!("{} is not started", process.name)))?;
        match process.state() {
            State::Running => Ok(&launched.os),
            State::Created if process.is_init() => Ok(&launched.os),
            _ => Err(process.not_running()),
        }
    }

    /// Delete: a running task must be killed first.
    pub fn check_delete(&self) -> Result<()> {
        match self.init.state() {
            State::Running => Err(Error::FailedPrecondition(format!(
                "task {} is running: kill it before delete",
                self.id
            ))),
            _ => Ok(()),
        }
    }

    /// Delete of a task that never started: its waiting init is killed
    /// before anything is removed (containerd cleans up a failed create so).
    pub fn kill_before_remove(&self) -> bool {
        self.init.state() == State::Created
    }

    /// Delete of exec `exec_id`: takes it out of the task, unless it runs.
    pub fn remove_exec(&self, exec_id: &str) -> Result<Arc<Process>> {
        let exec = self.process(exec_id)?;
        if exec.state() == State::Running {
            return Err(Error::FailedPrecondition(format!(
                "{} is running: kill it before delete",
                exec.name
            )));
        }
        if exec.state() == State::Created {
            // Never started: a Wait on it must not wait for ever. 255 is
            // containerd's status for an exit no one saw.
            exec.exited(255, std::time::SystemTime::now());
        }
        self.execs().remove(exec_id);
        Ok(exec)
    }

    /// Pause (`freeze`) or Resume: only a running task with a cgroup of its
    /// own, and only if it is not already where it is asked to go.
    pub fn check_freeze(&self, freeze: bool) -> Result<()> {
        let verb = if freeze { "pause" } else { "resume" };
        if self.freezer.is_none() {
            return Err(Error::FailedPrecondition(format!(
                "task {} has no cgroup of its own to {verb}",
                self.id
            )));
        }
        match (self.init.state(), self.frozen()) {
            (State::Running, FreezerState::Thawed) if freeze => Ok(()),
            (State::Running, FreezerState::Frozen | FreezerState::Freezing) if !freeze => Ok(()),
            (State::Running, _) => Err(Error::FailedPrecondition(format!(
                "task {} is {}",
                self.id,
                if freeze {
                    "paused already"
                } else {
                    "not paused"
                }
            ))),
            (state, _) => Err(Error::FailedPrecondition(format!(
                "task {} is {}: only a running task can {verb}",
                self.id,
                state.describe()
            ))),
        }
    }

    /// Whether a Pause (`freeze`) or Resume of the pod changes this task: a
    /// running one with a freezer not already there. A created task is
    /// left alone, so that its init stays free to start.
    pub fn changes_with(&self, freeze: bool) -> bool {
        self.init.state() == State::Running
            && self.freezer.is_some()
            && (self.frozen() == FreezerState::Thawed) == freeze
    }
}
