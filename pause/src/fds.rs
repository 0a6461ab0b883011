//! File descriptors. Pause keeps none of its parent's beyond stdin, stdout
//! and stderr: an inherited pipe end would keep the reader on the other side
//! from ever seeing EOF, and an open file or directory would keep its mount
//! busy for as long as the pod lives.
//!
//! /proc is not used to list them: berth starts pause in a mount namespace
//! whose root is an empty tmpfs.

use core::ffi::{c_int, c_uint};

use crate::sys::{self, Errno};

/// The first descriptor that is not stdin, stdout or stderr.
const FIRST: c_uint = 3;

/// Closes every descriptor from 3 up. Nothing in pause owns one it would
/// use afterwards.
pub fn close_inherited() -> Result<(), Errno> {
    match sys::close_range(FIRST) {
        Ok(()) => Ok(()),
        // Kernels before 5.9 have no close_range (ENOSYS), and a seccomp
        // filter may refuse it (often with EPERM): close them one at a time.
        Err(_) => close_each_below_limit(),
    }
}

/// Closes descriptors 3 up to the soft RLIMIT_NOFILE, the highest number
/// pause could have been given (unless the limit was lowered after the
/// descriptor was opened, which the fallback accepts). Most of them are not
/// open; closing those fails, which is fine.
fn close_each_below_limit() -> Result<(), Errno> {
    let end = c_int::try_from(sys::descriptor_limit()?).unwrap_or(c_int::MAX);
    for fd in FIRST as c_int..end {
        sys::close(fd);
    }
    Ok(())
}
