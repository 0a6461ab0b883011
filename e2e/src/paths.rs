//! Where the harness finds berth's binaries, the containerd releases and its caches.

use std::path::PathBuf;

/// The `runc` binary the runc runtime uses (Debian's package).
pub const RUNC_BINARY: &str = "/usr/sbin/runc";

/// The cargo workspace this crate belongs to.
pub fn workspace() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// `BERTH_BIN_DIR`: holds `containerd-shim-berth-v2`, `berth-sandbox-helper`
/// and `berth-pause`.
pub fn bin_dir() -> PathBuf {
    env_or("BERTH_BIN_DIR", || workspace().join("target/berth/bin"))
}

/// `BERTH_DEPS_DIR`: holds the unpacked containerd releases (`containerd-<version>`).
pub fn deps_dir() -> PathBuf {
    env_or("BERTH_DEPS_DIR", || workspace().join(".deps"))
}

/// Cache of the OCI image tarballs built from busybox.
pub fn image_cache_dir() -> PathBuf {
    workspace().join("target/e2e-images")
}

/// Where the logs of failed runs are kept.
pub fn failed_logs_dir() -> PathBuf {
    workspace().join("target/e2e-logs")
}

/// Root of all instance directories, one per running containerd (short: socket paths).
pub fn instances_root() -> PathBuf {
    PathBuf::from("/run/berth-e2e")
}

/// The berth shim's file name, which containerd must find on its PATH.
pub const SHIM: &str = "containerd-shim-berth-v2";
/// The helper's, found beside the shim.
pub const HELPER: &str = "berth-sandbox-helper";
/// berth-pause's.
pub const PAUSE: &str = "berth-pause";
/// berth's three binaries, as `make install` puts them side by side.
pub const BINARIES: [&str; 3] = [SHIM, HELPER, PAUSE];

/// The berth shim binary containerd must find on its PATH.
pub fn shim_binary() -> PathBuf {
    bin_dir().join(SHIM)
}

/// The helper the shim runs, found beside it.
pub fn helper_binary() -> PathBuf {
    bin_dir().join(HELPER)
}

/// `BERTH_NEXT_BIN_DIR`: the upgrade test's second build of berth, this
/// tree with its version and state format bumped (`make build-next`).
pub fn next_bin_dir() -> PathBuf {
    env_or("BERTH_NEXT_BIN_DIR", || {
        workspace().join("target/berth-next/bin")
    })
}

fn env_or(key: &str, default: impl FnOnce() -> PathBuf) -> PathBuf {
    match std::env::var_os(key) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => default(),
    }
}
