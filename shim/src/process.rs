//! A process the shim tracks, held by a pidfd.
//!
//! A pid names a process only until the process is reaped; then the kernel
//! may give it to another. A pidfd names one process for as long as it is
//! open. The shim opens one as soon as the backend hands it a process, checks
//! that it names the process the backend meant (its start time), and from
//! then on signals through it and uses it to tell the process's exit from a
//! stale exit of an earlier holder of the pid.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use berth_sandbox::process::Sig;
use berth_sandbox::state::ProcessRecord;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
#[cfg(test)]
use nix::sys::signal::Signal;

use crate::sys;

#[derive(Debug)]
enum Handle {
    /// Readable once the process has exited.
    Pidfd(OwnedFd),
    /// The process was gone before a pidfd could be opened: it has exited.
    Gone,
    /// The kernel has no pidfds: the (pid, start time) pair is all there is.
    PidOnly,
}

/// A process the shim tracks: held by a pidfd where the kernel has them.
#[derive(Debug)]
pub struct Tracked {
    pub pid: i32,
    pub start_time: u64,
    handle: Handle,
}

impl Tracked {
    /// Takes hold of the process `record` names. If it is no longer that
    /// process, it has exited.
    pub fn track(record: ProcessRecord) -> Tracked {
        let handle = match sys::pidfd_open(record.pid) {
            // Opened before the check: if the pid still names the process
            // after it, the pidfd names it too.
            Ok(fd) if berth_sandbox::process::is_same(record.pid, record.start_time) => {
                Handle::Pidfd(fd)
            }
            Ok(_) => Handle::Gone,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Handle::Gone,
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Handle::PidOnly,
            Err(e) => {
                log::warn!("pidfd of pid {}: {e}", record.pid);
                Handle::PidOnly
            }
        };
        Tracked {
            pid: record.pid,
            start_time: record.start_time,
            handle,
        }
    }

    /// Whether the process is held by a pidfd it was checked to run under.
    #[cfg(test)]
    pub fn is_held(&self) -> bool {
        matches!(self.handle, Handle::Pidfd(_))
    }

    /// Whether an exit reaped for this process's pid can be this process's.
    /// False while the process provably runs: the exit was an earlier
    /// holder's of the pid.
    pub fn may_have_exited(&self) -> bool {
        match &self.handle {
            Handle::Pidfd(fd) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
            }
            Handle::Gone | Handle::PidOnly => true,
        }
    }

    /// Whether the process has certainly exited: with a pidfd, as soon as
    /// it is a zombie; without, once it is reaped.
    pub fn has_exited(&self) -> bool {
        match &self.handle {
            Handle::Pidfd(_) | Handle::Gone => self.may_have_exited(),
            Handle::PidOnly => !berth_sandbox::process::is_same(self.pid, self.start_time),
        }
    }

    /// Sends `signal`: false if the process is gone.
    pub fn signal(&self, signal: impl Into<Sig>) -> io::Result<bool> {
        let signal = signal.into();
        let fd = match &self.handle {
            Handle::Pidfd(fd) => fd,
            Handle::Gone => return Ok(false),
            Handle::PidOnly => {
                return berth_sandbox::process::signal(self.record(), signal)
                    .map_err(|e| io::Error::other(e.to_string()))
            }
        };
        match sys::pidfd_send_signal(fd.as_fd(), signal.number()) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A process known to have exited (tests' stand-in for one).
    #[cfg(test)]
    pub fn gone(pid: i32) -> Tracked {
        Tracked {
            pid,
            start_time: 0,
            handle: Handle::Gone,
        }
    }

    pub fn record(&self) -> ProcessRecord {
        ProcessRecord {
            pid: self.pid,
            start_time: self.start_time,
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A child that sleeps for a while, and its record.
    pub fn sleeper() -> (std::process::Child, ProcessRecord) {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let record = ProcessRecord {
            pid,
            start_time: berth_sandbox::process::start_time(pid).unwrap(),
        };
        (child, record)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::sleeper;
    use super::*;

    #[test]
    fn follows_one_process_through_its_exit() {
        let (mut child, record) = sleeper();
        let process = Tracked::track(record);
        assert!(matches!(process.handle, Handle::Pidfd(_)));
        assert!(!process.may_have_exited(), "it runs");
        assert!(process.signal(Signal::SIGKILL).unwrap());
        // Exited but not reaped: the pidfd says so already.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !process.may_have_exited() {
            assert!(std::time::Instant::now() < deadline, "exit seen");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.wait().unwrap();
        assert!(!process.signal(Signal::SIGKILL).unwrap(), "reaped is gone");
    }

    #[test]
    fn a_record_of_another_process_is_taken_for_an_exit() {
        let (mut child, mut record) = sleeper();
        // Same pid, another start: a process that was, not this one.
        record.start_time += 1;
        let process = Tracked::track(record);
        assert!(matches!(process.handle, Handle::Gone));
        assert!(process.may_have_exited());
        assert!(!process.signal(Signal::SIGKILL).unwrap(), "never signalled");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the live one was spared"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
