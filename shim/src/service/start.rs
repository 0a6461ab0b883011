//! Start of a task's init or of an exec process, and Exec, which adds the
//! exec process its Start runs.

use std::sync::Arc;

use berth_proto::api::{ExecProcessRequest, StartRequest, StartResponse};
use berth_proto::events::task::{TaskExecAdded, TaskExecStarted, TaskStart};

use super::Inner;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::events::{Event, Publisher};
use crate::io::Stdio;
use crate::task::{Launched, Process, Task};

impl<B: Backend, P: Publisher> Inner<B, P> {
    pub(super) async fn start(self: &Arc<Self>, req: StartRequest) -> Result<StartResponse> {
        // Once launched, a process must be recorded as started: a Start
        // whose caller gave up would leave an exec Created, and a retry
        // would run it twice.
        self.detached(
            "start",
            |this| async move { this.start_detached(req).await },
        )
        .await
    }

    async fn start_detached(self: Arc<Self>, req: StartRequest) -> Result<StartResponse> {
        let task = self.task(&req.id)?;
        let process = task.process(&req.exec_id)?;
        let _order = task.events.lock().await;
        task.check_start(&process)?;
        if process.is_init() {
            self.backend.start(&task.id).await?;
        } else {
            self.launch_exec(&task, &process).await?;
        }
        process.start()?;
        let pid = process.pid() as u32;
        let event = if process.is_init() {
            Event::Start(TaskStart {
                container_id: task.id.clone(),
                pid,
                ..Default::default()
            })
        } else {
            Event::ExecStarted(TaskExecStarted {
                container_id: task.id.clone(),
                exec_id: process.exec_id.clone(),
                pid,
                ..Default::default()
            })
        };
        self.publisher.publish(event).await;
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    /// Runs exec `process` of `task` and watches for its exit.
    async fn launch_exec(self: &Arc<Self>, task: &Arc<Task>, process: &Arc<Process>) -> Result<()> {
        // Subscribed before the process exists: its exit cannot be missed.
        let mut exits = self.reaper.subscribe();
        let spawned = self
            .backend
            .exec(
                &task.id,
                &process.exec_id,
                process.spec.clone(),
                process.stdio.clone(),
            )
            .await?;
        process.set_launched(Launched {
            os: exits.track(spawned.process),
            io: spawned.io,
        });
        // Its TaskExit waits for the task's event lock, which Start holds
        // until TaskExecStarted is queued.
        self.watch_exit(Arc::clone(task), Arc::clone(process), exits);
        Ok(())
    }

    /// Exec: adds a process to a running task; Start runs it.
    pub(super) async fn exec(&self, req: ExecProcessRequest) -> Result<()> {
        berth_sandbox::spec::check_id("exec_id", &req.exec_id)?;
        let task = self.task(&req.id)?;
        let spec = req
            .spec
            .as_ref()
            .map(|any| any.value.clone())
            .ok_or_else(|| Error::InvalidArgument("spec: an exec needs a process".into()))?;
        let _order = task.events.lock().await;
        let stdio = Stdio {
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            terminal: req.terminal,
        };
        task.add_exec(&req.exec_id, stdio, spec)?;
        self.publisher
            .publish(Event::ExecAdded(TaskExecAdded {
                container_id: req.id,
                exec_id: req.exec_id,
                ..Default::default()
            }))
            .await;
        Ok(())
    }
}
