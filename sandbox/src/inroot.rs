//! Paths inside a container's rootfs, resolved inside it.
//!
//! An image author controls every symlink in the rootfs. A mount
//! destination such as `/etc/hosts`, or the `/dev` libcontainer fills with
//! device nodes and links, must never lead out of it: an absolute link is
//! read as if the rootfs were `/`, and `..` stops at the rootfs, as
//! `openat2(RESOLVE_IN_ROOT)` and runc's securejoin read them.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// As many links as the kernel follows in one lookup.
const MAX_LINKS: usize = 40;

/// The directories libcontainer writes into by name: one of them a link
/// would send its device nodes and links wherever the image points.
pub const SPECIAL_DIRS: [&str; 3] = ["/dev", "/proc", "/sys"];

/// Resolves `path` (absolute, as the container sees it) inside `root`,
/// following the links the rootfs holds as the container would see them.
/// Returns the resolved path, still as the container sees it (absolute,
/// no link in any existing component); the part that does not exist yet is
/// kept as it was asked for, minus `.` and `..`.
pub fn resolve(root: &Path, path: &Path) -> Result<PathBuf> {
    let field = || path.display().to_string();
    let mut done: Vec<OsString> = Vec::new();
    // What is still to walk, last component first.
    let mut todo: Vec<OsString> = components(path).into_iter().rev().collect();
    let mut links = 0;
    // How deep the first component that does not exist is: below it
    // nothing exists, and `..` back above it is walked again.
    let mut missing_at: Option<usize> = None;
    while let Some(part) = todo.pop() {
        if part == ".." {
            done.pop();
            if missing_at.is_some_and(|depth| done.len() < depth) {
                missing_at = None;
            }
            continue;
        }
        done.push(part);
        if missing_at.is_some() {
            continue;
        }
        let here = join(root, &done);
        let meta = match std::fs::symlink_metadata(&here) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing_at = Some(done.len());
                continue;
            }
            Err(e) => return Err(Error::io("inspect", &here)(e)),
        };
        if !meta.file_type().is_symlink() {
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(Error::invalid(field(), "too many symlinks in the rootfs"));
        }
        let target = std::fs::read_link(&here).map_err(Error::io("read the link", &here))?;
        done.pop();
        if target.is_absolute() {
            done.clear();
        }
        todo.extend(components(&target).into_iter().rev());
    }
    let mut resolved = PathBuf::from("/");
    resolved.extend(done);
    Ok(resolved)
}

/// The files under `/proc` something may be mounted on, as runc allows
/// them (LXCFS-style views of the host's counters): a mount anywhere else
/// in procfs could redirect what the engine or the kernel then reads or
/// writes there (`/proc/self/attr`, `/proc/sys`).
const PROC_MOUNTABLE: [&str; 11] = [
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
    "/proc/sys/crypto/fips_enabled",
];

/// Refuses a mount at `destination` (resolved, as [`resolve`] returns it)
/// inside procfs: `/proc` itself takes only a procfs, and below it only
/// [`PROC_MOUNTABLE`] files take anything.
pub fn check_proc_mount(destination: &Path, kind: Option<&str>) -> Result<()> {
    if allowed_in_proc(destination, kind == Some("proc"), &[]) {
        return Ok(());
    }
    Err(Error::invalid(
        format!("mounts[{}]", destination.display()),
        "a mount inside /proc would redirect what is read and written there; \
         only /proc itself (a procfs) and a few files of counters may be mounted",
    ))
}

/// Whether a mount at `point` (as the container sees it) is allowed as far
/// as procfs goes: anywhere outside `/proc`; `/proc` itself when `at_proc`
/// says so; below it, a [`PROC_MOUNTABLE`] file or one of `declared`.
fn allowed_in_proc(point: &Path, at_proc: bool, declared: &[PathBuf]) -> bool {
    match point.strip_prefix("/proc") {
        Err(_) => true,
        Ok(below) if below.as_os_str().is_empty() => at_proc,
        Ok(_) => {
            declared.iter().any(|d| d == point)
                || PROC_MOUNTABLE.iter().any(|p| Path::new(p) == point)
        }
    }
}

/// Checks a container's mount table once its rootfs is built
/// (`/proc/<init>/mountinfo`, whose mount points are as the container sees
/// them). A mount on `/proc` that is not a procfs, or one inside it that
/// is neither one of the spec's masked or read-only paths (`declared`) nor
/// a [`PROC_MOUNTABLE`] file, was led there at mount time by a link in
/// something mounted earlier
/// (a volume), which [`check_proc_mount`], reading the image alone, cannot
/// see.
pub fn check_proc_mount_points(mountinfo: &str, declared: &[PathBuf]) -> Result<()> {
    for line in mountinfo.lines() {
        let Some(point) = line.split(' ').nth(4) else {
            continue;
        };
        let point = PathBuf::from(unescape_mountinfo(point));
        // A link in a volume may lead any mount onto /proc itself: there,
        // only a procfs will do.
        let procfs = line
            .split_once(" - ")
            .and_then(|(_, rest)| rest.split(' ').next())
            == Some("proc");
        if allowed_in_proc(&point, procfs, declared) {
            continue;
        }
        return Err(Error::invalid(
            format!("mounts[{}]", point.display()),
            "a mount landed inside /proc through a link in an earlier mount; refused",
        ));
    }
    Ok(())
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Refuses a rootfs whose `/dev`, `/proc` or `/sys` is a symlink: no image
/// needs one, and what libcontainer then does with it is at best an
/// error no one can read.
pub fn check_special_dirs(root: &Path) -> Result<()> {
    for dir in SPECIAL_DIRS {
        let path = root.join(&dir[1..]);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::invalid(
                format!("rootfs {dir}"),
                "is a symlink in the image; it must be a directory",
            ));
        }
    }
    Ok(())
}

