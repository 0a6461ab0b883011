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

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use berth_sandbox::helper::protocol::StdioPaths;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::console::{ConsoleSocket, Master};
use crate::error::{Error, Result};
use crate::logger::{self, Binary, Logger};

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
}

/// Whose stdio it is: a logging binary is told.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub id: &'a str,
    pub namespace: &'a str,
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
            let attach = tokio::spawn(async move {
                let path = pending.socket.path().to_owned();
                let master = match pending.socket.receive(CONSOLE_TIMEOUT).await {
                    Ok(master) => master,
                    Err(why) => return log::warn!("terminal {}: {why}", path.display()),
                };
                let _ = console.set(master.clone());
                let mut started = Vec::new();
                if let Some(fifo) = pending.stdout {
                    started.push(tokio::spawn(copy_output(
                        master.stream(),
                        fifo,
                        pending.done,
                    )));
                }
                if let Some(fifo) = pending.stdin {
                    started.push(tokio::spawn(copy_stdin(fifo, master.stream())));
                }
                copies.lock().expect("copies lock").extend(started);
            });
            self.io.copies.lock().expect("copies lock").push(attach);
        }
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
    Binary(Binary),
}

fn target(uri: &str, stream: &str) -> Result<Target> {
    if uri.is_empty() {
        return Ok(Target::None);
    }
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(Target::File(PathBuf::from(path)));
    }
    if let Some(rest) = uri.strip_prefix("binary://") {
        return Ok(Target::Binary(Binary::parse(rest)?));
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
        Io::default()
    }

    /// Opens containerd's FIFOs and makes the pipes (or, for a terminal, the
    /// console socket in `console_dir`) the container gets.
    pub async fn prepare(stdio: &Stdio, console_dir: &Path, owner: Owner<'_>) -> Result<Prepared> {
        let (done_tx, done_rx) = mpsc::channel(1);
        let io = Io::default();
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
            prepared.paths.stdin = Some(fd_path(&rx));
            prepared.container_ends.push(rx);
            prepared.io.spawn(copy_stdin(fifo, tx));
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
                    let path = fd_path(&tx);
                    prepared.container_ends.push(tx);
                    prepared.io.spawn(copy_output(rx, fifo, done_tx.clone()));
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
            log::warn!("output still open {limit:?} after the process exited");
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

fn open_output_fifo(path: &Path) -> Result<pipe::Sender> {
    pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(path)
        .map_err(Error::io("open", path))
}

async fn open_log(path: &std::path::Path) -> Result<OwnedFd> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(Error::io("create", dir))?;
    }
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(Error::io("open", path))?;
    Ok(file.into_std().await.into())
}

async fn copy_output(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    _done: mpsc::Sender<()>,
) {
    if let Err(e) = tokio::io::copy(&mut from, &mut to).await {
        log::warn!("copy output: {e}");
    }
    let _ = to.flush().await;
}

