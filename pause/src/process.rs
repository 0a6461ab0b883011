//! Attributes of the pause process itself, set once at start-up.

use core::ffi::{c_int, c_ulong};

use crate::sys::{check, Errno};

/// Moves to `/`, so that pause does not keep the directory it was started
/// from (and the mount under it) busy.
pub fn chdir_root() -> Result<(), Errno> {
    // SAFETY: the argument is a NUL-terminated string literal.
    check(unsafe { libc::chdir(c"/".as_ptr()) }).map(drop)
}

/// Makes pause undumpable. exec made it dumpable again; undumpable, its
/// /proc/<pid> entries belong to root, so another user cannot open
/// /proc/<pid>/root, cwd or fd and look into the pod through them.
pub fn make_undumpable() -> Result<(), Errno> {
    prctl(libc::PR_SET_DUMPABLE, 0)
}

/// Makes pause adopt the orphans among its descendants. PID 1 of a PID
/// namespace does that already; pause started in its parent's PID namespace
/// must ask to be a child subreaper, or the orphans would go to a reaper
/// outside the pod.
pub fn adopt_orphans() -> Result<(), Errno> {
    // SAFETY: getpid has no preconditions and cannot fail.
    if unsafe { libc::getpid() } == 1 {
        return Ok(());
    }
    prctl(libc::PR_SET_CHILD_SUBREAPER, 1)
}

/// A prctl option that takes one integer argument.
fn prctl(option: c_int, value: c_ulong) -> Result<(), Errno> {
    // SAFETY: the options used here read one integer argument and ignore the
    // rest, which are passed as zero, as the kernel asks of unused arguments.
    check(unsafe { libc::prctl(option, value, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) }).map(drop)
}
