//! The Task service against a stub backend and a channel publisher: no root.

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
    removed: StdMutex<Vec<String>>,
    started: StdMutex<Vec<String>>,
    fail_start: StdMutex<Option<Error>>,
    /// When set, create waits for this before it returns.
    hold_create: StdMutex<Option<Arc<Notify>>>,
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
            removed: StdMutex::new(Vec::new()),
            started: StdMutex::new(Vec::new()),
            fail_start: StdMutex::new(None),
            hold_create: StdMutex::new(None),
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

#[tokio::test]
async fn a_sandbox_task_lives_and_dies_with_its_events() {
    let mut f = fixture();
    let created = f.inner.create(create_req("pod")).await.unwrap();
    assert_eq!(created.pid, 100);
    let state = f
        .inner
        .state(id_req("pod", |r: &mut StateRequest, id| r.id = id))
        .unwrap();
    assert_eq!(state.status.enum_value(), Ok(Status::CREATED));
    assert_eq!(state.bundle, "/bundles/pod");

    let started = f
        .inner
        .start(id_req("pod", |r: &mut StartRequest, id| r.id = id))
        .await
        .unwrap();
    assert_eq!(started.pid, 100);
    let state = f
        .inner
        .state(id_req("pod", |r: &mut StateRequest, id| r.id = id))
        .unwrap();
    assert_eq!(state.status.enum_value(), Ok(Status::RUNNING));

    let waiter = {
        let inner = Arc::clone(&f.inner);
        tokio::spawn(async move {
            inner
                .wait(id_req("pod", |r: &mut WaitRequest, id| r.id = id))
                .await
        })
    };
    f.inner.kill(kill_req("pod", 9)).await.unwrap();
    let waited = waiter.await.unwrap().unwrap();
    assert_eq!(waited.exit_status, 137);
    assert!(waited.exited_at.is_some());

    let state = f
        .inner
        .state(id_req("pod", |r: &mut StateRequest, id| r.id = id))
        .unwrap();
    assert_eq!(state.status.enum_value(), Ok(Status::STOPPED));
    assert_eq!(state.exit_status, 137);

    let deleted = f
        .inner
        .delete(id_req("pod", |r: &mut DeleteRequest, id| r.id = id))
        .await
        .unwrap();
    assert_eq!((deleted.pid, deleted.exit_status), (100, 137));
    assert_eq!(*f.stub.removed.lock().unwrap(), ["pod"]);

    match next_event(&mut f.events).await {
        Event::Create(e) => assert_eq!(
            (e.container_id.as_str(), e.pid, e.bundle.as_str()),
            ("pod", 100, "/bundles/pod")
        ),
        other => panic!("{other:?}"),
    }
    match next_event(&mut f.events).await {
        Event::Start(e) => assert_eq!((e.container_id.as_str(), e.pid), ("pod", 100)),
        other => panic!("{other:?}"),
    }
    match next_event(&mut f.events).await {
        Event::Exit(e) => {
            assert_eq!(
                (e.container_id.as_str(), e.id.as_str(), e.pid, e.exit_status),
                ("pod", "pod", 100, 137)
            );
            assert_eq!(e.exited_at, waited.exited_at);
        }
        other => panic!("{other:?}"),
    }
    match next_event(&mut f.events).await {
        Event::Delete(e) => assert_eq!(
            (e.container_id.as_str(), e.pid, e.exit_status),
            ("pod", 100, 137)
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code(
            f.inner
                .state(id_req("pod", |r: &mut StateRequest, id| r.id = id))
        ),
        Code::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_transitions_are_failed_preconditions() {
    let f = fixture();
    f.inner.create(create_req("pod")).await.unwrap();
    f.inner
        .start(id_req("pod", |r: &mut StartRequest, id| r.id = id))
        .await
        .unwrap();
    assert_eq!(
        code(
            f.inner
                .start(id_req("pod", |r: &mut StartRequest, id| r.id = id))
                .await
        ),
        Code::FAILED_PRECONDITION,
        "start twice"
    );
    assert_eq!(
        code(
            f.inner
                .delete(id_req("pod", |r: &mut DeleteRequest, id| r.id = id))
                .await
        ),
        Code::FAILED_PRECONDITION,
        "delete while running"
    );
    assert_eq!(
        code(f.inner.create(create_req("pod")).await),
        Code::ALREADY_EXISTS
    );
    f.inner.kill(kill_req("pod", 15)).await.unwrap();
    f.inner
        .wait(id_req("pod", |r: &mut WaitRequest, id| r.id = id))
        .await
        .unwrap();
    assert_eq!(
        code(f.inner.kill(kill_req("pod", 9)).await),
        Code::NOT_FOUND,
        "kill after exit"
    );
}

#[tokio::test]
async fn unknown_ids_and_exec_ids_are_not_found() {
    let f = fixture();
    assert_eq!(
        code(
            f.inner
                .state(id_req("x", |r: &mut StateRequest, id| r.id = id))
        ),
        Code::NOT_FOUND
    );
    assert_eq!(
        code(
            f.inner
                .start(id_req("x", |r: &mut StartRequest, id| r.id = id))
                .await
        ),
        Code::NOT_FOUND
    );
    assert_eq!(code(f.inner.kill(kill_req("x", 9)).await), Code::NOT_FOUND);
    assert_eq!(
        code(
            f.inner
                .wait(id_req("x", |r: &mut WaitRequest, id| r.id = id))
                .await
        ),
        Code::NOT_FOUND
    );
    assert_eq!(
        code(
            f.inner
                .delete(id_req("x", |r: &mut DeleteRequest, id| r.id = id))
                .await
        ),
        Code::NOT_FOUND
    );
    assert_eq!(
        code(
            f.inner
                .pids(id_req("x", |r: &mut PidsRequest, id| r.id = id))
        ),
        Code::NOT_FOUND
    );
    f.inner.create(create_req("pod")).await.unwrap();
    let exec = StateRequest {
        id: "pod".into(),
        exec_id: "e1".into(),
        ..Default::default()
    };
    assert_eq!(code(f.inner.state(exec)), Code::NOT_FOUND);
}

#[tokio::test]
async fn bad_requests_are_invalid_arguments() {
    let f = fixture();
    assert_eq!(
        code(f.inner.create(create_req("")).await),
        Code::INVALID_ARGUMENT
    );
    let no_bundle = CreateTaskRequest {
        id: "a".into(),
        ..Default::default()
    };
    assert_eq!(
        code(f.inner.create(no_bundle).await),
        Code::INVALID_ARGUMENT
    );
    *f.stub.fail_create.lock().unwrap() = berth_sandbox::spec::parse(b"{\"linux\": 3}").err();
    assert_eq!(
        code(f.inner.create(create_req("a")).await),
        Code::INVALID_ARGUMENT
    );
    assert_eq!(
        code(f.inner.kill(kill_req("a", 9)).await),
        Code::NOT_FOUND,
        "a failed create leaves no task"
    );
}

#[tokio::test]
async fn an_exit_before_the_pid_is_known_is_not_lost() {
    let mut f = fixture();
    *f.stub.die_on_create.lock().unwrap() = Some(1);
    f.inner.create(create_req("pod")).await.unwrap();
    let waited = f
        .inner
        .wait(id_req("pod", |r: &mut WaitRequest, id| r.id = id))
        .await
        .unwrap();
    assert_eq!(waited.exit_status, 1);
    assert!(matches!(next_event(&mut f.events).await, Event::Create(_)));
    assert!(matches!(next_event(&mut f.events).await, Event::Exit(_)));
    assert_eq!(
        code(
            f.inner
                .start(id_req("pod", |r: &mut StartRequest, id| r.id = id))
                .await
        ),
        Code::FAILED_PRECONDITION
    );
}

#[tokio::test]
async fn pids_report_the_init_until_delete() {
    let f = fixture();
    f.inner.create(create_req("c")).await.unwrap();
    f.inner
        .start(id_req("c", |r: &mut StartRequest, id| r.id = id))
        .await
        .unwrap();
    f.inner.kill(kill_req("c", 9)).await.unwrap();
    f.inner
        .wait(id_req("c", |r: &mut WaitRequest, id| r.id = id))
        .await
        .unwrap();
    let pids = f
        .inner
        .pids(id_req("c", |r: &mut PidsRequest, id| r.id = id))
        .unwrap();
    assert_eq!(
        pids.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
        [100]
    );
    f.inner
        .delete(id_req("c", |r: &mut DeleteRequest, id| r.id = id))
        .await
        .unwrap();
    assert_eq!(
        code(
            f.inner
                .pids(id_req("c", |r: &mut PidsRequest, id| r.id = id))
        ),
        Code::NOT_FOUND
    );
}

#[tokio::test]
async fn deleting_a_created_task_kills_it_first() {
    let f = fixture();
    f.inner.create(create_req("c")).await.unwrap();
    let deleted = f
        .inner
        .delete(id_req("c", |r: &mut DeleteRequest, id| r.id = id))
        .await
        .unwrap();
    assert_eq!(deleted.exit_status, 137);
}

#[tokio::test]
async fn shutdown_waits_for_the_last_task() {
    let f = fixture();
    let delete = |id: &str| {
        f.inner
            .delete(id_req(id, |r: &mut DeleteRequest, id| r.id = id))
    };
    let quiet =
        || tokio::time::timeout(std::time::Duration::from_millis(50), f.shutdown.notified());
    f.inner.create(create_req("a")).await.unwrap();
    f.inner.create(create_req("b")).await.unwrap();
    f.inner.kill(kill_req("a", 9)).await.unwrap();
    delete("a").await.unwrap();
    assert!(quiet().await.is_err(), "no shutdown was asked for");
    f.inner.shutdown(ShutdownRequest::default()).unwrap();
    assert!(
        quiet().await.is_err(),
        "shutdown with a task left is deferred"
    );
    // containerd 2.x sends no second Shutdown: the last delete ends it.
    f.inner.kill(kill_req("b", 9)).await.unwrap();
    delete("b").await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(1), f.shutdown.notified())
        .await
        .expect("the shim exits once the last task is deleted");
}

#[tokio::test]
async fn connect_names_the_shim_and_the_task() {
    let f = fixture();
    f.inner.create(create_req("c")).await.unwrap();
    let r = f
        .inner
        .connect(ConnectRequest {
            id: "c".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!((r.shim_pid, r.task_pid), (std::process::id(), 100));
}

#[test]
fn the_task_api_is_served_under_v2_and_v3() {
    let f = fixture();
    let service: Arc<dyn berth_proto::shim_async::Task + Send + Sync> =
        Arc::new(Service { inner: f.inner });
    let services = crate::server::task_services(service);
    let mut names: Vec<_> = services.keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        ["containerd.task.v2.Task", "containerd.task.v3.Task"]
    );
    for s in services.values() {
        for method in [
            "Create", "Start", "State", "Pids", "Kill", "Wait", "Delete", "Connect", "Shutdown",
        ] {
            assert!(s.methods.contains_key(method), "{method}");
        }
    }
}

#[tokio::test]
async fn a_create_whose_caller_gave_up_still_completes() {
    let f = fixture();
    let hold = Arc::new(Notify::new());
    *f.stub.hold_create.lock().unwrap() = Some(Arc::clone(&hold));
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_millis(20),
        f.inner.create(create_req("c")),
    )
    .await;
    assert!(gave_up.is_err(), "the caller's deadline passed");
    // The reservation stands meanwhile: a second create and shutdown wait.
    assert_eq!(
        code(f.inner.create(create_req("c")).await),
        Code::ALREADY_EXISTS
    );
    f.inner.shutdown(ShutdownRequest::default()).unwrap();
    hold.notify_one();
    for _ in 0..100 {
        if f.inner.task("c").is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let state = f
        .inner
        .state(id_req("c", |r: &mut StateRequest, id| r.id = id))
        .unwrap();
    assert_eq!(state.status.enum_value(), Ok(Status::CREATED));
    let early =
        tokio::time::timeout(std::time::Duration::from_millis(20), f.shutdown.notified()).await;
    assert!(
        early.is_err(),
        "shutdown during a create must not exit the shim"
    );
}

#[tokio::test]
async fn concurrent_deletes_delete_once() {
    let mut f = fixture();
    f.inner.create(create_req("c")).await.unwrap();
    f.inner.kill(kill_req("c", 9)).await.unwrap();
    f.inner
        .wait(id_req("c", |r: &mut WaitRequest, id| r.id = id))
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        f.inner
            .delete(id_req("c", |r: &mut DeleteRequest, id| r.id = id)),
        f.inner
            .delete(id_req("c", |r: &mut DeleteRequest, id| r.id = id)),
    );
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one delete succeeds: {a:?} {b:?}"
    );
    assert_eq!(f.stub.removed.lock().unwrap().len(), 1);
    let mut deletes = 0;
    while let Ok(e) = f.events.try_recv() {
        deletes += matches!(e, Event::Delete(_)) as usize;
    }
    assert_eq!(deletes, 1);
}

/// A publisher that holds TaskCreate until released, to race Start against it.
struct HoldCreate {
    inner: Channel,
    release: Arc<Notify>,
}

#[async_trait]
impl Publisher for HoldCreate {
    async fn publish(&self, event: Event) {
        if matches!(event, Event::Create(_)) {
            self.release.notified().await;
        }
        self.inner.publish(event).await;
    }
}

#[tokio::test]
async fn a_racing_start_never_announces_the_task_before_its_create() {
    let reaper = Reaper::new();
    let stub = Stub::new(&reaper);
    let (inner, mut events) = Channel::new();
    let release = Arc::new(Notify::new());
    let publisher = HoldCreate {
        inner,
        release: Arc::clone(&release),
    };
    let service = Service::new(stub, publisher, reaper, Arc::new(Notify::new()));
    let inner = service.inner;
    let create = tokio::spawn({
        let inner = Arc::clone(&inner);
        async move { inner.create(create_req("c")).await }
    });
    // Start as soon as the task is visible, while TaskCreate is held back.
    while inner.task("c").is_err() {
        tokio::task::yield_now().await;
    }
    let start = tokio::spawn({
        let inner = Arc::clone(&inner);
        async move {
            inner
                .start(id_req("c", |r: &mut StartRequest, id| r.id = id))
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(
        events.try_recv().is_err(),
        "nothing may be published before TaskCreate"
    );
    release.notify_one();
    create.await.unwrap().unwrap();
    start.await.unwrap().unwrap();
    assert!(matches!(next_event(&mut events).await, Event::Create(_)));
    assert!(matches!(next_event(&mut events).await, Event::Start(_)));
}

#[tokio::test]
async fn start_runs_the_engine_once_and_a_failed_start_leaves_the_task_created() {
    let mut f = fixture();
    f.inner.create(create_req("c")).await.unwrap();
    assert!(matches!(next_event(&mut f.events).await, Event::Create(_)));
    *f.stub.fail_start.lock().unwrap() = Some(Error::Internal("exec failed".into()));
    let start = || id_req("c", |r: &mut StartRequest, id| r.id = id);
    assert_eq!(code(f.inner.start(start()).await), Code::INTERNAL);
    let state = f
        .inner
        .state(id_req("c", |r: &mut StateRequest, id| r.id = id))
        .unwrap();
    assert_eq!(state.status.enum_value(), Ok(Status::CREATED));
    assert!(
        f.events.try_recv().is_err(),
        "no TaskStart for a failed start"
    );

    f.inner.start(start()).await.unwrap();
    assert_eq!(
        code(f.inner.start(start()).await),
        Code::FAILED_PRECONDITION
    );
    assert_eq!(*f.stub.started.lock().unwrap(), vec!["c".to_string()]);
}

#[tokio::test]
async fn close_io_needs_a_task() {
    let f = fixture();
    let req = CloseIORequest {
        id: "nope".into(),
        stdin: true,
        ..Default::default()
    };
    assert_eq!(code(f.inner.close_io(req)), Code::NOT_FOUND);
    f.inner.create(create_req("c")).await.unwrap();
    let req = CloseIORequest {
        id: "c".into(),
        stdin: true,
        ..Default::default()
    };
    f.inner.close_io(req).unwrap();
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

#[tokio::test]
async fn an_exec_lives_and_dies_before_its_task_exits() {
    let mut f = fixture();
    assert_eq!(
        code(f.inner.exec(exec_req("c", "e1")).await),
        Code::NOT_FOUND,
        "no task, no exec"
    );
    f.inner.create(create_req("c")).await.unwrap();
    assert_eq!(
        code(f.inner.exec(exec_req("c", "e1")).await),
        Code::FAILED_PRECONDITION,
        "a created task runs no execs"
    );
    f.inner
        .start(id_req("c", |r: &mut StartRequest, id| r.id = id))
        .await
        .unwrap();
    assert!(matches!(next_event(&mut f.events).await, Event::Create(_)));
    assert!(matches!(next_event(&mut f.events).await, Event::Start(_)));

    f.inner.exec(exec_req("c", "e1")).await.unwrap();
    assert_eq!(
        code(f.inner.exec(exec_req("c", "e1")).await),
        Code::ALREADY_EXISTS
    );
    assert_eq!(
        code(
            f.inner
                .kill(KillRequest {
                    id: "c".into(),
                    exec_id: "e1".into(),
                    signal: 9,
                    ..Default::default()
                })
                .await
        ),
        Code::FAILED_PRECONDITION,
        "an exec not started cannot be killed"
    );
    match next_event(&mut f.events).await {
        Event::ExecAdded(e) => {
            assert_eq!((e.container_id.as_str(), e.exec_id.as_str()), ("c", "e1"))
        }
        other => panic!("{other:?}"),
    }
    let start_exec = || StartRequest {
        id: "c".into(),
        exec_id: "e1".into(),
        ..Default::default()
    };
    let started = f.inner.start(start_exec()).await.unwrap();
    assert_eq!(started.pid, 101);
    match next_event(&mut f.events).await {
        Event::ExecStarted(e) => assert_eq!((e.exec_id.as_str(), e.pid), ("e1", 101)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code(f.inner.start(start_exec()).await),
        Code::FAILED_PRECONDITION
    );
    let pids = f
        .inner
        .pids(id_req("c", |r: &mut PidsRequest, id| r.id = id))
        .unwrap();
    let pids: Vec<u32> = pids.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids, [100, 101]);

    let delete_exec = || DeleteRequest {
        id: "c".into(),
        exec_id: "e1".into(),
        ..Default::default()
    };
    assert_eq!(
        code(f.inner.delete(delete_exec()).await),
        Code::FAILED_PRECONDITION,
        "a running exec is not deleted"
    );
    f.inner
        .kill(KillRequest {
            id: "c".into(),
            exec_id: "e1".into(),
            signal: 15,
            ..Default::default()
        })
        .await
        .unwrap();
    match next_event(&mut f.events).await {
        Event::Exit(e) => assert_eq!((e.id.as_str(), e.pid, e.exit_status), ("e1", 101, 143)),
        other => panic!("{other:?}"),
    }
    // A second exec is running when the init dies: it is killed, and its
    // exit is announced before the init's.
    f.inner.exec(exec_req("c", "e2")).await.unwrap();
    assert!(matches!(
        next_event(&mut f.events).await,
        Event::ExecAdded(_)
    ));
    f.inner
        .start(StartRequest {
            id: "c".into(),
            exec_id: "e2".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut f.events).await,
        Event::ExecStarted(_)
    ));
    f.inner.kill(kill_req("c", 9)).await.unwrap();
    match next_event(&mut f.events).await {
        Event::Exit(e) => assert_eq!((e.id.as_str(), e.pid, e.exit_status), ("e2", 102, 137)),
        other => panic!("{other:?}"),
    }
    match next_event(&mut f.events).await {
        Event::Exit(e) => assert_eq!((e.id.as_str(), e.pid, e.exit_status), ("c", 100, 137)),
        other => panic!("{other:?}"),
    }
    let deleted = f.inner.delete(delete_exec()).await.unwrap();
    assert_eq!((deleted.pid, deleted.exit_status), (101, 143));
    assert_eq!(code(f.inner.delete(delete_exec()).await), Code::NOT_FOUND);
}

#[tokio::test]
async fn an_oom_kill_is_published_once_and_before_the_exit_it_caused() {
    let mut f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (watch, kernel) = crate::oom::testing::v1(dir.path());
    *f.stub.oom.lock().unwrap() = Some(watch);
    create_and_start(&mut f, "c").await;

    // The kernel signals the OOM, then the victim dies at once.
    crate::oom::testing::signal(&kernel);
    f.inner
        .kill(kill_req("c", libc::SIGKILL as u32))
        .await
        .unwrap();
    match next_event(&mut f.events).await {
        Event::Oom(oom) => assert_eq!(oom.container_id, "c"),
        other => panic!("TaskOOM must come first: {other:?}"),
    }
    match next_event(&mut f.events).await {
        Event::Exit(exit) => assert_eq!(exit.exit_status, 137),
        other => panic!("then TaskExit: {other:?}"),
    }
    f.inner
        .delete(id_req("c", |r: &mut DeleteRequest, id| r.id = id))
        .await
        .unwrap();
    assert!(
        matches!(next_event(&mut f.events).await, Event::Delete(_)),
        "one kill is one TaskOOM"
    );
}

fn state_of(f: &Fixture, id: &str) -> Status {
    f.inner
        .state(id_req(id, |r: &mut StateRequest, id| r.id = id))
        .unwrap()
        .status
        .enum_value()
        .unwrap()
}

/// The ids of the next `n` events, which must be TaskPaused or TaskResumed.
async fn frozen_events(f: &mut Fixture, n: usize, paused: bool) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        match next_event(&mut f.events).await {
            Event::Paused(e) if paused => ids.push(e.container_id),
            Event::Resumed(e) if !paused => ids.push(e.container_id),
            other => panic!("expected paused={paused}, got {other:?}"),
        }
    }
    ids
}

#[tokio::test]
async fn pause_and_resume_freeze_a_task_and_say_so() {
    let mut f = fixture();
    create_and_start(&mut f, "c").await;
    f.inner.set_frozen("c", true).await.unwrap();
    assert_eq!(frozen_events(&mut f, 1, true).await, ["c"]);
    assert_eq!(state_of(&f, "c"), Status::PAUSED);
    assert_eq!(
        code(f.inner.set_frozen("c", true).await),
        Code::FAILED_PRECONDITION,
        "pause twice"
    );
    assert_eq!(
        code(f.inner.exec(exec_req("c", "e")).await),
        Code::FAILED_PRECONDITION,
        "exec into a paused task"
    );
    f.inner.set_frozen("c", false).await.unwrap();
    assert_eq!(frozen_events(&mut f, 1, false).await, ["c"]);
    assert_eq!(state_of(&f, "c"), Status::RUNNING);
    assert_eq!(
        code(f.inner.set_frozen("c", false).await),
        Code::FAILED_PRECONDITION,
        "resume a running task"
    );
    f.inner.exec(exec_req("c", "e")).await.unwrap();
}

#[tokio::test]
async fn only_a_running_task_pauses() {
    let mut f = fixture();
    f.inner.create(create_req("c")).await.unwrap();
    assert_eq!(
        code(f.inner.set_frozen("c", true).await),
        Code::FAILED_PRECONDITION,
        "created"
    );
    assert_eq!(code(f.inner.set_frozen("x", true).await), Code::NOT_FOUND);
    f.inner
        .start(id_req("c", |r: &mut StartRequest, id| r.id = id))
        .await
        .unwrap();
    f.inner.kill(kill_req("c", 15)).await.unwrap();
    f.inner
        .wait(id_req("c", |r: &mut WaitRequest, id| r.id = id))
        .await
        .unwrap();
    assert_eq!(
        code(f.inner.set_frozen("c", true).await),
        Code::FAILED_PRECONDITION,
        "stopped"
    );
    let _ = next_event(&mut f.events).await;
}

#[tokio::test]
async fn pausing_the_sandbox_pauses_every_running_task_of_the_pod() {
    let mut f = fixture();
    *f.stub.sandbox.lock().unwrap() = Some("pod".into());
    for id in ["pod", "a", "b"] {
        create_and_start(&mut f, id).await;
    }
    f.inner.create(create_req("new")).await.unwrap();
    assert!(matches!(next_event(&mut f.events).await, Event::Create(_)));

    f.inner.set_frozen("pod", true).await.unwrap();
    assert_eq!(frozen_events(&mut f, 3, true).await, ["a", "b", "pod"]);
    for id in ["pod", "a", "b"] {
        assert_eq!(state_of(&f, id), Status::PAUSED, "{id}");
    }
    assert_eq!(
        state_of(&f, "new"),
        Status::CREATED,
        "a created task stays free to start"
    );

    // A container resumed on its own is left alone by the pod's resume.
    f.inner.set_frozen("a", false).await.unwrap();
    assert_eq!(frozen_events(&mut f, 1, false).await, ["a"]);
    f.inner.set_frozen("pod", false).await.unwrap();
    assert_eq!(frozen_events(&mut f, 2, false).await, ["b", "pod"]);
    for id in ["pod", "a", "b"] {
        assert_eq!(state_of(&f, id), Status::RUNNING, "{id}");
    }
}

#[tokio::test]
async fn sigkill_thaws_a_paused_task_so_it_dies() {
    let mut f = fixture();
    create_and_start(&mut f, "c").await;
    f.inner.set_frozen("c", true).await.unwrap();
    frozen_events(&mut f, 1, true).await;
    f.inner.kill(kill_req("c", 9)).await.unwrap();
    assert_eq!(f.inner.task("c").unwrap().frozen(), FreezerState::Thawed);
    assert!(matches!(next_event(&mut f.events).await, Event::Exit(_)));
    assert_eq!(state_of(&f, "c"), Status::STOPPED);
}

#[tokio::test]
async fn exits_are_journaled_before_they_are_announced() {
    use berth_sandbox::journal::exit_of;
    let mut f = fixture();
    create_and_start(&mut f, "c").await;
    f.inner.exec(exec_req("c", "e")).await.unwrap();
    f.inner
        .start(StartRequest {
            id: "c".into(),
            exec_id: "e".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    f.inner
        .kill(KillRequest {
            id: "c".into(),
            exec_id: "e".into(),
            signal: 9,
            ..Default::default()
        })
        .await
        .unwrap();
    f.inner.kill(kill_req("c", 15)).await.unwrap();
    let mut exits = 0;
    while exits < 2 {
        if let Event::Exit(e) = next_event(&mut f.events).await {
            exits += 1;
            let journaled = f.stub.journal.lock().unwrap().clone();
            assert!(
                journaled.iter().any(|r| matches!(r, Record::Exit(j)
                    if j.status == e.exit_status && j.pid as u32 == e.pid)),
                "TaskExit {e:?} announced before it was journaled: {journaled:?}"
            );
        }
    }
    let journaled = f.stub.journal.lock().unwrap().clone();
    assert_eq!(exit_of(&journaled, "c").unwrap().status, 128 + 15);
    f.inner
        .delete(id_req("c", |r: &mut DeleteRequest, id| r.id = id))
        .await
        .unwrap();
    let journaled = f.stub.journal.lock().unwrap().clone();
    assert_eq!(journaled.last(), Some(&Record::Deleted { id: "c".into() }));
    assert_eq!(exit_of(&journaled, "c"), None);
}

#[tokio::test]
async fn a_resume_announces_the_tasks_it_thawed_when_one_fails() {
    let mut f = fixture();
    *f.stub.sandbox.lock().unwrap() = Some("pod".into());
    // b's cgroup is frozen from the start and never thaws.
    f.stub.stuck.lock().unwrap().push("b".into());
    for id in ["pod", "a", "b"] {
        create_and_start(&mut f, id).await;
    }
    f.inner.set_frozen("pod", true).await.unwrap();
    assert_eq!(frozen_events(&mut f, 2, true).await, ["a", "pod"]);
    assert_eq!(state_of(&f, "b"), Status::PAUSED);
    assert!(f.inner.set_frozen("pod", false).await.is_err());
    assert_eq!(frozen_events(&mut f, 2, false).await, ["a", "pod"]);
    assert_eq!(state_of(&f, "a"), Status::RUNNING);
    assert_eq!(state_of(&f, "pod"), Status::RUNNING);
}
