//! berth-e2e: end-to-end tests of berth against a real containerd, driven through CRI.
//!
//! The library holds the harness that the tests (`tests/*.rs`, behind the `e2e` feature)
//! and the two binaries (`berth-cri`, `berth-demo`) share:
//!
//! - [`containerd`]: a private containerd of one [`Version`] with its own dirs, sockets,
//!   CNI network and runc root, stopped and cleaned on drop;
//! - [`images`]: offline OCI images built from the host's static busybox;
//! - [`cri`]: a CRI v1 client over the containerd unix socket;
//! - [`pod_config`]: crictl-like pod configs and their CRI form;
//! - [`leaks`]: checks that a removed pod left no process, mount, cgroup or file behind;
//! - [`bench`]: `berth-bench`, berth against the runc shim through CRI.

pub mod bench;
pub mod cgroups;
pub mod cli;
pub mod cni;
pub mod container_config;
pub mod containerd;
pub mod containerd_config;
pub mod cri;
pub mod daemon;
pub mod demo;
pub mod images;
pub mod instance;
pub mod introspection;
pub mod leaks;
pub mod oci_layout;
pub mod paths;
pub mod pod_config;
pub mod pod_trace;
pub mod procs;
pub mod scenario;
pub mod systemd;
pub mod tar_writer;
pub mod version;

pub use containerd::Containerd;
pub use version::Version;
