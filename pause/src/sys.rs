//! Small libc helpers: the one place where "-1 and errno" becomes an error,
//! and how pause writes to its standard streams without allocating.

use core::ffi::c_int;

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
