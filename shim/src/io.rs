//! A container's stdio: pipes between the container and the shim, and
//! copies between those pipes and containerd's FIFOs.
//!
//! The container never holds containerd's FIFOs itself. The shim does, so a
//! reader that goes away (containerd restarting) costs no output the FIFO
//! can still buffer and never gets the container a SIGPIPE. `file://` URIs
//! are opened by the shim and handed to the container directly.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use berth_sandbox::container::StdioPaths;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::task::Stdio;

/// The shim's side of a running container's stdio.
#[derive(Debug)]
pub struct Io {
    /// Closed when every output copy has reached the end of its pipe.
    drained: tokio::sync::Mutex<mpsc::Receiver<()>>,
    stdin: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// The output copies; stopped when the task is deleted, so containerd's
    /// readers see the end of their FIFOs even if a process kept a pipe.
    outputs: Vec<JoinHandle<()>>,
}

/// Stdio being set up for a container about to be created.
pub struct Prepared {
    /// What the helper opens for the container.
    pub paths: StdioPaths,
    pub io: Io,
    /// The container's ends, held open until the helper has opened them.
    container_ends: Vec<OwnedFd>,
}

impl Prepared {
    /// The helper has the container's ends now: the shim lets go of its
    /// copies, so the output pipes end when the container's processes do.
    pub fn release(self) -> Io {
        drop(self.container_ends);
        self.io
    }
}

/// A path by which another process opens one of the shim's descriptors.
fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        fd.as_raw_fd()
    ))
}

/// Where one output stream goes.
enum Target {
    None,
    Fifo(PathBuf),
    File(PathBuf),
}

fn target(uri: &str, stream: &str) -> Result<Target> {
    if uri.is_empty() {
        return Ok(Target::None);
    }
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(Target::File(PathBuf::from(path)));
    }
    if uri.starts_with("binary://") {
        return Err(Error::Unimplemented(format!(
            "{stream}: binary:// log URIs are not supported yet"
        )));
    }
    match uri.split_once("://") {
        Some((scheme, _)) if scheme != "fifo" => Err(Error::InvalidArgument(format!(
            "{stream}: unknown IO URI scheme {scheme:?}"
        ))),
        Some((_, path)) => Ok(Target::Fifo(PathBuf::from(path))),
        None => Ok(Target::Fifo(PathBuf::from(uri))),
    }
}

impl Io {
    /// Stdio for a process without any (the pod sandbox's pause).
    pub fn none() -> Self {
        let (_, rx) = mpsc::channel(1);
        Io {
            drained: tokio::sync::Mutex::new(rx),
            stdin: Default::default(),
            outputs: Vec::new(),
        }
    }

    /// Opens containerd's FIFOs and makes the pipes the container gets.
    pub async fn prepare(stdio: &Stdio) -> Result<Prepared> {
        if stdio.terminal {
            return Err(Error::Unimplemented(
                "terminal: containers with a tty are not supported yet".into(),
            ));
        }
        let (done_tx, done_rx) = mpsc::channel(1);
        let mut paths = StdioPaths::default();
        let mut container_ends = Vec::new();

        let mut stdin_copy = None;
        if !stdio.stdin.is_empty() {
            let fifo = pipe::OpenOptions::new()
                .read_write(true)
                .open_receiver(&stdio.stdin)
                .map_err(|e| io_error("open stdin", &stdio.stdin, e))?;
            let (tx, rx) = pipe::pipe().map_err(|e| io_error("pipe", "stdin", e))?;
            let rx = rx
                .into_blocking_fd()
                .map_err(|e| io_error("pipe", "stdin", e))?;
            paths.stdin = Some(fd_path(&rx));
            container_ends.push(rx);
            stdin_copy = Some(tokio::spawn(copy_stdin(fifo, tx)));
        }
        let mut io = Io {
            drained: tokio::sync::Mutex::new(done_rx),
            stdin: std::sync::Mutex::new(stdin_copy),
            outputs: Vec::new(),
        };

        for (uri, stream, slot) in [
            (&stdio.stdout, "stdout", &mut paths.stdout),
            (&stdio.stderr, "stderr", &mut paths.stderr),
        ] {
            match target(uri, stream)? {
                Target::None => {}
                Target::File(path) => {
                    let file = open_log(&path).await?;
                    *slot = Some(fd_path(&file));
                    container_ends.push(file);
                }
                Target::Fifo(path) => {
                    let fifo = pipe::OpenOptions::new()
                        .read_write(true)
                        .open_sender(&path)
                        .map_err(|e| io_error("open", &path, e))?;
                    let (tx, rx) = pipe::pipe().map_err(|e| io_error("pipe", stream, e))?;
                    let tx = tx
                        .into_blocking_fd()
                        .map_err(|e| io_error("pipe", stream, e))?;
                    *slot = Some(fd_path(&tx));
                    container_ends.push(tx);
                    io.outputs
                        .push(tokio::spawn(copy_output(rx, fifo, done_tx.clone())));
                }
            }
        }
        Ok(Prepared {
            paths,
            io,
            container_ends,
        })
    }

