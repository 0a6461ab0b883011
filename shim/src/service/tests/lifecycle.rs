//! A task's life: create, start, kill, delete, shutdown, and bad requests.

use super::*;

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
    // Ids name files and directories: only containerd's identifiers pass.
    let long = "x".repeat(4096);
    for id in ["a/b", "..", "../../etc", "a\0b", long.as_str()] {
        assert_eq!(
            code(f.inner.create(create_req(id)).await),
            Code::INVALID_ARGUMENT,
            "{id:?}"
        );
        assert!(f.inner.task(id).is_err());
    }
    f.inner.create(create_req("c")).await.unwrap();
    f.inner
        .start(id_req("c", |r: &mut StartRequest, id| r.id = id))
        .await
        .unwrap();
    for exec_id in ["", "../e", "e\0", long.as_str()] {
        assert_eq!(
            code(f.inner.exec(exec_req("c", exec_id)).await),
            Code::INVALID_ARGUMENT,
            "{exec_id:?}"
        );
    }
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

/// A signal number past any signal went to the backend as it was (the
/// stub of the `task_service` fuzz target overflowed on it).
#[tokio::test]
async fn a_signal_that_is_no_signal_is_an_invalid_argument() {
    let mut f = fixture();
    create_and_start(&mut f, "c").await;
    for signal in [65, 1000, u32::MAX] {
        assert_eq!(
            code(f.inner.kill(kill_req("c", signal)).await),
            Code::INVALID_ARGUMENT
        );
    }
    // A real-time signal is one: SIGRTMIN+3 stops systemd images.
    assert!(f
        .inner
        .kill(kill_req("c", libc::SIGRTMIN() as u32 + 3))
        .await
        .is_ok());
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
async fn a_create_that_panics_frees_its_id_and_lets_shutdown_go_ahead() {
    let f = fixture();
    *f.stub.panic_create.lock().unwrap() = true;
    assert_eq!(code(f.inner.create(create_req("c")).await), Code::INTERNAL);
    f.inner.shutdown(ShutdownRequest::default()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(1), f.shutdown.notified())
        .await
        .expect("no reservation is left to defer the shutdown");
    f.inner.create(create_req("c")).await.unwrap();
    assert!(f.inner.task("c").is_ok(), "the id is free again");
}

#[tokio::test]
async fn a_delete_whose_caller_gave_up_still_removes_journals_and_announces() {
    let mut f = fixture();
    f.inner.create(create_req("c")).await.unwrap();
    f.inner.kill(kill_req("c", 9)).await.unwrap();
    f.inner
        .wait(id_req("c", |r: &mut WaitRequest, id| r.id = id))
        .await
        .unwrap();
    let hold = Arc::new(Notify::new());
    *f.stub.hold_remove.lock().unwrap() = Some(Arc::clone(&hold));
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_millis(20),
        f.inner
            .delete(id_req("c", |r: &mut DeleteRequest, id| r.id = id)),
    )
    .await;
    assert!(gave_up.is_err(), "the caller's deadline passed");
    hold.notify_one();
    loop {
        if let Event::Delete(d) = next_event(&mut f.events).await {
            assert_eq!((d.container_id.as_str(), d.exit_status), ("c", 137));
            break;
        }
    }
    assert_eq!(*f.stub.removed.lock().unwrap(), ["c"]);
    assert!(f
        .stub
        .journal
        .lock()
        .unwrap()
        .contains(&Record::Deleted { id: "c".into() }));
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
async fn start_runs_the_backend_once_and_a_failed_start_leaves_the_task_created() {
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
