//! Every raw call pause makes: the one place where "-1 and errno" becomes
//! an error, how pause writes to its standard streams without allocating,
//! and the system calls the other modules decide about.

use core::ffi::{c_int, c_uint, c_ulong, CStr};
use core::ptr;

/// The errno of a call that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub c_int);

impl Errno {
    /// The errno left by the last failed call of this thread.
    pub fn last() -> Self {
        // SAFETY: __errno_location returns a valid pointer to this thread's
        // errno, readable at any time.
        Errno(unsafe { *libc::__errno_location() })
    }
}

/// Turns the C convention (-1, with the reason in errno) into a `Result`.
pub fn check<T: Copy + PartialEq + From<i8>>(ret: T) -> Result<T, Errno> {
    if ret == T::from(-1) {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// Writes all of `bytes` to `fd`, retrying short and interrupted writes.
pub fn write_all(fd: c_int, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe the live slice `bytes`.
        let ret = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        match check(ret) {
            // write(2) returns 0 only for an empty buffer; never loop on it.
            Ok(0) => return Err(Errno(libc::EIO)),
            Ok(n) => bytes = bytes.get(n.unsigned_abs()..).unwrap_or_default(),
            Err(Errno(libc::EINTR)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Writes a warning to stderr. Pause may have been started with stderr
/// closed or broken, and a warning it cannot write is not worth dying for.
pub fn warn(message: &[u8]) {
    let _ = write_all(libc::STDERR_FILENO, message);
}

/// Reports a failed start-up step on stderr and returns the exit status 1.
pub fn fail(step: &[u8], errno: Errno) -> c_int {
    let mut digits = [0; 10];
    warn(b"berth-pause: ");
    warn(step);
    warn(b": errno ");
    warn(decimal(errno.0.unsigned_abs(), &mut digits));
    warn(b"\n");
    1
}

/// Renders `n` in decimal at the end of `buf` and returns those digits.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut start = buf.len();
    for slot in buf.iter_mut().rev() {
        // n % 10 < 10, so the cast keeps every bit.
        *slot = b'0' + (n % 10) as u8;
        start -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[start..]
}

/// Sleeps for a tenth of a second, so that a call failing again and again
/// costs a warning a tenth of a second rather than a busy core.
pub fn back_off() {
    let tenth = libc::timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    // SAFETY: `tenth` is a valid timespec; a null remainder asks for nothing
    // back. An early wake-up only shortens the sleep.
    unsafe { libc::nanosleep(&tenth, core::ptr::null_mut()) };
}

/// The kernel's signal set: one bit per signal, 64 signals on every
/// architecture berth builds for (only MIPS has 128).
pub type SigSet = u64;

/// The size of the kernel's signal set, which the system calls check.
const SET_SIZE: usize = core::mem::size_of::<SigSet>();

/// Makes `set` the blocked signals, with the system call itself (libc's
/// wrappers leave out the signals they keep for their threads).
pub fn block_signals(set: &'static SigSet) -> Result<(), Errno> {
    // SAFETY: `set` is a kernel signal set of SET_SIZE bytes that lives
    // forever; a null old set asks for nothing back.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            ptr::from_ref(set),
            ptr::null_mut::<SigSet>(),
            SET_SIZE,
        )
    };
    check(ret).map(drop)
}

/// Waits for the next signal of `set` and returns its number.
pub fn wait_signal(set: &'static SigSet) -> Result<c_int, Errno> {
    // SAFETY: `set` is a kernel signal set of SET_SIZE bytes that lives
    // forever; a null siginfo asks for no details, a null timeout waits for
    // as long as it takes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigtimedwait,
            ptr::from_ref(set),
            ptr::null_mut::<libc::siginfo_t>(),
            ptr::null::<libc::timespec>(),
            SET_SIZE,
        )
    };
    // A signal number always fits in a c_int.
    check(ret).map(|signal| c_int::try_from(signal).unwrap_or(0))
}

/// Closes every descriptor from `first` (3 or above) up, in one call.
///
/// berth-pause never opens a descriptor of its own: everything from 3 up
/// is inherited, and nothing in the program holds or uses one.
pub fn close_range(first: c_uint) -> Result<(), Errno> {
    debug_assert!(first >= 3, "stdin, stdout and stderr stay");
    // SAFETY: close_range only closes descriptors, and no part of pause
    // owns one at or above `first` (see above).
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, c_uint::MAX, 0 as c_uint) };
    check(ret).map(drop)
}

/// Closes `fd` (3 or above), whether it is open or not: an inherited
/// descriptor, which nothing in pause owns (see [`close_range`]).
pub fn close(fd: c_int) {
    debug_assert!(fd >= 3, "stdin, stdout and stderr stay");
    // SAFETY: no part of pause owns a descriptor at or above 3; closing one
    // that is not open fails with EBADF, harmlessly.
    unsafe { libc::close(fd) };
}

/// The soft limit on open descriptors.
pub fn descriptor_limit() -> Result<libc::rlim_t, Errno> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill in.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) })?;
    Ok(limit.rlim_cur)
}

/// Reaps one exited child of any kind, if there is one: its pid, or 0 when
/// children are left but none has exited.
pub fn reap_one() -> Result<libc::pid_t, Errno> {
    // SAFETY: a null status pointer asks for no status; WNOHANG makes the
    // call return at once. __WALL also takes children that were cloned with
    // an exit signal other than SIGCHLD.
    check(unsafe { libc::waitpid(-1, ptr::null_mut(), libc::WNOHANG | libc::__WALL) })
}

/// Changes the working directory.
pub fn chdir(path: &CStr) -> Result<(), Errno> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

/// The process's own pid.
pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// Makes the process undumpable (PR_SET_DUMPABLE 0).
pub fn set_undumpable() -> Result<(), Errno> {
    prctl_int(libc::PR_SET_DUMPABLE, 0)
}

/// Makes the process adopt its orphaned descendants
/// (PR_SET_CHILD_SUBREAPER 1).
pub fn set_child_subreaper() -> Result<(), Errno> {
    prctl_int(libc::PR_SET_CHILD_SUBREAPER, 1)
}

/// A prctl option that reads one integer argument, never a pointer: only
/// the options above are passed here.
fn prctl_int(option: c_int, value: c_ulong) -> Result<(), Errno> {
    // SAFETY: both callers pass an option that reads one integer argument
    // and ignores the rest, which are passed as zero, as the kernel asks of
    // unused arguments; no memory is read or written.
    check(unsafe { libc::prctl(option, value, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) }).map(drop)
}

/// Ends the process at once.
#[cfg(all(panic = "abort", not(test)))]
pub fn abort() -> ! {
    // SAFETY: abort has no preconditions; it ends the process at once.
    unsafe { libc::abort() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_passes_success_through() {
        assert_eq!(check(0_i32), Ok(0));
        assert_eq!(check(42_isize), Ok(42));
    }

    #[test]
    fn check_reads_errno_on_minus_one() {
        // SAFETY: closing -1 touches no descriptor; it only fails.
        let ret = unsafe { libc::close(-1) };
        assert_eq!(check(ret), Err(Errno(libc::EBADF)));
    }

    #[test]
    fn decimal_renders_numbers() {
        let mut buf = [0; 10];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(7, &mut buf), b"7");
        assert_eq!(decimal(110, &mut buf), b"110");
        assert_eq!(decimal(u32::MAX, &mut buf), b"4294967295");
    }

    #[test]
    fn write_all_reports_a_bad_fd() {
        assert_eq!(write_all(-1, b"x"), Err(Errno(libc::EBADF)));
        assert_eq!(write_all(-1, b""), Ok(()));
    }
}
