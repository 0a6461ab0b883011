//! Where a pod's shim lives: its directory under the state root, the
//! bundle it was started in, and the binaries installed beside it.

use std::path::PathBuf;

use berth_sandbox::helper::HELPER_NAME;
use berth_sandbox::state::{self, PodDir};
use containerd_shim::Flags;
use sha2::{Digest, Sha256};

/// The pod directory of the shim that serves `grouping` for this containerd
/// and namespace.
pub fn pod_dir(address: &str, namespace: &str, grouping: &str) -> PodDir {
    let mut hash = Sha256::new();
    for part in [address, namespace, grouping] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let key: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    PodDir::new(&state::root(), &key)
}

/// The pod directory of the task containerd names in `flags`, whose bundle
/// is `bundle`.
pub fn pod_dir_of(flags: &Flags, bundle: &std::path::Path) -> (String, PodDir) {
    let grouping = berth_sandbox::spec::grouping(bundle, &flags.id);
    let dir = pod_dir(&flags.address, &flags.namespace, &grouping);
    (grouping, dir)
}

/// The task's bundle: `-bundle`, else the directory containerd started the
/// shim in.
pub fn bundle_dir(flags: &Flags) -> PathBuf {
    if flags.bundle.is_empty() {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
    } else {
        PathBuf::from(&flags.bundle)
    }
}

/// The berth-pause binary: `$BERTH_PAUSE`, else beside this binary.
pub fn pause_binary() -> PathBuf {
    companion_binary("BERTH_PAUSE", "berth-pause")
}

/// The helper binary: `$BERTH_HELPER`, else beside this binary.
pub fn helper_binary() -> PathBuf {
    companion_binary("BERTH_HELPER", HELPER_NAME)
}

/// A binary installed with the shim: `$<var>` if set, else `name` in the
/// shim's own directory.
fn companion_binary(var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_keyed_by_containerd_namespace_and_group() {
        let a = pod_dir("/run/containerd/containerd.sock", "k8s.io", "pod1");
        assert_eq!(
            a.path(),
            pod_dir("/run/containerd/containerd.sock", "k8s.io", "pod1").path()
        );
        assert_ne!(
            a.path(),
            pod_dir("/run/other.sock", "k8s.io", "pod1").path()
        );
        assert_ne!(
            a.path(),
            pod_dir("/run/containerd/containerd.sock", "default", "pod1").path()
        );
        assert_ne!(
            a.path(),
            pod_dir("/run/containerd/containerd.sock", "k8s.io", "pod2").path()
        );
        // Unix socket paths are limited to 108 bytes.
        let name = a.path().file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name.len(), 32);
    }
}
