//! The Task service: containerd's task API over the pod's tasks.
//!
//! One implementation, registered under both `containerd.task.v2.Task`
//! (containerd 1.7) and `containerd.task.v3.Task` (containerd 2.x): the two
//! APIs' messages are wire-identical. This file holds the task table and
//! the ttrpc glue; each verb family has a file of its own:
//!
//! - `create`: Create;
//! - `start`: Start of an init or an exec, and Exec;
//! - `kill`: Kill;
//! - `exit`: exits and OOM kills, drained, journaled and announced in order;
//! - `freeze`: Pause and Resume;
//! - `delete`: Delete and Shutdown;
//! - `query`: State, Pids, Stats, Update, Wait, Connect, CloseIO, ResizePty;
//! - `sandbox`: the Sandbox API, whose pod sandbox is a task of the table.
//!
//! What may happen to a task is decided in [`crate::task`]; the service
//! asks there, then acts through its [`Backend`] and [`Publisher`].

mod create;
mod delete;
mod exit;
mod freeze;
mod kill;
mod query;
mod sandbox;
mod start;
#[cfg(any(test, feature = "fuzz"))]
pub(crate) mod stub;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use berth_proto::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, ExecProcessRequest, KillRequest, PauseRequest, PidsRequest,
    PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest, StartResponse,
    StateRequest, StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest, WaitRequest,
    WaitResponse,
};
use berth_proto::protobuf::well_known_types::empty::Empty;
use berth_proto::shim_async::Task as TaskApi;
use berth_proto::ttrpc::r#async::TtrpcContext;
use berth_proto::ttrpc::{self};
use tokio::sync::Notify;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::events::Publisher;
use crate::reaper::Reaper;
use crate::task::Task;

pub struct Service<B, P> {
    inner: Arc<Inner<B, P>>,
}

/// One service behind both APIs: the Task service and the Sandbox service
/// share the task table.
impl<B, P> Clone for Service<B, P> {
    fn clone(&self) -> Self {
        Service {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<B, P> {
    backend: B,
    publisher: P,
    reaper: Arc<Reaper>,
    tasks: Mutex<Tasks>,
    /// Signalled when containerd shuts the shim down with no task left.
    shutdown: Arc<Notify>,
    /// The pod sandbox the Sandbox API created, if it did.
    sandbox: Mutex<Option<sandbox::PodSandbox>>,
    /// The id of the sandbox a CreateSandbox claimed (made, or under way).
    sandbox_claim: Mutex<Option<String>>,
    /// Whether containerd ever asked for a task (or a sandbox) here.
    used: AtomicBool,
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

impl<B: Backend, P: Publisher> Service<B, P> {
    pub fn new(backend: B, publisher: P, reaper: Arc<Reaper>, shutdown: Arc<Notify>) -> Self {
        Service {
            inner: Arc::new(Inner {
                backend,
                publisher,
                reaper,
                tasks: Mutex::new(Tasks::default()),
                shutdown,
                sandbox: Mutex::new(None),
                sandbox_claim: Mutex::new(None),
                used: AtomicBool::new(false),
            }),
        }
    }
}

impl<B: Backend, P: Publisher> Service<B, P> {
    /// Resolves after `limit` if containerd never asked this shim for a
    /// task or a sandbox by then (it failed or died after `start`, and
    /// nothing will ever shut the shim down); never otherwise.
    pub async fn unused_for(&self, limit: Duration) {
        tokio::time::sleep(limit).await;
        if self.inner.used.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(feature = "fuzz")]
impl<B: Backend, P: Publisher> Service<B, P> {
    /// The ids of the tasks in the table.
    pub(crate) fn task_ids(&self) -> Vec<String> {
        self.inner.tasks().live.keys().cloned().collect()
    }

    /// Whether a Create still holds its id.
    pub(crate) fn creating(&self) -> bool {
        !self.inner.tasks().creating.is_empty()
    }
}

impl<B: Backend, P: Publisher> Inner<B, P> {
    /// The task table. Every holder leaves it whole, so a panic elsewhere
    /// does not make it unusable.
    fn tasks(&self) -> MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn task(&self, id: &str) -> Result<Arc<Task>> {
        self.tasks()
            .live
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("task {id}")))
    }

    /// Runs `work` on a task of its own: containerd's deadline may drop the
    /// request's future, and a state change must not be abandoned half
    /// done with it.
    async fn detached<T, F>(
        self: &Arc<Self>,
        what: &str,
        work: impl FnOnce(Arc<Self>) -> F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        tokio::spawn(work(Arc::clone(self)))
            .await
            .map_err(|e| Error::Internal(format!("{what} failed: {e}")))?
    }
}

type TtrpcResult<T> = ttrpc::Result<T>;

#[async_trait]
impl<B: Backend, P: Publisher> TaskApi for Service<B, P> {
    async fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        let id = req.id.clone();
        log::debug!(container = id.as_str(); "create");
        self.inner.create(req).await.map_err(|e| {
            log::error!(container = id.as_str(); "create: {}", berth_sandbox::error_chain(&e));
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
        self.inner.set_frozen_detached(req.id, true).await?;
        Ok(Empty::new())
    }

    async fn resume(&self, _: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        self.inner.set_frozen_detached(req.id, false).await?;
        Ok(Empty::new())
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

/// The exit status and time a response carries for a process in `state`:
/// nothing until it stopped.
fn exit_fields(
    state: crate::task::State,
) -> (
    u32,
    Option<berth_proto::protobuf::well_known_types::timestamp::Timestamp>,
) {
    match state.exit() {
        Some((status, at)) => (status, Some(crate::events::timestamp(at))),
        None => (0, None),
    }
}
