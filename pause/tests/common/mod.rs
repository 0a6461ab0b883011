//! Helpers for the root tests: which binary to test, processes that are
//! killed when a test ends however it ends, and reading /proc.

// Each test file uses its own subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long pause may take to exit after SIGTERM or SIGINT.
pub const PROMPT: Duration = Duration::from_millis(500);

/// How long setting up a test may take before the test gives up.
pub const SETUP: Duration = Duration::from_secs(10);

/// The binary under test: `$BERTH_PAUSE` (CI points it at the static musl
/// build), else the one cargo built for this test run.
pub fn pause_bin() -> PathBuf {
    match std::env::var_os("BERTH_PAUSE") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "BERTH_PAUSE={} is not a file",
                path.display()
            );
            path
        }
        None => PathBuf::from(env!("CARGO_BIN_EXE_berth-pause")),
    }
}

/// A command that runs pause with no arguments, stdin and stdout on
/// /dev/null and stderr on a pipe, so a test can check it stayed silent.
pub fn pause_command() -> Command {
    let mut cmd = Command::new(pause_bin());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A process a test started, held through a pidfd so that it is never
/// confused with a later process that reuses its PID. Dropping it kills it
/// (and reaps it when it is our child), even when an assertion failed.
pub struct Proc {
    pid: i32,
    pidfd: OwnedFd,
    child: Option<Child>,
}

impl Proc {
    /// Spawns `cmd` as a child of the test.
    pub fn spawn(cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let pid = i32::try_from(child.id()).expect("pid fits in i32");
        // Our unreaped child cannot have its PID reused.
        let pidfd = pidfd_open(pid).expect("pidfd_open of our own child");
        Proc {
            pid,
            pidfd,
            child: Some(child),
        }
    }

    /// Takes charge of a process the test did not spawn itself (pause
    /// inside `unshare`, an orphan). `expected_comm` guards against the PID
    /// having been reused between finding it and opening the pidfd.
    pub fn adopt(pid: i32, expected_comm: &str) -> Proc {
        let pidfd = pidfd_open(pid).unwrap_or_else(|e| panic!("pidfd_open({pid}): {e}"));
        let stat = stat(pid).unwrap_or_else(|| panic!("process {pid} vanished"));
        assert_eq!(
            stat.comm, expected_comm,
            "process {pid} is not the one expected"
        );
        Proc {
            pid,
            pidfd,
            child: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `signal`; panics if the process is gone.
    pub fn signal(&self, signal: i32) {
        // SAFETY: the pidfd is open for the life of self; a null siginfo
        // makes the kernel fill in the usual kill() details.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        assert_eq!(
            ret,
            0,
            "signal {signal} to {}: {}",
            self.pid,
            io::Error::last_os_error()
        );
    }

    /// Waits up to `timeout` for our child to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self
            .child
            .as_mut()
            .expect("only a spawned process can be waited for");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Everything the process wrote to its piped stderr; call after it exited.
    pub fn stderr(&mut self) -> String {
        let child = self
            .child
            .as_mut()
            .expect("only a spawned process has our pipes");
        let mut text = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            pipe.read_to_string(&mut text).expect("reading stderr");
        }
        text
    }

    /// Asserts the process is alive: not exited, not a zombie, not stopped.
    pub fn assert_running(&self) {
        let stat = stat(self.pid).unwrap_or_else(|| panic!("process {} is gone", self.pid));
        assert!(
            !matches!(stat.state, 'Z' | 'X' | 'T' | 't'),
            "process {} is in state {}",
            self.pid,
            stat.state
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: as in `signal`; a failure (already gone) is fine here.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if let Some(child) = self.child.as_mut() {
            let _ = child.wait();
        }
    }
}

fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).expect("fd fits in i32");
    // SAFETY: the kernel just gave us this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// pause started as PID 1 of a new PID namespace by `unshare`.
pub struct Pid1 {
    // Fields drop in order: pause is killed first, which takes the whole
    // namespace down, then unshare is killed and reaped.
    pub pause: Proc,
    pub unshare: Proc,
}

/// Starts pause as PID 1 of a new PID namespace and waits until it is ready.
pub fn start_pid1() -> Pid1 {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child", "--"])
        .arg(pause_bin());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let unshare = Proc::spawn(&mut cmd);
    // pause is unshare's only child; it has exec'd once its name changes.
    let mut found = None;
    wait_until(SETUP, "pause to start under unshare", || {
        found = children(unshare.pid())
            .into_iter()
            .find(|(_, s)| s.comm == "berth-pause");
        found.is_some()
    });
    let (pid, _) = found.expect("found above");
    let pause = Proc::adopt(pid, "berth-pause");
    wait_ready(&pause);
    Pid1 { pause, unshare }
}

/// Starts pause as a child of the test and waits until it is ready.
pub fn start_child() -> Proc {
    let pause = Proc::spawn(&mut pause_command());
    wait_ready(&pause);
    pause
}

/// Waits until pause has finished start-up, that is until it sleeps in
/// rt_sigtimedwait, which it calls only once start-up is done.
pub fn wait_ready(pause: &Proc) {
    let waiting = libc::SYS_rt_sigtimedwait.to_string();
    wait_until(SETUP, "pause to wait for signals", || {
        pause.assert_running();
        let syscall = fs::read_to_string(format!("/proc/{}/syscall", pause.pid()));
        syscall.is_ok_and(|s| s.split_whitespace().next() == Some(waiting.as_str()))
    });
}

/// Calls `done` every few milliseconds until it returns true; panics if
/// that takes longer than `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// The fields of /proc/<pid>/stat the tests use.
#[derive(Clone, Debug)]
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub ppid: i32,
}

/// Reads /proc/<pid>/stat; None once the process is gone (reaped).
pub fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses,
    // so split at its first "(" and last ")".
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let mut rest = text.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(Stat { comm, state, ppid })
}

/// Every process whose parent is `ppid`, zombies included.
pub fn children(ppid: i32) -> Vec<(i32, Stat)> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").expect("reading /proc") {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(stat) = stat(pid) {
            if stat.ppid == ppid {
                found.push((pid, stat));
            }
        }
    }
    found
}

/// The value of one line of /proc/<pid>/status, such as "NSpid".
pub fn status_field(pid: i32, name: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    let prefix = format!("{name}:");
    status
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// The open file descriptors of `pid`, sorted.
pub fn open_fds(pid: i32) -> Vec<i32> {
    let mut fds: Vec<i32> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("listing /proc/{pid}/fd: {e}"))
        .map(|entry| {
            entry
                .expect("fd entry")
                .file_name()
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    fds.sort_unstable();
    fds
}

/// Asserts that `waited` (pause, or the `unshare` whose exit status is
/// pause's) exits 0 within `PROMPT` of `sent`, and that nothing was written
/// to its stderr over its whole life.
pub fn assert_exits_zero(waited: &mut Proc, sent: Instant, what: &str) {
    let status = waited.wait_exit(PROMPT);
    let elapsed = sent.elapsed();
    let status = status.unwrap_or_else(|| panic!("still running {PROMPT:?} after {what}"));
    assert_eq!(status.code(), Some(0), "exit status after {what}: {status}");
    assert_eq!(waited.stderr(), "", "pause wrote to stderr");
    eprintln!("{what}: exited 0 after {elapsed:?}");
}

/// A pipe whose ends are both close-on-exec, as (reader, writer).
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    let ret = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(ret, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 just opened both descriptors and nothing else owns them.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}
