//! OOM kills in a container's memory cgroup, as they happen.
//!
//! - cgroup v1: an eventfd registered on `memory.oom_control` through
//!   `cgroup.event_control`. The kernel signals it before the OOM killer
//!   picks its victim, and once more when the cgroup is removed.
//! - cgroup v2: inotify on `memory.events`, whose `oom_kill` count is
//!   compared with the last one seen.
//!
//! Both are read on the shim's runtime, with no thread per container.
//! Waiting ([`OomWatch::ready`]) and taking what happened
//! ([`OomWatch::take`]) are separate, so that the service takes under the
//! task's event lock: a TaskOOM is then never published after the TaskExit
//! of the process it killed.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;

use crate::metrics::TaskCgroup;

/// What [`OomWatch::take`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oom {
    /// Nothing since the last take.
    Quiet,
    /// At least one OOM kill since the last take.
    Killed,
    /// The cgroup is gone: nothing more will come.
    Gone,
}

/// OOM notification for one memory cgroup.
pub struct OomWatch {
    /// Readable when something may have happened.
    fd: AsyncFd<OwnedFd>,
    source: Source,
}

enum Source {
    /// `cgroup.event_control`: gone once the cgroup is removed.
    V1 { control: PathBuf },
    /// `memory.events`, and the `oom_kill` count last seen in it.
    V2 { events: PathBuf, seen: Mutex<u64> },
}

impl std::fmt::Debug for OomWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = match &self.source {
            Source::V1 { control } => control,
            Source::V2 { events, .. } => events,
        };
        f.debug_struct("OomWatch").field("file", path).finish()
    }
}

/// The `oom_kill` count of a v2 `memory.events` file.
fn oom_kills(events: &str) -> u64 {
    events
        .lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether `fd` can be read now, without reading it.
fn readable_now(fd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// Reads whatever `fd` holds now, without blocking: whether it held any.
fn drain(fd: &OwnedFd) -> io::Result<bool> {
    let mut any = false;
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return Ok(any),
            Ok(_) => any = true,
            Err(nix::errno::Errno::EAGAIN) => return Ok(any),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

impl OomWatch {
    /// Watches the memory cgroup of a task. `None` where its host has no
    /// memory controller to watch.
    pub fn for_cgroup(cgroup: &TaskCgroup) -> io::Result<Option<OomWatch>> {
        if let Some(dir) = cgroup.memory_v1() {
            return OomWatch::v1(&dir).map(Some);
        }
        match cgroup.unified() {
            Some(dir) if dir.join("memory.events").exists() => {
                OomWatch::v2(&dir.join("memory.events")).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn v1(dir: &Path) -> io::Result<OomWatch> {
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
        Ok(OomWatch {
            fd: crate::io::register(OwnedFd::from(eventfd))?,
            source: Source::V1 { control },
        })
    }

    fn v2(events: &Path) -> io::Result<OomWatch> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
        inotify.add_watch(events, AddWatchFlags::IN_MODIFY)?;
        // Kills before the watch are not this task's to report.
        let seen = oom_kills(&fs::read_to_string(events)?);
        Ok(OomWatch {
            fd: crate::io::register(OwnedFd::from(inotify))?,
            source: Source::V2 {
                events: events.to_owned(),
                seen: Mutex::new(seen),
            },
        })
    }

    /// Waits until something may have happened: then [`OomWatch::take`]
    /// says what. False if the watch itself failed.
    pub async fn ready(&self) -> bool {
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                return false;
            };
            if readable_now(self.fd.get_ref()) {
                // Left ready: take() reads it.
                return true;
            }
            ready.clear_ready();
        }
    }

    /// What happened since the last take, without waiting.
    pub fn take(&self) -> Oom {
        let signalled = match drain(self.fd.get_ref()) {
            Ok(signalled) => signalled,
            Err(e) => {
                log::warn!("OOM watch on {self:?}: {e}");
                return Oom::Gone;
            }
        };
        match &self.source {
            Source::V1 { control } => match (signalled, control.exists()) {
                (_, false) => Oom::Gone,
                (true, true) => Oom::Killed,
                (false, true) => Oom::Quiet,
            },
            Source::V2 { events, seen } => {
                let Ok(text) = fs::read_to_string(events) else {
                    return Oom::Gone;
                };
                let kills = oom_kills(&text);
                let mut seen = seen.lock().expect("oom count lock");
                let more = kills > *seen;
                *seen = kills;
                if more {
                    Oom::Killed
                } else {
                    Oom::Quiet
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A v1 watch whose eventfd the test signals through the returned fd,
    /// as the kernel would. `control` stands for `cgroup.event_control`.
    pub fn v1(control: &Path) -> (OomWatch, OwnedFd) {
        fs::write(control, "").unwrap();
        let eventfd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).unwrap();
        let kernel = eventfd.as_fd().try_clone_to_owned().unwrap();
        let watch = OomWatch {
            fd: crate::io::register(OwnedFd::from(eventfd)).unwrap(),
            source: Source::V1 {
                control: control.to_owned(),
            },
        };
        (watch, kernel)
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

    const EVENTS: &str = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n";

    fn events_with(kills: u64) -> String {
        format!("low 0\nhigh 0\nmax 9\noom {kills}\noom_kill {kills}\noom_group_kill 0\n")
    }

    async fn ready_soon(watch: &OomWatch) -> bool {
        tokio::time::timeout(Duration::from_secs(5), watch.ready())
            .await
            .expect("the watch wakes up")
    }

    #[test]
    fn reads_the_oom_kill_count() {
        assert_eq!(oom_kills(EVENTS), 1);
        assert_eq!(oom_kills(&events_with(12)), 12);
        assert_eq!(oom_kills("low 0\n"), 0);
    }

    #[tokio::test]
    async fn v2_reports_new_kills_once_and_the_cgroup_going() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        fs::write(&events, EVENTS).unwrap();
        let watch = OomWatch::v2(&events).unwrap();
        assert_eq!(watch.take(), Oom::Quiet, "a kill before the watch");

        fs::write(&events, events_with(2)).unwrap();
        assert!(ready_soon(&watch).await);
        assert_eq!(watch.take(), Oom::Killed);
        assert_eq!(watch.take(), Oom::Quiet, "one kill is reported once");

        // memory.events also changes for other reasons.
        fs::write(&events, events_with(2).replace("max 9", "max 10")).unwrap();
        assert!(ready_soon(&watch).await);
        assert_eq!(watch.take(), Oom::Quiet);

        fs::remove_file(&events).unwrap();
        assert!(ready_soon(&watch).await);
        assert_eq!(watch.take(), Oom::Gone);
    }

    #[tokio::test]
    async fn v1_reports_a_signal_and_the_cgroup_going() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("cgroup.event_control");
        let (watch, kernel) = v1(&control);
        assert_eq!(watch.take(), Oom::Quiet);

        signal(&kernel);
        assert!(ready_soon(&watch).await);
        assert_eq!(watch.take(), Oom::Killed);
        assert_eq!(watch.take(), Oom::Quiet);

        // The kernel signals the eventfd when the cgroup goes.
        fs::remove_file(&control).unwrap();
        signal(&kernel);
        assert!(ready_soon(&watch).await);
        assert_eq!(watch.take(), Oom::Gone);
    }
}
