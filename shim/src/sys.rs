//! The shim's raw calls: pidfds, descriptors handed to the runtime or taken
//! over, terminal sizes, and what a child does between fork and exec.
//!
//! Every `unsafe` block of the shim is here, each with its reason.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use berth_sandbox::cgroup::oom::OomSource;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// pidfds: one implementation, the sandbox crate's.
pub use berth_sandbox::process::{pidfd_open, pidfd_send_signal};

/// What owns its descriptor for as long as it lives and never swaps it for
/// another: what the runtime may watch.
///
/// # Safety
///
/// `as_raw_fd` must return the same open descriptor, owned by the value
/// alone, for as long as the value lives.
pub unsafe trait OwnsFd: AsRawFd {}
// SAFETY: an OwnedFd is its descriptor, open until it is dropped.
unsafe impl OwnsFd for OwnedFd {}
// SAFETY: an OomSource holds one OwnedFd in a private field that it never
// replaces, and hands out only borrows of it.
unsafe impl OwnsFd for OomSource {}

/// Hands a descriptor's owner to the runtime, its descriptor set
/// non-blocking.
pub fn register<T: OwnsFd + AsFd>(owner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    let fd = owner.as_fd();
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    // SAFETY: `OwnsFd` owners keep their one descriptor open, naming the
    // same file description, until they are dropped, which the AsyncFd
    // does when it is dropped itself.
    unsafe { AsyncFd::register_with_interest(owner, interest) }.map_err(io::Error::from)
}

/// Sets the size of the terminal whose master is `fd`.
pub fn set_window_size(fd: BorrowedFd<'_>, width: u32, height: u32) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: height.min(u16::MAX as u32) as u16,
        ws_col: width.min(u16::MAX as u32) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives
    // across the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The size (width, height) of the terminal `fd` is a side of.
#[cfg(test)]
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which lives
    // across the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((size.ws_col, size.ws_row))
}

/// Takes the first descriptor passed in a message on `socket` (the pty
/// master libcontainer sends). Any others are closed.
pub fn recv_fd(socket: RawFd) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 256];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut received = None;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: the kernel just installed this descriptor for us
                // and nothing else owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                received.get_or_insert(fd);
            }
        }
    }
    received.ok_or_else(|| io::Error::other("no descriptor in the message"))
}

/// A close-on-exec copy of `fd` numbered `min` or above.
pub fn dup_at_least(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    let raw = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: fcntl just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Takes over the listening socket `start` left on descriptor `fd` for the
/// serving shim. Only once per process, and only if `fd` is a socket: the
/// listener then owns it, as nothing else in the process does.
pub fn take_listener(fd: RawFd) -> io::Result<UnixListener> {
    static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if TAKEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Err(io::Error::other("the handed-over socket was taken already"));
    }
    let kind = std::fs::metadata(format!("/proc/self/fd/{fd}"))?.file_type();
    if !std::os::unix::fs::FileTypeExt::is_socket(&kind) {
        return Err(io::Error::other(format!("descriptor {fd} is not a socket")));
    }
    // SAFETY: `fd` is open (its /proc link resolved) and is the socket `start` put
    // there before exec, which nothing in this process opened or owns; the
    // guard above makes this the one taking of it.
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    nix::fcntl::fcntl(
        &listener,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    Ok(listener)
}

/// Spawns `command` with each `(source, target)` pair's source placed at
/// `target` in the child, inheritable, and, with `new_session`, leading a
/// session of its own. Every source must be numbered above every target, so
/// that no placement overwrites a source; the borrows keep the sources open
/// until the child has them. This forks (it needs `pre_exec`): the serving
/// shim calls it through [`crate::reaper::unreaped`].
pub fn spawn_with_fds(
    command: &mut Command,
    fds: &[(BorrowedFd<'_>, RawFd)],
    new_session: bool,
) -> io::Result<Child> {
    let pairs: Vec<(RawFd, RawFd)> = fds.iter().map(|(s, t)| (s.as_raw_fd(), *t)).collect();
    let lowest_source = pairs.iter().map(|p| p.0).min().unwrap_or(RawFd::MAX);
    let highest_target = pairs.iter().map(|p| p.1).max().unwrap_or(RawFd::MIN);
    if pairs.iter().any(|(s, t)| s != t) && lowest_source <= highest_target {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptors {pairs:?} would overwrite each other"),
        ));
    }
    // SAFETY: between fork and exec the closure calls only async-signal-safe
    // functions (dup2, fcntl, setsid); it allocates nothing (the pairs are
    // moved in before the fork) and takes no lock. The sources are open
    // across the spawn: they are borrowed for this call.
    unsafe {
        command.pre_exec(move || {
            for &(source, target) in &pairs {
                let ret = if source == target {
                    libc::fcntl(source, libc::F_SETFD, 0)
                } else {
                    libc::dup2(source, target)
                };
                if ret == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if new_session && libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}
