//! Pause's life: start-up, then the signal loop until SIGTERM or SIGINT.

use core::ffi::c_int;

use crate::sys::{self, Errno};
use crate::{fds, process, reaper, signals};

/// A start-up step and what to say if it fails.
type Step = (&'static [u8], fn() -> Result<(), Errno>);

/// Start-up, in order. Signals come first: a SIGTERM that arrives during
/// start-up then waits for the loop, instead of killing pause half set up.
/// Closing inherited fds comes last: whoever started pause can hand it one
/// end of a pipe and read EOF as "start-up is done".
const START_UP: [Step; 5] = [
    (b"cannot block signals", signals::block_all),
    (b"cannot change directory to /", process::chdir_root),
    (b"cannot make itself undumpable", process::make_undumpable),
    (b"cannot become a child subreaper", process::adopt_orphans),
    (b"cannot close inherited fds", fds::close_inherited),
];

/// Runs pause and returns its exit status.
pub fn run() -> c_int {
    // Start-up is the last time pause may give up.
    for (what, step) in START_UP {
        if let Err(errno) = step() {
            return sys::fail(what, errno);
        }
    }
    serve()
}

/// Waits for signals until SIGTERM or SIGINT. Never fails: an error is
/// reported and the loop goes on.
fn serve() -> c_int {
    // Children that exited before signals were blocked sent a SIGCHLD that
    // was discarded; the process that exec'd pause may have left some.
    reaper::reap_all();
    loop {
        match signals::next() {
            Ok(libc::SIGTERM | libc::SIGINT) => return 0,
            Ok(libc::SIGCHLD) => reaper::reap_all(),
            // Every other signal has been taken off the queue, and so is ignored.
            Ok(_) => {}
            // The wait was cut short, by a SIGSTOP and SIGCONT for one.
            Err(Errno(libc::EINTR)) => {}
            Err(_) => {
                sys::warn(b"berth-pause: waiting for signals failed\n");
                // Without signals, SIGCHLD is lost too: reap on a timer.
                reaper::reap_all();
                sys::back_off();
            }
        }
    }
}
