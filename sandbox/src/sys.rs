//! Thin wrappers over the raw system calls that nix does not cover. Most
//! serve only the helper; the pidfd calls serve every caller.

#[cfg(feature = "helper")]
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

#[cfg(feature = "helper")]
/// Turns a libc return value into an `io::Result`, reading errno on -1.
pub fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

#[cfg(feature = "helper")]
/// Drops every capability from the bounding set, so nothing exec'd later can
/// regain one even through a file capability. Goes on until the kernel says
/// it knows no higher capability (EINVAL): no /proc needed, no allocation.
pub fn drop_bounding_set() -> io::Result<()> {
    for cap in 0..=63 {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if ret == -1 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) && cap > 0 {
                return Ok(());
            }
            return Err(err);
        }
    }
    Ok(())
}

#[cfg(feature = "helper")]
/// Joins the session keyring `name`, made anew if none by that name can be
/// found, and, when `searchable`, lets processes of its owner find it by
/// name (as runc does for a container's keyring, which its exec processes
/// then join).
pub fn join_session_keyring(name: &CStr, searchable: bool) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    const KEYCTL_SETPERM: libc::c_long = 5;
    const KEYCTL_DESCRIBE: libc::c_long = 6;
    const KEY_USR_SEARCH: u32 = 0x0008_0000;
    // SAFETY: the name is a NUL-terminated string that outlives the call.
    let serial = cvt(unsafe {
        libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr())
    })?;
    if !searchable {
        return Ok(());
    }
    let mut description = [0u8; 512];
    // SAFETY: the kernel writes at most `len` bytes into the buffer.
    let len = cvt(unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_DESCRIBE,
            serial,
            description.as_mut_ptr(),
            description.len(),
        )
    })? as usize;
    // "type;uid;gid;perm;description", perm in hex.
    let text = String::from_utf8_lossy(&description[..len.min(description.len())]);
    let perm = text
        .split(';')
        .nth(3)
        .and_then(|p| u32::from_str_radix(p.trim_end_matches('\0'), 16).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("keyring {text:?}")))?;
    // SAFETY: KEYCTL_SETPERM takes a key serial and a mask; no memory.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_SETPERM,
            serial,
            perm | KEY_USR_SEARCH,
        )
    })?;
    Ok(())
}

#[cfg(feature = "helper")]
/// Clears the effective, permitted and inheritable capability sets, whatever
/// securebits the process inherited.
pub fn clear_capabilities() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads a version-3 header and two data structs, both
    // valid for the duration of the call.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    cvt(ret).map(drop)
}

#[cfg(feature = "helper")]
/// Marks every descriptor from `first` up close-on-exec, so an exec'd
/// program inherits none of them, whoever leaked them to us.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes descriptor flags; it reads no memory.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    cvt(ret).map(drop)
}

#[cfg(feature = "helper")]
/// Blocks every signal for the calling thread. The mask survives exec, so
/// the exec'd program starts with nothing able to reach it before it is
/// ready for signals.
pub fn block_all_signals() -> io::Result<()> {
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::all()),
        None,
    )
    .map_err(io::Error::from)
}

#[cfg(feature = "helper")]
/// Clears close-on-exec on `fd`, so the exec'd program inherits it.
pub fn keep_on_exec(fd: std::os::fd::RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD on a descriptor of this process only changes its flags.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    cvt(ret as libc::c_long).map(drop)
}

#[cfg(feature = "helper")]
/// Clears the ambient capability set.
pub fn clear_ambient() -> io::Result<()> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    cvt(ret as libc::c_long).map(drop)
}

#[cfg(feature = "helper")]
/// Executes the program behind `fd` (opened before the root was changed),
/// with the given argument and environment vectors.
///
/// Returns only on failure.
pub fn execveat(
    fd: BorrowedFd<'_>,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> io::Error {
    debug_assert!(argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(envp.last().is_some_and(|p| p.is_null()));
    let empty: &CStr = c"";
    // SAFETY: argv and envp are null-terminated arrays of pointers to
    // NUL-terminated strings that outlive the call; the path is an empty
    // C string, as AT_EMPTY_PATH requires.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            empty.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    io::Error::last_os_error()
}

#[cfg(feature = "helper")]
/// Ends the calling process at once, without running destructors or atexit
/// handlers: the only safe way out of a forked child.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// `struct clone_args` up to `cgroup` (the kernel's CLONE_ARGS_SIZE_VER2).
#[cfg(feature = "helper")]
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

// A wrong layout would come back as EINVAL or E2BIG, which callers take
// for an old kernel.
#[cfg(feature = "helper")]
const _: () = assert!(std::mem::size_of::<CloneArgs>() == 88);

#[cfg(feature = "helper")]
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

#[cfg(feature = "helper")]
/// Forks the calling process with the child born in the cgroup v2
/// directory `cgroup` (clone3 with CLONE_INTO_CGROUP): no process is
/// migrated, so there is no `cgroup.procs` write and no write side of the
/// threadgroup lock, which a migration takes and which holds up every
/// fork and exit on the host meanwhile. Returns the child's pid in the
/// parent and 0 in the child, as fork does.
///
/// # Safety
/// As for fork: the caller is single-threaded, or the child does nothing
/// but async-signal-safe calls; either way it leaves only through exec or
/// [`exit_now`]. libc's own fork bookkeeping (atfork handlers, its cached
/// thread id) is not run for the child.
pub unsafe fn fork_into_cgroup(cgroup: BorrowedFd<'_>) -> io::Result<libc::pid_t> {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 reads `args` (valid for its size, which is passed)
    // and writes nothing of ours: no pidfd, tid or stack pointers are set,
    // so the child runs on a copy of this stack as after fork. The caller
    // upholds what the child may do.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    cvt(ret).map(|pid| pid as libc::pid_t)
}

#[cfg(feature = "helper")]
/// Whether a failed [`fork_into_cgroup`] means this kernel, or a seccomp
/// filter, does not offer it (and a plain fork after joining the cgroup
/// will do): no clone3 before Linux 5.3; before 5.7 a clone3 without
/// CLONE_INTO_CGROUP refuses the longer arguments (E2BIG) or the flag
/// (EINVAL); seccomp filters answer clone3 with ENOSYS (container
/// runtimes' default profiles) or EPERM (older ones, systemd's
/// `SystemCallFilter=`). A real refusal of the cgroup (EBUSY, EOPNOTSUPP,
/// EAGAIN at `pids.max`, ...) is none of these; nor, from the cgroup, is
/// an EPERM, which the join would then meet again and report.
pub fn clone3_unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL | libc::EPERM)
    )
}

