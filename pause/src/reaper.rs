//! Reaping: collecting the exit status of every child that has exited, so
//! that none stays a zombie holding a PID.

use crate::sys::{self, warn, Errno};

/// Reaps every child that has exited, without waiting for the others.
///
/// One SIGCHLD can stand for many exits (a pending signal is not counted
/// twice), so this goes on until no exited child is left.
pub fn reap_all() {
    loop {
        match sys::reap_one() {
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
