//! The containerd releases berth supports.

use std::fmt;
use std::path::PathBuf;

use crate::paths;

/// A containerd release unpacked under `BERTH_DEPS_DIR/containerd-<version>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// containerd 2.1 (config `version = 3`, task API v3, sandboxer `podsandbox`).
    V2_1,
    /// containerd 1.7 (config `version = 2`, task API v2).
    V1_7,
}

impl Version {
    /// Every supported version, newest first.
    pub const ALL: [Version; 2] = [Version::V2_1, Version::V1_7];

    /// The directory name suffix: `2.1` or `1.7`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V2_1 => "2.1",
            Version::V1_7 => "1.7",
        }
    }

    /// `.../containerd-<v>/usr/bin`, holding `containerd`, `ctr` and the runc shim.
    pub fn bin_dir(self) -> PathBuf {
        paths::deps_dir()
            .join(format!("containerd-{}", self.as_str()))
            .join("usr/bin")
    }

    /// Parses `2.1`, `v2.1`, `1.7` or `v1.7`.
    pub fn parse(s: &str) -> Option<Version> {
        match s.trim_start_matches('v') {
            "2.1" | "2" => Some(Version::V2_1),
            "1.7" | "1" => Some(Version::V1_7),
            _ => None,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "containerd {}", self.as_str())
    }
}
