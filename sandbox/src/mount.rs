//! A container's root filesystem: the mounts containerd hands to Create
//! (an overlay, or a bind of a single snapshot), mounted on the bundle's
//! `rootfs` and taken down again on Delete.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One mount of a Create request, as containerd describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The filesystem type: `overlay`, `bind`, `tmpfs`...
    pub kind: String,
    pub source: String,
    /// fstab-style options; flags are taken out, the rest is the mount data.
    pub options: Vec<String>,
}

/// Flags and data for mount(2), parsed from fstab-style options.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) flags: MsFlags,
    /// Applied by a second call: propagation cannot be set while mounting.
    pub(crate) propagation: MsFlags,
    pub(crate) data: String,
}

pub(crate) fn parse(options: &[String]) -> Parsed {
    let mut parsed = Parsed {
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: String::new(),
    };
    for option in options {
        let (set, clear) = match option.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "defaults" | "async" => (MsFlags::empty(), MsFlags::empty()),
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" | "unbindable"
            | "runbindable" => {
                let recursive = option.starts_with('r');
                let mut p = match option.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "slave" => MsFlags::MS_SLAVE,
                    "unbindable" => MsFlags::MS_UNBINDABLE,
                    _ => MsFlags::MS_SHARED,
                };
                if recursive {
                    p |= MsFlags::MS_REC;
                }
                parsed.propagation = p;
                continue;
            }
            "" => continue,
            data => {
                if !parsed.data.is_empty() {
                    parsed.data.push(',');
                }
                parsed.data.push_str(data);
                continue;
            }
        };
        parsed.flags = (parsed.flags | set) & !clear;
    }
    parsed
}

/// Mounts `mounts` on `target`, in order. On failure, what was mounted is
/// taken down again.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            if i > 0 {
                if let Err(undo) = unmount_all(target) {
                    log::warn!("unmount {} after a failed mount: {undo}", target.display());
                }
            }
            return Err(e);
        }
    }
    Ok(())
}

fn mount_one(m: &Mount, target: &Path) -> Result<()> {
    let mut parsed = parse(&m.options);
    let op = || format!("mount {} {} on {}", m.kind, m.source, target.display());
    let bind = parsed.flags.contains(MsFlags::MS_BIND);
    // Open while the mount is made, if the lowerdirs are given through it.
    let mut _lower_parent = None;
    if m.kind == "overlay" && parsed.data.len() >= PAGE {
        let (fd, data) = compact_lowerdir(&parsed.data)?;
        _lower_parent = Some(fd);
        parsed.data = data;
    }
    let data = (!parsed.data.is_empty()).then_some(parsed.data.as_str());
    let fstype = (!bind).then_some(m.kind.as_str());
    mount(Some(m.source.as_str()), target, fstype, parsed.flags, data)
        .map_err(|e| Error::sys(op())(e.into()))?;
    // A bind ignores every flag but MS_REC: a read-only bind needs a remount.
    let remount = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if bind && parsed.flags.intersects(remount) {
        let flags = (parsed.flags & remount) | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
            .map_err(|e| Error::sys(format!("{} (remount)", op()))(e.into()))?;
    }
    if !parsed.propagation.is_empty() {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            parsed.propagation,
            None::<&str>,
        )
        .map_err(|e| Error::sys(format!("{} (propagation)", op()))(e.into()))?;
    }
    Ok(())
}

/// What mount(2) reads of its data: one page, its NUL included.
const PAGE: usize = 4096;

