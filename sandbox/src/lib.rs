//! berth-sandbox: the synchronous side of berth.
//!
//! Pod and container lifecycle: reading OCI specs, starting berth-pause in
//! the pod's namespaces through a single-threaded helper process, cgroups,
//! loopback, and the on-disk state of a pod. No protobuf types: the shim
//! converts containerd's requests into this crate's own.

pub mod cgroup;
pub mod container;
#[cfg(feature = "helper")]
mod engine;
pub mod error;
pub mod freezer;
pub mod helper;
pub mod journal;
pub mod mount;
mod netlink;
pub mod pause;
pub mod pod;
pub mod process;
pub mod spec;
pub mod state;
mod sys;

pub use error::{Error, ErrorKind, Result};
