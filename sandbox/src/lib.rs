//! berth-sandbox: the synchronous side of berth.
//!
//! Pod and container lifecycle: reading OCI specs, starting berth-pause in
//! the pod's namespaces through a single-threaded helper process, cgroups,
//! and the on-disk state of a pod. No protobuf types: the shim converts
//! containerd's requests into this crate's own.
//!
//! - [`spec`]: what a bundle's OCI spec asks of berth;
//! - [`pod`] and [`container`]: a pod's berth-pause and its app containers,
//!   from the caller's side;
//! - [`helper`]: the process boundary where every fork, unshare and setns
//!   happens, and the helper binary's side of it (pause, the OCI engine);
//! - [`cgroup`]: cgroups, their freezer, OOM source, stats and limits;
//! - [`state`], [`journal`]: what survives a shim or containerd restart;
//! - [`mount`], [`process`], `sys`: rootfs mounts, processes, raw calls;
//! - [`features`]: the OCI features document of what berth supports;
//! - [`error`]: the crate's error type, depending on nothing else here.

mod capabilities;
pub mod cgroup;
pub mod container;
pub mod error;
pub mod features;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod helper;
pub mod inroot;
pub mod journal;
pub mod mount;
pub mod pod;
pub mod process;
pub mod spec;
pub mod state;
mod sys;

pub use error::{error_chain, Error, ErrorKind, Result};
