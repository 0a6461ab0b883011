//! Pause and Resume: a task's cgroup frozen or thawed, or for the pod's
//! sandbox every running task's, and each change announced.

use std::sync::Arc;

use berth_proto::events::task::{TaskPaused, TaskResumed};
use berth_sandbox::cgroup::freezer::{self, Freezer, FreezerState};

use super::Inner;
use crate::backend::{blocking, Backend};
use crate::error::Result;
use crate::events::{Event, Publisher};
use crate::task::Task;

impl<B: Backend, P: Publisher> Inner<B, P> {
    /// [`Inner::set_frozen`] on a task of its own: a caller that gives up
    /// must not leave cgroups frozen with no TaskPaused said.
    pub(super) async fn set_frozen_detached(
        self: &Arc<Self>,
        id: String,
        freeze: bool,
    ) -> Result<()> {
        self.detached("pause or resume", move |this| async move {
            this.set_frozen(&id, freeze).await
        })
        .await
    }

    /// Pause (`freeze`) or Resume: freezes or thaws the task's cgroup, or
    /// every running task's for the sandbox, all or none, and announces
    /// each task whose state changed.
    pub(super) async fn set_frozen(&self, id: &str, freeze: bool) -> Result<()> {
        let task = self.task(id)?;
        if task.freezer.is_none() {
            // Refused at once, without waiting for the pod's tasks.
            return task.check_freeze(freeze);
        }
        let targets = self.freeze_targets(&task);
        let mut order = Vec::with_capacity(targets.len());
        for t in &targets {
            order.push(t.events.lock().await);
        }
        task.check_freeze(freeze)?;
        let changing: Vec<&Arc<Task>> = targets.iter().filter(|t| t.changes_with(freeze)).collect();
        let mut failed = None;
        let changed: Vec<&Arc<Task>> = if freeze {
            let freezers: Vec<Freezer> =
                changing.iter().filter_map(|t| t.freezer.clone()).collect();
            blocking(move || Ok(freezer::freeze_all(&freezers, freezer::TIMEOUT)?)).await?;
            changing
        } else {
            // Each on its own: one that will not thaw keeps no other frozen.
            let mut thawed = Vec::new();
            for t in changing {
                let Some(freezer) = t.freezer.clone() else {
                    continue;
                };
                match blocking(move || Ok(freezer.thaw(freezer::TIMEOUT)?)).await {
                    Ok(()) => thawed.push(t),
                    Err(e) => {
                        log::error!(container = t.id.as_str(); "{e}");
                        failed.get_or_insert(e);
                    }
                }
            }
            thawed
        };
        for t in changed {
            let container_id = t.id.clone();
            let event = if freeze {
                log::info!(container = container_id.as_str(); "paused");
                Event::Paused(TaskPaused {
                    container_id,
                    ..Default::default()
                })
            } else {
                log::info!(container = container_id.as_str(); "resumed");
                Event::Resumed(TaskResumed {
                    container_id,
                    ..Default::default()
                })
            };
            self.publisher.publish(event).await;
        }
        failed.map_or(Ok(()), Err)
    }

    /// The tasks Pause and Resume of `task` act on: the task itself, or for
    /// the pod's sandbox every task of the pod. Sorted by id, the order in
    /// which their event locks are taken.
    fn freeze_targets(&self, task: &Arc<Task>) -> Vec<Arc<Task>> {
        if !self.backend.is_sandbox(&task.id) {
            return vec![Arc::clone(task)];
        }
        let mut all: Vec<Arc<Task>> = self.tasks().live.values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Thaws the task's cgroup if it is frozen, so that a kill lands.
    pub(super) async fn thaw_if_frozen(&self, task: &Task) -> Result<()> {
        let Some(freezer) = task.freezer.clone() else {
            return Ok(());
        };
        if task.frozen() == FreezerState::Thawed {
            return Ok(());
        }
        blocking(move || Ok(freezer.thaw(freezer::TIMEOUT)?)).await?;
        log::info!(container = task.id.as_str(); "thawed so that it can die");
        Ok(())
    }
}
