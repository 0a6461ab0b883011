#![cfg(feature = "root-tests")]
//! Start-up: the command line, and what pause does to itself before it
//! starts waiting for signals.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    assert_exits_zero, children, pause_bin, pause_command, pipe, stat, wait_ready, wait_until,
    Proc, SETUP,
};

#[test]
fn version_flags_print_the_version() {
    for flag in ["-v", "--version"] {
        let out = Command::new(pause_bin())
            .arg(flag)
            .output()
            .expect("running pause");
        assert_eq!(out.status.code(), Some(0), "{flag}: {}", out.status);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "berth-pause 0.1.0\n",
            "{flag}"
        );
        assert!(out.stderr.is_empty(), "{flag} wrote to stderr");
    }
}

#[test]
fn help_prints_usage() {
    let out = Command::new(pause_bin())
        .arg("--help")
        .output()
        .expect("running pause");
    assert_eq!(out.status.code(), Some(0), "{}", out.status);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("usage: berth-pause"));
    assert!(out.stderr.is_empty());
}

#[test]
fn unknown_arguments_exit_2_with_usage() {
    for args in [&["--bogus"][..], &["-v", "extra"], &["-P"], &[""]] {
        let out = Command::new(pause_bin())
            .args(args)
            .output()
            .expect("running pause");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.status);
        assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("usage: berth-pause"),
            "{args:?}: stderr {stderr:?}"
        );
    }
}

#[test]
fn moves_to_the_root_directory() {
    let start = env!("CARGO_MANIFEST_DIR");
    assert_ne!(Path::new(start), Path::new("/"));
    let pause = Proc::spawn(pause_command().current_dir(start));
    wait_ready(&pause);
    let cwd = fs::read_link(format!("/proc/{}/cwd", pause.pid())).expect("reading cwd");
    assert_eq!(cwd, Path::new("/"));
}

/// Undumpable, a process's /proc/<pid> files belong to root, whoever runs
/// it: the check needs pause to run as another user.
#[test]
fn is_not_dumpable() {
    const NOBODY: u32 = 65534;
    let as_nobody = |program: &Path| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(program);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let owner = |pid: i32| {
        fs::metadata(format!("/proc/{pid}/status"))
            .expect("stat")
            .uid()
    };

    // An ordinary process run as nobody owns its /proc files.
    let mut sleep = as_nobody(Path::new("/bin/sleep"));
    let sleep = Proc::spawn(sleep.arg("60"));
    wait_until(SETUP, "sleep to start as nobody", || {
        stat(sleep.pid()).is_some_and(|s| s.comm == "sleep")
    });
    assert_eq!(owner(sleep.pid()), NOBODY);

    let pause = Proc::spawn(&mut as_nobody(&pause_bin()));
    wait_ready(&pause);
    assert_eq!(owner(pause.pid()), 0, "pause is still dumpable");
}

/// Starts pause with a child already (one the shell forked before exec'ing
/// pause). That child execs `sleep` after forking a grandchild which waits
/// on the pipe given on stdin (copied to fd 3: a background job gets
/// /dev/null as stdin).
const PAUSE_WITH_DESCENDANTS: &str = r#"
exec 3<&0 </dev/null
{ read -r _ <&3 & exec sleep 60; } &
exec "$0"
"#;

/// Outside its own PID namespace, pause adopts orphaned descendants as a
/// child subreaper, and reaps them.
#[test]
fn adopts_and_reaps_orphans_when_not_pid1() {
    let (reader, writer) = pipe();
    let mut pause = Proc::spawn(
        Command::new("/bin/sh")
            .args(["-c", PAUSE_WITH_DESCENDANTS])
            .arg(pause_bin())
            .stdin(Stdio::from(reader))
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    wait_ready(&pause);

    let mut found = None;
    wait_until(SETUP, "pause's child to exec sleep", || {
        found = children(pause.pid())
            .into_iter()
            .find(|(_, s)| s.comm == "sleep");
        found.is_some()
    });
    let child = Proc::adopt(found.expect("found above").0, "sleep");
    let mut found = None;
    wait_until(SETUP, "the grandchild", || {
        found = children(child.pid()).into_iter().next();
        found.is_some()
    });
    let grandchild = Proc::adopt(found.expect("found above").0, "sh");

    // Killing the child orphans the grandchild.
    child.signal(libc::SIGKILL);
    wait_until(SETUP, "the grandchild to be reparented", || {
        stat(grandchild.pid()).is_some_and(|s| s.ppid != child.pid())
    });
    let adopter = stat(grandchild.pid()).expect("grandchild alive").ppid;
    assert_eq!(
        adopter,
        pause.pid(),
        "the orphan went to {adopter}, not to pause"
    );
    wait_until(
        Duration::from_secs(1),
        "pause to reap its killed child",
        || stat(child.pid()).is_none(),
    );

    // Let the grandchild exit: pause reaps it too.
    drop(writer);
    wait_until(Duration::from_secs(1), "pause to reap the orphan", || {
        stat(grandchild.pid()).is_none()
    });

    pause.assert_running();
    let sent = Instant::now();
    pause.signal(libc::SIGTERM);
    assert_exits_zero(&mut pause, sent, "SIGTERM after reaping");
}
