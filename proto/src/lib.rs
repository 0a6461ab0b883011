//! Generated wire code berth speaks, and nothing else.
//!
//! containerd's Task v3, Sandbox v1 and event messages come from
//! `containerd-shim-protos`; this crate re-exports them so that the rest of the
//! workspace names one place for protobuf types.

pub use containerd_shim_protos::{
    api, events, protobuf, sandbox, shim_async, ttrpc, types, Error as ProtoError,
};
