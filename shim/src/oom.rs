//! OOM kills in a container's memory cgroup, as they happen.
//!
//! cgroup v1: an eventfd registered on `memory.oom_control` through
//! `cgroup.event_control`, read on the shim's runtime (no thread per
//! container). The kernel also signals the eventfd when the cgroup is
//! removed; that ends the watch.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::io::unix::AsyncFd;

/// A registered OOM notification for one memory cgroup.
pub struct OomWatch {
    eventfd: AsyncFd<OwnedFd>,
    /// `cgroup.event_control`: gone once the cgroup is removed.
    control: PathBuf,
}

impl std::fmt::Debug for OomWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OomWatch")
            .field("control", &self.control)
            .finish()
    }
}

/// The v1 memory cgroup directory of `pid`, from `/proc/<pid>/cgroup`.
fn memory_cgroup_v1(cgroup_file: &str) -> Option<PathBuf> {
    cgroup_file.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')))
    })
}

impl OomWatch {
    /// Watches the memory cgroup process `pid` is in. `None` where there is
    /// no v1 memory controller to watch.
    pub fn for_pid(pid: i32) -> io::Result<Option<OomWatch>> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        let Some(dir) = memory_cgroup_v1(&text) else {
            return Ok(None);
        };
        let oom_control = fs::File::open(dir.join("memory.oom_control"))?;
        let eventfd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        let control = dir.join("cgroup.event_control");
        fs::write(
            &control,
            format!(
                "{} {}",
                eventfd.as_fd().as_raw_fd(),
                oom_control.as_raw_fd()
            ),
        )?;
        let eventfd = crate::io::register(OwnedFd::from(eventfd))?;
        Ok(Some(OomWatch { eventfd, control }))
    }

    /// Waits for the next OOM kill: true, or false once the cgroup is gone.
    pub async fn next(&mut self) -> bool {
        loop {
            let Ok(mut ready) = self.eventfd.readable().await else {
                return false;
            };
            let mut buf = [0u8; 8];
            match nix::unistd::read(ready.get_inner(), &mut buf) {
                Ok(_) => return self.control.exists(),
                Err(nix::errno::Errno::EAGAIN) => ready.clear_ready(),
                Err(_) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_memory_hierarchy_among_others() {
        let text = "12:pids:/k8s.io/abc\n9:memory:/k8s.io/abc\n0::/user.slice\n";
        assert_eq!(
            memory_cgroup_v1(text),
            Some(PathBuf::from("/sys/fs/cgroup/memory/k8s.io/abc"))
        );
        assert_eq!(memory_cgroup_v1("0::/only/v2\n"), None);
        assert_eq!(
            memory_cgroup_v1("4:cpu,memory:/x\n"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/x"))
        );
    }
}
