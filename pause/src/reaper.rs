//! Reaping: collecting the exit status of every child that has exited, so
//! that none stays a zombie holding a PID.

use core::ptr;

use crate::sys::{check, warn, Errno};

/// Reaps every child that has exited, without waiting for the others.
///
/// One SIGCHLD can stand for many exits (a pending signal is not counted
/// twice), so this goes on until no exited child is left.
pub fn reap_all() {
    loop {
        // SAFETY: a null status pointer asks for no status; WNOHANG makes
        // the call return at once. __WALL also takes children that were
        // cloned with an exit signal other than SIGCHLD.
        let ret = unsafe { libc::waitpid(-1, ptr::null_mut(), libc::WNOHANG | libc::__WALL) };
        match check(ret) {
            // Children are left, none of them has exited.
            Ok(0) => return,
            Ok(_) => {}
            Err(Errno(libc::EINTR)) => {}
            Err(Errno(libc::ECHILD)) => return,
            Err(_) => {
                warn(b"berth-pause: waitpid failed\n");
                return;
            }
        }
    }
}
