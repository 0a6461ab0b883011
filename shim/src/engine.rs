//! What the Task service asks of the machine, behind one trait so that the
//! service can be tested without root.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use berth_sandbox::container::{self, ContainerRef, NewContainer};
use berth_sandbox::freezer::Freezer;
use berth_sandbox::helper::Helper;
use berth_sandbox::journal::{Journal, Record};
use berth_sandbox::mount::Mount;
use berth_sandbox::spec::{self, Kind, SandboxConfig};
use berth_sandbox::state::{PodDir, PodRecord, ProcessRecord};
use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::io::{Io, Owner};
use crate::metrics::TaskCgroup;
use crate::oom::OomWatch;
use crate::process::Process;
use crate::task::Stdio;

/// A Create request, in the shim's own terms.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub id: String,
    pub bundle: PathBuf,
    /// containerd's rootfs mounts, for an app container.
    pub rootfs: Vec<Mount>,
    pub stdio: Stdio,
}

/// A created task's init process, and the shim's side of its stdio.
#[derive(Debug)]
pub struct Created {
    pub process: ProcessRecord,
    pub io: Io,
    /// The task's cgroup, where it has one: an exec shares its task's.
    pub cgroup: Option<TaskCgroup>,
    /// OOM kills in the task's memory cgroup, where they can be watched.
    pub oom: Option<OomWatch>,
    /// The freezer of the task's cgroup, for Pause and Resume.
    pub freezer: Option<Freezer>,
}

impl Created {
    /// A process that brings no cgroup of its own.
    pub fn process(process: ProcessRecord, io: Io) -> Self {
        Created {
            process,
            io,
            cgroup: None,
            oom: None,
            freezer: None,
        }
    }

    /// A task's init, with its cgroup and an OOM watch on it.
    fn init(id: &str, process: ProcessRecord, io: Io) -> Self {
        let cgroup = TaskCgroup::of_pid(process.pid)
            .map_err(|e| log::warn!("task {id}: no cgroup to report on: {e}"))
            .ok();
        let oom = cgroup.as_ref().and_then(|cg| {
            OomWatch::for_cgroup(cg)
                .map_err(|e| log::warn!("task {id}: OOM kills will not be reported: {e}"))
                .ok()
                .flatten()
        });
        Created {
            process,
            io,
            freezer: cgroup.as_ref().and_then(TaskCgroup::freezer),
            cgroup,
            oom,
        }
    }
}

#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Creates the task's init process and returns it.
    async fn create(&self, req: CreateRequest) -> Result<Created>;
    /// Runs an exec process (`spec`: an OCI process as JSON) in task `id`.
    async fn exec(&self, id: &str, exec_id: &str, spec: Vec<u8>, stdio: Stdio) -> Result<Created>;
    /// Lets a created task's init run its process.
    async fn start(&self, id: &str) -> Result<()>;
    /// Sends `signal` to a task's init, or with `all` to every process of
    /// it; false if it is already gone.
    async fn kill(&self, id: &str, process: &Process, signal: u32, all: bool) -> Result<bool>;
    /// A task's init exited: ends what would outlive it.
    async fn exited(&self, id: &str) -> Result<()>;
    /// Removes what a stopped task leaves behind.
    async fn remove(&self, id: &str) -> Result<()>;
    /// Whether task `id` is the pod's sandbox: pausing it pauses the pod.
    fn is_sandbox(&self, id: &str) -> bool;
    /// Appends `record` to the pod's exit journal, durably.
    async fn journal(&self, record: Record) -> Result<()>;
}

/// The real engine: berth-sandbox, through helper processes.
pub struct Sandbox {
    helper: Helper,
    pause_binary: PathBuf,
    dir: PodDir,
    namespace: String,
    record: std::sync::Mutex<PodRecord>,
    /// The pod's app containers, by id.
    containers: std::sync::Mutex<HashMap<String, ContainerInfo>>,
    journal: Arc<std::sync::Mutex<Journal>>,
}

impl Sandbox {
    pub fn new(helper: Helper, pause_binary: PathBuf, dir: PodDir, namespace: &str) -> Self {
        Sandbox {
            helper,
            pause_binary,
            namespace: namespace.to_owned(),
            record: Default::default(),
            containers: Default::default(),
            journal: Arc::new(std::sync::Mutex::new(Journal::new(&dir))),
            dir,
        }
    }

