//! What berth can do with an OCI spec, as the runtime-spec's `features`
//! document says it (what `runc features` prints, and what containerd asks
//! a shim's `-info` for).
//!
//! Only what works end to end is claimed: a field left out means
//! "unknown", which callers treat as no promise. Where the spec asks what
//! was compiled in (cgroup v1/v2, AppArmor), berth answers what works on
//! this host: cgroup v1 and v2 and the systemd driver (the VM lane of the
//! tests runs v2 and systemd end to end; no systemd user instance), and an
//! AppArmor profile is refused where the host has none. containerd reads
//! `rro` among the mount options (recursive read-only mounts; containerd 2.1's
//! CRI asks only runc for them) and the idmap mount extension
//! (checked on a task create whose spec has idmap mounts), which berth does
//! not offer.

use std::path::Path;

use oci_spec::runtime::{
    ApparmorBuilder, CgroupBuilder, Features, FeaturesBuilder, IDMapBuilder, LinuxFeatureBuilder,
    LinuxNamespaceType, MountExtensionsBuilder, SeccompBuilder, SelinuxBuilder, VERSION,
};

/// The mount options the engine applies: mount(2) flags, propagation, and
/// the recursive `mount_setattr(2)` attributes. Each is checked against
/// libcontainer's parsers in this module's tests.
pub const MOUNT_OPTIONS: [&str; 51] = [
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "unbindable",
];

/// The namespaces a container may have or join. User and time namespaces
/// are refused.
pub const NAMESPACES: [LinuxNamespaceType; 6] = [
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Uts,
];

/// Where the kernel says whether AppArmor is on.
const APPARMOR_ENABLED: &str = "/sys/module/apparmor/parameters/enabled";

/// Whether the host applies AppArmor profiles (what the helper checks
/// before it takes a profile, rather than dropping it).
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string(Path::new(APPARMOR_ENABLED)).is_ok_and(|s| s.starts_with('Y'))
}

/// berth's features document on this host.
pub fn features() -> Features {
    let linux = LinuxFeatureBuilder::default()
        .namespaces(NAMESPACES.to_vec())
        // The systemd driver needs v2 and systemd running as init.
        .cgroup(
            CgroupBuilder::default()
                .v1(true)
                .v2(true)
                .systemd(crate::cgroup::systemd::unavailable().is_none())
                .systemd_user(false)
                .rdma(false)
                .build()
                .expect("every field of the builder is set"),
        )
        .seccomp(
            SeccompBuilder::default()
                .enabled(true)
                .build()
                .expect("every field of the builder is set"),
        )
        .apparmor(
            ApparmorBuilder::default()
                .enabled(apparmor_enabled())
                .build()
                .expect("every field of the builder is set"),
        )
        .selinux(
            SelinuxBuilder::default()
                .enabled(false)
                .build()
                .expect("every field of the builder is set"),
        )
        .mount_extensions(
            MountExtensionsBuilder::default()
                .idmap(
                    IDMapBuilder::default()
                        .enabled(false)
                        .build()
                        .expect("every field of the builder is set"),
                )
                .build()
                .expect("every field of the builder is set"),
        )
        .build()
        .expect("every field of the builder is set");
    FeaturesBuilder::default()
        .oci_version_min("1.0.0")
        .oci_version_max(VERSION)
        .mount_options(MOUNT_OPTIONS.map(String::from).to_vec())
        .linux(linux)
        .build()
        .expect("every field of the builder is set")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_claims_rro_and_no_user_namespace() {
        let json = serde_json::to_value(features()).unwrap();
        let options = json["mountOptions"].as_array().unwrap();
        assert!(options.iter().any(|o| o == "rro"));
        let namespaces = json["linux"]["namespaces"].as_array().unwrap();
        assert!(namespaces.iter().any(|n| n == "network"));
        assert!(!namespaces.iter().any(|n| n == "user"));
        assert_eq!(json["linux"]["mountExtensions"]["idmap"]["enabled"], false);
        assert_eq!(json["linux"]["cgroup"]["v1"], true);
        assert_eq!(json["linux"]["cgroup"]["v2"], true);
        assert_eq!(json["linux"]["cgroup"]["systemdUser"], false);
        assert_eq!(json["ociVersionMin"], "1.0.0");
        let mut sorted = MOUNT_OPTIONS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, MOUNT_OPTIONS, "sorted, no repeats");
    }

    /// Every option claimed is one libcontainer applies, not one it would
    /// pass to the filesystem as data.
    #[cfg(feature = "helper")]
    #[test]
    fn every_mount_option_is_one_the_engine_applies() {
        use std::str::FromStr;

        use libcontainer::syscall::linux::{MountOption, MountRecursive};
        for option in MOUNT_OPTIONS {
            assert!(
                MountOption::from_str(option).is_ok() || MountRecursive::from_str(option).is_ok(),
                "libcontainer does not apply {option:?}"
            );
        }
    }

    #[cfg(feature = "helper")]
    #[test]
    fn apparmor_is_read_as_libcontainer_reads_it() {
        assert_eq!(
            apparmor_enabled(),
            libcontainer::apparmor::is_enabled().unwrap_or(false)
        );
    }
}
