//! The task state machine and its rules.

use std::path::Path;
use std::time::SystemTime;

use super::*;
use crate::io::Io;

fn launched(pid: i32) -> Launched {
    Launched {
        os: Tracked::gone(pid),
        io: Io::none(),
    }
}

fn task() -> Task {
    Task::new("t", "/b", Stdio::default(), launched(1))
}

/// A task with a v1 freezer of plain files in `dir`, thawed or frozen.
fn task_with_freezer(dir: &Path, frozen: bool) -> Task {
    let state = if frozen { "FROZEN\n" } else { "THAWED\n" };
    std::fs::write(dir.join("freezer.state"), state).unwrap();
    task().with_cgroup(None, None, Some(Freezer::V1(dir.to_owned())))
}

fn precondition<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(Error::FailedPrecondition(m)) => m,
        other => panic!("not a failed precondition: {other:?}"),
    }
}

#[test]
fn start_only_from_created() {
    let t = task();
    let init = t.init();
    t.check_start(init).unwrap();
    init.start().unwrap();
    assert_eq!(init.state(), State::Running);
    assert!(precondition(t.check_start(init)).contains("task t is running, not created"));
    assert!(matches!(init.start(), Err(Error::FailedPrecondition(_))));
    assert!(init.exited(0, SystemTime::UNIX_EPOCH));
    assert!(precondition(t.check_start(init)).contains("stopped"));
}

#[test]
fn the_first_exit_wins() {
    let t = task();
    assert!(t.init().exited(42, SystemTime::UNIX_EPOCH));
    assert!(!t.init().exited(137, SystemTime::now()));
    assert_eq!(t.init().state().exit(), Some((42, SystemTime::UNIX_EPOCH)));
}

#[tokio::test]
async fn wait_returns_the_exit() {
    let t = Arc::new(task());
    let waiter = tokio::spawn({
        let t = t.clone();
        async move { t.init().wait().await }
    });
    tokio::task::yield_now().await;
    t.init().exited(3, SystemTime::UNIX_EPOCH);
    assert_eq!(waiter.await.unwrap(), (3, SystemTime::UNIX_EPOCH));
    assert_eq!(
        t.init().wait().await.0,
        3,
        "waiting on a stopped task returns at once"
    );
}

