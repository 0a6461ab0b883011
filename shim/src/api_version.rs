//! Which task API version to announce to the containerd that starts us.
//!
//! containerd 2.x accepts version 3 and then calls `containerd.task.v3.Task`;
//! containerd 1.7 refuses a shim announcing 3 ("unsupported shim version") and
//! speaks `containerd.task.v2.Task`. Both set `MAX_SHIM_VERSION=2`, so the
//! environment cannot tell them apart. The binary that started us can: the
//! shim's parent during `start` is containerd itself, and
//! `/proc/<ppid>/exe --version` names its release even if the file on disk
//! was replaced since. The answer is cached per binary (device, inode, size,
//! mtime) under the state root, so it costs one exec per containerd build.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What containerd 1.7 and every later release accept.
pub const FALLBACK: i32 = 2;
/// What containerd 2.x prefers.
pub const V3: i32 = 3;

/// The version to announce, for containerd release `version` when known
/// (bootstrap parameters carry it from containerd 2.3 on), else for the
/// parent process's binary.
pub fn detect(state_root: &Path, containerd_version: &str) -> i32 {
    if let Some(v) = for_release(containerd_version) {
        return v;
    }
    let exe = PathBuf::from(format!("/proc/{}/exe", nix::unistd::getppid()));
    match from_binary(state_root, &exe) {
        Ok(v) => v,
        Err(e) => {
            log::warn!(
                "cannot tell containerd's release from {}: {e}; announcing task API {FALLBACK}",
                exe.display()
            );
            FALLBACK
        }
    }
}

fn from_binary(state_root: &Path, exe: &Path) -> std::io::Result<i32> {
    let meta = std::fs::metadata(exe)?;
    let cache = state_root.join(format!(
        "containerd-api-{:x}-{:x}-{:x}-{:x}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime()
    ));
    if let Some(v) = std::fs::read_to_string(&cache)
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return Ok(v);
    }
    let output = Command::new(exe).arg("--version").output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let v = parse_version_output(&text).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unrecognised version output {:?}", text.trim()),
        )
    })?;
    let _ = std::fs::create_dir_all(state_root);
    let _ = berth_sandbox::state::write_atomic(&cache, v.to_string().as_bytes());
    Ok(v)
}

/// `containerd github.com/containerd/containerd/v2 2.1.9 <revision>`.
fn parse_version_output(text: &str) -> Option<i32> {
    let mut words = text.split_whitespace();
    (words.next()? == "containerd").then_some(())?;
    words.next()?;
    for_release(words.next()?)
}

/// The version for a containerd release such as `v2.1.9` or `1.7.24~ds1`.
fn for_release(release: &str) -> Option<i32> {
    let major: u32 = release
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()?;
    Some(if major >= 2 { V3 } else { FALLBACK })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_supported_releases() {
        assert_eq!(
            parse_version_output("containerd github.com/containerd/containerd/v2 2.1.9+unknown \n"),
            Some(V3)
        );
        assert_eq!(
            parse_version_output(
                "containerd github.com/containerd/containerd 1.7.24~ds1 1.7.24~ds1-6+deb13u1\n"
            ),
            Some(FALLBACK)
        );
        assert_eq!(parse_version_output("runc version 1.1.5"), None);
        assert_eq!(parse_version_output(""), None);
    }

    #[test]
    fn bootstrap_release_wins_without_exec() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(detect(dir.path(), "v2.3.0"), V3);
        assert_eq!(detect(dir.path(), "1.7.30"), FALLBACK);
    }

    #[test]
    fn answers_are_cached_per_binary() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("containerd");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho containerd github.com/containerd/containerd/v2 2.1.9 abc\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        assert_eq!(from_binary(dir.path(), &fake).unwrap(), V3);
        let cached: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("containerd-api-")
            })
            .collect();
        assert_eq!(cached.len(), 1);
        assert_eq!(std::fs::read_to_string(cached[0].path()).unwrap(), "3");
    }
}
