//! Exec processes: added, started, signalled, exited, deleted.

use super::*;

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

/// Started, with exec "e1" added.
async fn running_with_an_exec(f: &mut Fixture) {
    f.inner.create(create_req("c")).await.unwrap();
    f.inner
        .start(id_req("c", |r: &mut StartRequest, id| r.id = id))
        .await
        .unwrap();
    f.inner.exec(exec_req("c", "e1")).await.unwrap();
    for _ in 0..3 {
        next_event(&mut f.events).await;
    }
}

fn exec_id_req<T: Default>(set: impl FnOnce(&mut T)) -> T {
    let mut r = T::default();
    set(&mut r);
    r
}

#[tokio::test]
async fn an_exec_start_whose_caller_gave_up_still_starts_it_once() {
    let mut f = fixture();
    running_with_an_exec(&mut f).await;
    let hold = Arc::new(Notify::new());
    *f.stub.hold_exec.lock().unwrap() = Some(Arc::clone(&hold));
    let start = || {
        exec_id_req(|r: &mut StartRequest| {
            r.id = "c".into();
            r.exec_id = "e1".into();
        })
    };
    let gave_up =
        tokio::time::timeout(std::time::Duration::from_millis(20), f.inner.start(start())).await;
    assert!(gave_up.is_err(), "the caller's deadline passed");
    *f.stub.hold_exec.lock().unwrap() = None;
    hold.notify_one();
    match next_event(&mut f.events).await {
        Event::ExecStarted(e) => assert_eq!(e.exec_id, "e1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code(f.inner.start(start()).await),
        Code::FAILED_PRECONDITION,
        "a retry finds it started and does not run it again"
    );
}

#[tokio::test]
async fn a_wait_on_an_exec_deleted_before_it_started_returns() {
    let mut f = fixture();
    running_with_an_exec(&mut f).await;
    let wait = {
        let inner = Arc::clone(&f.inner);
        tokio::spawn(async move {
            inner
                .wait(exec_id_req(|r: &mut WaitRequest| {
                    r.id = "c".into();
                    r.exec_id = "e1".into();
                }))
                .await
        })
    };
    tokio::task::yield_now().await;
    let deleted = f
        .inner
        .delete(exec_id_req(|r: &mut DeleteRequest| {
            r.id = "c".into();
            r.exec_id = "e1".into();
        }))
        .await
        .unwrap();
    assert_eq!(deleted.exit_status, 255);
    let waited = tokio::time::timeout(std::time::Duration::from_secs(1), wait)
        .await
        .expect("the Wait returns")
        .unwrap()
        .unwrap();
    assert_eq!(waited.exit_status, 255);
}
