//! Pause and Resume of a task and of the whole pod.

use super::*;

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
