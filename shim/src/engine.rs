//! What the Task service asks of the machine, behind one trait so that the
//! service can be tested without root.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use berth_sandbox::helper::Helper;
use berth_sandbox::spec::{self, Kind, SandboxConfig};
use berth_sandbox::state::{PodDir, PodRecord, ProcessRecord};
use nix::sys::signal::Signal;

use crate::error::{Error, Result};

/// A Create request, in the shim's own terms.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub id: String,
    pub bundle: PathBuf,
}

#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Creates the task's init process and returns it.
    async fn create(&self, req: CreateRequest) -> Result<ProcessRecord>;
    /// Sends `signal` to a task's init; false if it is already gone.
    async fn kill(&self, process: ProcessRecord, signal: u32) -> Result<bool>;
    /// Removes what a stopped task leaves behind.
    async fn remove(&self, id: &str) -> Result<()>;
}

/// The real engine: berth-sandbox, through helper processes.
pub struct Sandbox {
    helper: Helper,
    pause_binary: PathBuf,
    dir: PodDir,
    namespace: String,
    record: std::sync::Mutex<PodRecord>,
}

impl Sandbox {
    pub fn new(helper: Helper, pause_binary: PathBuf, dir: PodDir, namespace: &str) -> Self {
        Sandbox {
            helper,
            pause_binary,
            dir,
            namespace: namespace.to_owned(),
            record: Default::default(),
        }
    }

    fn save(&self, update: impl FnOnce(&mut PodRecord)) -> Result<()> {
        let mut record = self.record.lock().expect("record lock");
        update(&mut record);
        Ok(self.dir.write_record(&record)?)
    }
}

/// Runs blocking sandbox work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}

#[async_trait]
impl Engine for Arc<Sandbox> {
    async fn create(&self, req: CreateRequest) -> Result<ProcessRecord> {
        let this = Arc::clone(self);
        blocking(move || {
            let spec = spec::load(&req.bundle)?;
            match spec::kind(&spec)? {
                Kind::Sandbox => {}
                Kind::Container { .. } | Kind::Standalone => {
                    return Err(Error::Unimplemented(format!(
                        "task {}: berth runs pod sandboxes only so far; app containers are not supported yet",
                        req.id
                    )))
                }
            }
            let config = SandboxConfig::from_spec(&spec)?;
            // Recorded before pause exists, so a shim that dies mid-way still
            // leaves `delete` the cgroup to remove.
            this.save(|r| {
                r.sandbox_id = req.id.clone();
                r.namespace = this.namespace.clone();
                r.cgroup = config.cgroup.clone();
                r.pause = None;
            })?;
            let started = berth_sandbox::pod::start_pause(
                &this.helper,
                &this.dir,
                &req.id,
                &config,
                this.pause_binary.clone(),
            );
            let pause = match started {
                Ok(pause) => pause,
                Err(e) => {
                    // start_pause removed the cgroup it may have made.
                    let _ = this.save(|r| r.cgroup = None);
                    return Err(e.into());
                }
            };
            if let Err(e) = this.save(|r| r.pause = Some(pause)) {
                // Untracked, pause would outlive the shim: undo it.
                let _ = berth_sandbox::pod::signal(pause, Signal::SIGKILL);
                if let Some(path) = &config.cgroup {
                    let _ = berth_sandbox::pod::remove_cgroup(path);
                }
                return Err(e);
            }
            log::info!("pod {}: berth-pause started as pid {}", req.id, pause.pid);
            Ok(pause)
        })
        .await
    }

    async fn kill(&self, process: ProcessRecord, signal: u32) -> Result<bool> {
        let signal = Signal::try_from(signal as i32).map_err(|_| {
            Error::InvalidArgument(format!("signal {signal} is not a valid signal"))
        })?;
        Ok(berth_sandbox::pod::signal(process, signal)?)
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let this = Arc::clone(self);
        let id = id.to_owned();
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
