//! `binary://` log URIs: a logging binary the shim starts for a process.
//!
//! The binary gets the process's stdout on fd 3 and its stderr on fd 4 (the
//! read ends of two pipes), and fd 5, which it closes once it is ready to
//! read. Its environment is `CONTAINER_ID`, `CONTAINER_NAMESPACE` and the
//! URI's `env.`-prefixed query parameters; the other parameters are its
//! arguments, each key followed by its value if it has one. This is the
//! contract containerd's Go shim gives logging binaries.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_sandbox::state::ProcessRecord;
use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::error::{Error, Result};
use crate::process::Tracked;

/// How long a logging binary has to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a logging binary has to exit after SIGTERM before SIGKILL, as
/// containerd's Go shim allows.
const STOP_TIMEOUT: Duration = Duration::from_secs(12);

/// A parsed `binary://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    pub path: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Decodes `%XX` escapes, and `+` as a space, as a URL query is read.
fn unescape(s: &str, plus_is_space: bool) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!("binary log URI: bad escape in {s:?}"))
                    })?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::InvalidArgument(format!("binary log URI: {s:?} is not UTF-8")))
}

impl Binary {
    /// Parses what follows `binary://` in a URI: an absolute path, and a
    /// query of arguments and `env.` variables.
    pub fn parse(rest: &str) -> Result<Binary> {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = unescape(path, false)?;
        if !path.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "binary log URI: the logging binary's path must be absolute, not {path:?}"
            )));
        }
        let mut binary = Binary {
            path: PathBuf::from(path),
            args: Vec::new(),
            env: Vec::new(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (key, value) = (unescape(key, true)?, unescape(value, true)?);
            match key.strip_prefix("env.") {
                Some("CONTAINER_ID" | "CONTAINER_NAMESPACE") => {}
                Some(name) => binary.env.push((name.to_owned(), value)),
                None => {
                    binary.args.push(key);
                    if !value.is_empty() {
                        binary.args.push(value);
                    }
                }
            }
        }
        Ok(binary)
    }
}

/// A started logging binary, and the write ends the process gets.
pub struct LogPipes {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub logger: Logger,
}

/// A running logging binary. Dropping it stops the binary: SIGTERM, then
/// SIGKILL if it is still there after a while.
#[derive(Debug)]
pub struct Logger {
    process: Arc<Tracked>,
}

/// A pipe whose ends are out of the low descriptor numbers the binary's
/// are dup'ed onto, so no dup2 in the child overwrites another source.
fn high_pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Internal(format!("pipe for the logging binary: {e}")))?;
    let high = |fd: OwnedFd| -> Result<OwnedFd> {
        crate::sys::dup_at_least(fd.as_fd(), 10)
            .map_err(|e| Error::Internal(format!("dup for the logging binary: {e}")))
    };
    Ok((high(r)?, high(w)?))
}

/// Keeps descriptors 3 to 5 open while it lives, so that nothing the spawn
/// opens for itself (std's exec-error pipe) lands where the binary's
/// descriptors are dup'ed to.
struct LowFds {
    _held: Vec<OwnedFd>,
}

impl LowFds {
    fn hold() -> Result<LowFds> {
        let mut held = Vec::new();
        loop {
            let fd: OwnedFd = std::fs::File::open("/dev/null")
                .map_err(Error::io("open", "/dev/null"))?
                .into();
            if fd.as_raw_fd() > 5 {
                return Ok(LowFds { _held: held });
            }
            held.push(fd);
        }
    }
}

