//! A container's stdio: pipes (or a pty) between the container and the
//! shim, and copies between those and containerd's FIFOs.
//!
//! The container never holds containerd's FIFOs itself. The shim does, so a
//! reader that goes away (containerd restarting) costs no output the FIFO
//! can still buffer and never gets the container a SIGPIPE. `file://` URIs
//! are opened by the shim and handed to the container directly, and so are
//! the pipes of a `binary://` URI's logging binary. For a terminal,
//! libcontainer sends the pty master to a console socket the shim listens
//! on, and the shim copies between the master and the FIFOs (or the file,
//! or the logging binary).

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use berth_sandbox::helper::protocol::StdioPaths;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

mod target;
#[cfg(test)]
mod tests;

use crate::console::{ConsoleSocket, Master};
use crate::error::{Error, Result};
use crate::logger::{self, Logger};
use target::{fd_path, open_log, open_output_fifo};
pub(crate) use target::{target, Target};

/// How long the shim waits for libcontainer to send a terminal's master.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The IO paths containerd gave a process, reported back by State.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stdio {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The shim's side of a running container's stdio.
#[derive(Debug, Default)]
pub struct Io {
    /// Closed when every output copy has reached the end of its input.
    drained: tokio::sync::Mutex<Option<mpsc::Receiver<()>>>,
    /// The shim's own writer of the stdin FIFO, dropped by CloseIO.
    stdin_held: Mutex<Option<pipe::Sender>>,
    /// Every copy; stopped when the task is deleted, so containerd's readers
    /// see the end of their FIFOs even if a process kept a pipe open.
    copies: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// A terminal's pty master, once it arrived.
    console: Arc<OnceLock<Master>>,
    /// The logging binary of a `binary://` URI, stopped with the Io.
    logger: Option<Logger>,
    /// The process's container and exec id (empty for an init), for the log.
    whose: Whose,
}

/// The container and exec a process's stdio belongs to, named in the log.
#[derive(Debug, Clone, Default)]
struct Whose {
    container: String,
    exec: String,
}

/// Whose stdio it is: a logging binary is told, and the pipes the process
/// gets belong to `uid` and `gid` (the runtime options' `IoUid` and
/// `IoGid`, root by default), so that a process of that user can reopen
/// them (`/dev/stdout`), as with containerd's Go shim.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub id: &'a str,
    /// Empty for a container's init.
    pub exec_id: &'a str,
    pub namespace: &'a str,
    pub uid: u32,
    pub gid: u32,
}

impl Owner<'_> {
    /// Gives the process's end of a pipe to the owner.
    fn take(&self, end: &OwnedFd, stream: &'static str) -> Result<()> {
        if (self.uid, self.gid) == (0, 0) {
            return Ok(());
        }
        nix::unistd::fchown(
            end,
            Some(nix::unistd::Uid::from_raw(self.uid)),
            Some(nix::unistd::Gid::from_raw(self.gid)),
        )
        .map_err(|e| Error::io("chown the pipe of", stream)(e.into()))
    }
}

/// Where a terminal's output is copied to.
type Sink = Box<dyn AsyncWrite + Unpin + Send>;

/// Stdio being set up for a container about to be created.
pub struct Prepared {
    /// What the helper opens for the container.
    pub paths: StdioPaths,
    pub io: Io,
    /// The container's ends, held open until the helper has opened them.
    container_ends: Vec<OwnedFd>,
    /// A terminal still waiting for its pty master.
    console: Option<PendingConsole>,
}

/// A console socket and the FIFOs its pty will be copied to and from.
struct PendingConsole {
    socket: ConsoleSocket,
    stdin: Option<pipe::Receiver>,
    stdout: Option<Sink>,
    done: mpsc::Sender<()>,
}

