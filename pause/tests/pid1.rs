#![cfg(feature = "root-tests")]
//! pause as PID 1 of a new PID namespace: what a pod that shares its PID
//! namespace gets.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    assert_exits_zero, children, pipe, start_pid1, stat, status_field, wait_ready, wait_until,
    Proc, SETUP,
};

#[test]
fn is_pid1_of_its_pid_namespace() {
    let pod = start_pid1();
    // NSpid lists the PID in each namespace, outermost first.
    let nspid = status_field(pod.pause.pid(), "NSpid");
    let pids: Vec<&str> = nspid.split_whitespace().collect();
    assert!(
        pids.len() >= 2,
        "pause is not in a nested PID namespace: NSpid {nspid}"
    );
    assert_eq!(pids.first(), Some(&pod.pause.pid().to_string().as_str()));
    assert_eq!(pids.last(), Some(&"1"), "NSpid {nspid}");
}

const ORPHANS: usize = 1000;

/// Forks `$1` children that each wait to read from fd 3 (the pipe on
/// stdin), then exits at once, leaving them orphans. A background job gets
/// /dev/null as stdin, hence the copy of the pipe on fd 3.
const FORK_ORPHANS: &str = r#"
exec 3<&0 </dev/null
i=0
while [ "$i" -lt "$1" ]; do
    read -r _ <&3 &
    i=$((i + 1))
done
"#;

#[test]
fn reaps_1000_orphaned_zombies_within_a_second() {
    let mut pod = start_pid1();
    let pause = pod.pause.pid();

    // Every orphan blocks on reading the pipe until the test closes its
    // write end, so that all of them exit at once, as pause's children.
    let (reader, writer) = pipe();
    let mut nsenter = Proc::spawn(
        Command::new("nsenter")
            .args([
                "--target",
                &pause.to_string(),
                "--pid",
                "--",
                "/bin/sh",
                "-c",
            ])
            .args([FORK_ORPHANS, "sh", &ORPHANS.to_string()])
            .stdin(Stdio::from(reader))
            .stdout(Stdio::null()),
    );
    let status = nsenter
        .wait_exit(SETUP)
        .expect("the orphan-making shell did not finish");
    assert!(status.success(), "nsenter: {status}");

    wait_until(SETUP, "the orphans to be handed to pause", || {
        children(pause).len() >= ORPHANS
    });
    assert_eq!(
        children(pause).len(),
        ORPHANS,
        "pause has unexpected children"
    );

    // Stopped, pause cannot reap: the orphans stay zombies for all to see.
    pod.pause.signal(libc::SIGSTOP);
    wait_until(SETUP, "pause to stop", || {
        stat(pause).is_some_and(|s| s.state == 'T')
    });
    drop(writer);
    wait_until(SETUP, "all orphans to be zombie children of pause", || {
        children(pause)
            .iter()
            .filter(|(_, s)| s.state == 'Z')
            .count()
            == ORPHANS
    });

    let resumed = Instant::now();
    pod.pause.signal(libc::SIGCONT);
    wait_until(Duration::from_secs(1), "pause to reap 1000 zombies", || {
        children(pause).is_empty()
    });
    eprintln!(
        "{ORPHANS} zombies reaped {:?} after SIGCONT",
        resumed.elapsed()
    );

    pod.pause.assert_running();
    wait_ready(&pod.pause);
    let sent = Instant::now();
    pod.pause.signal(libc::SIGTERM);
    assert_exits_zero(&mut pod.unshare, sent, "SIGTERM after reaping");
}
