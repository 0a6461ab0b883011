#![cfg(feature = "root-tests")]
//! Signals: SIGTERM and SIGINT end pause with status 0, promptly; every
//! other signal is taken and ignored, and neither stops nor kills it.

mod common;

use std::fs;
use std::time::Instant;

use common::{assert_exits_zero, start_child, start_pid1, wait_ready, wait_until, Proc, SETUP};

#[test]
fn sigterm_exits_zero() {
    let mut pause = start_child();
    let sent = Instant::now();
    pause.signal(libc::SIGTERM);
    assert_exits_zero(&mut pause, sent, "SIGTERM");
}

#[test]
fn sigint_exits_zero() {
    let mut pause = start_child();
    let sent = Instant::now();
    pause.signal(libc::SIGINT);
    assert_exits_zero(&mut pause, sent, "SIGINT");
}

// As PID 1 of a PID namespace a process gets no signal the default action
// of which would apply, so a bug in blocking could look different there.
#[test]
fn sigterm_exits_zero_as_pid1() {
    let mut pod = start_pid1();
    let sent = Instant::now();
    pod.pause.signal(libc::SIGTERM);
    assert_exits_zero(&mut pod.unshare, sent, "SIGTERM to PID 1");
}

#[test]
fn sigint_exits_zero_as_pid1() {
    let mut pod = start_pid1();
    let sent = Instant::now();
    pod.pause.signal(libc::SIGINT);
    assert_exits_zero(&mut pod.unshare, sent, "SIGINT to PID 1");
}

#[test]
fn hup_usr1_pipe_and_stop_signals_are_ignored() {
    let mut pause = start_child();
    assert_ignored(
        &pause,
        [
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGPIPE,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
        ],
    );
    let sent = Instant::now();
    pause.signal(libc::SIGTERM);
    assert_exits_zero(&mut pause, sent, "SIGTERM after ignored signals");
}

#[test]
fn every_other_signal_is_ignored() {
    let mut pause = start_child();
    assert_ignored(&pause, other_signals());
    let sent = Instant::now();
    pause.signal(libc::SIGTERM);
    assert_exits_zero(&mut pause, sent, "SIGTERM after ignored signals");
}

#[test]
fn every_other_signal_is_ignored_as_pid1() {
    let mut pod = start_pid1();
    assert_ignored(&pod.pause, other_signals());
    let sent = Instant::now();
    pod.pause.signal(libc::SIGTERM);
    assert_exits_zero(
        &mut pod.unshare,
        sent,
        "SIGTERM to PID 1 after ignored signals",
    );
}

/// Every signal but SIGTERM and SIGINT (which end pause) and SIGKILL and
/// SIGSTOP (which nothing can ignore). This includes 32 to 34, which libc
/// keeps for itself and would leave unblocked.
fn other_signals() -> Vec<i32> {
    let ending = [libc::SIGTERM, libc::SIGINT, libc::SIGKILL, libc::SIGSTOP];
    let all: Vec<i32> = (1..=64).filter(|s| !ending.contains(s)).collect();
    assert!(all.contains(&32) && all.contains(&libc::SIGRTMAX()));
    all
}

/// Sends each signal in turn; after each, pause must take it off its queue
/// and be back waiting for the next one, neither stopped nor dead.
fn assert_ignored(pause: &Proc, signals: impl IntoIterator<Item = i32>) {
    for signal in signals {
        pause.signal(signal);
        wait_until(SETUP, &format!("pause to take signal {signal}"), || {
            pending(pause.pid()) == 0
        });
        // Once it is taken, a delivered stop or fatal signal would already
        // have acted; pause then sleeps stopped (T) or is dead.
        wait_ready(pause);
        pause.assert_running();
    }
}

/// The signals pending for the process and for its (only) thread.
fn pending(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("reading status");
    let mask = |name: &str| {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .expect(name);
        u64::from_str_radix(line.trim(), 16).expect("hex signal mask")
    };
    mask("SigPnd:") | mask("ShdPnd:")
}