impl Prepared {
    /// The helper has the container's ends now: the shim lets go of its
    /// copies, so the output pipes end when the container's processes do.
    /// A terminal's copies start once its master arrives.
    pub fn release(self) -> Io {
        drop(self.container_ends);
        if let Some(pending) = self.console {
            let console = Arc::clone(&self.io.console);
            let copies = Arc::clone(&self.io.copies);
            let whose = self.io.whose.clone();
            let attach = tokio::spawn(async move {
                let path = pending.socket.path().to_owned();
                let master = match pending.socket.receive(CONSOLE_TIMEOUT).await {
                    Ok(master) => master,
                    Err(why) => {
                        return log::warn!(
                            container = whose.container.as_str(), exec = whose.exec.as_str();
                            "terminal {}: {why}",
                            path.display()
                        )
                    }
                };
                let _ = console.set(master.clone());
                let mut started = Vec::new();
                if let Some(fifo) = pending.stdout {
                    started.push(tokio::spawn(copy_output(
                        master.stream(),
                        fifo,
                        pending.done,
                        whose.clone(),
                    )));
                }
                if let Some(fifo) = pending.stdin {
                    started.push(tokio::spawn(copy_stdin(fifo, master.stream(), whose)));
                }
                copies.lock().expect("copies lock").extend(started);
            });
            self.io.copies.lock().expect("copies lock").push(attach);
        }
        self.io
    }
}

impl Io {
    /// Stdio for a process without any (the pod sandbox's pause).
    pub fn none() -> Self {
        Io::default()
    }

    /// Opens containerd's FIFOs and makes the pipes (or, for a terminal, the
    /// console socket in `console_dir`) the container gets.
    pub async fn prepare(stdio: &Stdio, console_dir: &Path, owner: Owner<'_>) -> Result<Prepared> {
        let (done_tx, done_rx) = mpsc::channel(1);
        let whose = Whose {
            container: owner.id.to_owned(),
            exec: owner.exec_id.to_owned(),
        };
        let mut io = Io::default();
        io.whose = whose.clone();
        *io.drained.try_lock().expect("not shared yet") = Some(done_rx);
        let mut prepared = Prepared {
            paths: StdioPaths::default(),
            io,
            container_ends: Vec::new(),
            console: None,
        };
        let stdin = if stdio.stdin.is_empty() {
            None
        } else {
            // Read-only, so the copy sees end of file once every writer is
            // gone; until CloseIO the shim holds a writer of its own, so the
            // copy does not end before containerd has opened its writer.
            let fifo = pipe::OpenOptions::new()
                .open_receiver(&stdio.stdin)
                .map_err(Error::io("open stdin", &stdio.stdin))?;
            let held = pipe::OpenOptions::new()
                .open_sender(&stdio.stdin)
                .map_err(Error::io("open stdin", &stdio.stdin))?;
            *prepared.io.stdin_held.lock().expect("stdin lock") = Some(held);
            Some(fifo)
        };

        if stdio.terminal {
            let stdout: Option<Sink> = match target(&stdio.stdout, "stdout")? {
                Target::None => None,
                Target::Fifo(path) => Some(Box::new(open_output_fifo(&path)?)),
                Target::File(path) => Some(Box::new(tokio::fs::File::from_std(
                    open_log(&path).await?.into(),
                ))),
                Target::Binary(binary) => {
                    // A terminal has one output stream: the binary's stdout.
                    let started = logger::start(&binary, owner.id, owner.namespace).await?;
                    prepared.io.logger = Some(started.logger);
                    let pipe = pipe::Sender::from_owned_fd(started.stdout)
                        .map_err(Error::io("pipe", "the logging binary"))?;
                    Some(Box::new(pipe))
                }
            };
            let socket = ConsoleSocket::bind(console_dir)?;
            prepared.paths.console_socket = Some(socket.path().to_owned());
            prepared.console = Some(PendingConsole {
                socket,
                stdin,
                stdout,
                done: done_tx,
            });
            return Ok(prepared);
        }

        if let Some(fifo) = stdin {
            let (tx, rx) = pipe::pipe().map_err(Error::io("pipe", "stdin"))?;
            let rx = rx.into_blocking_fd().map_err(Error::io("pipe", "stdin"))?;
            owner.take(&rx, "stdin")?;
            prepared.paths.stdin = Some(fd_path(&rx));
            prepared.container_ends.push(rx);
            prepared.io.spawn(copy_stdin(fifo, tx, whose.clone()));
        }
        if let Target::Binary(binary) = target(&stdio.stdout, "stdout")? {
            // One logging binary takes both streams, as in containerd's Go
            // shim: stderr's URI is the same one.
            let started = logger::start(&binary, owner.id, owner.namespace).await?;
            prepared.io.logger = Some(started.logger);
            prepared.paths.stdout = Some(fd_path(&started.stdout));
            prepared.container_ends.push(started.stdout);
            if !stdio.stderr.is_empty() {
                prepared.paths.stderr = Some(fd_path(&started.stderr));
                prepared.container_ends.push(started.stderr);
            }
            return Ok(prepared);
        }
        for (uri, stream) in [(&stdio.stdout, "stdout"), (&stdio.stderr, "stderr")] {
            let path = match target(uri, stream)? {
                Target::None => continue,
                Target::Binary(_) => {
                    return Err(Error::InvalidArgument(
                        "stderr: a binary:// URI needs stdout to name the same binary".into(),
                    ))
                }
                Target::File(path) => {
                    let file = open_log(&path).await?;
                    let path = fd_path(&file);
                    prepared.container_ends.push(file);
                    path
                }
                Target::Fifo(path) => {
                    let fifo = open_output_fifo(&path)?;
                    let (tx, rx) = pipe::pipe().map_err(Error::io("pipe", stream))?;
                    let tx = tx.into_blocking_fd().map_err(Error::io("pipe", stream))?;
                    owner.take(&tx, stream)?;
                    let path = fd_path(&tx);
                    prepared.container_ends.push(tx);
                    prepared
                        .io
                        .spawn(copy_output(rx, fifo, done_tx.clone(), whose.clone()));
                    path
                }
            };
            match stream {
                "stdout" => prepared.paths.stdout = Some(path),
                _ => prepared.paths.stderr = Some(path),
            }
        }
        Ok(prepared)
    }

