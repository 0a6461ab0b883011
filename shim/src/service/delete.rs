//! Delete of a task or an exec process, and Shutdown of the shim.

use std::sync::Arc;
use std::time::SystemTime;

use berth_proto::api::{DeleteRequest, DeleteResponse, ShutdownRequest};
use berth_proto::events::task::TaskDelete;
use berth_sandbox::journal::Record;

use super::{exit_fields, Inner};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::events::{timestamp, Event, Publisher};
use crate::task::Task;

impl<B: Backend, P: Publisher> Inner<B, P> {
    pub(super) async fn delete(self: &Arc<Self>, req: DeleteRequest) -> Result<DeleteResponse> {
        // The task leaves the table first: a Delete whose caller gave up
        // must still remove what it leaves, journal and announce it.
        self.detached(
            "delete",
            |this| async move { this.delete_detached(req).await },
        )
        .await
    }

    async fn delete_detached(self: Arc<Self>, req: DeleteRequest) -> Result<DeleteResponse> {
        if !req.exec_id.is_empty() {
            let task = self.task(&req.id)?;
            // Not while a Start of it is under way.
            let _order = task.events.lock().await;
            let exec = task.remove_exec(&req.exec_id)?;
            let (exit_status, exited_at) = exit_fields(exec.state());
            return Ok(DeleteResponse {
                pid: exec.pid() as u32,
                exit_status,
                exited_at: exited_at.into(),
                ..Default::default()
            });
        }
        // Taken out of the table first: a concurrent Delete finds nothing.
        let task = {
            let mut tasks = self.tasks();
            let task = tasks
                .live
                .get(&req.id)
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("task {}", req.id)))?;
            task.check_delete()?;
            tasks.live.remove(&req.id);
            task
        };
        let (status, at) = match self.remove(&task).await {
            Ok(exit) => exit,
            Err(e) => {
                self.tasks().live.insert(req.id.clone(), task);
                return Err(e);
            }
        };
        let pid = task.init().pid() as u32;
        // The exit was journaled under this lock: its Deleted comes after.
        let order = task.events.lock().await;
        if let Err(e) = self
            .backend
            .journal(Record::Deleted { id: req.id.clone() })
            .await
        {
            log::error!(container = req.id.as_str(); "journal its delete: {e}");
        }
        self.publisher
            .publish(Event::Delete(TaskDelete {
                container_id: req.id.clone(),
                pid,
                exit_status: status,
                exited_at: Some(timestamp(at)).into(),
                ..Default::default()
            }))
            .await;
        drop(order);
        self.shutdown_if_deferred();
        Ok(DeleteResponse {
            pid,
            exit_status: status,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        })
    }

    /// Ends a task that is not running and removes what it leaves.
    async fn remove(&self, task: &Task) -> Result<(u32, SystemTime)> {
        if task.kill_before_remove() {
            self.backend
                .kill(
                    &task.id,
                    task.init_os(),
                    berth_sandbox::process::Sig::KILL,
                    false,
                )
                .await?;
        }
        let exit = task.init().wait().await;
        // What is left in a frozen cgroup could not be killed.
        self.thaw_if_frozen(task).await?;
        self.backend.remove(&task.id).await?;
        task.deleted.notify_one();
        Ok(exit)
    }

    pub(super) fn shutdown(&self, _req: ShutdownRequest) -> Result<()> {
        let remaining = {
            let mut tasks = self.tasks();
            let remaining = tasks.live.len() + tasks.creating.len();
            tasks.shutdown_deferred = remaining > 0;
            remaining
        };
        if remaining == 0 {
            log::info!("shutdown: no task left, exiting");
            self.shutdown.notify_one();
        } else {
            log::info!("shutdown deferred: {remaining} task(s) remain");
        }
        Ok(())
    }

    /// Ends a deferred shutdown once the last task is gone.
    pub(super) fn shutdown_if_deferred(&self) {
        let done = {
            let tasks = self.tasks();
            tasks.shutdown_deferred && tasks.live.is_empty() && tasks.creating.is_empty()
        };
        if done {
            log::info!("shutdown: the last task is deleted, exiting");
            self.shutdown.notify_one();
        }
    }
}