    /// Waits until the container's output has all been copied, or `limit`
    /// has passed (a process that outlives the init may hold its stdout).
    pub async fn drained(&self, limit: Duration) {
        let mut rx = self.drained.lock().await;
        if tokio::time::timeout(limit, rx.recv()).await.is_err() {
            log::warn!("output still open {limit:?} after the process exited");
        }
    }

    /// Closes the container's stdin: it reads end-of-file.
    pub fn close_stdin(&self) {
        if let Some(copy) = self.stdin.lock().expect("stdin lock").take() {
            copy.abort();
        }
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        self.close_stdin();
        for copy in &self.outputs {
            copy.abort();
        }
    }
}

fn io_error(op: &str, what: impl AsRef<std::path::Path>, e: std::io::Error) -> Error {
    Error::Internal(format!("{op} {}: {e}", what.as_ref().display()))
}

async fn open_log(path: &std::path::Path) -> Result<OwnedFd> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| io_error("create", dir, e))?;
    }
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|e| io_error("open", path, e))?;
    Ok(file.into_std().await.into())
}

async fn copy_output(mut from: pipe::Receiver, mut to: pipe::Sender, _done: mpsc::Sender<()>) {
    if let Err(e) = tokio::io::copy(&mut from, &mut to).await {
        log::warn!("copy output: {e}");
    }
    let _ = to.flush().await;
}

async fn copy_stdin(mut from: pipe::Receiver, mut to: pipe::Sender) {
    if let Err(e) = tokio::io::copy(&mut from, &mut to).await {
        log::debug!("copy stdin: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_their_target() {
        assert!(matches!(target("", "stdout"), Ok(Target::None)));
        assert!(
            matches!(target("/run/x/stdout", "stdout"), Ok(Target::Fifo(p)) if p == std::path::Path::new("/run/x/stdout"))
        );
        assert!(
            matches!(target("fifo:///run/x", "stdout"), Ok(Target::Fifo(p)) if p == std::path::Path::new("/run/x"))
        );
        assert!(
            matches!(target("file:///var/log/c.log", "stdout"), Ok(Target::File(p)) if p == std::path::Path::new("/var/log/c.log"))
        );
        assert!(matches!(
            target("binary:///bin/logger", "stdout"),
            Err(Error::Unimplemented(_))
        ));
        assert!(
            matches!(target("http://x", "stderr"), Err(Error::InvalidArgument(m)) if m.contains("stderr"))
        );
    }

    #[tokio::test]
    async fn output_is_copied_to_the_fifo_and_drains_when_the_writer_closes() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stdout");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let mut reader = pipe::OpenOptions::new().open_receiver(&fifo).unwrap();
        let stdio = Stdio {
            stdout: fifo.to_string_lossy().into_owned(),
            ..Default::default()
        };
        let prepared = Io::prepare(&stdio).await.unwrap();
        let path = prepared.paths.stdout.clone().unwrap();
        // What the helper does: open the shim's end through /proc.
        let mut writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let io = prepared.release();
        std::io::Write::write_all(&mut writer, b"hello\n").unwrap();
        drop(writer);
        tokio::time::timeout(Duration::from_secs(5), io.drained(Duration::from_secs(10)))
            .await
            .expect("drained once the last writer closed");
        let mut got = vec![0; 6];
        tokio::io::AsyncReadExt::read_exact(&mut reader, &mut got)
            .await
            .unwrap();
        assert_eq!(got, b"hello\n");
    }

    #[tokio::test]
    async fn closing_stdin_gives_the_reader_end_of_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stdin");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let stdio = Stdio {
            stdin: fifo.to_string_lossy().into_owned(),
            ..Default::default()
        };
        let prepared = Io::prepare(&stdio).await.unwrap();
        let mut reader = std::fs::File::open(prepared.paths.stdin.clone().unwrap()).unwrap();
        let io = prepared.release();
        let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        std::io::Write::write_all(&mut writer, b"in").unwrap();
        io.close_stdin();
        let read = tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut all).map(|_| all)
        });
        let all = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("end of file after close_stdin")
            .unwrap()
            .unwrap();
        assert!(b"in".starts_with(&all), "got {all:?}");
    }
}
