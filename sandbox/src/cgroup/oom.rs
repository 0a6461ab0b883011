//! Where OOM kills in a task's memory cgroup are told: a descriptor that
//! becomes readable when one may have happened, and what it means.
//!
//! - cgroup v1: an eventfd registered on `memory.oom_control` through
//!   `cgroup.event_control`. The kernel signals it before the OOM killer
//!   picks its victim, and once more when the cgroup is removed.
//! - cgroup v2: inotify on `memory.events`, whose `oom_kill` count is
//!   compared with the last one seen.
//!
//! The source never blocks: the shim waits for its descriptor on its own
//! runtime and then calls [`OomSource::take`]. Waiting and taking are
//! separate so that the shim takes under the task's event lock, and a
//! TaskOOM is never published after the TaskExit of the process it killed.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::cgroup::TaskCgroup;

/// What [`OomSource::take`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oom {
    /// Nothing since the last take.
    Quiet,
    /// At least one OOM kill since the last take.
    Killed,
    /// The cgroup is gone: nothing more will come.
    Gone,
}

/// OOM notification for one memory cgroup. Its descriptor is non-blocking.
pub struct OomSource {
    /// Readable when something may have happened.
    fd: OwnedFd,
    kind: Kind,
}

enum Kind {
    /// `cgroup.event_control`: gone once the cgroup is removed.
    V1 { control: PathBuf },
    /// `memory.events`, and the `oom_kill` count last seen in it.
    V2 { events: PathBuf, seen: Mutex<u64> },
}

impl std::fmt::Debug for OomSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = match &self.kind {
            Kind::V1 { control } => control,
            Kind::V2 { events, .. } => events,
        };
        f.debug_struct("OomSource").field("file", path).finish()
    }
}

impl AsFd for OomSource {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for OomSource {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
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

impl OomSource {
    /// Watches the memory cgroup of a task. `None` where its host has no
    /// memory controller to watch.
    pub fn open(cgroup: &TaskCgroup) -> io::Result<Option<OomSource>> {
        if let Some(dir) = cgroup.v1_dir("memory") {
            return OomSource::v1(&dir).map(Some);
        }
        match cgroup.unified() {
            Some(dir) if dir.join("memory.events").exists() => {
                OomSource::v2(&dir.join("memory.events")).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Registers an eventfd on the v1 memory cgroup in `dir`.
    pub fn v1(dir: &Path) -> io::Result<OomSource> {
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
        Ok(OomSource {
            fd: OwnedFd::from(eventfd),
            kind: Kind::V1 { control },
        })
    }

    /// Watches a v2 `memory.events` file.
    pub fn v2(events: &Path) -> io::Result<OomSource> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
        inotify.add_watch(events, AddWatchFlags::IN_MODIFY)?;
        // Kills before the watch are not this task's to report.
        let seen = oom_kills(&fs::read_to_string(events)?);
        Ok(OomSource {
            fd: OwnedFd::from(inotify),
            kind: Kind::V2 {
                events: events.to_owned(),
                seen: Mutex::new(seen),
            },
        })
    }

    /// Whether the descriptor can be read now, without reading it: then
    /// [`OomSource::take`] has something to look at.
    pub fn pending(&self) -> bool {
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// What happened since the last take, without waiting.
    pub fn take(&self) -> Oom {
        let signalled = match drain(&self.fd) {
            Ok(signalled) => signalled,
            Err(e) => {
                log::warn!("OOM watch on {self:?}: {e}");
                return Oom::Gone;
            }
        };
        match &self.kind {
            Kind::V1 { control } => match (signalled, control.exists()) {
                (_, false) => Oom::Gone,
                (true, true) => Oom::Killed,
                (false, true) => Oom::Quiet,
            },
            Kind::V2 { events, seen } => {
                let Ok(text) = fs::read_to_string(events) else {
                    return Oom::Gone;
                };
                let kills = oom_kills(&text);
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
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
mod tests {
    use super::*;

    const EVENTS: &str = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n";

    fn events_with(kills: u64) -> String {
        format!("low 0\nhigh 0\nmax 9\noom {kills}\noom_kill {kills}\noom_group_kill 0\n")
    }

    /// Waits up to 5 s for the source to have something.
    fn pending_soon(source: &OomSource) -> bool {
        let mut fds = [PollFd::new(source.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::from(5000u16)), Ok(n) if n > 0)
    }

    #[test]
    fn reads_the_oom_kill_count() {
        assert_eq!(oom_kills(EVENTS), 1);
        assert_eq!(oom_kills(&events_with(12)), 12);
        assert_eq!(oom_kills("low 0\n"), 0);
    }

    #[test]
    fn v2_reports_new_kills_once_and_the_cgroup_going() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        fs::write(&events, EVENTS).unwrap();
        let source = OomSource::v2(&events).unwrap();
        assert!(!source.pending());
        assert_eq!(source.take(), Oom::Quiet, "a kill before the watch");

        fs::write(&events, events_with(2)).unwrap();
        assert!(pending_soon(&source));
        assert_eq!(source.take(), Oom::Killed);
        assert_eq!(source.take(), Oom::Quiet, "one kill is reported once");

        // memory.events also changes for other reasons.
        fs::write(&events, events_with(2).replace("max 9", "max 10")).unwrap();
        assert!(pending_soon(&source));
        assert_eq!(source.take(), Oom::Quiet);

        fs::remove_file(&events).unwrap();
        assert!(pending_soon(&source));
        assert_eq!(source.take(), Oom::Gone);
    }

    #[test]
    fn v1_reports_a_signal_and_the_cgroup_going() {
        // A v1 memory cgroup made of plain files: the registration is
        // written, and the test signals the eventfd as the kernel would.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("memory.oom_control"), "oom_kill 0\n").unwrap();
        fs::write(dir.path().join("cgroup.event_control"), "").unwrap();
        let source = OomSource::v1(dir.path()).unwrap();
        let registered = fs::read_to_string(dir.path().join("cgroup.event_control")).unwrap();
        assert_eq!(
            registered.split(' ').next(),
            Some(source.as_raw_fd().to_string().as_str())
        );
        let kernel = source.as_fd().try_clone_to_owned().unwrap();
        let signal = || nix::unistd::write(&kernel, &1u64.to_ne_bytes()).unwrap();
        assert_eq!(source.take(), Oom::Quiet);

        signal();
        assert!(pending_soon(&source));
        assert_eq!(source.take(), Oom::Killed);
        assert_eq!(source.take(), Oom::Quiet);

        // The kernel signals the eventfd when the cgroup goes.
        fs::remove_file(dir.path().join("cgroup.event_control")).unwrap();
        signal();
        assert!(pending_soon(&source));
        assert_eq!(source.take(), Oom::Gone);
    }
}
