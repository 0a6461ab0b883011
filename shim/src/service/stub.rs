//! A backend whose processes exist only in memory, for the service's tests
//! and the Task service's fuzz target: no root, no helper, no files but a
//! temporary directory of freezer files.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::SystemTime;

use async_trait::async_trait;
use berth_sandbox::cgroup::freezer::Freezer;
use berth_sandbox::journal::Record;
use berth_sandbox::process::Sig;
use berth_sandbox::state::ProcessRecord;
use tokio::sync::Notify;

use crate::backend::{Backend, CreateRequest, NewTask, Spawned};
use crate::error::{Error, Result};
use crate::io::{Io, Stdio};
use crate::process::Tracked;
use crate::reaper::{Exit, Reaper};

/// Processes that exist only in memory: kill makes them exit through the
/// reaper, as the real ones do.
pub(crate) struct Stub {
    pub(crate) reaper: Arc<Reaper>,
    pub(crate) next_pid: AtomicI32,
    /// Makes the next create's process exit at once, before create returns.
    pub(crate) die_on_create: StdMutex<Option<u32>>,
    pub(crate) fail_create: StdMutex<Option<berth_sandbox::Error>>,
    /// Makes the next create panic, as a spawn that std cannot wait for does.
    pub(crate) panic_create: StdMutex<bool>,
    pub(crate) removed: StdMutex<Vec<String>>,
    pub(crate) started: StdMutex<Vec<String>>,
    pub(crate) fail_start: StdMutex<Option<Error>>,
    /// When set, create waits for this before it returns.
    pub(crate) hold_create: StdMutex<Option<Arc<Notify>>>,
    /// When set, an exec's launch and a task's removal wait for these.
    pub(crate) hold_exec: StdMutex<Option<Arc<Notify>>>,
    pub(crate) hold_remove: StdMutex<Option<Arc<Notify>>>,
    /// Given to the next created task.
    pub(crate) oom: StdMutex<Option<crate::oom::OomWatch>>,
    /// The task that is the pod's sandbox.
    pub(crate) sandbox: StdMutex<Option<String>>,
    /// The exit journal.
    pub(crate) journal: StdMutex<Vec<Record>>,
    /// Makes every journal write fail, as on a full or read-only disk.
    pub(crate) fail_journal: StdMutex<bool>,
    /// Tasks whose cgroup is frozen for good: a v2 freezer whose
    /// `cgroup.events` never changes.
    pub(crate) stuck: StdMutex<Vec<String>>,
    /// Each task's freezer: a v1 `freezer.state` that is a plain file, so
    /// a freeze or thaw completes as soon as it is asked for.
    pub(crate) cgroups: tempfile::TempDir,
}

#[async_trait]
impl Backend for Arc<Stub> {
    async fn create(&self, req: CreateRequest) -> Result<NewTask> {
        let hold = self.hold_create.lock().unwrap().clone();
        if let Some(hold) = hold {
            hold.notified().await;
        }
        if let Some(e) = self.fail_create.lock().unwrap().take() {
            return Err(e.into());
        }
        if std::mem::take(&mut *self.panic_create.lock().unwrap()) {
            panic!("the stub's create panics");
        }
        if let Some(sandbox) = &req.sandbox {
            // The Sandbox API's pod sandbox, as the real backend reads it.
            if berth_sandbox::spec::kind(&sandbox.spec)? == berth_sandbox::spec::Kind::Sandbox {
                *self.sandbox.lock().unwrap() = Some(req.id.clone());
            }
        }
        let pid = self.next_pid.fetch_add(1, Ordering::SeqCst);
        if let Some(status) = self.die_on_create.lock().unwrap().take() {
            self.reaper.notify(Exit {
                pid,
                status,
                at: SystemTime::now(),
            });
        }
        let mut created = NewTask::without_cgroup(Spawned {
            process: ProcessRecord {
                pid,
                start_time: NO_PROCESS,
            },
            io: Io::none(),
        });
        created.oom = self.oom.lock().unwrap().take();
        let freezer = self.cgroups.path().join(pid.to_string());
        std::fs::create_dir(&freezer).unwrap();
        created.freezer = Some(if self.stuck.lock().unwrap().contains(&req.id) {
            std::fs::write(freezer.join("cgroup.freeze"), "1\n").unwrap();
            std::fs::write(freezer.join("cgroup.events"), "frozen 1\n").unwrap();
            Freezer::V2(freezer)
        } else {
            std::fs::write(freezer.join("freezer.state"), "THAWED\n").unwrap();
            Freezer::V1(freezer)
        });
        Ok(created)
    }

    async fn exec(
        &self,
        _id: &str,
        _exec_id: &str,
        _spec: Vec<u8>,
        _stdio: Stdio,
    ) -> Result<Spawned> {
        let hold = self.hold_exec.lock().unwrap().clone();
        if let Some(hold) = hold {
            hold.notified().await;
        }
        let pid = self.next_pid.fetch_add(1, Ordering::SeqCst);
        Ok(Spawned {
            process: ProcessRecord {
                pid,
                start_time: NO_PROCESS,
            },
            io: Io::none(),
        })
    }

    async fn start(&self, id: &str) -> Result<()> {
        if let Some(e) = self.fail_start.lock().unwrap().take() {
            return Err(e);
        }
        self.started.lock().unwrap().push(id.to_owned());
        Ok(())
    }

    async fn kill(&self, _id: &str, process: &Tracked, signal: Sig, _all: bool) -> Result<bool> {
        self.reaper.notify(Exit {
            pid: process.pid,
            status: 128 + signal.number() as u32,
            at: SystemTime::now(),
        });
        Ok(true)
    }

    async fn exited(&self, _id: &str) -> Result<()> {
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let hold = self.hold_remove.lock().unwrap().clone();
        if let Some(hold) = hold {
            hold.notified().await;
        }
        self.removed.lock().unwrap().push(id.to_owned());
        Ok(())
    }

    async fn journal(&self, record: Record) -> Result<()> {
        if *self.fail_journal.lock().unwrap() {
            return Err(Error::Io {
                op: "append to",
                path: "journal".into(),
                source: std::io::Error::from_raw_os_error(libc::ENOSPC),
            });
        }
        self.journal.lock().unwrap().push(record);
        Ok(())
    }

    fn is_sandbox(&self, id: &str) -> bool {
        self.sandbox.lock().unwrap().as_deref() == Some(id)
    }
}

/// The stub's processes' start time: no real process with their pid has
/// it, so the shim tracks them as exited and takes their pids' exits.
pub(crate) const NO_PROCESS: u64 = u64::MAX;

impl Stub {
    /// A stub whose processes exit through `reaper`; pids start at 100.
    pub(crate) fn new(reaper: &Arc<Reaper>) -> Arc<Self> {
        Arc::new(Stub {
            reaper: Arc::clone(reaper),
            next_pid: AtomicI32::new(100),
            die_on_create: StdMutex::new(None),
            fail_create: StdMutex::new(None),
            panic_create: StdMutex::new(false),
            removed: StdMutex::new(Vec::new()),
            started: StdMutex::new(Vec::new()),
            fail_start: StdMutex::new(None),
            hold_create: StdMutex::new(None),
            hold_exec: StdMutex::new(None),
            hold_remove: StdMutex::new(None),
            oom: StdMutex::new(None),
            sandbox: StdMutex::new(None),
            journal: StdMutex::new(Vec::new()),
            fail_journal: StdMutex::new(false),
            stuck: StdMutex::new(Vec::new()),
            cgroups: tempfile::tempdir().unwrap(),
        })
    }
}
