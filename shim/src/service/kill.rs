//! Kill: a signal to a task's init, to every process of the task, or to an
//! exec process.

use berth_proto::api::KillRequest;
use berth_sandbox::cgroup::freezer::{self, FreezerState};
use berth_sandbox::process::Sig;

use super::Inner;
use crate::backend::{blocking, Backend};
use crate::error::{Error, Result};
use crate::events::Publisher;

impl<B: Backend, P: Publisher> Inner<B, P> {
    pub(super) async fn kill(&self, req: KillRequest) -> Result<()> {
        let task = self.task(&req.id)?;
        let process = task.process(&req.exec_id)?;
        let target = task.signal_target(&process)?;
        let signal = Sig::new(req.signal).ok_or_else(|| {
            Error::InvalidArgument(format!("signal {} is not a valid signal", req.signal))
        })?;
        // `all` is every process of the task: it means nothing for an exec.
        let all = req.all && process.is_init();
        let paused = task.frozen() != FreezerState::Thawed;
        if !self.backend.kill(&task.id, target, signal, all).await? {
            return Err(process.not_running());
        }
        if !process.is_init() {
            return Ok(());
        }
        log::info!(
            container = req.id.as_str();
            "sent signal {} to pid {}",
            req.signal,
            target.pid
        );
        if signal == Sig::KILL {
            // A frozen process dies only once thawed.
            self.thaw_if_frozen(&task).await?;
        } else if paused && all && task.frozen() == FreezerState::Thawed {
            // libcontainer freezes, signals and thaws for `all`: a paused
            // task stays paused, its signals wait for Resume.
            if let Some(freezer) = task.freezer.clone() {
                blocking(move || Ok(freezer.freeze(freezer::TIMEOUT)?)).await?;
            }
        }
        Ok(())
    }
}
