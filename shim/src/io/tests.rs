//! A process's stdio: FIFOs, files, logging binaries and terminals.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use super::*;

const OWNER: Owner<'static> = Owner {
    id: "c1",
    exec_id: "",
    namespace: "k8s.io",
    uid: 0,
    gid: 0,
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
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
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
    // A relative log path would be the shim's working directory's.
    assert!(
        matches!(target("file://var/log/c.log", "stdout"), Err(Error::InvalidArgument(m)) if m.contains("absolute"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logging_binary_that_cannot_run_is_an_error_under_the_shim_s_reaper() {
    // The shim's own reaper, collecting every child as fast as it can: it
    // must never take the child std's spawn waits for when its exec fails.
    let reaper = crate::reaper::Reaper::new();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reaping = {
        let (reaper, done) = (Arc::clone(&reaper), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                reaper.reap_all();
            }
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let not_executable = dir.path().join("logger");
    std::fs::write(&not_executable, "not a program").unwrap();
    let stdio = Stdio {
        stdout: format!("binary://{}", not_executable.display()),
        ..Default::default()
    };
    for _ in 0..200 {
        match Io::prepare(&stdio, dir.path(), OWNER).await {
            Err(Error::InvalidArgument(why)) => assert!(why.contains("logger"), "{why}"),
            other => panic!("{:?}", other.map(|_| "prepared")),
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    reaping.join().unwrap();
}
