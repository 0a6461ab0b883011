//! The Task service: containerd's task API over the pod's tasks.
//!
//! One implementation, registered under both `containerd.task.v2.Task`
//! (containerd 1.7) and `containerd.task.v3.Task` (containerd 2.x): the two
//! APIs' messages are wire-identical.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_proto::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, ExecProcessRequest, KillRequest, PauseRequest, PidsRequest,
    PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest, StartResponse,
    StateRequest, StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest, WaitRequest,
    WaitResponse,
};
use berth_proto::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use berth_proto::protobuf::well_known_types::empty::Empty;
use berth_proto::shim_async::Task as TaskApi;
use berth_proto::ttrpc::r#async::TtrpcContext;
use berth_proto::ttrpc::{self};
use berth_proto::types::task::ProcessInfo;
use berth_sandbox::freezer::{self, Freezer, FreezerState};
use berth_sandbox::journal::{self, Record};
use berth_sandbox::mount::Mount;
use tokio::sync::Notify;

use crate::engine::{blocking, CreateRequest, Created, Engine};
use crate::error::{Error, Result};
use crate::events::{timestamp, Event, Publisher};
use crate::metrics::TaskCgroup;
use crate::oom::Oom;
use crate::reaper::Reaper;
use crate::task::{describe, Exec, Started, State, Stdio, Task};

/// How long an exit waits for the process's output to be copied: processes
/// that outlive the init may hold its stdout open for ever.
const OUTPUT_DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long an init's exit waits for its exec processes' exits.
const EXEC_EXIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Service<E, P> {
    inner: Arc<Inner<E, P>>,
}

struct Inner<E, P> {
    engine: E,
    publisher: P,
    reaper: Arc<Reaper>,
    tasks: Mutex<Tasks>,
    /// Signalled when containerd shuts the shim down with no task left.
    shutdown: Arc<Notify>,
}

/// The pod's tasks, and the ids whose Create is under way (reserved, so a
/// second Create of the id fails and Shutdown waits for them).
#[derive(Default)]
struct Tasks {
    live: HashMap<String, Arc<Task>>,
    creating: HashSet<String>,
    /// containerd asked the shim to shut down while tasks remained: it
    /// does once the last one is deleted. (containerd 2.x sends Shutdown
    /// only with the sandbox's delete, which CRI's recovery may do first.)
    shutdown_deferred: bool,
}

impl<E: Engine, P: Publisher> Service<E, P> {
    pub fn new(engine: E, publisher: P, reaper: Arc<Reaper>, shutdown: Arc<Notify>) -> Self {
        Service {
            inner: Arc::new(Inner {
                engine,
                publisher,
                reaper,
                tasks: Mutex::new(Tasks::default()),
                shutdown,
            }),
        }
    }
}

