//! Generated wire code berth speaks, and nothing else.
//!
//! containerd's Task v3, Sandbox v1, event and bootstrap messages come from
//! `containerd-shim-protos`; this crate re-exports them so that the rest of the
//! workspace names one place for protobuf types.

pub use containerd_shim_protos::{
    api, bootstrap_api, cgroups, cgroups_v2, events, protobuf, sandbox_api, sandbox_async, shim,
    shim_async, topics, ttrpc, types, TASK_API_VERSION,
};