/// overlay's options with every lowerdir given as `/proc/self/fd/<fd>/<rest>`,
/// `fd` open on the lowerdirs' common parent (containerd's snapshots
/// directory), for options that would not fit in a page: about 55 layers
/// of containerd's paths. containerd's mount.All makes them relative to
/// that directory, which needs a working directory of the mount's own; the
/// shim, multi-threaded, shares its working directory. mountinfo then shows the lowerdirs by those paths. The fd is
/// returned to be held until the mount is made.
fn compact_lowerdir(data: &str) -> Result<(std::os::fd::OwnedFd, String)> {
    let too_long = |why: &str| {
        Error::invalid(
            "rootfs",
            format!(
                "overlay options of {} bytes do not fit in mount(2)'s {PAGE}: {why}",
                data.len()
            ),
        )
    };
    let options: Vec<&str> = data.split(',').collect();
    let (at, lower) = options
        .iter()
        .enumerate()
        .find_map(|(i, o)| o.strip_prefix("lowerdir=").map(|l| (i, l)))
        .ok_or_else(|| too_long("no lowerdir to shorten"))?;
    // overlay's escapes (`\:`) are left alone: containerd writes none.
    if lower.contains('\\') {
        return Err(too_long("escaped lowerdir paths are not shortened"));
    }
    let dirs: Vec<&Path> = lower.split(':').map(Path::new).collect();
    let mut parent = dirs[0].parent().unwrap_or(Path::new("/")).to_path_buf();
    for dir in &dirs {
        if !dir.is_absolute() {
            return Err(too_long(&format!("lowerdir {} is relative", dir.display())));
        }
        while !dir.starts_with(&parent) {
            if !parent.pop() {
                break;
            }
        }
    }
    let fd = nix::fcntl::open(
        &parent,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::io("open", &parent)(e.into()))?;
    let prefix = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    let short: Vec<String> = dirs
        .iter()
        .map(|d| {
            let rest = d.strip_prefix(&parent).expect("under the common parent");
            format!("{prefix}/{}", rest.display())
        })
        .collect();
    let mut options: Vec<String> = options.iter().map(|o| o.to_string()).collect();
    options[at] = format!("lowerdir={}", short.join(":"));
    let compact = options.join(",");
    if compact.len() >= PAGE {
        return Err(too_long(&format!(
            "{} layers take {} bytes even from {}",
            dirs.len(),
            compact.len(),
            parent.display()
        )));
    }
    Ok((fd, compact))
}

/// Unmounts everything stacked on `target`. A busy mount is retried for a
/// short while and then detached, so it never outlives its container.
pub fn unmount_all(target: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match umount2(target, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue,
            // Not a mount point (any more), or gone.
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EBUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(Errno::EBUSY) => {
                log::warn!("{} still busy: detaching it", target.display());
                umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW)
                    .map_err(|e| Error::sys(format!("detach {}", target.display()))(e.into()))?;
            }
            Err(e) => {
                return Err(Error::sys(format!("unmount {}", target.display()))(
                    e.into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlay_options_become_data() {
        let p = parse(&opts(&[
            "index=off",
            "workdir=/w",
            "upperdir=/u",
            "lowerdir=/l1:/l2",
        ]));
        assert_eq!(p.flags, MsFlags::empty());
        assert_eq!(p.data, "index=off,workdir=/w,upperdir=/u,lowerdir=/l1:/l2");
    }

    #[test]
    fn long_lowerdirs_are_given_from_their_common_parent() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = dir
            .path()
            .join("io.containerd.snapshotter.v1.overlayfs/snapshots");
        let layers: Vec<String> = (1..=80)
            .map(|i| {
                let fs = snapshots.join(format!("{i}/fs"));
                std::fs::create_dir_all(&fs).unwrap();
                fs.to_string_lossy().into_owned()
            })
            .collect();
        let data = format!(
            "index=off,workdir={0}/81/work,upperdir={0}/81/fs,lowerdir={1}",
            snapshots.display(),
            layers.join(":")
        );
        assert!(data.len() >= PAGE, "the test's options must not fit");
        let (fd, compact) = compact_lowerdir(&data).unwrap();
        assert!(compact.len() < PAGE);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let lower = compact
            .split(',')
            .find_map(|o| o.strip_prefix("lowerdir="))
            .unwrap();
        let short: Vec<&str> = lower.split(':').collect();
        assert_eq!(short.len(), 80);
        assert_eq!(short[0], format!("/proc/self/fd/{fd}/1/fs"));
        // Each names the same directory as the long form, in order.
        for (s, l) in short.iter().zip(&layers) {
            assert_eq!(
                std::fs::canonicalize(s).unwrap(),
                std::fs::canonicalize(l).unwrap()
            );
        }
        assert!(compact.starts_with(&format!(
            "index=off,workdir={}/81/work,",
            snapshots.display()
        )));

        // Options that cannot be shortened enough are refused, named.
        let long = format!("lowerdir={}", vec![layers[0].as_str(); 800].join(":"));
        let err = compact_lowerdir(&long).unwrap_err().to_string();
        assert!(err.contains("800 layers"), "{err}");
        let err = compact_lowerdir(&"x".repeat(PAGE)).unwrap_err().to_string();
        assert!(err.contains("no lowerdir"), "{err}");
    }

    #[test]
    fn flags_are_taken_out_and_later_ones_win() {
        let p = parse(&opts(&["rbind", "ro", "nosuid", "rw", "rprivate"]));
        assert_eq!(
            p.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID
        );
        assert_eq!(p.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert!(p.data.is_empty());
    }
}
