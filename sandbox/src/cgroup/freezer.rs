//! Freezing and thawing a cgroup: the v1 freezer controller's
//! `freezer.state`, or v2's `cgroup.freeze` with `cgroup.events` telling
//! when the kernel is done.
//!
//! A freeze either completes or is undone: if the cgroup is not frozen by
//! the deadline it is thawed again and the caller gets an error, so nothing
//! is left half frozen.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::fs::hierarchies;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::error::{Error, Result};

/// Where a cgroup's freezer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freezer {
    /// The cgroup's directory in the v1 freezer hierarchy.
    V1(PathBuf),
    /// The cgroup's directory in the unified (v2) hierarchy.
    V2(PathBuf),
}

/// What a freezer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerState {
    Thawed,
    /// Asked to freeze; some task is not frozen yet.
    Freezing,
    Frozen,
}

/// How long a freeze may take before it is undone, and a thaw before it
/// fails, unless a caller knows better.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The longest wait between two looks at a v1 freezer, or between two
/// reads of `cgroup.events` should an inotify event go missing.
const MAX_NAP: Duration = Duration::from_millis(10);

impl Freezer {
    /// The freezer of the cgroup at `path` (as a spec's `cgroupsPath` or a
    /// pod record names it) on this host: v2 on a unified host, else the
    /// v1 freezer controller.
    pub fn of_path(path: &str) -> Freezer {
        let relative = path.trim_start_matches('/');
        if hierarchies::is_cgroup2_unified_mode() {
            Freezer::V2(Path::new("/sys/fs/cgroup").join(relative))
        } else {
            Freezer::V1(Path::new("/sys/fs/cgroup/freezer").join(relative))
        }
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        match self {
            Freezer::V1(dir) | Freezer::V2(dir) => dir,
        }
    }

    /// Whether the cgroup exists.
    pub fn exists(&self) -> bool {
        self.dir().is_dir()
    }

