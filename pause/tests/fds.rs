#![cfg(feature = "root-tests")]
//! Inherited file descriptors: pause keeps only 0, 1 and 2.

mod common;

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::{open_fds, pause_command, status_field, wait_ready, Proc};

/// Where the test puts descriptors for pause to inherit.
const INHERITED: [i32; 3] = [5, 7, 100];

#[test]
fn inherited_fds_are_closed() {
    let file = source_fd();
    // The control: `sleep`, started the same way, holds them.
    let sleep = Proc::spawn(inheriting(&mut sleep_command(), &file, false));
    assert_inherited(sleep.pid());

    let pause = Proc::spawn(inheriting(&mut pause_command(), &file, false));
    wait_ready(&pause);
    assert_eq!(open_fds(pause.pid()), [0, 1, 2]);
}

/// Under a seccomp filter that answers close_range with ENOSYS, as a kernel
/// older than 5.9 would, pause closes them one at a time.
#[test]
fn inherited_fds_are_closed_without_close_range() {
    // The filter really refuses close_range; tried on a thread of the test,
    // since a filter binds only the thread that installs it.
    let refused = std::thread::spawn(|| {
        install_filter().expect("installing the seccomp filter");
        // SAFETY: the range is empty of descriptors this thread relies on;
        // the filter refuses the call anyway.
        let ret = unsafe { libc::syscall(libc::SYS_close_range, 1_000_000u32, 1_000_001u32, 0u32) };
        (ret, io::Error::last_os_error().raw_os_error())
    })
    .join()
    .expect("filter thread");
    assert_eq!(
        refused,
        (-1, Some(libc::ENOSYS)),
        "the filter does not refuse close_range"
    );

    let file = source_fd();
    let sleep = Proc::spawn(inheriting(&mut sleep_command(), &file, true));
    assert_inherited(sleep.pid());
    assert_eq!(
        status_field(sleep.pid(), "Seccomp"),
        "2",
        "set-up did not install the filter"
    );

    let pause = Proc::spawn(inheriting(&mut pause_command(), &file, true));
    wait_ready(&pause);
    assert_eq!(
        status_field(pause.pid(), "Seccomp"),
        "2",
        "pause runs without the filter"
    );
    assert_eq!(open_fds(pause.pid()), [0, 1, 2]);
}

/// Asserts that `pid` holds every INHERITED descriptor (and maybe more:
/// the test runner may leak some of its own without close-on-exec).
fn assert_inherited(pid: i32) {
    let fds = open_fds(pid);
    assert!(
        INHERITED.iter().all(|fd| fds.contains(fd)),
        "set-up did not pass the fds: {fds:?}"
    );
}

fn sleep_command() -> Command {
    let mut cmd = Command::new("sleep");
    cmd.arg("60").stdin(Stdio::null()).stdout(Stdio::null());
    cmd
}

/// A descriptor of /etc/hostname numbered 200 or above, so that it is none
/// of INHERITED (dup2 onto itself would keep close-on-exec set).
fn source_fd() -> OwnedFd {
    let file = File::open("/etc/hostname").expect("opening /etc/hostname");
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we own into a new one.
    let fd = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 200) };
    assert!(fd >= 200, "fcntl: {}", io::Error::last_os_error());
    // SAFETY: fcntl just opened fd and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Makes `cmd` start with `source` open, without close-on-exec, on every
/// INHERITED descriptor, and under the close_range filter if `filter`.
fn inheriting<'a>(cmd: &'a mut Command, source: &OwnedFd, filter: bool) -> &'a mut Command {
    let source = source.as_raw_fd();
    let hook = move || {
        for fd in INHERITED {
            // SAFETY: dup2 onto a number the child does not use otherwise.
            if unsafe { libc::dup2(source, fd) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        if filter {
            install_filter()?;
        }
        Ok(())
    };
    // SAFETY: the hook runs in the child between fork and exec; it makes
    // only system calls (dup2, prctl) and neither allocates nor locks.
    unsafe { cmd.pre_exec(hook) }
}

fn bpf_stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn bpf_jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Installs on the calling thread a seccomp filter that fails close_range
/// with ENOSYS and allows everything else. A test fixture, not a security
/// boundary: it skips the architecture check (close_range is 436 on every
/// architecture).
fn install_filter() -> io::Result<()> {
    let mut program = [
        // Load seccomp_data.nr, the system call number.
        bpf_stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        bpf_jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            libc::SYS_close_range as u32,
            0,
            1,
        ),
        bpf_stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
        bpf_stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: no_new_privs takes one integer; the others must be zero.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1u64, 0u64, 0u64, 0u64) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: prog points to `program`, which outlives the call; the kernel
    // copies the filter.
    if unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            std::ptr::addr_of!(prog),
        )
    } == -1
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
