//! OOM kills in a container's memory cgroup, as they happen: the sandbox's
//! [`OomSource`] on the shim's runtime, with no thread per container.
//!
//! Waiting ([`OomWatch::ready`]) and taking what happened
//! ([`OomWatch::take`]) are separate, so that the service takes under the
//! task's event lock: a TaskOOM is then never published after the TaskExit
//! of the process it killed.

pub use berth_sandbox::cgroup::oom::Oom;
use berth_sandbox::cgroup::oom::OomSource;
use berth_sandbox::cgroup::TaskCgroup;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// OOM notification for one memory cgroup.
#[derive(Debug)]
pub struct OomWatch {
    source: AsyncFd<OomSource>,
}

impl OomWatch {
    /// Watches the memory cgroup of a task. `None` where its host has no
    /// memory controller to watch.
    pub fn for_cgroup(cgroup: &TaskCgroup) -> std::io::Result<Option<OomWatch>> {
        OomSource::open(cgroup)?.map(OomWatch::new).transpose()
    }

    /// Watches `source` on the runtime.
    pub fn new(source: OomSource) -> std::io::Result<OomWatch> {
        Ok(OomWatch {
            source: crate::sys::register(source, Interest::READABLE)?,
        })
    }

    /// Waits until something may have happened: then [`OomWatch::take`]
    /// says what. False if the watch itself failed.
    pub async fn ready(&self) -> bool {
        loop {
            let Ok(mut ready) = self.source.readable().await else {
                return false;
            };
            if self.source.get_ref().pending() {
                // Left ready: take() reads it.
                return true;
            }
            ready.clear_ready();
        }
    }

    /// What happened since the last take, without waiting.
    pub fn take(&self) -> Oom {
        self.source.get_ref().take()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::os::fd::{AsFd, OwnedFd};
    use std::path::Path;

    use super::*;

    /// A v1 watch on a memory cgroup of plain files in `dir`, and the
    /// eventfd the test signals (through [`signal`]) as the kernel would.
    /// Removing `dir/cgroup.event_control` stands for the cgroup's removal.
    pub fn v1(dir: &Path) -> (OomWatch, OwnedFd) {
        std::fs::write(dir.join("memory.oom_control"), "oom_kill 0\n").unwrap();
        std::fs::write(dir.join("cgroup.event_control"), "").unwrap();
        let source = OomSource::v1(dir).unwrap();
        let kernel = source.as_fd().try_clone_to_owned().unwrap();
        (OomWatch::new(source).unwrap(), kernel)
    }

    /// What the kernel does on an OOM kill, and on the cgroup's removal.
    pub fn signal(kernel: &OwnedFd) {
        nix::unistd::write(kernel, &1u64.to_ne_bytes()).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{signal, v1};
    use super::*;
    use std::time::Duration;

    async fn ready_soon(watch: &OomWatch) -> bool {
        tokio::time::timeout(Duration::from_secs(5), watch.ready())
            .await
            .expect("the watch wakes up")
    }

    #[tokio::test]
    async fn a_kill_wakes_the_watch_and_is_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let (watch, kernel) = v1(dir.path());
        assert_eq!(watch.take(), Oom::Quiet);

        signal(&kernel);
        assert!(ready_soon(&watch).await);
        assert_eq!(watch.take(), Oom::Killed);
        assert_eq!(watch.take(), Oom::Quiet);

        std::fs::remove_file(dir.path().join("cgroup.event_control")).unwrap();
        signal(&kernel);
        assert!(ready_soon(&watch).await);
        assert_eq!(watch.take(), Oom::Gone);
    }

    #[tokio::test]
    async fn v2_kills_wake_the_watch() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        std::fs::write(&events, "oom 0\noom_kill 0\n").unwrap();
        let watch = OomWatch::new(OomSource::v2(&events).unwrap()).unwrap();
        std::fs::write(&events, "oom 1\noom_kill 1\n").unwrap();
        assert!(ready_soon(&watch).await);
        assert_eq!(watch.take(), Oom::Killed);
    }
}
