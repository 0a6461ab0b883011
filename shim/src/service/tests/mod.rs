//! The Task service against a stub backend and a channel publisher: no root.
//!
//! This file holds the stub and the fixture; the tests are grouped by what
//! they exercise: a task's life, exec processes, exits, freezing.

mod exec;
mod exit;
mod freeze;
mod lifecycle;

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex as StdMutex;
use std::time::SystemTime;

use berth_proto::api::*;
use berth_proto::ttrpc::Code;
use berth_sandbox::cgroup::freezer::{Freezer, FreezerState};
use berth_sandbox::journal::Record;
use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::backend::{CreateRequest, NewTask, Spawned};
use crate::events::testing::Channel;
use crate::events::Event;
use crate::io::{Io, Stdio};
use crate::process::Tracked;
use crate::reaper::Exit;

/// Processes that exist only in memory: kill makes them exit through the
/// reaper, as the real ones do.
struct Stub {
    reaper: Arc<Reaper>,
    next_pid: AtomicI32,
    /// Makes the next create's process exit at once, before create returns.
    die_on_create: StdMutex<Option<u32>>,
    fail_create: StdMutex<Option<berth_sandbox::Error>>,
    /// Makes the next create panic, as a spawn that std cannot wait for does.
    panic_create: StdMutex<bool>,
    removed: StdMutex<Vec<String>>,
    started: StdMutex<Vec<String>>,
    fail_start: StdMutex<Option<Error>>,
    /// When set, create waits for this before it returns.
    hold_create: StdMutex<Option<Arc<Notify>>>,
    /// When set, an exec's launch and a task's removal wait for these.
    hold_exec: StdMutex<Option<Arc<Notify>>>,
    hold_remove: StdMutex<Option<Arc<Notify>>>,
    /// Given to the next created task.
    oom: StdMutex<Option<crate::oom::OomWatch>>,
    /// The task that is the pod's sandbox.
    sandbox: StdMutex<Option<String>>,
    /// The exit journal.
    journal: StdMutex<Vec<Record>>,
    /// Tasks whose cgroup is frozen for good: a v2 freezer whose
    /// `cgroup.events` never changes.
    stuck: StdMutex<Vec<String>>,
    /// Each task's freezer: a v1 `freezer.state` that is a plain file, so
    /// a freeze or thaw completes as soon as it is asked for.
    cgroups: tempfile::TempDir,
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

    async fn kill(&self, _id: &str, process: &Tracked, signal: u32, _all: bool) -> Result<bool> {
        self.reaper.notify(Exit {
            pid: process.pid,
            status: 128 + signal,
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
        self.journal.lock().unwrap().push(record);
        Ok(())
    }

    fn is_sandbox(&self, id: &str) -> bool {
        self.sandbox.lock().unwrap().as_deref() == Some(id)
    }
}

use berth_sandbox::state::ProcessRecord;

/// The stub's processes' start time: no real process with their pid has
/// it, so the shim tracks them as exited and takes their pids' exits.
const NO_PROCESS: u64 = u64::MAX;

impl Stub {
    /// A stub whose processes exit through `reaper`; pids start at 100.
    fn new(reaper: &Arc<Reaper>) -> Arc<Self> {
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
            stuck: StdMutex::new(Vec::new()),
            cgroups: tempfile::tempdir().unwrap(),
        })
    }
}

struct Fixture {
    inner: Arc<Inner<Arc<Stub>, Channel>>,
    stub: Arc<Stub>,
    events: UnboundedReceiver<Event>,
    shutdown: Arc<Notify>,
}

fn fixture() -> Fixture {
    let reaper = Reaper::new();
    let stub = Stub::new(&reaper);
    let (publisher, events) = Channel::new();
    let shutdown = Arc::new(Notify::new());
    let service = Service::new(Arc::clone(&stub), publisher, reaper, Arc::clone(&shutdown));
    Fixture {
        inner: service.inner,
        stub,
        events,
        shutdown,
    }
}

fn create_req(id: &str) -> CreateTaskRequest {
    CreateTaskRequest {
        id: id.into(),
        bundle: format!("/bundles/{id}"),
        ..Default::default()
    }
}

fn code<T: std::fmt::Debug>(r: Result<T>) -> Code {
    match ttrpc::Error::from(r.expect_err("expected an error")) {
        ttrpc::Error::RpcStatus(s) => s.code(),
        other => panic!("{other:?}"),
    }
}

fn id_req<T: Default>(id: &str, set: impl FnOnce(&mut T, String)) -> T {
    let mut r = T::default();
    set(&mut r, id.to_owned());
    r
}

fn kill_req(id: &str, signal: u32) -> KillRequest {
    KillRequest {
        id: id.into(),
        signal,
        ..Default::default()
    }
}

async fn next_event(events: &mut UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(std::time::Duration::from_secs(5), events.recv())
        .await
        .expect("an event in time")
        .expect("publisher alive")
}

/// Creates and starts task `id`, and takes its TaskCreate and TaskStart.
async fn create_and_start(f: &mut Fixture, id: &str) {
    f.inner.create(create_req(id)).await.unwrap();
    f.inner
        .start(id_req(id, |r: &mut StartRequest, id| r.id = id))
        .await
        .unwrap();
    assert!(matches!(next_event(&mut f.events).await, Event::Create(_)));
    assert!(matches!(next_event(&mut f.events).await, Event::Start(_)));
}

fn exec_req(id: &str, exec_id: &str) -> ExecProcessRequest {
    ExecProcessRequest {
        id: id.into(),
        exec_id: exec_id.into(),
        spec: Some(berth_proto::protobuf::well_known_types::any::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: br#"{"args":["true"],"cwd":"/"}"#.to_vec(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}
