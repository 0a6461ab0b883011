//! Exits and OOM kills: each exit drained, journaled and announced, in
//! order with the task's other events.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::events::task::{TaskExit, TaskOOM};
use berth_sandbox::journal::{ExitRecord, Record};

use super::Inner;
use crate::backend::Backend;
use crate::events::{timestamp, Event, Publisher};
use crate::oom::Oom;
use crate::reaper::Subscription;
use crate::task::{Process, State, Task};

/// How long an exit waits for the process's output to be copied: processes
/// that outlive the init may hold its stdout open for ever.
const OUTPUT_DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// How long an init's exit waits for its exec processes' exits.
const EXEC_EXIT_LIMIT: Duration = Duration::from_secs(10);

impl<B: Backend, P: Publisher> Inner<B, P> {
    /// Waits, on a task of its own, for the exit of `process` (launched,
    /// and tracked through `exits`), then announces it.
    pub(super) fn watch_exit(
        self: &Arc<Self>,
        task: Arc<Task>,
        process: Arc<Process>,
        exits: Subscription,
    ) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let Some(launched) = process.launched() else {
                return;
            };
            let Some(exit) = exits.wait_for(&launched.os).await else {
                return;
            };
            if process.is_init() {
                this.init_exited(&task, exit.status, exit.at).await;
            } else {
                this.announce_exit(&task, &process, exit.status, exit.at)
                    .await;
            }
        });
    }

    /// The task's init exited: what outlives it goes first, then its exec
    /// processes' exits and an OOM kill that ended it are announced, then
    /// its own exit.
    async fn init_exited(&self, task: &Task, status: u32, at: SystemTime) {
        if let Err(e) = self.backend.exited(&task.id).await {
            log::warn!(container = task.id.as_str(); "after its exit: {e}");
        }
        // The init's exit is announced after its exec processes' exits, as
        // containerd's runc shim does: they die with it.
        for exec in task.launched_execs() {
            if let (Some(launched), State::Running) = (exec.launched(), exec.state()) {
                // They die with the init in its own PID namespace; in a
                // shared one, the kill of the cgroup may have failed.
                let _ = self
                    .backend
                    .kill(
                        &task.id,
                        &launched.os,
                        berth_sandbox::process::Sig::KILL,
                        false,
                    )
                    .await;
            }
            if tokio::time::timeout(EXEC_EXIT_LIMIT, exec.wait())
                .await
                .is_err()
            {
                log::warn!(
                    container = task.id.as_str(), exec = exec.exec_id.as_str();
                    "still not reaped {EXEC_EXIT_LIMIT:?} after its init exited"
                );
            }
        }
        // The kernel signals an OOM kill before it kills: one that ended
        // the init is published before its exit.
        self.publish_oom(task).await;
        self.announce_exit(task, task.init(), status, at).await;
    }

    /// Marks `process` stopped, journals its exit and publishes its
    /// TaskExit, once its output is copied and in order with the task's
    /// other events. A second exit of the process is ignored.
    async fn announce_exit(&self, task: &Task, process: &Process, status: u32, at: SystemTime) {
        let Some(launched) = process.launched() else {
            return;
        };
        // Everything the process wrote reaches containerd before its exit.
        launched.io.drained(OUTPUT_DRAIN_LIMIT).await;
        let _order = task.events.lock().await;
        if process.state().exit().is_some() {
            return;
        }
        let pid = launched.os.pid;
        // Durable before anyone learns of it (Wait, State, TaskExit): a
        // shim that dies from here on still lets `delete` report it.
        let exit = ExitRecord::new(&task.id, &process.exec_id, pid, status, at);
        if let Err(e) = self.backend.journal(Record::Exit(exit)).await {
            log::error!(container = task.id.as_str(); "journal the exit of pid {pid}: {e}");
        }
        process.exited(status, at);
        log::info!(
            container = task.id.as_str(), exec = process.exec_id.as_str();
            "pid {pid} exited with status {status}"
        );
        self.publisher
            .publish(Event::Exit(TaskExit {
                container_id: task.id.clone(),
                id: process.id.clone(),
                pid: pid as u32,
                exit_status: status,
                exited_at: Some(timestamp(at)).into(),
                ..Default::default()
            }))
            .await;
    }

    /// Publishes a TaskOOM for the OOM kills in the task's cgroup, until the
    /// cgroup or the task goes.
    pub(super) async fn watch_oom(&self, task: &Task) {
        let Some(oom) = &task.oom else {
            return;
        };
        loop {
            tokio::select! {
                ready = oom.ready() => if !ready || !self.publish_oom(task).await {
                    return;
                },
                _ = task.deleted.notified() => return,
            }
        }
    }

    /// Publishes a TaskOOM if the task's OOM watch saw a kill, in order with
    /// the task's other events. False once its cgroup is gone.
    async fn publish_oom(&self, task: &Task) -> bool {
        let Some(oom) = &task.oom else {
            return false;
        };
        let _order = task.events.lock().await;
        match oom.take() {
            Oom::Quiet => true,
            Oom::Gone => false,
            Oom::Killed => {
                log::info!(container = task.id.as_str(); "OOM kill in its memory cgroup");
                self.publisher
                    .publish(Event::Oom(TaskOOM {
                        container_id: task.id.clone(),
                        ..Default::default()
                    }))
                    .await;
                true
            }
        }
    }
}