    pub fn state(&self) -> Result<FreezerState> {
        match self {
            Freezer::V1(dir) => {
                let text = read(&dir.join("freezer.state"))?;
                match text.trim() {
                    "THAWED" => Ok(FreezerState::Thawed),
                    "FREEZING" => Ok(FreezerState::Freezing),
                    "FROZEN" => Ok(FreezerState::Frozen),
                    other => Err(Error::Sys {
                        op: format!("read {}", dir.join("freezer.state").display()),
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("unknown freezer state {other:?}"),
                        ),
                    }),
                }
            }
            Freezer::V2(dir) => {
                // Frozen by an ancestor counts as frozen, as the kernel says.
                if events_frozen(dir)? {
                    return Ok(FreezerState::Frozen);
                }
                Ok(match read(&dir.join("cgroup.freeze"))?.trim() {
                    "1" => FreezerState::Freezing,
                    _ => FreezerState::Thawed,
                })
            }
        }
    }

    /// Freezes every task of the cgroup and waits until the kernel reports
    /// it frozen. Past `timeout` the cgroup is thawed again and the freeze
    /// fails.
    pub fn freeze(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        if self.settle(FreezerState::Frozen, deadline)? {
            return Ok(());
        }
        let rolled_back = self.thaw(timeout);
        Err(Error::FreezeTimeout {
            path: self.dir().to_owned(),
            timeout,
            thawed: rolled_back.is_ok(),
        })
    }

    /// Thaws the cgroup and waits until the kernel reports it thawed.
    pub fn thaw(&self, timeout: Duration) -> Result<()> {
        if self.settle(FreezerState::Thawed, Instant::now() + timeout)? {
            return Ok(());
        }
        Err(Error::Sys {
            op: format!("thaw {}", self.dir().display()),
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("not thawed within {timeout:?}"),
            ),
        })
    }

    /// Asks for `target` and waits for it until `deadline`. False if it was
    /// not reached.
    fn settle(&self, target: FreezerState, deadline: Instant) -> Result<bool> {
        match self {
            Freezer::V1(dir) => {
                let knob = dir.join("freezer.state");
                let word = if target == FreezerState::Frozen {
                    "FROZEN"
                } else {
                    "THAWED"
                };
                let mut nap = Duration::from_micros(100);
                loop {
                    // Written again each time: the kernel only tries to
                    // freeze tasks it failed to freeze before when asked
                    // anew.
                    write(&knob, word)?;
                    if self.state()? == target {
                        return Ok(true);
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    std::thread::sleep(nap.min(left));
                    nap = (nap * 2).min(MAX_NAP);
                }
            }
            Freezer::V2(dir) => {
                let events = dir.join("cgroup.events");
                // Watched before the request, so no change is missed.
                let watch = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
                    .map_err(|e| Error::sys("inotify_init")(e.into()))?;
                watch
                    .add_watch(&events, AddWatchFlags::IN_MODIFY)
                    .map_err(|e| Error::io("watch", &events)(e.into()))?;
                let frozen = target == FreezerState::Frozen;
                write(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
                loop {
                    if events_frozen(dir)? == frozen {
                        return Ok(true);
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    let wait =
                        PollTimeout::try_from(left.min(MAX_NAP)).unwrap_or(PollTimeout::ZERO);
                    let mut fds = [PollFd::new(watch.as_fd(), PollFlags::POLLIN)];
                    match poll(&mut fds, wait) {
                        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                        Err(e) => return Err(Error::sys("poll inotify")(e.into())),
                    }
                    // Emptied so the next poll waits for a new change.
                    while watch.read_events().is_ok_and(|e| !e.is_empty()) {}
                }
            }
        }
    }
}

/// Freezes each cgroup in turn. If one fails, those already frozen are
/// thawed again: all of them end frozen, or none.
pub fn freeze_all(freezers: &[Freezer], timeout: Duration) -> Result<()> {
    for (i, freezer) in freezers.iter().enumerate() {
        if let Err(e) = freezer.freeze(timeout) {
            for done in &freezers[..i] {
                if let Err(undo) = done.thaw(timeout) {
                    log::error!(
                        "thaw {} after a failed freeze: {undo}",
                        done.dir().display()
                    );
                }
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Whether `cgroup.events` says the cgroup is frozen.
fn events_frozen(dir: &Path) -> Result<bool> {
    let text = read(&dir.join("cgroup.events"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .any(|(key, value)| key == "frozen" && value.trim() == "1"))
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(Error::io("read", path))
}

/// Writes a cgroup knob; never creates it.
fn write(path: &Path, value: &str) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(Error::io("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 cgroup directory made of plain files: requests are recorded,
    /// and `cgroup.events` changes only when the test says so.
    fn fake_v2(frozen: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.freeze"), "0\n").unwrap();
        fs::write(
            dir.path().join("cgroup.events"),
            format!("populated 1\nfrozen {}\n", u8::from(frozen)),
        )
        .unwrap();
        dir
    }

    #[test]
    fn a_freeze_that_does_not_complete_is_rolled_back() {
        let dir = fake_v2(false);
        let freezer = Freezer::V2(dir.path().to_owned());
        let started = Instant::now();
        let err = freezer.freeze(Duration::from_millis(100)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(
            matches!(err, Error::FreezeTimeout { thawed: true, .. }),
            "{err:?}"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("cgroup.freeze"))
                .unwrap()
                .trim(),
            "0",
            "asked to thaw again"
        );
        assert_eq!(freezer.state().unwrap(), FreezerState::Thawed);
    }

    #[test]
    fn v2_state_reads_the_request_and_the_kernel_report() {
        let dir = fake_v2(false);
        let freezer = Freezer::V2(dir.path().to_owned());
        assert_eq!(freezer.state().unwrap(), FreezerState::Thawed);
        fs::write(dir.path().join("cgroup.freeze"), "1\n").unwrap();
        assert_eq!(freezer.state().unwrap(), FreezerState::Freezing);
        fs::write(dir.path().join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        assert_eq!(freezer.state().unwrap(), FreezerState::Frozen);
    }

    #[test]
    fn a_freeze_completing_while_waited_for_is_seen() {
        let dir = fake_v2(false);
        let freezer = Freezer::V2(dir.path().to_owned());
        let events = dir.path().join("cgroup.events");
        let kernel = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            fs::write(events, "populated 1\nfrozen 1\n").unwrap();
        });
        freezer.freeze(Duration::from_secs(5)).unwrap();
        kernel.join().unwrap();
        assert_eq!(freezer.state().unwrap(), FreezerState::Frozen);
    }

    #[test]
    fn freeze_all_thaws_what_it_froze_when_one_fails() {
        let done = fake_v2(true);
        let stuck = fake_v2(false);
        let freezers = [
            Freezer::V2(done.path().to_owned()),
            Freezer::V2(stuck.path().to_owned()),
        ];
        assert!(freeze_all(&freezers, Duration::from_millis(50)).is_err());
        for dir in [&done, &stuck] {
            assert_eq!(
                fs::read_to_string(dir.path().join("cgroup.freeze"))
                    .unwrap()
                    .trim(),
                "0"
            );
        }
    }

    #[test]
    fn a_missing_cgroup_is_not_found() {
        let freezer = Freezer::V1(PathBuf::from("/nonexistent/berth-test"));
        assert!(!freezer.exists());
        let err = freezer.state().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::NotFound);
    }
}
