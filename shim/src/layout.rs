//! Where a pod's shim lives: its directory under the state root, the
//! bundle it was started in, and the binaries installed beside it.

use std::path::{Path, PathBuf};

use berth_sandbox::helper::HELPER_NAME;
use berth_sandbox::state::{self, PodDir};
use containerd_shim::Flags;
use sha2::{Digest, Sha256};

use crate::options::RuntimeOptions;

/// Where the shim's state and companion binaries are: from the runtime
/// options, else the environment, else the defaults. `start` hands its
/// layout to the serving shim through the environment ([`Layout::env`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub state_root: PathBuf,
    /// The berth-pause binary.
    pub pause: PathBuf,
    /// The helper binary.
    pub helper: PathBuf,
}

impl Layout {
    /// The layout from the environment and the defaults alone.
    pub fn from_env() -> Self {
        Layout {
            state_root: state::root(),
            pause: companion_binary(PAUSE_ENV, "berth-pause"),
            helper: companion_binary(HELPER_ENV, HELPER_NAME),
        }
    }

    /// The layout from the environment, with what `options` sets over it.
    pub fn new(options: &RuntimeOptions) -> Self {
        let mut layout = Self::from_env();
        if let Some(root) = &options.state_root {
            layout.state_root = root.clone();
        }
        if let Some(pause) = &options.pause_path {
            layout.pause = pause.clone();
        }
        if let Some(helper) = &options.helper_path {
            layout.helper = helper.clone();
        }
        layout
    }

    /// The environment that gives a shim this layout.
    pub fn env(&self) -> [(&'static str, &Path); 3] {
        [
            (state::ROOT_ENV, &self.state_root),
            (PAUSE_ENV, &self.pause),
            (HELPER_ENV, &self.helper),
        ]
    }

    /// The pod directory of the shim that serves `grouping` for this
    /// containerd and namespace.
    pub fn pod_dir(&self, address: &str, namespace: &str, grouping: &str) -> PodDir {
        let mut hash = Sha256::new();
        for part in [address, namespace, grouping] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let digest = hash.finalize();
        let key: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        PodDir::new(&self.state_root, &key)
    }

    /// The pod directory of the task containerd names in `flags`, whose
    /// bundle is `bundle`.
    pub fn pod_dir_of(&self, flags: &Flags, bundle: &Path) -> (String, PodDir) {
        let grouping = berth_sandbox::spec::grouping(bundle, &flags.id);
        let dir = self.pod_dir(&flags.address, &flags.namespace, &grouping);
        (grouping, dir)
    }
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

/// Names the berth-pause binary.
pub const PAUSE_ENV: &str = "BERTH_PAUSE";
/// Names the helper binary.
pub const HELPER_ENV: &str = "BERTH_HELPER";

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

    fn pod_dir(address: &str, namespace: &str, grouping: &str) -> PodDir {
        Layout::from_env().pod_dir(address, namespace, grouping)
    }

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

    #[test]
    fn the_options_set_the_layout_over_the_environment() {
        let options = RuntimeOptions {
            state_root: Some("/run/berth-options".into()),
            helper_path: Some("/opt/berth/helper".into()),
            ..Default::default()
        };
        let layout = Layout::new(&options);
        let env = Layout::from_env();
        assert_eq!(layout.state_root, Path::new("/run/berth-options"));
        assert_eq!(layout.helper, Path::new("/opt/berth/helper"));
        assert_eq!(layout.pause, env.pause);
        assert!(layout
            .pod_dir("a", "b", "c")
            .path()
            .starts_with("/run/berth-options"));
        assert_eq!(
            layout.env()[0],
            (state::ROOT_ENV, Path::new("/run/berth-options"))
        );
        assert_eq!(Layout::new(&RuntimeOptions::default()), env);
    }
}