async fn copy_stdin(mut from: pipe::Receiver, mut to: impl AsyncWrite + Unpin) {
    if let Err(e) = tokio::io::copy(&mut from, &mut to).await {
        log::debug!("copy stdin: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: Owner<'static> = Owner {
        id: "c1",
        namespace: "k8s.io",
    };

    /// What libcontainer does with a terminal: sends the master of a new
    /// pty over the console socket. Returns the slave, the process's side.
    fn send_master(socket: &Path) -> std::fs::File {
        let pty = nix::pty::openpty(None, None).unwrap();
        let conn = std::os::unix::net::UnixStream::connect(socket).unwrap();
        let fds = [pty.master.as_raw_fd()];
        nix::sys::socket::sendmsg::<()>(
            conn.as_raw_fd(),
            &[std::io::IoSlice::new(b"/dev/ptmx")],
            &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .unwrap();
        std::fs::File::from(pty.slave)
    }

    /// Waits up to 5 s for `done`.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: not within 5 s");
    }

    /// Whether `pid` has exited (gone, or a zombie nobody reaped).
    fn has_exited(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        }
    }

    /// A logging binary: records its environment and arguments, says it
    /// is ready, copies fd 3 and fd 4 to files, and says when it is done.
    fn logging_script(dir: &Path, body: &str) -> PathBuf {
        let script = dir.join("logger.sh");
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        script
    }

    #[tokio::test]
    async fn a_logging_binary_gets_both_streams_and_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let script = logging_script(
            dir.path(),
            r#"echo "$CONTAINER_ID $CONTAINER_NAMESPACE $LEVEL $*" > "$DIR/env"
exec 5>&-
cat <&3 > "$DIR/out" &
cat <&4 > "$DIR/err"
wait
touch "$DIR/done""#,
        );
        let uri = format!(
            "binary://{}?--mode=tail&env.DIR={}&env.LEVEL=info",
            script.display(),
            dir.path().display()
        );
        let stdio = Stdio {
            stdout: uri.clone(),
            stderr: uri,
            ..Default::default()
        };
        let prepared = Io::prepare(&stdio, dir.path(), OWNER).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("env")).unwrap(),
            "c1 k8s.io info --mode tail\n",
            "ready only after it started"
        );
        let open = |path: &Option<PathBuf>| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(path.as_ref().unwrap())
                .unwrap()
        };
        let (mut out, mut err) = (open(&prepared.paths.stdout), open(&prepared.paths.stderr));
        let io = prepared.release();
        std::io::Write::write_all(&mut out, b"to stdout\n").unwrap();
        std::io::Write::write_all(&mut err, b"to stderr\n").unwrap();
        drop((out, err));
        until("the logging binary ends with its input", || {
            dir.path().join("done").exists()
        })
        .await;
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("out"), "to stdout\n");
        assert_eq!(read("err"), "to stderr\n");
        drop(io);
    }

    #[tokio::test]
    async fn a_logging_binary_is_stopped_with_its_io() {
        let dir = tempfile::tempdir().unwrap();
        let script = logging_script(dir.path(), "exec 5>&-\nexec sleep 60");
        let stdio = Stdio {
            stdout: format!("binary://{}", script.display()),
            ..Default::default()
        };
        let prepared = Io::prepare(&stdio, dir.path(), OWNER).await.unwrap();
        assert!(prepared.paths.stderr.is_none(), "no stderr was asked for");
        let io = prepared.release();
        let pid = io.logger.as_ref().unwrap().pid();
        assert!(!has_exited(pid));
        drop(io);
        tokio::time::timeout(Duration::from_secs(5), logger::wait_stopped())
            .await
            .expect("SIGTERM ends it well before SIGKILL");
        assert!(has_exited(pid));
    }

    #[tokio::test]
    async fn a_binary_uri_for_stderr_alone_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let stdio = Stdio {
            stderr: "binary:///bin/true".into(),
            ..Default::default()
        };
        assert!(matches!(
            Io::prepare(&stdio, dir.path(), OWNER).await,
            Err(Error::InvalidArgument(m)) if m.contains("stderr")
        ));
    }

    #[tokio::test]
    async fn a_terminal_can_log_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/c1.log");
        let stdio = Stdio {
            stdout: format!("file://{}", log.display()),
            terminal: true,
            ..Default::default()
        };
        let prepared = Io::prepare(&stdio, dir.path(), OWNER).await.unwrap();
        let socket = prepared.paths.console_socket.clone().unwrap();
        let io = prepared.release();
        let mut slave = send_master(&socket);
        std::io::Write::write_all(&mut slave, b"logged\n").unwrap();
        drop(slave);
        tokio::time::timeout(Duration::from_secs(5), io.drained(Duration::from_secs(10)))
            .await
            .expect("drained once the slave is closed");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "logged\r\n");
    }

    #[tokio::test]
    async fn a_console_socket_goes_when_the_create_fails() {
        let dir = tempfile::tempdir().unwrap();
        let stdio = Stdio {
            terminal: true,
            ..Default::default()
        };
        let prepared = Io::prepare(&stdio, dir.path(), OWNER).await.unwrap();
        let socket = prepared.paths.console_socket.clone().unwrap();
        assert!(socket.exists());
        drop(prepared);
        assert!(!socket.exists());
    }

    /// A FIFO named `stdout` in `dir`, with containerd's reader open on it.
    fn fifo_with_reader(dir: &Path) -> (PathBuf, pipe::Receiver) {
        let fifo = dir.join("stdout");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let reader = pipe::OpenOptions::new().open_receiver(&fifo).unwrap();
        (fifo, reader)
    }

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
        assert!(
            matches!(target("binary:///bin/logger?x", "stdout"), Ok(Target::Binary(b)) if b.path == std::path::Path::new("/bin/logger") && b.args == ["x"])
        );
        assert!(
            matches!(target("http://x", "stderr"), Err(Error::InvalidArgument(m)) if m.contains("stderr"))
        );
    }

    #[tokio::test]
    async fn output_is_copied_to_the_fifo_and_drains_when_the_writer_closes() {
        let dir = tempfile::tempdir().unwrap();
        let (fifo, mut reader) = fifo_with_reader(dir.path());
        let stdio = Stdio {
            stdout: fifo.to_string_lossy().into_owned(),
            ..Default::default()
        };
        let prepared = Io::prepare(&stdio, dir.path(), OWNER).await.unwrap();
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
    async fn after_close_io_stdin_ends_once_everything_written_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stdin");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let stdio = Stdio {
            stdin: fifo.to_string_lossy().into_owned(),
            ..Default::default()
        };
        let prepared = Io::prepare(&stdio, dir.path(), OWNER).await.unwrap();
        let mut reader = std::fs::File::open(prepared.paths.stdin.clone().unwrap()).unwrap();
        let io = prepared.release();
        let data = vec![b'x'; 256 * 1024];
        // containerd's writer: more than a pipe holds, then closed, then CloseIO.
        let writer = {
            let fifo = fifo.clone();
            let data = data.clone();
            std::thread::spawn(move || {
                let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                std::io::Write::write_all(&mut w, &data).unwrap();
            })
        };
        let read = tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut all).map(|_| all)
        });
        tokio::task::spawn_blocking(move || writer.join().unwrap())
            .await
            .unwrap();
        io.close_stdin();
        let all = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("end of file after CloseIO")
            .unwrap()
            .unwrap();
        assert_eq!(
            all.len(),
            data.len(),
            "nothing written before CloseIO is lost"
        );
    }

    #[tokio::test]
    async fn resize_sets_the_terminal_size_and_needs_a_terminal() {
        let io = Io::none();
        assert!(matches!(
            io.resize(80, 24),
            Err(Error::FailedPrecondition(_))
        ));
        let pty = nix::pty::openpty(None, None).unwrap();
        let _ = io.console.set(Master::of(pty.master));
        io.resize(132, 43).unwrap();
        let size = crate::sys::window_size(std::os::fd::AsFd::as_fd(&pty.slave)).unwrap();
        assert_eq!(size, (132, 43));
    }

    #[tokio::test]
    async fn a_terminal_is_copied_from_its_master_once_it_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let (fifo, mut reader) = fifo_with_reader(dir.path());
        let stdio = Stdio {
            stdout: fifo.to_string_lossy().into_owned(),
            terminal: true,
            ..Default::default()
        };
        let prepared = Io::prepare(&stdio, dir.path(), OWNER).await.unwrap();
        let socket = prepared.paths.console_socket.clone().unwrap();
        assert!(
            prepared.paths.stdout.is_none(),
            "a terminal's stdio is the pty"
        );
        let io = prepared.release();
        let mut slave = send_master(&socket);
        std::io::Write::write_all(&mut slave, b"hi\n").unwrap();
        let mut got = vec![0; 4];
        tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_exact(&mut reader, &mut got),
        )
        .await
        .expect("the pty's output in time")
        .unwrap();
        assert_eq!(got, b"hi\r\n", "through the terminal's line discipline");
        drop(slave);
        tokio::time::timeout(Duration::from_secs(5), io.drained(Duration::from_secs(10)))
            .await
            .expect("drained once the slave is closed");
        assert!(!socket.exists(), "the console socket is removed");
        io.resize(100, 30).unwrap();
    }
}
