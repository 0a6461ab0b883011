//! Thin wrappers over the raw system calls that nix does not cover.
//!
//! Every `unsafe` block of the crate's process set-up lives here.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Turns a libc return value into an `io::Result`, reading errno on -1.
pub fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Drops every capability from the bounding set, so nothing exec'd later can
/// regain one even through a file capability.
pub fn drop_bounding_set() -> io::Result<()> {
    let last = last_cap();
    for cap in 0..=last {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        // EINVAL: the kernel does not know this capability; nothing to drop.
        if ret == -1 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The highest capability number the kernel knows, from /proc, with a safe
/// default when /proc cannot be read.
fn last_cap() -> libc::c_int {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Clears the ambient capability set.
pub fn clear_ambient() -> io::Result<()> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    cvt(ret as libc::c_long).map(drop)
}

/// Executes the program behind `fd` (opened before the root was changed),
/// with the given argument and environment vectors.
///
/// Returns only on failure.
pub fn execveat(
    fd: BorrowedFd<'_>,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> io::Error {
    debug_assert!(argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(envp.last().is_some_and(|p| p.is_null()));
    let empty: &CStr = c"";
    // SAFETY: argv and envp are null-terminated arrays of pointers to
    // NUL-terminated strings that outlive the call; the path is an empty
    // C string, as AT_EMPTY_PATH requires.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            empty.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    io::Error::last_os_error()
}

/// Ends the calling process at once, without running destructors or atexit
/// handlers: the only safe way out of a forked child.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}