impl<E: Engine, P: Publisher> Inner<E, P> {
    fn task(&self, id: &str) -> Result<Arc<Task>> {
        self.tasks
            .lock()
            .expect("tasks lock")
            .live
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("task {id}")))
    }

    async fn create(self: &Arc<Self>, req: CreateTaskRequest) -> Result<CreateTaskResponse> {
        if req.id.is_empty() {
            return Err(Error::InvalidArgument("id: must not be empty".into()));
        }
        if req.bundle.is_empty() {
            return Err(Error::InvalidArgument("bundle: must not be empty".into()));
        }
        {
            let mut tasks = self.tasks.lock().expect("tasks lock");
            if tasks.live.contains_key(&req.id) || !tasks.creating.insert(req.id.clone()) {
                return Err(Error::AlreadyExists(format!("task {}", req.id)));
            }
        }
        // On a task of its own: containerd's deadline may drop this request's
        // future, and a half-made task must not be abandoned with it.
        let this = Arc::clone(self);
        tokio::spawn(async move { this.create_reserved(req).await })
            .await
            .map_err(|e| Error::Internal(format!("create task failed: {e}")))?
    }

    async fn create_reserved(
        self: Arc<Self>,
        req: CreateTaskRequest,
    ) -> Result<CreateTaskResponse> {
        // Subscribed before the process exists: its exit cannot be missed.
        let mut exits = self.reaper.subscribe();
        let stdio = Stdio {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let created = self
            .engine
            .create(CreateRequest {
                id: req.id.clone(),
                bundle: PathBuf::from(&req.bundle),
                rootfs: req
                    .rootfs
                    .iter()
                    .map(|m| Mount {
                        kind: m.type_.clone(),
                        source: m.source.clone(),
                        options: m.options.clone(),
                    })
                    .collect(),
                stdio: stdio.clone(),
            })
            .await;
        let created = match created {
            Ok(created) => created,
            Err(e) => {
                self.tasks
                    .lock()
                    .expect("tasks lock")
                    .creating
                    .remove(&req.id);
                self.shutdown_if_deferred();
                return Err(e);
            }
        };
        let Created {
            process,
            io,
            cgroup,
            oom,
            freezer,
        } = created;
        let pid = process.pid as u32;
        let process = exits.track(process);
        let task = Arc::new(
            Task::new(&req.id, &req.bundle, stdio, process, io).with_cgroup(cgroup, oom, freezer),
        );
        {
            // Held from the moment the task is visible until TaskCreate is
            // queued, so a racing Start cannot announce the task first.
            let _order = task.events.lock().await;
            {
                let mut tasks = self.tasks.lock().expect("tasks lock");
                tasks.creating.remove(&req.id);
                tasks.live.insert(req.id.clone(), Arc::clone(&task));
            }
            self.publisher
                .publish(Event::Create(TaskCreate {
                    container_id: req.id.clone(),
                    bundle: req.bundle.clone(),
                    rootfs: req.rootfs.clone(),
                    io: Some(berth_proto::events::task::TaskIO {
                        stdin: req.stdin,
                        stdout: req.stdout,
                        stderr: req.stderr,
                        terminal: req.terminal,
                        ..Default::default()
                    })
                    .into(),
                    checkpoint: req.checkpoint,
                    pid,
                    ..Default::default()
                }))
                .await;
        }
        if task.oom.is_some() {
            let this = Arc::clone(&self);
            let task = Arc::clone(&task);
            tokio::spawn(async move { this.watch_oom(&task).await });
        }
        // Watched only now, so TaskExit cannot overtake TaskCreate.
        let this = Arc::clone(&self);
        tokio::spawn(async move {
            if let Some(exit) = exits.wait_for(&task.process).await {
                this.exited(&task, exit.status, exit.at).await;
            }
        });
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    /// Publishes a TaskOOM for the OOM kills in the task's cgroup, until the
    /// cgroup or the task goes.
    async fn watch_oom(&self, task: &Task) {
        let Some(oom) = &task.oom else {
            return;
        };
        loop {
            tokio::select! {
                ready = oom.ready() => if !ready || !self.publish_oom(task).await {
                    return;
                },
                _ = task.deleted.notified() => return,
            }
        }
    }

    /// Publishes a TaskOOM if the task's OOM watch saw a kill, in order with
    /// the task's other events. False once its cgroup is gone.
    async fn publish_oom(&self, task: &Task) -> bool {
        let Some(oom) = &task.oom else {
            return false;
        };
        let _order = task.events.lock().await;
        match oom.take() {
            Oom::Quiet => true,
            Oom::Gone => false,
            Oom::Killed => {
                log::info!("task {}: OOM kill in its memory cgroup", task.id);
                self.publisher
                    .publish(Event::Oom(TaskOOM {
                        container_id: task.id.clone(),
                        ..Default::default()
                    }))
                    .await;
                true
            }
        }
    }

    async fn exited(&self, task: &Task, status: u32, at: std::time::SystemTime) {
        if let Err(e) = self.engine.exited(&task.id).await {
            log::warn!("task {}: after its exit: {e}", task.id);
        }
        // The init's exit is announced after its exec processes' exits, as
        // containerd's runc shim does: they die with it.
        let started: Vec<Arc<Exec>> = task
            .execs
            .lock()
            .expect("execs lock")
            .values()
            .filter(|e| e.started.get().is_some())
            .cloned()
            .collect();
        for exec in started {
            if let (Some(s), State::Running) = (exec.started.get(), exec.life.state()) {
                // They die with the init in its own PID namespace; in a
                // shared one, the kill of the cgroup may have failed.
                let _ = self
                    .engine
                    .kill(&exec.id, &s.process, libc::SIGKILL as u32, false)
                    .await;
            }
            if tokio::time::timeout(EXEC_EXIT_LIMIT, exec.life.wait())
                .await
                .is_err()
            {
                log::warn!(
                    "task {}: exec {} still not reaped {EXEC_EXIT_LIMIT:?} after its init exited",
                    task.id,
                    exec.id
                );
            }
        }
        // The kernel signals an OOM kill before it kills: one that ended
        // the init is published before its exit.
        self.publish_oom(task).await;
        self.announce_exit(task, "", task.process.pid, &task.io, &task.life, status, at)
            .await;
    }

    /// Marks a process of `task` (its init, or exec `exec_id`) stopped,
    /// journals its exit and publishes its TaskExit, once its output is
    /// copied and in order with the task's other events. A second exit of
    /// the process is ignored.
    #[allow(clippy::too_many_arguments)]
    async fn announce_exit(
        &self,
        task: &Task,
        exec_id: &str,
        pid: i32,
        io: &crate::io::Io,
        life: &crate::task::Lifecycle,
        status: u32,
        at: std::time::SystemTime,
    ) {
        // Everything the process wrote reaches containerd before its exit.
        io.drained(OUTPUT_DRAIN_LIMIT).await;
        let _order = task.events.lock().await;
        if matches!(life.state(), State::Stopped { .. }) {
            return;
        }
        // Durable before anyone learns of it (Wait, State, TaskExit): a
        // shim that dies from here on still lets `delete` report it.
        let exit = journal::Exit::new(&task.id, exec_id, pid, status, at);
        if let Err(e) = self.engine.journal(Record::Exit(exit)).await {
            log::error!("task {}: journal the exit of pid {pid}: {e}", task.id);
        }
        life.exited(status, at);
        let id = if exec_id.is_empty() {
            &task.id
        } else {
            exec_id
        };
        log::info!(
            "task {}: process {id} (pid {pid}) exited with status {status}",
            task.id
        );
        self.publisher
            .publish(Event::Exit(TaskExit {
                container_id: task.id.clone(),
                id: id.to_owned(),
                pid: pid as u32,
                exit_status: status,
                exited_at: Some(timestamp(at)).into(),
                ..Default::default()
            }))
            .await;
    }

    async fn start(self: &Arc<Self>, req: StartRequest) -> Result<StartResponse> {
        let task = self.task(&req.id)?;
        if !req.exec_id.is_empty() {
            return self.start_exec(&task, &req.exec_id).await;
        }
        let _order = task.events.lock().await;
        if let state @ (State::Running | State::Stopped { .. }) = task.life.state() {
            return Err(Error::FailedPrecondition(format!(
                "task {} is {}, not created",
                req.id,
                describe(state)
            )));
        }
        self.engine.start(&req.id).await?;
        task.life.start()?;
        let pid = task.process.pid as u32;
        self.publisher
            .publish(Event::Start(TaskStart {
                container_id: req.id,
                pid,
                ..Default::default()
            }))
            .await;
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn state(&self, req: StateRequest) -> Result<StateResponse> {
        let task = self.task(&req.id)?;
        if !req.exec_id.is_empty() {
            let exec = task.exec(&req.exec_id)?;
            let state = exec.life.state();
            let (exit_status, exited_at) = stopped(state);
            return Ok(StateResponse {
                id: exec.id.clone(),
                bundle: task.bundle.clone(),
                pid: exec.pid() as u32,
                status: task.status_of(&exec.life).into(),
                stdin: exec.stdio.stdin.clone(),
                stdout: exec.stdio.stdout.clone(),
                stderr: exec.stdio.stderr.clone(),
                terminal: exec.stdio.terminal,
                exit_status,
                exited_at: exited_at.into(),
                exec_id: exec.id.clone(),
                ..Default::default()
            });
        }
        let state = task.life.state();
        let (exit_status, exited_at) = stopped(state);
        Ok(StateResponse {
            id: task.id.clone(),
            bundle: task.bundle.clone(),
            pid: task.process.pid as u32,
            status: task.status_of(&task.life).into(),
            stdin: task.stdio.stdin.clone(),
            stdout: task.stdio.stdout.clone(),
            stderr: task.stdio.stderr.clone(),
            terminal: task.stdio.terminal,
            exit_status,
            exited_at: exited_at.into(),
            ..Default::default()
        })
    }

    fn pids(&self, req: PidsRequest) -> Result<PidsResponse> {
        let task = self.task(&req.id)?;
        // The init is reported until Delete, also after it exited: containerd
        // takes a task without pids for a leaked shim when it restarts, and
        // would lose the exit status.
        let mut pids = vec![task.process.pid as u32];
        // Then every process in its cgroup, as runc's `ps` lists them, and
        // its running execs (in the cgroup too, unless it is gone).
        let in_cgroup = task
            .cgroup
            .as_ref()
            .map(TaskCgroup::pids)
            .unwrap_or_default();
        let execs: Vec<u32> = {
            let execs = task.execs.lock().expect("execs lock");
            execs
                .values()
                .filter(|e| e.life.state() == State::Running)
                .map(|e| e.pid() as u32)
                .collect()
        };
        for pid in in_cgroup.into_iter().chain(execs) {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        let processes = pids
            .into_iter()
            .map(|pid| ProcessInfo {
                pid,
                ..Default::default()
            })
            .collect();
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn kill(&self, req: KillRequest) -> Result<()> {
        let task = self.task(&req.id)?;
        if !req.exec_id.is_empty() {
            let exec = task.exec(&req.exec_id)?;
            let alive = match (exec.started.get(), exec.life.state()) {
                (Some(started), State::Running) => {
                    self.engine
                        .kill(&exec.id, &started.process, req.signal, false)
                        .await?
                }
                (None, _) => {
                    return Err(Error::FailedPrecondition(format!(
                        "exec {} of task {} is not started",
                        req.exec_id, req.id
                    )))
                }
                _ => false,
            };
            if !alive {
                return Err(Error::NotFound(format!(
                    "process of exec {} of task {}: not running",
                    req.exec_id, req.id
                )));
            }
            return Ok(());
        }
        if matches!(task.life.state(), State::Stopped { .. }) {
            return Err(Error::NotFound(format!(
                "process of task {}: already finished",
                req.id
            )));
        }
        let paused = task.frozen() != FreezerState::Thawed;
        if !self
            .engine
            .kill(&req.id, &task.process, req.signal, req.all)
            .await?
        {
            return Err(Error::NotFound(format!(
                "process of task {}: already finished",
                req.id
            )));
        }
        log::info!(
            "task {}: sent signal {} to pid {}",
            req.id,
            req.signal,
            task.process.pid
        );
        if req.signal == libc::SIGKILL as u32 {
            // A frozen process dies only once thawed.
            self.thaw_if_frozen(&task).await?;
        } else if paused && req.all && task.frozen() == FreezerState::Thawed {
            // libcontainer freezes, signals and thaws for `all`: a paused
            // task stays paused, its signals wait for Resume.
            if let Some(freezer) = task.freezer.clone() {
                blocking(move || Ok(freezer.freeze(freezer::TIMEOUT)?)).await?;
            }
        }
        Ok(())
    }

    /// Thaws the task's cgroup if it is frozen, so that a kill lands.
    async fn thaw_if_frozen(&self, task: &Task) -> Result<()> {
        let Some(freezer) = task.freezer.clone() else {
            return Ok(());
        };
        if task.frozen() == FreezerState::Thawed {
            return Ok(());
        }
        blocking(move || Ok(freezer.thaw(freezer::TIMEOUT)?)).await?;
        log::info!("task {}: thawed so that it can die", task.id);
        Ok(())
    }

    /// The tasks Pause and Resume of `task` act on: the task itself, or for
    /// the pod's sandbox every task of the pod. Sorted by id, the order in
    /// which their event locks are taken.
    fn freeze_targets(&self, task: &Arc<Task>) -> Vec<Arc<Task>> {
        if !self.engine.is_sandbox(&task.id) {
            return vec![Arc::clone(task)];
        }
        let mut all: Vec<Arc<Task>> = self
            .tasks
            .lock()
            .expect("tasks lock")
            .live
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// [`Inner::set_frozen`] on a task of its own: a caller that gives up
    /// must not leave cgroups frozen with no TaskPaused said.
    async fn set_frozen_detached(self: &Arc<Self>, id: String, freeze: bool) -> Result<Empty> {
        let this = Arc::clone(self);
        tokio::spawn(async move { this.set_frozen(&id, freeze).await })
            .await
            .map_err(|e| Error::Internal(format!("pause or resume failed: {e}")))??;
        Ok(Empty::new())
    }

    /// Pause (`freeze`) or Resume: freezes or thaws the task's cgroup, or
    /// every running task's for the sandbox, all or none, and announces
    /// each task whose state changed.
    async fn set_frozen(&self, id: &str, freeze: bool) -> Result<()> {
        let (verb, done) = if freeze {
            ("pause", "paused")
        } else {
            ("resume", "resumed")
        };
        let task = self.task(id)?;
        if task.freezer.is_none() {
            return Err(Error::FailedPrecondition(format!(
                "task {id} has no cgroup of its own to {verb}"
            )));
        }
        let targets = self.freeze_targets(&task);
        let mut order = Vec::with_capacity(targets.len());
        for t in &targets {
            order.push(t.events.lock().await);
        }
        match (task.life.state(), task.frozen()) {
            (State::Running, FreezerState::Thawed) if freeze => {}
            (State::Running, FreezerState::Frozen | FreezerState::Freezing) if !freeze => {}
            (State::Running, _) => {
                return Err(Error::FailedPrecondition(format!(
                    "task {id} is {}",
                    if freeze {
                        "paused already"
                    } else {
                        "not paused"
                    }
                )))
            }
            (state, _) => {
                return Err(Error::FailedPrecondition(format!(
                    "task {id} is {}: only a running task can {verb}",
                    describe(state)
                )))
            }
        }
        // Running tasks only: a created one's init must stay free to start.
        let changing: Vec<&Arc<Task>> = targets
            .iter()
            .filter(|t| {
                t.life.state() == State::Running
                    && t.freezer.is_some()
                    && (t.frozen() == FreezerState::Thawed) == freeze
            })
            .collect();
        let mut failed = None;
        let changed: Vec<&Arc<Task>> = if freeze {
            let freezers: Vec<Freezer> =
                changing.iter().filter_map(|t| t.freezer.clone()).collect();
            blocking(move || Ok(freezer::freeze_all(&freezers, freezer::TIMEOUT)?)).await?;
            changing
        } else {
            // Each on its own: one that will not thaw keeps no other frozen.
            let mut thawed = Vec::new();
            for t in changing {
                let Some(freezer) = t.freezer.clone() else {
                    continue;
                };
                match blocking(move || Ok(freezer.thaw(freezer::TIMEOUT)?)).await {
                    Ok(()) => thawed.push(t),
                    Err(e) => {
                        log::error!("task {}: {e}", t.id);
                        failed.get_or_insert(e);
                    }
                }
            }
            thawed
        };
        for t in changed {
            log::info!("task {}: {done}", t.id);
            let container_id = t.id.clone();
            self.publisher
                .publish(if freeze {
                    Event::Paused(TaskPaused {
                        container_id,
                        ..Default::default()
                    })
                } else {
                    Event::Resumed(TaskResumed {
                        container_id,
                        ..Default::default()
                    })
                })
                .await;
        }
        failed.map_or(Ok(()), Err)
    }

    async fn wait(&self, req: WaitRequest) -> Result<WaitResponse> {
        let task = self.task(&req.id)?;
        let (status, at) = if req.exec_id.is_empty() {
            task.life.wait().await
        } else {
            task.exec(&req.exec_id)?.life.wait().await
        };
        Ok(WaitResponse {
            exit_status: status,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse> {
        if !req.exec_id.is_empty() {
            return self.delete_exec(&req.id, &req.exec_id);
        }
        // Taken out of the map first: a concurrent Delete finds nothing.
        let task = {
            let mut tasks = self.tasks.lock().expect("tasks lock");
            let task = tasks
                .live
                .get(&req.id)
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("task {}", req.id)))?;
            if let state @ State::Running = task.life.state() {
                return Err(Error::FailedPrecondition(format!(
                    "task {} is {}: kill it before delete",
                    req.id,
                    describe(state)
                )));
            }
            tasks.live.remove(&req.id);
            task
        };
        let removed = self.remove(&task).await;
        let (status, at) = match removed {
            Ok(exit) => exit,
            Err(e) => {
                self.tasks
                    .lock()
                    .expect("tasks lock")
                    .live
                    .insert(req.id.clone(), task);
                return Err(e);
            }
        };
        let pid = task.process.pid as u32;
        // The exit was journaled under this lock: its Deleted comes after.
        let _order = task.events.lock().await;
        if let Err(e) = self
            .engine
            .journal(Record::Deleted { id: req.id.clone() })
            .await
        {
            log::error!("task {}: journal its delete: {e}", req.id);
        }
        self.publisher
            .publish(Event::Delete(TaskDelete {
                container_id: req.id.clone(),
                pid,
                exit_status: status,
                exited_at: Some(timestamp(at)).into(),
                ..Default::default()
            }))
            .await;
        drop(_order);
        self.shutdown_if_deferred();
        Ok(DeleteResponse {
            pid,
            exit_status: status,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        })
    }

    /// Ends a task that is not running and removes what it leaves.
    async fn remove(&self, task: &Task) -> Result<(u32, std::time::SystemTime)> {
        if task.life.state() == State::Created {
            // Never started: containerd cleans up a failed create this way.
            self.engine
                .kill(&task.id, &task.process, libc::SIGKILL as u32, false)
                .await?;
        }
        let exit = task.life.wait().await;
        // What is left in a frozen cgroup could not be killed.
        self.thaw_if_frozen(task).await?;
        self.engine.remove(&task.id).await?;
        task.deleted.notify_one();
        Ok(exit)
    }

    fn close_io(&self, req: CloseIORequest) -> Result<()> {
        let task = self.task(&req.id)?;
        if !req.stdin {
            return Ok(());
        }
        if req.exec_id.is_empty() {
            task.io.close_stdin();
        } else if let Some(started) = task.exec(&req.exec_id)?.started.get() {
            started.io.close_stdin();
        }
        Ok(())
    }

    fn resize_pty(&self, req: ResizePtyRequest) -> Result<()> {
        let task = self.task(&req.id)?;
        if req.exec_id.is_empty() {
            return task.io.resize(req.width, req.height);
        }
        match task.exec(&req.exec_id)?.started.get() {
            Some(started) => started.io.resize(req.width, req.height),
            None => Err(Error::FailedPrecondition(format!(
                "exec {} of task {} is not started",
                req.exec_id, req.id
            ))),
        }
    }

    /// The task's cgroup: there from Create until Delete removes it.
    fn cgroup(&self, id: &str) -> Result<TaskCgroup> {
        self.task(id)?.cgroup.clone().ok_or_else(|| {
            Error::FailedPrecondition(format!("task {id} has no cgroup to read or change"))
        })
    }

    async fn stats(&self, req: StatsRequest) -> Result<StatsResponse> {
        let cgroup = self.cgroup(&req.id)?;
        let stats = blocking(move || crate::metrics::collect(&cgroup)).await?;
        Ok(StatsResponse {
            stats: Some(stats).into(),
            ..Default::default()
        })
    }

    async fn update(&self, req: UpdateTaskRequest) -> Result<()> {
        let cgroup = self.cgroup(&req.id)?;
        let resources = req
            .resources
            .as_ref()
            .map(|any| any.value.clone())
            .ok_or_else(|| Error::InvalidArgument("resources: missing".into()))?;
        blocking(move || crate::metrics::update(&cgroup, &resources)).await?;
        log::info!("task {}: resources updated", req.id);
        Ok(())
    }

    /// Exec: adds a process to a running task; Start runs it.
    async fn exec(&self, req: ExecProcessRequest) -> Result<()> {
        if req.exec_id.is_empty() {
            return Err(Error::InvalidArgument("exec_id: must not be empty".into()));
        }
        let task = self.task(&req.id)?;
        let spec = req
            .spec
            .as_ref()
            .map(|any| any.value.clone())
            .ok_or_else(|| Error::InvalidArgument("spec: an exec needs a process".into()))?;
        let _order = task.events.lock().await;
        task.check_runnable("exec needs a running task")?;
        {
            let mut execs = task.execs.lock().expect("execs lock");
            if execs.contains_key(&req.exec_id) {
                return Err(Error::AlreadyExists(format!(
                    "exec {} of task {}",
                    req.exec_id, req.id
                )));
            }
            let stdio = Stdio {
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
                terminal: req.terminal,
            };
            let exec = Exec::new(&req.id, &req.exec_id, stdio, spec);
            execs.insert(req.exec_id.clone(), Arc::new(exec));
        }
        self.publisher
            .publish(Event::ExecAdded(TaskExecAdded {
                container_id: req.id,
                exec_id: req.exec_id,
                ..Default::default()
            }))
            .await;
        Ok(())
    }

    async fn start_exec(
        self: &Arc<Self>,
        task: &Arc<Task>,
        exec_id: &str,
    ) -> Result<StartResponse> {
        let exec = task.exec(exec_id)?;
        let _order = task.events.lock().await;
        task.check_runnable("its execs cannot start")?;
        if let state @ (State::Running | State::Stopped { .. }) = exec.life.state() {
            return Err(Error::FailedPrecondition(format!(
                "exec {exec_id} of task {} is {}, not created",
                task.id,
                describe(state)
            )));
        }
        // Subscribed before the process exists: its exit cannot be missed.
        let mut exits = self.reaper.subscribe();
        let Created { process, io, .. } = self
            .engine
            .exec(&task.id, exec_id, exec.spec.clone(), exec.stdio.clone())
            .await?;
        let pid = process.pid as u32;
        let _ = exec.started.set(Started {
            process: exits.track(process),
            io,
        });
        exec.life.start()?;
        self.publisher
            .publish(Event::ExecStarted(TaskExecStarted {
                container_id: task.id.clone(),
                exec_id: exec_id.to_owned(),
                pid,
                ..Default::default()
            }))
            .await;
        let this = Arc::clone(self);
        let task = Arc::clone(task);
        tokio::spawn(async move {
            let Some(started) = exec.started.get() else {
                return;
            };
            if let Some(exit) = exits.wait_for(&started.process).await {
                this.exec_exited(&task, &exec, exit.status, exit.at).await;
            }
        });
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn exec_exited(&self, task: &Task, exec: &Exec, status: u32, at: std::time::SystemTime) {
        let Some(started) = exec.started.get() else {
            return;
        };
        let pid = started.process.pid;
        self.announce_exit(task, &exec.id, pid, &started.io, &exec.life, status, at)
            .await;
    }

    fn delete_exec(&self, id: &str, exec_id: &str) -> Result<DeleteResponse> {
        let task = self.task(id)?;
        let exec = task.exec(exec_id)?;
        let state = exec.life.state();
        if state == State::Running {
            return Err(Error::FailedPrecondition(format!(
                "exec {exec_id} of task {id} is running: kill it before delete"
            )));
        }
        task.execs.lock().expect("execs lock").remove(exec_id);
        let (exit_status, exited_at) = stopped(state);
        Ok(DeleteResponse {
            pid: exec.pid() as u32,
            exit_status,
            exited_at: exited_at.into(),
            ..Default::default()
        })
    }

    fn connect(&self, req: ConnectRequest) -> Result<ConnectResponse> {
        let task_pid = self
            .tasks
            .lock()
            .expect("tasks lock")
            .live
            .get(&req.id)
            .map_or(0, |t| t.process.pid as u32);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            ..Default::default()
        })
    }

    fn shutdown(&self, _req: ShutdownRequest) -> Result<()> {
        let remaining = {
            let mut tasks = self.tasks.lock().expect("tasks lock");
            let remaining = tasks.live.len() + tasks.creating.len();
            tasks.shutdown_deferred = remaining > 0;
            remaining
        };
        if remaining == 0 {
            log::info!("shutdown: no task left, exiting");
            self.shutdown.notify_one();
        } else {
            log::info!("shutdown deferred: {remaining} task(s) remain");
        }
        Ok(())
    }

    /// Ends a deferred shutdown once the last task is gone.
    fn shutdown_if_deferred(&self) {
        let done = {
            let tasks = self.tasks.lock().expect("tasks lock");
            tasks.shutdown_deferred && tasks.live.is_empty() && tasks.creating.is_empty()
        };
        if done {
            log::info!("shutdown: the last task is deleted, exiting");
            self.shutdown.notify_one();
        }
    }
}

/// The exit status and time of a stopped process; nothing otherwise.
fn stopped(
    state: State,
) -> (
    u32,
    Option<berth_proto::protobuf::well_known_types::timestamp::Timestamp>,
) {
    match state {
        State::Stopped { status, at } => (status, Some(timestamp(at))),
        _ => (0, None),
    }
}

type TtrpcResult<T> = ttrpc::Result<T>;

#[async_trait]
impl<E: Engine, P: Publisher> TaskApi for Service<E, P> {
    async fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        let id = req.id.clone();
        log::debug!("create {id}");
        self.inner.create(req).await.map_err(|e| {
            log::error!("create {id}: {}", berth_sandbox::helper::error_chain(&e));
            e.into()
        })
    }

    async fn start(&self, _: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        Ok(self.inner.start(req).await?)
    }

    async fn state(&self, _: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        Ok(self.inner.state(req)?)
    }

    async fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        Ok(self.inner.pids(req)?)
    }

    async fn pause(&self, _: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        Ok(self.inner.set_frozen_detached(req.id, true).await?)
    }

    async fn resume(&self, _: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        Ok(self.inner.set_frozen_detached(req.id, false).await?)
    }

    async fn kill(&self, _: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        self.inner.kill(req).await?;
        Ok(Empty::new())
    }

    async fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        Ok(self.inner.wait(req).await?)
    }

    async fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        Ok(self.inner.delete(req).await?)
    }

    async fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        self.inner.resize_pty(req)?;
        Ok(Empty::new())
    }

    async fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        Ok(self.inner.stats(req).await?)
    }

    async fn update(&self, _: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        self.inner.update(req).await?;
        Ok(Empty::new())
    }

    async fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        self.inner.exec(req).await?;
        Ok(Empty::new())
    }

    async fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        self.inner.close_io(req)?;
        Ok(Empty::new())
    }

    async fn connect(&self, _: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        Ok(self.inner.connect(req)?)
    }

    async fn shutdown(&self, _: &TtrpcContext, req: ShutdownRequest) -> TtrpcResult<Empty> {
        self.inner.shutdown(req)?;
        Ok(Empty::new())
    }
}

#[cfg(test)]
mod tests;
