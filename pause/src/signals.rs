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

use crate::sys::{self, Errno, SigSet};

/// Every signal.
static ALL: SigSet = !0;

/// Blocks every signal that can be blocked.
pub fn block_all() -> Result<(), Errno> {
    sys::block_signals(&ALL)
}

/// Waits for the next signal and returns its number.
pub fn next() -> Result<c_int, Errno> {
    sys::wait_signal(&ALL)
}