    fn save(&self, update: impl FnOnce(&mut PodRecord)) -> Result<()> {
        let mut record = self.record.lock().expect("record lock");
        update(&mut record);
        Ok(self.dir.write_record(&record)?)
    }
}

/// What the engine keeps of an app container.
#[derive(Debug, Clone, Default)]
struct ContainerInfo {
    /// Its processes outlive its init (no PID namespace of its own), so they
    /// are killed when the init exits, as containerd's runc shim does.
    kill_all_on_exit: bool,
    /// Held across each helper call on the container: libcontainer rewrites
    /// its state file with no lock of its own.
    engine: Arc<std::sync::Mutex<()>>,
}

impl Sandbox {
    fn container(&self, id: &str) -> Option<ContainerInfo> {
        self.containers
            .lock()
            .expect("containers lock")
            .get(id)
            .cloned()
    }

    /// Runs `call` (helper work on container `id`) off the async threads,
    /// one call per container at a time.
    async fn on_container<T: Send + 'static>(
        self: &Arc<Self>,
        id: &str,
        call: impl FnOnce(&Sandbox, &ContainerRef) -> berth_sandbox::Result<T> + Send + 'static,
    ) -> Result<T> {
        let info = self
            .container(id)
            .ok_or_else(|| Error::NotFound(format!("container {id}")))?;
        let this = Arc::clone(self);
        let reference = container::reference(&self.dir, id);
        blocking(move || {
            let _one_at_a_time = info.engine.lock().expect("engine lock");
            Ok(call(&this, &reference)?)
        })
        .await
    }

    fn is_container(&self, id: &str) -> bool {
        self.container(id).is_some()
    }

    /// Starts the pod's berth-pause for the sandbox task.
    fn create_sandbox(
        &self,
        req: &CreateRequest,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<ProcessRecord> {
        let config = SandboxConfig::from_spec(spec)?;
        // Recorded before pause exists, so a shim that dies mid-way still
        // leaves `delete` the cgroup to remove.
        self.save(|r| {
            r.sandbox_id = req.id.clone();
            r.namespace = self.namespace.clone();
            r.cgroup = config.cgroup.clone();
            r.pause = None;
        })?;
        let started = berth_sandbox::pod::start_pause(
            &self.helper,
            &self.dir,
            &req.id,
            &config,
            self.pause_binary.clone(),
        );
        let pause = match started {
            Ok(pause) => pause,
            Err(e) => {
                // start_pause removed the cgroup it may have made.
                let _ = self.save(|r| r.cgroup = None);
                return Err(e.into());
            }
        };
        if let Err(e) = self.save(|r| r.pause = Some(pause)) {
            // Untracked, pause would outlive the shim: undo it.
            let _ = berth_sandbox::pod::signal(pause, Signal::SIGKILL);
            if let Some(path) = &config.cgroup {
                let _ = berth_sandbox::pod::remove_cgroup(path);
            }
            return Err(e);
        }
        log::info!("pod {}: berth-pause started as pid {}", req.id, pause.pid);
        Ok(pause)
    }
}

impl Sandbox {
    /// Creates an app container of the pod (or a pod of one).
    async fn create_container(
        self: &Arc<Self>,
        req: CreateRequest,
        info: ContainerInfo,
    ) -> Result<Created> {
        let owner = Owner {
            id: &req.id,
            namespace: &self.namespace,
        };
        let prepared = Io::prepare(&req.stdio, self.dir.path(), owner).await?;
        let new = NewContainer {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            stdio: prepared.paths.clone(),
        };
        let this = Arc::clone(self);
        let process = blocking(move || {
            if this
                .record
                .lock()
                .expect("record lock")
                .sandbox_id
                .is_empty()
            {
                // A container without a pod is a pod of one.
                this.save(|r| {
                    r.sandbox_id = new.id.clone();
                    r.namespace = this.namespace.clone();
                })?;
            }
            this.containers
                .lock()
                .expect("containers lock")
                .insert(new.id.clone(), info);
            let created = container::create_in_pod(&this.helper, &this.dir, &new);
            if created.is_err() {
                this.containers
                    .lock()
                    .expect("containers lock")
                    .remove(&new.id);
            }
            Ok(created?)
        })
        .await?;
        log::info!("container {}: created, init pid {}", req.id, process.pid);
        Ok(Created::init(&req.id, process, prepared.release()))
    }
}

