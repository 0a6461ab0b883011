//! Processes named by pid and start time: facts read from /proc, and
//! signals that reach only the process meant.

use std::io;

use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::state::ProcessRecord;

/// A signal number the kernel takes: 1 to SIGRTMAX, the real-time signals
/// included (nix's `Signal` has none of them, and SIGRTMIN+3 is the stop
/// signal of systemd images).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sig(i32);

impl Sig {
    pub const KILL: Sig = Sig(libc::SIGKILL);
    pub const TERM: Sig = Sig(libc::SIGTERM);

    /// `number` as a signal, if it is one.
    pub fn new(number: u32) -> Option<Sig> {
        let n = i32::try_from(number).ok()?;
        (1..=libc::SIGRTMAX()).contains(&n).then_some(Sig(n))
    }

    pub fn number(self) -> i32 {
        self.0
    }
}

impl From<Signal> for Sig {
    fn from(signal: Signal) -> Self {
        Sig(signal as i32)
    }
}

impl std::fmt::Display for Sig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match Signal::try_from(self.0) {
            Ok(s) => write!(f, "{s}"),
            Err(_) => write!(f, "signal {}", self.0),
        }
    }
}

/// The start time of `pid` in clock ticks since boot (field 22 of
/// /proc/<pid>/stat). With the pid, it names one process: a pid can be
/// reused, a (pid, start time) pair cannot.
pub fn start_time(pid: i32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))
}

/// The start time of `pid`, read through `proc`, a descriptor of a procfs
/// directory opened earlier (the helper reads it after its root changed).
pub fn start_time_at(proc: std::os::fd::BorrowedFd<'_>, pid: i32) -> io::Result<u64> {
    use std::io::Read;
    let fd = nix::fcntl::openat(
        proc,
        format!("{pid}/stat").as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let mut stat = String::new();
    std::fs::File::from(fd).read_to_string(&mut stat)?;
    parse_start_time(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses: fields resume after
    // the last ')'. Field 3 (state) is the first one after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace()
        .nth(22 - 3)
        .and_then(|f| f.parse().ok())
}

/// Whether `pid` still is the process that started at `start_time`.
pub fn is_same(pid: i32, start_time: u64) -> bool {
    self::start_time(pid).is_ok_and(|t| t == start_time)
}

pub use crate::sys::{pidfd_open, pidfd_send_signal};

/// Sends `signal` to `process` if it still is that process. Returns whether
/// it was alive. The pid is pinned by a pidfd before its start time is
/// checked, so a pid reused between the check and the signal is never hit.
pub fn signal(process: ProcessRecord, signal: impl Into<Sig>) -> Result<bool> {
    let signal = signal.into();
    let failed = || Error::sys(format!("signal {} with {signal}", process.pid));
    let pidfd = match pidfd_open(process.pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(false),
        Err(e) => return Err(failed()(e)),
    };
    if !is_same(process.pid, process.start_time) {
        return Ok(false);
    }
    match pidfd_send_signal(std::os::fd::AsFd::as_fd(&pidfd), signal.number()) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
        Err(e) => Err(failed()(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_time_signals_are_signals_and_past_them_nothing_is() {
        assert_eq!(Sig::new(9), Some(Sig::KILL));
        let rtmin_3 = Sig::new(libc::SIGRTMIN() as u32 + 3).expect("SIGRTMIN+3");
        assert_eq!(
            rtmin_3.to_string(),
            format!("signal {}", libc::SIGRTMIN() + 3)
        );
        assert_eq!(Sig::KILL.to_string(), "SIGKILL");
        for n in [0, libc::SIGRTMAX() as u32 + 1, 1000, u32::MAX] {
            assert_eq!(Sig::new(n), None, "{n}");
        }
    }

    #[test]
    fn parses_start_time_after_odd_command_names() {
        let stat = "42 (a b) c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn reads_its_own_start_time() {
        let me = std::process::id() as i32;
        let t = start_time(me).unwrap();
        assert!(is_same(me, t));
        assert!(!is_same(me, t + 1));
    }

    #[test]
    fn only_the_process_recorded_is_signalled() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let started = start_time(pid).unwrap();
        // The pid's earlier holder, say: another start time.
        let other = ProcessRecord {
            pid,
            start_time: started + 1,
        };
        assert!(!signal(other, Signal::SIGKILL).unwrap());
        assert!(child.try_wait().unwrap().is_none(), "not hit");
        let this = ProcessRecord {
            pid,
            start_time: started,
        };
        assert!(signal(this, Signal::SIGKILL).unwrap());
        assert!(child.wait().unwrap().code().is_none(), "killed by a signal");
        assert!(!signal(this, Signal::SIGKILL).unwrap(), "reaped: gone");
    }
}
