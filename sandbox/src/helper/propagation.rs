//! The propagation each mount of a container's spec asks for (`rprivate`,
//! `rslave`, `rshared`...), set in the container's mount namespace once
//! libcontainer has made it and before its process runs. libcontainer
//! mounts binds by cloning the source's tree, which keeps the source's
//! propagation and drops the options: without this, every volume of a
//! shared host directory would receive the host's later mounts (and, in a
//! container whose root is `rshared`, send its own to the host), whatever
//! CRI asked. runc sets these after each mount; this sets them in spec
//! order after all of them, each through a descriptor opened inside the
//! container's root. Runs in the helper.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sched::{setns, CloneFlags};
use nix::unistd::{fork, ForkResult};
use oci_spec::runtime::Spec;

use crate::error::{Error, Result};
use crate::sys;

/// The spec's mounts that name a propagation: the destination inside the
/// container and the flags for mount(2), in spec order.
pub(super) fn wanted(oci: &Spec) -> Vec<(PathBuf, MsFlags)> {
    oci.mounts()
        .iter()
        .flatten()
        .filter_map(|m| {
            let options = m.options().clone().unwrap_or_default();
            let propagation = crate::mount::parse(&options).propagation;
            (!propagation.is_empty()).then(|| (m.destination().clone(), propagation))
        })
        .collect()
}

/// Where the child stopped: joining the namespace, or mount `i` of the list.
const SETNS: u32 = u32::MAX;

/// Sets [`wanted`]'s propagation on the mounts of container init `pid`,
/// from a child that joins its mount namespace (and so its root).
pub(super) fn apply(pid: i32, oci: &Spec) -> Result<()> {
    let wanted = wanted(oci);
    if wanted.is_empty() {
        return Ok(());
    }
    let ns_path = format!("/proc/{pid}/ns/mnt");
    let ns = File::open(&ns_path).map_err(Error::io("open", &ns_path))?;
    // Without one of its own the container's mounts are the host's.
    let own =
        std::fs::metadata("/proc/self/ns/mnt").map_err(Error::io("stat", "/proc/self/ns/mnt"))?;
    let theirs = ns.metadata().map_err(Error::io("stat", &ns_path))?;
    if (own.dev(), own.ino()) == (theirs.dev(), theirs.ino()) {
        return Err(Error::invalid(
            "linux.namespaces",
            "mount propagation options need a mount namespace of the container's own",
        ));
    }
    let (report_r, report_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(Error::errno("pipe2"))?;
    // SAFETY: the helper is single-threaded (dispatched from main() before
    // any thread exists), so the child may run ordinary code; it leaves
    // only through _exit.
    match unsafe { fork() }.map_err(Error::errno("fork"))? {
        ForkResult::Child => {
            drop(report_r);
            let failed = in_namespace(&ns, &wanted).err();
            if let Some((step, errno)) = failed {
                let mut report = [0u8; 8];
                report[..4].copy_from_slice(&step.to_ne_bytes());
                report[4..].copy_from_slice(&(errno as i32).to_ne_bytes());
                let _ = nix::unistd::write(&report_w, &report);
            }
            sys::exit_now(i32::from(failed.is_some()))
        }
        ForkResult::Parent { child } => {
            drop(report_w);
            let mut report = [0u8; 8];
            let n = super::pause::read_full(&report_r, &mut report);
            let status = nix::sys::wait::waitpid(child, None).map_err(Error::errno("waitpid"))?;
            if n != report.len() {
                return match status {
                    nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(()),
                    other => Err(Error::Sys {
                        op: format!("set mount propagation in container init {pid}: {other:?}"),
                        source: std::io::Error::other("the child gave no report"),
                    }),
                };
            }
            let step = u32::from_ne_bytes(report[..4].try_into().expect("4 bytes"));
            let errno = i32::from_ne_bytes(report[4..].try_into().expect("4 bytes"));
            let op = match wanted.get(step as usize) {
                Some((dest, flags)) => format!(
                    "set propagation {flags:?} on mount {} of the container",
                    dest.display()
                ),
                None => format!("join the mount namespace of container init {pid}"),
            };
            Err(Error::Sys {
                op,
                source: std::io::Error::from_raw_os_error(errno),
            })
        }
    }
}

/// The child's part; the error names the step and its errno. Each
/// destination (already the path it resolves to inside the rootfs) is
/// opened from the container's root with no symlink, magic link or `..`
/// out of it allowed, and its mount changed through that descriptor: a
/// process of the pod that swapped a directory for a link since
/// libcontainer mounted there cannot lead the change onto a mount of the
/// host or of another container.
fn in_namespace(
    ns: &File,
    wanted: &[(PathBuf, MsFlags)],
) -> std::result::Result<(), (u32, nix::errno::Errno)> {
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNS).map_err(|e| (SETNS, e))?;
    // setns made the namespace's root (the container's) this one's.
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| (SETNS, e))?;
    let how = nix::fcntl::OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(
            nix::fcntl::ResolveFlag::RESOLVE_IN_ROOT
                | nix::fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS
                | nix::fcntl::ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    for (i, (dest, flags)) in wanted.iter().enumerate() {
        let step = |e| (i as u32, e);
        let relative = dest.strip_prefix("/").unwrap_or(dest);
        let fd = nix::fcntl::openat2(&root, relative, how).map_err(step)?;
        let propagation = (*flags & !MsFlags::MS_REC).bits();
        // EINVAL if it is not the root of a mount: not what was mounted.
        sys::set_propagation(fd.as_fd(), propagation, flags.contains(MsFlags::MS_REC))
            .map_err(|e| step(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mount_s_propagation_option_is_wanted_in_spec_order() {
        let oci: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/mnt/a", "type": "bind", "source": "/a",
                 "options": ["rbind", "rprivate"]},
                {"destination": "/mnt/b", "type": "bind", "source": "/b",
                 "options": ["rbind", "rshared", "ro"]},
                {"destination": "/mnt/c", "type": "bind", "source": "/c",
                 "options": ["bind", "slave"]},
                {"destination": "/mnt/d", "type": "bind", "source": "/d",
                 "options": ["rbind", "ro"]},
                {"destination": "/mnt/e", "type": "bind", "source": "/e",
                 "options": ["rbind", "runbindable"]}
            ]
        }))
        .unwrap();
        assert_eq!(
            wanted(&oci),
            vec![
                (
                    PathBuf::from("/mnt/a"),
                    MsFlags::MS_PRIVATE | MsFlags::MS_REC
                ),
                (
                    PathBuf::from("/mnt/b"),
                    MsFlags::MS_SHARED | MsFlags::MS_REC
                ),
                (PathBuf::from("/mnt/c"), MsFlags::MS_SLAVE),
                (
                    PathBuf::from("/mnt/e"),
                    MsFlags::MS_UNBINDABLE | MsFlags::MS_REC
                ),
            ]
        );
    }
}
