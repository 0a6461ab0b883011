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