/// Starts `binary` for container `id` of `namespace`, and waits until it is
/// ready to read.
pub async fn start(binary: &Binary, id: &str, namespace: &str) -> Result<LogPipes> {
    let low_fds = LowFds::hold()?;
    let (stdout_r, stdout_w) = high_pipe()?;
    let (stderr_r, stderr_w) = high_pipe()?;
    let (ready_r, ready_w) = high_pipe()?;
    let mut command = std::process::Command::new(&binary.path);
    command
        .args(&binary.args)
        .env_clear()
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .envs(binary.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // The sources are all >= 10: no placement overwrites another.
    let placed = [
        (stdout_r.as_fd(), 3),
        (stderr_r.as_fd(), 4),
        (ready_w.as_fd(), 5),
    ];
    let spawned =
        crate::reaper::unreaped(|| crate::sys::spawn_with_fds(&mut command, &placed, false));
    let child = spawned.map_err(|e| {
        Error::InvalidArgument(format!(
            "binary log URI: start {}: {e}",
            binary.path.display()
        ))
    })?;
    drop(low_fds);
    // The shim's reaper collects it; the pidfd follows it.
    let pid = child.id() as i32;
    let process = Tracked::track(ProcessRecord {
        pid,
        start_time: berth_sandbox::process::start_time(pid).unwrap_or(0),
    });
    drop(child);
    let logger = Logger {
        process: Arc::new(process),
    };
    drop((stdout_r, stderr_r, ready_w));

    let mut ready = pipe::Receiver::from_owned_fd(ready_r)
        .map_err(|e| Error::Internal(format!("logging binary's ready pipe: {e}")))?;
    let mut byte = [0u8; 1];
    match tokio::time::timeout(READY_TIMEOUT, ready.read(&mut byte)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(Error::Internal(format!(
                "logging binary {}: {e}",
                binary.path.display()
            )))
        }
        Err(_) => {
            return Err(Error::Internal(format!(
                "logging binary {} not ready within {READY_TIMEOUT:?}",
                binary.path.display()
            )))
        }
    }
    if logger.process.has_exited() {
        return Err(Error::Internal(format!(
            "logging binary {} exited before it was ready",
            binary.path.display()
        )));
    }
    Ok(LogPipes {
        stdout: stdout_w,
        stderr: stderr_w,
        logger,
    })
}

/// Binaries being stopped: the shim waits for them before it exits.
static STOPPING: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Waits until every logging binary being stopped is gone (each one takes
/// at most [`STOP_TIMEOUT`] before SIGKILL).
pub async fn wait_stopped() {
    let stopping = std::mem::take(&mut *STOPPING.lock().expect("stopping lock"));
    for stop in stopping {
        let _ = stop.await;
    }
}

impl Logger {
    #[cfg(test)]
    pub fn pid(&self) -> i32 {
        self.process.pid
    }

    /// Asks the binary to finish, and kills it if it does not in time.
    async fn stop(process: Arc<Tracked>) {
        if !matches!(process.signal(Signal::SIGTERM), Ok(true)) {
            return;
        }
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        while !process.has_exited() {
            if tokio::time::Instant::now() >= deadline {
                log::warn!(
                    "logging binary pid {} still there {STOP_TIMEOUT:?} after SIGTERM: killed",
                    process.pid
                );
                let _ = process.signal(Signal::SIGKILL);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        let process = Arc::clone(&self.process);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let stop = runtime.spawn(Logger::stop(process));
                let mut stopping = STOPPING.lock().expect("stopping lock");
                stopping.retain(|s| !s.is_finished());
                stopping.push(stop);
            }
            Err(_) => {
                let _ = process.signal(Signal::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_path_arguments_and_environment() {
        let b =
            Binary::parse("/usr/bin/log%20it?-f=%2Fvar%2Flog&verbose&env.LEVEL=debug+all").unwrap();
        assert_eq!(b.path, PathBuf::from("/usr/bin/log it"));
        assert_eq!(b.args, ["-f", "/var/log", "verbose"]);
        assert_eq!(b.env, [("LEVEL".to_owned(), "debug all".to_owned())]);
        assert!(Binary::parse("/bin/x?env.CONTAINER_ID=spoof")
            .unwrap()
            .env
            .is_empty());
        assert!(matches!(
            Binary::parse("relative/x"),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            Binary::parse("/x?a=%zz"),
            Err(Error::InvalidArgument(_))
        ));
    }
}
