//! The helper boundary: where every fork, unshare and setns happens.
//!
//! The shim is multi-threaded, and namespaces are per thread, so it never
//! changes its own. It runs the `berth-sandbox-helper` binary once per
//! request, a fresh single-threaded process:
//!
//! - [`protocol`]: how the helper is run, its requests and answers;
//! - [`client`]: the caller's side, [`Helper`];
//! - `server`: the helper binary's loop, which dispatches to
//!   - `pause`: a pod's namespaces and its berth-pause,
//!   - `engine`: app containers through the OCI engine (libcontainer),
//!     with `spec_policy` (the spec it is given), `propagation` (each
//!     mount's, set once it is made) and `scope` (the systemd driver's
//!     units),
//!   - `netlink`: the pod's loopback.
//!
//! The helper's side is compiled only with the `helper` feature, into
//! `berth-sandbox-helper`: the shim links none of it. `fake` (tests and
//! the `testing` feature) stands in for the helper binary.

pub mod client;
#[cfg(feature = "helper")]
mod engine;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
#[cfg(feature = "helper")]
mod netlink;
#[cfg(feature = "helper")]
mod pause;
#[cfg(feature = "helper")]
mod propagation;
pub mod protocol;
#[cfg(feature = "helper")]
mod scope;
#[cfg(feature = "helper")]
pub mod server;
#[cfg(feature = "helper")]
mod spec_policy;
#[cfg(feature = "helper")]
mod tenant;
#[cfg(feature = "helper")]
mod trace;

pub use client::Helper;
pub use protocol::{HELPER_ARG, HELPER_NAME, PROTOCOL};
