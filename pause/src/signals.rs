//! Signals. Pause blocks every signal and takes them one at a time with
//! rt_sigtimedwait, so no signal is ever delivered: no handler runs and no
//! default action (terminate, stop, dump core) ever applies. A SIGTSTP,
//! SIGTTIN or SIGTTOU taken this way cannot stop it. SIGKILL and SIGSTOP
//! cannot be blocked; the kernel leaves them out of the mask.
//!
//! The system calls are made directly, not through libc's wrappers: musl's
//! sigfillset leaves out signals 32 to 34, and glibc's sigprocmask will not
//! block 32 and 33, the signals those libraries keep for their threads.
//! Pause has no threads and no handlers, so any signal it left unblocked
//! would kill it.

use core::ffi::c_int;
use core::ptr;

use crate::sys::{check, Errno};

/// Every signal, as the kernel's signal set: one bit per signal, 64 signals
/// on every architecture berth builds for (only MIPS has 128).
static ALL: u64 = !0;

/// The size of the kernel's signal set, which the system calls check.
const SET_SIZE: usize = core::mem::size_of::<u64>();

/// Blocks every signal that can be blocked.
pub fn block_all() -> Result<(), Errno> {
    // SAFETY: ALL is a kernel signal set of SET_SIZE bytes that lives
    // forever; a null old set asks for nothing back.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            ptr::addr_of!(ALL),
            ptr::null_mut::<u64>(),
            SET_SIZE,
        )
    };
    check(ret).map(drop)
}

/// Waits for the next signal and returns its number.
pub fn next() -> Result<c_int, Errno> {
    // SAFETY: ALL is a kernel signal set of SET_SIZE bytes that lives
    // forever; a null siginfo asks for no details, a null timeout waits for
    // as long as it takes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigtimedwait,
            ptr::addr_of!(ALL),
            ptr::null_mut::<libc::siginfo_t>(),
            ptr::null::<libc::timespec>(),
            SET_SIZE,
        )
    };
    // A signal number always fits in a c_int.
    check(ret).map(|signal| c_int::try_from(signal).unwrap_or(0))
}
