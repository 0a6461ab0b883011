//! What containerd reads of a task (State, Pids, Stats, Wait, Connect) and
//! the small changes it makes (Update, CloseIO, ResizePty).

use berth_proto::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, PidsRequest, PidsResponse, ResizePtyRequest,
    StateRequest, StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest, WaitRequest,
    WaitResponse,
};
use berth_proto::types::task::ProcessInfo;
use berth_sandbox::cgroup::{resources, stats, TaskCgroup};

use super::{exit_fields, Inner};
use crate::backend::{blocking, Backend};
use crate::error::{Error, Result};
use crate::events::{timestamp, Publisher};

impl<B: Backend, P: Publisher> Inner<B, P> {
    pub(super) fn state(&self, req: StateRequest) -> Result<StateResponse> {
        let task = self.task(&req.id)?;
        let process = task.process(&req.exec_id)?;
        let (exit_status, exited_at) = exit_fields(process.state());
        Ok(StateResponse {
            id: process.id.clone(),
            bundle: task.bundle.clone(),
            pid: process.pid() as u32,
            status: task.status_of(&process).into(),
            stdin: process.stdio.stdin.clone(),
            stdout: process.stdio.stdout.clone(),
            stderr: process.stdio.stderr.clone(),
            terminal: process.stdio.terminal,
            exit_status,
            exited_at: exited_at.into(),
            exec_id: process.exec_id.clone(),
            ..Default::default()
        })
    }

    pub(super) fn pids(&self, req: PidsRequest) -> Result<PidsResponse> {
        let task = self.task(&req.id)?;
        // The init is reported until Delete, also after it exited: containerd
        // takes a task without pids for a leaked shim when it restarts, and
        // would lose the exit status.
        let mut pids = vec![task.init().pid() as u32];
        // Then every process in its cgroup, as runc's `ps` lists them, and
        // its running execs (in the cgroup too, unless it is gone).
        let in_cgroup = task
            .cgroup
            .as_ref()
            .map(TaskCgroup::pids)
            .unwrap_or_default();
        for pid in in_cgroup.into_iter().chain(task.running_exec_pids()) {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        let processes = pids
            .into_iter()
            .map(|pid| ProcessInfo {
                pid,
                ..Default::default()
            })
            .collect();
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    pub(super) async fn wait(&self, req: WaitRequest) -> Result<WaitResponse> {
        let process = self.task(&req.id)?.process(&req.exec_id)?;
        let (status, at) = process.wait().await;
        Ok(WaitResponse {
            exit_status: status,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        })
    }

    /// The task's cgroup: there from Create until Delete removes it.
    fn cgroup(&self, id: &str) -> Result<TaskCgroup> {
        self.task(id)?.cgroup.clone().ok_or_else(|| {
            Error::FailedPrecondition(format!("task {id} has no cgroup to read or change"))
        })
    }

    pub(super) async fn stats(&self, req: StatsRequest) -> Result<StatsResponse> {
        let cgroup = self.cgroup(&req.id)?;
        let stats = blocking(move || Ok(stats::read(&cgroup)?)).await?;
        Ok(StatsResponse {
            stats: Some(crate::metrics::pack_stats(&stats)?).into(),
            ..Default::default()
        })
    }

    pub(super) async fn update(&self, req: UpdateTaskRequest) -> Result<()> {
        let cgroup = self.cgroup(&req.id)?;
        let resources = req
            .resources
            .as_ref()
            .map(|any| resources::parse(&any.value))
            .ok_or_else(|| Error::InvalidArgument("resources: missing".into()))??;
        // The unit first, as runc's systemd driver orders it: systemd
        // writes its properties to the cgroup, then the files get all of it.
        if let Some(unified) = resources.unified() {
            resources::check_unified(unified, "resources.unified")?;
        }
        self.backend.update_unit(&req.id, &resources).await?;
        blocking(move || Ok(resources::apply(&cgroup, &resources)?)).await?;
        log::info!(container = req.id.as_str(); "resources updated");
        Ok(())
    }

    pub(super) fn connect(&self, req: ConnectRequest) -> Result<ConnectResponse> {
        let task_pid = self
            .tasks()
            .live
            .get(&req.id)
            .map_or(0, |t| t.init().pid() as u32);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            ..Default::default()
        })
    }

    pub(super) fn close_io(&self, req: CloseIORequest) -> Result<()> {
        let task = self.task(&req.id)?;
        if !req.stdin {
            return Ok(());
        }
        // An exec not started has no stdin to close yet.
        if let Some(launched) = task.process(&req.exec_id)?.launched() {
            launched.io.close_stdin();
        }
        Ok(())
    }

    pub(super) fn resize_pty(&self, req: ResizePtyRequest) -> Result<()> {
        let process = self.task(&req.id)?.process(&req.exec_id)?;
        process.io()?.resize(req.width, req.height)
    }
}
