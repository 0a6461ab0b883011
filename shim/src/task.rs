//! A task and its processes: the state machine, and every rule of what may
//! happen to them. The service asks here; it does not decide.
//!
//! A task has one init process and any number of exec processes; both are
//! a [`Process`], found with [`Task::process`] by exec id (empty for the
//! init). Each moves Created -> Running (Start) -> Stopped (its first exit).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use berth_proto::api::Status;
use berth_sandbox::cgroup::freezer::{Freezer, FreezerState};
use berth_sandbox::cgroup::TaskCgroup;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::io::{Io, Stdio};
use crate::oom::OomWatch;
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
    name: String,
    pub stdio: Stdio,
    /// An exec's OCI process, as JSON, until it is launched.
    pub spec: Vec<u8>,
    /// The init's from Create; an exec's from its Start.
    launched: OnceLock<Launched>,
    state: watch::Sender<State>,
}

impl Process {
    fn init(task: &str, stdio: Stdio, launched: Launched) -> Process {
        let process = Process::new(task, "", format!("task {task}"), stdio, Vec::new());
        let _ = process.launched.set(launched);
        process
    }

    fn exec(task: &str, exec_id: &str, stdio: Stdio, spec: Vec<u8>) -> Process {
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

    fn not_created(&self, state: State) -> Error {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn launched(pid: i32) -> Launched {
        Launched {
            os: Tracked::gone(pid),
            io: Io::none(),
        }
    }

    fn task() -> Task {
        Task::new("t", "/b", Stdio::default(), launched(1))
    }

    /// A task with a v1 freezer of plain files in `dir`, thawed or frozen.
    fn task_with_freezer(dir: &Path, frozen: bool) -> Task {
        let state = if frozen { "FROZEN\n" } else { "THAWED\n" };
        std::fs::write(dir.join("freezer.state"), state).unwrap();
        task().with_cgroup(None, None, Some(Freezer::V1(dir.to_owned())))
    }

    fn precondition<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(Error::FailedPrecondition(m)) => m,
            other => panic!("not a failed precondition: {other:?}"),
        }
    }

    #[test]
    fn start_only_from_created() {
        let t = task();
        let init = t.init();
        t.check_start(init).unwrap();
        init.start().unwrap();
        assert_eq!(init.state(), State::Running);
        assert!(precondition(t.check_start(init)).contains("task t is running, not created"));
        assert!(matches!(init.start(), Err(Error::FailedPrecondition(_))));
        assert!(init.exited(0, SystemTime::UNIX_EPOCH));
        assert!(precondition(t.check_start(init)).contains("stopped"));
    }

    #[test]
    fn the_first_exit_wins() {
        let t = task();
        assert!(t.init().exited(42, SystemTime::UNIX_EPOCH));
        assert!(!t.init().exited(137, SystemTime::now()));
        assert_eq!(t.init().state().exit(), Some((42, SystemTime::UNIX_EPOCH)));
    }

