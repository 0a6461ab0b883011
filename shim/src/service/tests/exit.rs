//! Exits and OOM kills: journaled before they are announced, in order.

use super::*;

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

/// A state directory that cannot be written (full, read-only or deleted
/// under the shim): the exit is still reported to everyone who asks while
/// the shim lives, and the shim goes on serving.
#[tokio::test]
async fn an_exit_the_journal_cannot_take_is_still_reported() {
    let mut f = fixture();
    create_and_start(&mut f, "c").await;
    *f.stub.fail_journal.lock().unwrap() = true;
    f.inner.kill(kill_req("c", 9)).await.unwrap();
    match next_event(&mut f.events).await {
        Event::Exit(exit) => assert_eq!(exit.exit_status, 137),
        other => panic!("TaskExit: {other:?}"),
    }
    let waited = f
        .inner
        .wait(id_req("c", |r: &mut WaitRequest, id| r.id = id))
        .await
        .unwrap();
    assert_eq!(waited.exit_status, 137);
    f.inner
        .delete(id_req("c", |r: &mut DeleteRequest, id| r.id = id))
        .await
        .unwrap();
    assert!(matches!(next_event(&mut f.events).await, Event::Delete(_)));
    // The next task is served as before.
    create_and_start(&mut f, "d").await;
}
