//! A pod's lifecycle: start its berth-pause, and remove what it leaves.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::helper::{Helper, Request, Response};
use crate::pause::PauseSpec;
use crate::process;
use crate::spec::SandboxConfig;
use crate::state::{PodDir, ProcessRecord};

/// Starts the pod's berth-pause through a helper and names the process.
///
/// The pause process is left a child of the caller's subreaper once the
/// helper exits; the caller reaps it.
pub fn start_pause(
    helper: &Helper,
    dir: &PodDir,
    sandbox_id: &str,
    config: &SandboxConfig,
    pause_binary: PathBuf,
) -> Result<ProcessRecord> {
    dir.create()?;
    let spec = PauseSpec {
        sandbox_id: sandbox_id.to_owned(),
        binary: pause_binary,
        root_dir: dir.pause_root(),
        config: config.clone(),
    };
    let answer = helper
        .call(&Request::SpawnPause(spec))
        .and_then(Response::into_process);
    if answer.is_err() {
        // The helper may have created the pod's cgroup before it failed.
        if let Some(path) = &config.cgroup {
            if let Err(e) = remove_cgroup(path) {
                log::warn!("pod {sandbox_id}: remove cgroup {path} after a failed start: {e}");
            }
        }
    }
    answer
}

/// Sends `signal` to `process` if it still is that process. Returns whether
/// it was alive.
pub fn signal(process: ProcessRecord, signal: Signal) -> Result<bool> {
    if !process::is_same(process.pid, process.start_time) {
        return Ok(false);
    }
    match kill(Pid::from_raw(process.pid), signal) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::ESRCH) => Ok(false),
        Err(e) => Err(Error::Sys {
            op: format!("kill {} with {signal}", process.pid),
            source: e.into(),
        }),
    }
}

/// Removes a pod's cgroup, waiting a little for exiting tasks to leave it.
pub fn remove_cgroup(path: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match crate::cgroup::remove(path) {
            Err(e) if Instant::now() < deadline => {
                log::debug!("cgroup {path} not removable yet: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}