    #[tokio::test]
    async fn wait_returns_the_exit() {
        let t = Arc::new(task());
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.init().wait().await }
        });
        tokio::task::yield_now().await;
        t.init().exited(3, SystemTime::UNIX_EPOCH);
        assert_eq!(waiter.await.unwrap(), (3, SystemTime::UNIX_EPOCH));
        assert_eq!(
            t.init().wait().await.0,
            3,
            "waiting on a stopped task returns at once"
        );
    }

    #[test]
    fn processes_are_found_by_exec_id() {
        let t = task();
        assert!(t.process("").unwrap().is_init());
        assert_eq!(t.process("").unwrap().id, "t");
        assert!(matches!(t.process("e1"), Err(Error::NotFound(m)) if m == "exec e1 of task t"));
        t.init().start().unwrap();
        t.add_exec("e1", Stdio::default(), b"{}".to_vec()).unwrap();
        let exec = t.process("e1").unwrap();
        assert!(!exec.is_init());
        assert_eq!((exec.id.as_str(), exec.pid()), ("e1", 0));
        assert!(matches!(
            t.add_exec("e1", Stdio::default(), Vec::new()),
            Err(Error::AlreadyExists(_))
        ));
        assert!(matches!(
            t.add_exec("", Stdio::default(), Vec::new()),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn execs_need_a_running_unpaused_task() {
        let dir = tempfile::tempdir().unwrap();
        let t = task_with_freezer(dir.path(), false);
        assert!(precondition(t.add_exec("e1", Stdio::default(), Vec::new()))
            .contains("task t is created"));
        t.init().start().unwrap();
        t.add_exec("e1", Stdio::default(), Vec::new()).unwrap();
        let exec = t.process("e1").unwrap();
        t.check_start(&exec).unwrap();
        std::fs::write(dir.path().join("freezer.state"), "FROZEN\n").unwrap();
        assert!(precondition(t.add_exec("e2", Stdio::default(), Vec::new()))
            .contains("task t is paused"));
        assert!(precondition(t.check_start(&exec)).contains("paused"));
        std::fs::write(dir.path().join("freezer.state"), "THAWED\n").unwrap();
        t.init().exited(0, SystemTime::UNIX_EPOCH);
        assert!(precondition(t.check_start(&exec)).contains("task t is stopped"));
    }

    #[test]
    fn signals_need_a_launched_live_process() {
        let t = task();
        t.signal_target(t.init())
            .expect("a created init can be killed");
        t.init().start().unwrap();
        t.add_exec("e1", Stdio::default(), Vec::new()).unwrap();
        let exec = t.process("e1").unwrap();
        assert!(precondition(t.signal_target(&exec)).contains("exec e1 of task t is not started"));
        exec.set_launched(launched(7));
        assert!(
            matches!(
                t.signal_target(&exec),
                Err(Error::NotFound(m)) if m.contains("not running")
            ),
            "launched, not yet running"
        );
        exec.start().unwrap();
        assert_eq!(t.signal_target(&exec).unwrap().pid, 7);
        exec.exited(0, SystemTime::UNIX_EPOCH);
        assert!(matches!(
            t.signal_target(&exec),
            Err(Error::NotFound(m)) if m.contains("not running")
        ));
        t.init().exited(0, SystemTime::UNIX_EPOCH);
        assert!(matches!(
            t.signal_target(t.init()),
            Err(Error::NotFound(m)) if m.contains("already finished")
        ));
    }

    #[test]
    fn only_what_is_not_running_is_deleted() {
        let t = task();
        t.check_delete().unwrap();
        assert!(t.kill_before_remove(), "a created task is killed first");
        t.init().start().unwrap();
        assert!(precondition(t.check_delete()).contains("kill it before delete"));
        assert!(!t.kill_before_remove());
        t.add_exec("e1", Stdio::default(), Vec::new()).unwrap();
        let exec = t.process("e1").unwrap();
        exec.set_launched(launched(7));
        exec.start().unwrap();
        assert!(precondition(t.remove_exec("e1")).contains("exec e1 of task t is running"));
        exec.exited(1, SystemTime::UNIX_EPOCH);
        assert_eq!(t.remove_exec("e1").unwrap().state().exit().unwrap().0, 1);
        assert!(matches!(t.process("e1"), Err(Error::NotFound(_))));
        t.init().exited(0, SystemTime::UNIX_EPOCH);
        t.check_delete().unwrap();
    }

    #[test]
    fn pause_and_resume_rules() {
        let dir = tempfile::tempdir().unwrap();
        assert!(precondition(task().check_freeze(true)).contains("no cgroup of its own to pause"));
        let t = task_with_freezer(dir.path(), false);
        assert!(precondition(t.check_freeze(true)).contains("only a running task can pause"));
        assert!(!t.changes_with(true), "a created task stays free to start");
        t.init().start().unwrap();
        t.check_freeze(true).unwrap();
        assert!(t.changes_with(true));
        assert!(precondition(t.check_freeze(false)).contains("not paused"));
        assert!(!t.changes_with(false));
        std::fs::write(dir.path().join("freezer.state"), "FROZEN\n").unwrap();
        assert_eq!(t.status_of(t.init()), Status::PAUSED);
        assert!(precondition(t.check_freeze(true)).contains("paused already"));
        t.check_freeze(false).unwrap();
        assert!(t.changes_with(false));
        std::fs::write(dir.path().join("freezer.state"), "FREEZING\n").unwrap();
        assert_eq!(t.status_of(t.init()), Status::PAUSING);
        t.check_freeze(false).unwrap();
        t.init().exited(0, SystemTime::UNIX_EPOCH);
        assert!(precondition(t.check_freeze(false)).contains("stopped"));
    }

    #[test]
    fn resize_needs_a_started_process() {
        let t = task();
        t.init()
            .io()
            .expect("the init's stdio is there from Create");
        t.init().start().unwrap();
        t.add_exec("e1", Stdio::default(), Vec::new()).unwrap();
        let exec = t.process("e1").unwrap();
        assert!(precondition(exec.io()).contains("exec e1 of task t is not started"));
    }
}
