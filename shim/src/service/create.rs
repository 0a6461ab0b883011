//! Create: a task's init process, made and announced.

use std::path::PathBuf;
use std::sync::Arc;

use berth_proto::api::{CreateTaskRequest, CreateTaskResponse};
use berth_proto::events::task::{TaskCreate, TaskIO};
use berth_sandbox::mount::Mount;

use super::Inner;
use crate::backend::{Backend, CreateRequest, NewTask, SandboxRequest};
use crate::error::{Error, Result};
use crate::events::{Event, Publisher};
use crate::io::Stdio;
use crate::options::{self, RuntimeOptions};
use crate::task::{Launched, Task};

impl<B: Backend, P: Publisher> Inner<B, P> {
    pub(super) async fn create(
        self: &Arc<Self>,
        req: CreateTaskRequest,
    ) -> Result<CreateTaskResponse> {
        // Before the id names anything: a file, a directory, a log line.
        berth_sandbox::spec::check_id("id", &req.id)?;
        if req.bundle.is_empty() {
            return Err(Error::InvalidArgument("bundle: must not be empty".into()));
        }
        let options = match req.options.as_ref() {
            Some(any) => options::from_any(any)?,
            None => options::Read::default(),
        };
        options.log_warnings(&format!("task {}", req.id));
        self.create_with(req, options.options, None).await
    }

    /// Create of a task with its runtime options read, from the bundle's
    /// spec or (the Sandbox API's pod sandbox) from `spec`.
    pub(super) async fn create_with(
        self: &Arc<Self>,
        req: CreateTaskRequest,
        options: RuntimeOptions,
        sandbox: Option<SandboxRequest>,
    ) -> Result<CreateTaskResponse> {
        options.check_cgroup_driver()?;
        let reserved = Reservation::take(self, &req.id)?;
        // A half-made task must not be abandoned with a request that gave up.
        self.detached("create task", |this| async move {
            this.create_reserved(req, options, sandbox, reserved).await
        })
        .await
    }

    /// Create of an id reserved in the task table.
    async fn create_reserved(
        self: Arc<Self>,
        req: CreateTaskRequest,
        options: RuntimeOptions,
        sandbox: Option<SandboxRequest>,
        reserved: Reservation<B, P>,
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
            .backend
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
                options,
                sandbox,
            })
            .await;
        let NewTask {
            init,
            cgroup,
            oom,
            freezer,
        } = created?;
        let pid = init.process.pid as u32;
        let launched = Launched {
            os: exits.track(init.process),
            io: init.io,
        };
        let task = Arc::new(
            Task::new(&req.id, &req.bundle, stdio, launched).with_cgroup(cgroup, oom, freezer),
        );
        {
            // Held from the moment the task is visible until TaskCreate is
            // queued, so a racing Start cannot announce the task first.
            let _order = task.events.lock().await;
            reserved.fulfil(Arc::clone(&task));
            self.publisher
                .publish(Event::Create(TaskCreate {
                    container_id: req.id.clone(),
                    bundle: req.bundle.clone(),
                    rootfs: req.rootfs.clone(),
                    io: Some(TaskIO {
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
        let init = Arc::clone(task.init());
        self.watch_exit(task, init, exits);
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }
}

/// A task id reserved while its Create is under way. Dropped unfulfilled,
/// on an error or a panic of the Create alike, it frees the id again, and
/// a Shutdown deferred for it goes ahead.
pub(super) struct Reservation<B: Backend, P: Publisher> {
    inner: Arc<Inner<B, P>>,
    id: String,
    fulfilled: bool,
}

impl<B: Backend, P: Publisher> Reservation<B, P> {
    fn take(inner: &Arc<Inner<B, P>>, id: &str) -> Result<Self> {
        inner.used.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut tasks = inner.tasks();
        if tasks.live.contains_key(id) || !tasks.creating.insert(id.to_owned()) {
            return Err(Error::AlreadyExists(format!("task {id}")));
        }
        Ok(Reservation {
            inner: Arc::clone(inner),
            id: id.to_owned(),
            fulfilled: false,
        })
    }

    /// Makes `task` the live task of the reserved id.
    fn fulfil(mut self, task: Arc<Task>) {
        let mut tasks = self.inner.tasks();
        tasks.creating.remove(&self.id);
        tasks.live.insert(self.id.clone(), task);
        self.fulfilled = true;
    }
}

impl<B: Backend, P: Publisher> Drop for Reservation<B, P> {
    fn drop(&mut self) {
        if !self.fulfilled {
            self.inner.tasks().creating.remove(&self.id);
            self.inner.shutdown_if_deferred();
        }
    }
}