/// A descriptor for process `pid`: signals through it reach that process
/// or none, whatever its pid is reused for later.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, open and ours alone;
    // pidfds are close-on-exec.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `signal` to the process behind `pidfd`.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal reads only its arguments; a null info makes
    // the kernel fill in a plain kill's.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `union bpf_attr` for BPF_PROG_LOAD, up to `expected_attach_type`.
#[cfg(feature = "helper")]
#[repr(C)]
struct BpfProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_PROG_ATTACH.
#[cfg(feature = "helper")]
#[repr(C)]
struct BpfProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// One eBPF instruction (`struct bpf_insn`), as the kernel reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BpfInsn {
    pub code: u8,
    /// dst in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}
const _: () = assert!(std::mem::size_of::<BpfInsn>() == 8);

#[cfg(feature = "helper")]
const BPF_PROG_LOAD: libc::c_long = 5;
#[cfg(feature = "helper")]
const BPF_PROG_ATTACH: libc::c_long = 8;
#[cfg(feature = "helper")]
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
#[cfg(feature = "helper")]
const BPF_CGROUP_DEVICE: u32 = 6;
#[cfg(feature = "helper")]
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Loads a cgroup device program. With `log`, the verifier writes what it
/// found into it (a log too small for that fails the load with ENOSPC).
#[cfg(feature = "helper")]
pub fn bpf_load_device_program(prog: &[BpfInsn], log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let (log_level, log_size, log_buf) = match log {
        Some(log) => (1, log.len() as u32, log.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"berth_device");
    let attr = BpfProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_DEVICE,
    };
    // SAFETY: the attr is a valid BPF_PROG_LOAD argument of the size given;
    // the instructions (`#[repr(C)]` bpf_insn), the licence string and the
    // log buffer (if any) it points to outlive the call, and the kernel
    // writes at most log_size bytes into the log. It returns a new
    // descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const BpfProgLoad,
            std::mem::size_of::<BpfProgLoad>() as u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, open and ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches a loaded device program to the cgroup open as `cgroup_fd`,
/// beside any others (the kernel allows an access only if all allow it).
#[cfg(feature = "helper")]
pub fn bpf_attach_device_program(cgroup_fd: i32, prog_fd: i32) -> io::Result<()> {
    let attr = BpfProgAttach {
        target_fd: cgroup_fd as u32,
        attach_bpf_fd: prog_fd as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: a valid BPF_PROG_ATTACH argument of the size given, read by
    // the kernel during the call only.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const BpfProgAttach,
            std::mem::size_of::<BpfProgAttach>() as u32,
        )
    };
    cvt(rc).map(drop)
}

/// `struct mount_attr` of mount_setattr(2), version 0.
#[cfg(feature = "helper")]
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Sets the propagation (`MS_SHARED`, `MS_SLAVE`, `MS_PRIVATE` or
/// `MS_UNBINDABLE`) of the mount whose root `fd` is open on, and with
/// `recursive` of every mount below it: mount_setattr(2), which names the
/// mount by descriptor, so no path is looked up again.
#[cfg(feature = "helper")]
pub fn set_propagation(fd: BorrowedFd<'_>, propagation: u64, recursive: bool) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: the path is an empty C string and the attr a valid
    // mount_attr of the size given, both read by the kernel during the call
    // only; the descriptor is borrowed for it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    cvt(rc).map(drop)
}

#[cfg(all(test, feature = "helper"))]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_clone3_falls_back_to_a_join() {
        let err = io::Error::from_raw_os_error;
        for errno in [libc::ENOSYS, libc::E2BIG, libc::EINVAL, libc::EPERM] {
            assert!(clone3_unsupported(&err(errno)), "errno {errno}");
        }
        // What the cgroup itself may answer: the join would fail the same way.
        for errno in [
            libc::EBUSY,
            libc::EOPNOTSUPP,
            libc::EAGAIN,
            libc::EBADF,
            libc::ENODEV,
        ] {
            assert!(!clone3_unsupported(&err(errno)), "errno {errno}");
        }
        assert!(!clone3_unsupported(&io::Error::other("no errno")));
    }
}
