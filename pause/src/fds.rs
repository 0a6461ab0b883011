//! File descriptors. Pause keeps none of its parent's beyond stdin, stdout
//! and stderr: an inherited pipe end would keep the reader on the other side
//! from ever seeing EOF, and an open file or directory would keep its mount
//! busy for as long as the pod lives.
//!
//! /proc is not used to list them: berth starts pause in a mount namespace
//! whose root is an empty tmpfs.

use core::ffi::{c_int, c_uint};

use crate::sys::{check, Errno};

/// The first descriptor that is not stdin, stdout or stderr.
const FIRST: c_uint = 3;

/// Closes every descriptor from 3 up.
pub fn close_inherited() -> Result<(), Errno> {
    // SAFETY: close_range only closes descriptors, and nothing in pause owns
    // one at or above 3 that it would use afterwards.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, FIRST, c_uint::MAX, 0 as c_uint) };
    match check(ret) {
        Ok(_) => Ok(()),
        // Kernels before 5.9 have no close_range (ENOSYS), and a seccomp
        // filter may refuse it (often with EPERM): close them one at a time.
        Err(_) => close_each_below_limit(),
    }
}

/// Closes descriptors 3 up to the soft RLIMIT_NOFILE, the highest number
/// pause could have been given (unless the limit was lowered after the
/// descriptor was opened, which the fallback accepts).
fn close_each_below_limit() -> Result<(), Errno> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill in.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) })?;
    let end = c_int::try_from(limit.rlim_cur).unwrap_or(c_int::MAX);
    for fd in FIRST as c_int..end {
        // SAFETY: as above, nothing in pause owns the descriptor. Most of them
        // are not open; close fails with EBADF for those, which is fine.
        unsafe { libc::close(fd) };
    }
    Ok(())
}