/// Runs blocking sandbox work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}

#[async_trait]
impl Engine for Arc<Sandbox> {
    async fn create(&self, req: CreateRequest) -> Result<Created> {
        let bundle = req.bundle.clone();
        let spec = blocking(move || Ok(spec::load(&bundle)?)).await?;
        match spec::kind(&spec)? {
            Kind::Sandbox => {
                let this = Arc::clone(self);
                let id = req.id.clone();
                let process = blocking(move || this.create_sandbox(&req, &spec)).await?;
                let pod_cgroup = self.record.lock().expect("record lock").cgroup.is_some();
                Ok(if pod_cgroup {
                    Created::init(&id, process, Io::none())
                } else {
                    // pause is in the shim's own cgroup: not the pod's to report.
                    Created::process(process, Io::none())
                })
            }
            Kind::Container { .. } | Kind::Standalone => {
                let info = ContainerInfo {
                    kill_all_on_exit: !spec::has_own_pid_namespace(&spec),
                    ..Default::default()
                };
                self.create_container(req, info).await
            }
        }
    }

    async fn exec(&self, id: &str, exec_id: &str, spec: Vec<u8>, stdio: Stdio) -> Result<Created> {
        if !self.is_container(id) {
            return Err(Error::FailedPrecondition(format!(
                "task {id} is the pod sandbox: berth-pause runs no exec processes"
            )));
        }
        let owner = Owner {
            id,
            namespace: &self.namespace,
        };
        let prepared = Io::prepare(&stdio, self.dir.path(), owner).await?;
        let (exec_id, paths) = (exec_id.to_owned(), prepared.paths.clone());
        let process = self
            .on_container(id, move |this, c| {
                container::exec_in_pod(&this.helper, &this.dir, &c.id, &exec_id, &spec, paths)
            })
            .await?;
        Ok(Created::process(process, prepared.release()))
    }

    async fn start(&self, id: &str) -> Result<()> {
        if !self.is_container(id) {
            // berth-pause runs from Create on.
            return Ok(());
        }
        self.on_container(id, |this, c| container::start_with(&this.helper, c))
            .await?;
        log::info!("container {id}: started");
        Ok(())
    }

    async fn kill(&self, id: &str, process: &Process, signal: u32, all: bool) -> Result<bool> {
        let signal = Signal::try_from(signal as i32).map_err(|_| {
            Error::InvalidArgument(format!("signal {signal} is not a valid signal"))
        })?;
        if all && self.is_container(id) {
            self.on_container(id, move |this, c| {
                container::kill_all_with(&this.helper, c, signal as i32)
            })
            .await?;
            return Ok(true);
        }
        // Killing pause ends the pod: with its own PID namespace the kernel
        // kills every process in it, so `all` needs nothing more.
        process
            .signal(signal)
            .map_err(|e| Error::Internal(format!("signal pid {}: {e}", process.pid)))
    }

    async fn exited(&self, id: &str) -> Result<()> {
        if !self.container(id).is_some_and(|c| c.kill_all_on_exit) {
            return Ok(());
        }
        self.on_container(id, |this, c| {
            container::kill_all_with(&this.helper, c, libc::SIGKILL)
        })
        .await?;
        log::info!("container {id}: killed what its init left in the shared PID namespace");
        Ok(())
    }

    async fn journal(&self, record: Record) -> Result<()> {
        let journal = Arc::clone(&self.journal);
        blocking(move || Ok(journal.lock().expect("journal lock").append(&record)?)).await
    }

    fn is_sandbox(&self, id: &str) -> bool {
        !self.is_container(id) && self.record.lock().expect("record lock").sandbox_id == id
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let this = Arc::clone(self);
        let id = id.to_owned();
        if self.is_container(&id) {
            self.on_container(&id, |this, c| {
                container::remove_from_pod(&this.helper, &this.dir, &c.id)
            })
            .await?;
            self.containers.lock().expect("containers lock").remove(&id);
            log::info!("container {id}: removed");
            return Ok(());
        }
        blocking(move || {
            let cgroup = this.record.lock().expect("record lock").cgroup.clone();
            if let Some(path) = cgroup {
                berth_sandbox::pod::remove_cgroup(&path)?;
            }
            this.save(|r| {
                r.pause = None;
                r.cgroup = None;
            })?;
            log::info!("pod {id}: sandbox removed");
            Ok(())
        })
        .await
    }
}