#[test]
fn processes_are_found_by_exec_id() {
    let t = task();
    assert!(t.process("").unwrap().is_init());
    assert_eq!(t.process("").unwrap().id, "t");
    assert!(matches!(t.process("e1"), Err(Error::NotFound(m)) if m == "exec e1 of task t"));
    t.init().start().unwrap();
    t.add_exec("e1", Stdio::default(), b"{}".to_vec()).unwrap();
    let exec = t.process("e1").unwrap();
    assert!(!exec.is_init());
    assert_eq!((exec.id.as_str(), exec.pid()), ("e1", 0));
    assert!(matches!(
        t.add_exec("e1", Stdio::default(), Vec::new()),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        t.add_exec("", Stdio::default(), Vec::new()),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn execs_need_a_running_unpaused_task() {
    let dir = tempfile::tempdir().unwrap();
    let t = task_with_freezer(dir.path(), false);
    assert!(
        precondition(t.add_exec("e1", Stdio::default(), Vec::new())).contains("task t is created")
    );
    t.init().start().unwrap();
    t.add_exec("e1", Stdio::default(), Vec::new()).unwrap();
    let exec = t.process("e1").unwrap();
    t.check_start(&exec).unwrap();
    std::fs::write(dir.path().join("freezer.state"), "FROZEN\n").unwrap();
    assert!(
        precondition(t.add_exec("e2", Stdio::default(), Vec::new())).contains("task t is paused")
    );
    assert!(precondition(t.check_start(&exec)).contains("paused"));
    std::fs::write(dir.path().join("freezer.state"), "THAWED\n").unwrap();
    t.init().exited(0, SystemTime::UNIX_EPOCH);
    assert!(precondition(t.check_start(&exec)).contains("task t is stopped"));
}

#[test]
fn signals_need_a_launched_live_process() {
    let t = task();
    t.signal_target(t.init())
        .expect("a created init can be killed");
    t.init().start().unwrap();
    t.add_exec("e1", Stdio::default(), Vec::new()).unwrap();
    let exec = t.process("e1").unwrap();
    assert!(precondition(t.signal_target(&exec)).contains("exec e1 of task t is not started"));
    exec.set_launched(launched(7));
    assert!(
        matches!(
            t.signal_target(&exec),
            Err(Error::NotFound(m)) if m.contains("not running")
        ),
        "launched, not yet running"
    );
    exec.start().unwrap();
    assert_eq!(t.signal_target(&exec).unwrap().pid, 7);
    exec.exited(0, SystemTime::UNIX_EPOCH);
    assert!(matches!(
        t.signal_target(&exec),
        Err(Error::NotFound(m)) if m.contains("not running")
    ));
    t.init().exited(0, SystemTime::UNIX_EPOCH);
    assert!(matches!(
        t.signal_target(t.init()),
        Err(Error::NotFound(m)) if m.contains("already finished")
    ));
}

#[test]
fn only_what_is_not_running_is_deleted() {
    let t = task();
    t.check_delete().unwrap();
    assert!(t.kill_before_remove(), "a created task is killed first");
    t.init().start().unwrap();
    assert!(precondition(t.check_delete()).contains("kill it before delete"));
    assert!(!t.kill_before_remove());
    t.add_exec("e1", Stdio::default(), Vec::new()).unwrap();
    let exec = t.process("e1").unwrap();
    exec.set_launched(launched(7));
    exec.start().unwrap();
    assert!(precondition(t.remove_exec("e1")).contains("exec e1 of task t is running"));
    exec.exited(1, SystemTime::UNIX_EPOCH);
    assert_eq!(t.remove_exec("e1").unwrap().state().exit().unwrap().0, 1);
    assert!(matches!(t.process("e1"), Err(Error::NotFound(_))));
    t.init().exited(0, SystemTime::UNIX_EPOCH);
    t.check_delete().unwrap();
}

#[test]
fn pause_and_resume_rules() {
    let dir = tempfile::tempdir().unwrap();
    assert!(precondition(task().check_freeze(true)).contains("no cgroup of its own to pause"));
    let t = task_with_freezer(dir.path(), false);
    assert!(precondition(t.check_freeze(true)).contains("only a running task can pause"));
    assert!(!t.changes_with(true), "a created task stays free to start");
    t.init().start().unwrap();
    t.check_freeze(true).unwrap();
    assert!(t.changes_with(true));
    assert!(precondition(t.check_freeze(false)).contains("not paused"));
    assert!(!t.changes_with(false));
    std::fs::write(dir.path().join("freezer.state"), "FROZEN\n").unwrap();
    assert_eq!(t.status_of(t.init()), Status::PAUSED);
    assert!(precondition(t.check_freeze(true)).contains("paused already"));
    t.check_freeze(false).unwrap();
    assert!(t.changes_with(false));
    std::fs::write(dir.path().join("freezer.state"), "FREEZING\n").unwrap();
    assert_eq!(t.status_of(t.init()), Status::PAUSING);
    t.check_freeze(false).unwrap();
    t.init().exited(0, SystemTime::UNIX_EPOCH);
    assert!(precondition(t.check_freeze(false)).contains("stopped"));
}

#[test]
fn resize_needs_a_started_process() {
    let t = task();
    t.init()
        .io()
        .expect("the init's stdio is there from Create");
    t.init().start().unwrap();
    t.add_exec("e1", Stdio::default(), Vec::new()).unwrap();
    let exec = t.process("e1").unwrap();
    assert!(precondition(exec.io()).contains("exec e1 of task t is not started"));
}