/// The normal components of `path`, `..` kept, `.` and the root dropped.
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn join(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut path = root.to_owned();
    for part in parts {
        debug_assert!(!part.as_bytes().contains(&b'/'));
        path.push(part);
    }
    path
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for dir in ["etc", "run/real", "usr/lib"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        root
    }

    #[test]
    fn links_resolve_as_the_container_sees_them() {
        let root = rootfs();
        let r = root.path();
        // Debian's /var/run, absolute: the rootfs's /run, not the host's.
        std::fs::create_dir_all(r.join("var")).unwrap();
        symlink("/run", r.join("var/run")).unwrap();
        assert_eq!(
            resolve(r, Path::new("/var/run/secrets/token")).unwrap(),
            Path::new("/run/secrets/token")
        );
        // Relative, climbing past the root: it stops there.
        symlink("../../../../../tmp/canary", r.join("etc/hosts")).unwrap();
        assert_eq!(
            resolve(r, Path::new("/etc/hosts")).unwrap(),
            Path::new("/tmp/canary")
        );
        // An absolute link to a host path is a rootfs path.
        symlink("/tmp/canary", r.join("etc/resolv.conf")).unwrap();
        assert_eq!(
            resolve(r, Path::new("/etc/resolv.conf")).unwrap(),
            Path::new("/tmp/canary")
        );
        // A link in the middle; `..` in the request stops at the root.
        symlink("real", r.join("run/link")).unwrap();
        assert_eq!(
            resolve(r, Path::new("/../run/./link/x/../y")).unwrap(),
            Path::new("/run/real/y")
        );
        assert_eq!(
            resolve(r, Path::new("/usr/lib")).unwrap(),
            Path::new("/usr/lib")
        );
    }

    /// Found by the `in_root` fuzz target: once a component was missing,
    /// a link reached through `..` back out of it was taken as it was, so
    /// the path handed on still held a link to follow.
    #[test]
    fn a_link_after_dot_dot_out_of_a_missing_dir_is_resolved() {
        let root = rootfs();
        let r = root.path();
        symlink("/../../../tmp", r.join("etc/out")).unwrap();
        assert_eq!(
            resolve(r, Path::new("/nothing/../etc/out/x")).unwrap(),
            Path::new("/tmp/x")
        );
        assert_eq!(
            resolve(r, Path::new("/etc/nothing/deeper/../../out")).unwrap(),
            Path::new("/tmp")
        );
        // Still below the missing part: nothing there exists to follow.
        assert_eq!(
            resolve(r, Path::new("/nothing/a/../out")).unwrap(),
            Path::new("/nothing/out")
        );
    }

    #[test]
    fn a_link_loop_is_an_invalid_argument() {
        let root = rootfs();
        symlink("b", root.path().join("etc/a")).unwrap();
        symlink("a", root.path().join("etc/b")).unwrap();
        assert!(matches!(
            resolve(root.path(), Path::new("/etc/a/x")),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn only_proc_itself_and_counter_files_take_a_mount_in_procfs() {
        for (dest, kind) in [
            ("/proc", Some("proc")),
            ("/proc/meminfo", Some("bind")),
            ("/procfs", Some("bind")),
            ("/etc/hosts", None),
        ] {
            check_proc_mount(Path::new(dest), kind).unwrap();
        }
        for (dest, kind) in [
            ("/proc", Some("tmpfs")),
            ("/proc/sys/kernel", Some("bind")),
            ("/proc/self/attr/current", Some("bind")),
            ("/proc/1", None),
        ] {
            assert!(
                matches!(
                    check_proc_mount(Path::new(dest), kind),
                    Err(Error::InvalidArgument { .. })
                ),
                "{dest}"
            );
        }
    }

    #[test]
    fn a_mount_table_with_an_undeclared_mount_in_proc_is_refused() {
        let line = |point: &str| format!("36 25 0:5 / {point} rw,nosuid - proc proc rw\n");
        let declared = [PathBuf::from("/proc/sys"), PathBuf::from("/proc/keys")];
        let good: String = [
            "/",
            "/proc",
            "/proc/sys",
            "/proc/keys",
            "/proc/meminfo",
            "/dev",
        ]
        .into_iter()
        .map(line)
        .collect();
        check_proc_mount_points(&good, &declared).unwrap();
        for bad in ["/proc/sys/kernel", "/proc/self/attr", "/proc/a\\040b"] {
            let table = format!("{good}{}", line(bad));
            match check_proc_mount_points(&table, &declared) {
                Err(Error::InvalidArgument { field, .. }) => {
                    assert!(field.contains("/proc/"), "{field}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert_eq!(unescape_mountinfo("/a\\040b\\134"), "/a b\\");
        // Something other than a procfs on /proc itself.
        let bind = "37 25 8:1 /vol /proc rw - ext4 /dev/sda1 rw\n";
        match check_proc_mount_points(&format!("{good}{bind}"), &declared) {
            Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "mounts[/proc]"),
            other => panic!("a bind on /proc: {other:?}"),
        }
    }

    #[test]
    fn special_dirs_must_not_be_links() {
        let root = rootfs();
        check_special_dirs(root.path()).unwrap();
        std::fs::create_dir(root.path().join("proc")).unwrap();
        symlink("/tmp", root.path().join("dev")).unwrap();
        match check_special_dirs(root.path()) {
            Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "rootfs /dev"),
            other => panic!("{other:?}"),
        }
    }
}