    fn spawn(&self, copy: impl std::future::Future<Output = ()> + Send + 'static) {
        self.copies
            .lock()
            .expect("copies lock")
            .push(tokio::spawn(copy));
    }

    /// Waits until the container's output has all been copied, or `limit`
    /// has passed (a process that outlives the init may hold its stdout).
    pub async fn drained(&self, limit: Duration) {
        let mut rx = self.drained.lock().await;
        let Some(rx) = rx.as_mut() else {
            return;
        };
        if tokio::time::timeout(limit, rx.recv()).await.is_err() {
            log::warn!(
                container = self.whose.container.as_str(), exec = self.whose.exec.as_str();
                "output still open {limit:?} after the process exited"
            );
        }
    }

    /// CloseIO: once containerd's writer is closed too and what it wrote
    /// is copied, the container reads end of file.
    pub fn close_stdin(&self) {
        self.stdin_held.lock().expect("stdin lock").take();
    }

    /// ResizePty: the terminal's new size.
    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        self.console
            .get()
            .ok_or_else(|| {
                Error::FailedPrecondition("the process has no terminal to resize".into())
            })?
            .resize(width, height)
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        for copy in self.copies.lock().expect("copies lock").iter() {
            copy.abort();
        }
    }
}

async fn copy_output(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    _done: mpsc::Sender<()>,
    whose: Whose,
) {
    if let Err(e) = tokio::io::copy(&mut from, &mut to).await {
        log::warn!(container = whose.container.as_str(), exec = whose.exec.as_str(); "copy output: {e}");
    }
    let _ = to.flush().await;
}

async fn copy_stdin(mut from: pipe::Receiver, mut to: impl AsyncWrite + Unpin, whose: Whose) {
    if let Err(e) = tokio::io::copy(&mut from, &mut to).await {
        log::debug!(container = whose.container.as_str(), exec = whose.exec.as_str(); "copy stdin: {e}");
    }
}
