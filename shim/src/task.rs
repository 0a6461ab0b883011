//! A task's state machine: the only place its transitions are decided.

use std::time::SystemTime;

use berth_proto::api::Status;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::io::Io;
use berth_sandbox::state::ProcessRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Stopped { status: u32, at: SystemTime },
}

impl State {
    pub fn status(&self) -> Status {
        match self {
            State::Created => Status::CREATED,
            State::Running => Status::RUNNING,
            State::Stopped { .. } => Status::STOPPED,
        }
    }
}

/// The IO paths containerd gave a task, reported back by State.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stdio {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// One task of the pod: its init process and where it is in its life.
#[derive(Debug)]
pub struct Task {
    pub id: String,
    pub bundle: String,
    pub stdio: Stdio,
    pub process: ProcessRecord,
    /// The shim's side of the init's stdio.
    pub io: Io,
    state: watch::Sender<State>,
    /// Held across a transition and the event announcing it, so events leave
    /// in the order the transitions happened (no TaskExit before TaskStart).
    pub events: tokio::sync::Mutex<()>,
}

impl Task {
    pub fn new(id: &str, bundle: &str, stdio: Stdio, process: ProcessRecord, io: Io) -> Self {
        Task {
            id: id.to_owned(),
            bundle: bundle.to_owned(),
            stdio,
            process,
            io,
            state: watch::Sender::new(State::Created),
            events: tokio::sync::Mutex::new(()),
        }
    }

    pub fn state(&self) -> State {
        *self.state.borrow()
    }

    /// Created -> Running. Anything else is a bad move.
    pub fn start(&self) -> Result<()> {
        let mut result = Ok(());
        self.state.send_if_modified(|s| match *s {
            State::Created => {
                *s = State::Running;
                true
            }
            other => {
                result = Err(Error::FailedPrecondition(format!(
                    "task {} is {}, not created",
                    self.id,
                    describe(other)
                )));
                false
            }
        });
        result
    }

    /// The init process exited. Returns false if it was already stopped.
    pub fn exited(&self, status: u32, at: SystemTime) -> bool {
        self.state.send_if_modified(|s| match s {
            State::Stopped { .. } => false,
            _ => {
                *s = State::Stopped { status, at };
                true
            }
        })
    }

    /// Waits until the task has stopped and returns its exit.
    pub async fn wait(&self) -> (u32, SystemTime) {
        let mut rx = self.state.subscribe();
        let stopped = rx
            .wait_for(|s| matches!(s, State::Stopped { .. }))
            .await
            .expect("the sender lives in self");
        match *stopped {
            State::Stopped { status, at } => (status, at),
            _ => unreachable!("waited for stopped"),
        }
    }
}

pub fn describe(state: State) -> &'static str {
    match state {
        State::Created => "created",
        State::Running => "running",
        State::Stopped { .. } => "stopped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> Task {
        Task::new(
            "t",
            "/b",
            Stdio::default(),
            ProcessRecord {
                pid: 1,
                start_time: 1,
            },
            Io::none(),
        )
    }

    #[test]
    fn start_only_from_created() {
        let t = task();
        t.start().unwrap();
        assert_eq!(t.state(), State::Running);
        assert!(matches!(t.start(), Err(Error::FailedPrecondition(_))));
        assert!(t.exited(0, SystemTime::UNIX_EPOCH));
        assert!(matches!(t.start(), Err(Error::FailedPrecondition(_))));
    }

    #[test]
    fn the_first_exit_wins() {
        let t = task();
        assert!(t.exited(42, SystemTime::UNIX_EPOCH));
        assert!(!t.exited(137, SystemTime::now()));
        assert_eq!(
            t.state(),
            State::Stopped {
                status: 42,
                at: SystemTime::UNIX_EPOCH
            }
        );
    }

    #[tokio::test]
    async fn wait_returns_the_exit() {
        let t = std::sync::Arc::new(task());
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.wait().await }
        });
        tokio::task::yield_now().await;
        t.exited(3, SystemTime::UNIX_EPOCH);
        assert_eq!(waiter.await.unwrap(), (3, SystemTime::UNIX_EPOCH));
        assert_eq!(
            t.wait().await.0,
            3,
            "waiting on a stopped task returns at once"
        );
    }
}
