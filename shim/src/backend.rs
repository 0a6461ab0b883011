//! What the Task service asks of the machine, behind one trait, so that the
//! service can be tested without root against a stub. The real backend is
//! [`crate::pod::PodBackend`].

use std::path::PathBuf;

use async_trait::async_trait;
use berth_sandbox::cgroup::freezer::Freezer;
use berth_sandbox::cgroup::TaskCgroup;
use berth_sandbox::journal::Record;
use berth_sandbox::mount::Mount;
use berth_sandbox::process::Sig;
use berth_sandbox::state::ProcessRecord;

use crate::error::{Error, Result};
use crate::io::{Io, Stdio};
use crate::oom::OomWatch;
use crate::options::RuntimeOptions;
use crate::process::Tracked;

/// A Create request, in the shim's own terms.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub id: String,
    pub bundle: PathBuf,
    /// containerd's rootfs mounts, for an app container.
    pub rootfs: Vec<Mount>,
    pub stdio: Stdio,
    /// The runtime options of the task's runtime.
    pub options: RuntimeOptions,
    /// The pod sandbox the Sandbox API creates from CRI's pod config; a
    /// task of the Task API has its bundle's `config.json`.
    pub sandbox: Option<SandboxRequest>,
}

/// What the Sandbox API hands the backend for the pod sandbox.
#[derive(Debug, Clone)]
pub struct SandboxRequest {
    /// The sandbox's spec.
    pub spec: oci_spec::runtime::Spec,
    /// The files the pod's containers share.
    pub files: crate::pod_files::PodFiles,
}

/// A process a backend started, before the shim tracks it, and the shim's
/// side of its stdio.
#[derive(Debug)]
pub struct Spawned {
    pub process: ProcessRecord,
    pub io: Io,
}

/// A created task: its init, and its cgroup where it has one of its own.
#[derive(Debug)]
pub struct NewTask {
    pub init: Spawned,
    /// The task's cgroup, for Stats, Update and Pids.
    pub cgroup: Option<TaskCgroup>,
    /// OOM kills in the task's memory cgroup, where they can be watched.
    pub oom: Option<OomWatch>,
    /// The freezer of the task's cgroup, for Pause and Resume.
    pub freezer: Option<Freezer>,
}

impl NewTask {
    /// A task whose init brings no cgroup of its own.
    pub fn without_cgroup(init: Spawned) -> Self {
        NewTask {
            init,
            cgroup: None,
            oom: None,
            freezer: None,
        }
    }

    /// A task whose init's cgroup is its own: found now, with an OOM watch
    /// on it. A task whose cgroup cannot be read is still a task.
    pub fn in_own_cgroup(id: &str, init: Spawned) -> Self {
        let cgroup = TaskCgroup::of_pid(init.process.pid)
            .map_err(|e| log::warn!(container = id; "no cgroup to report on: {e}"))
            .ok();
        let oom = cgroup.as_ref().and_then(|cg| {
            OomWatch::for_cgroup(cg)
                .map_err(|e| log::warn!(container = id; "OOM kills will not be reported: {e}"))
                .ok()
                .flatten()
        });
        NewTask {
            init,
            freezer: cgroup.as_ref().and_then(TaskCgroup::freezer),
            cgroup,
            oom,
        }
    }
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Creates the task's init process and returns it.
    async fn create(&self, req: CreateRequest) -> Result<NewTask>;
    /// Runs an exec process (`spec`: an OCI process as JSON) in task `id`.
    async fn exec(&self, id: &str, exec_id: &str, spec: Vec<u8>, stdio: Stdio) -> Result<Spawned>;
    /// Lets a created task's init run its process.
    async fn start(&self, id: &str) -> Result<()>;
    /// Sends `signal` to a process of task `id`, or with `all` to every
    /// process of the task; false if it is already gone.
    async fn kill(&self, id: &str, process: &Tracked, signal: Sig, all: bool) -> Result<bool>;
    /// A task's init exited: ends what would outlive it.
    async fn exited(&self, id: &str) -> Result<()>;
    /// Removes what a stopped task leaves behind.
    async fn remove(&self, id: &str) -> Result<()>;
    /// Whether task `id` is the pod's sandbox: pausing it pauses the pod.
    fn is_sandbox(&self, id: &str) -> bool;
    /// Appends `record` to the pod's exit journal, durably.
    async fn journal(&self, record: Record) -> Result<()>;
    /// Sets Update's `resources` where the cgroup driver keeps them besides
    /// the cgroup's files (a systemd unit's properties); nothing by default.
    async fn update_unit(
        &self,
        _id: &str,
        _resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        Ok(())
    }
}

/// Runs blocking sandbox work off the async threads: the one place the
/// shim's async code and the sandbox crate's blocking calls meet.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}
