//! The two runtime handlers the bench compares, and a pair of values, one for each.

use serde::Serialize;

use crate::containerd_config::{BERTH_HANDLER, RUNC_HANDLER};

/// A CRI runtime handler of the bench's containerd.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Handler {
    /// berth: `containerd-shim-berth-v2` with `berth-pause`.
    Berth,
    /// The baseline: containerd's Go `containerd-shim-runc-v2` running the pause image.
    Runc,
}

impl Handler {
    /// The order of every alternation: berth, then runc.
    pub const ALL: [Handler; 2] = [Handler::Berth, Handler::Runc];

    /// The CRI `runtime_handler`.
    pub fn cri_name(self) -> &'static str {
        match self {
            Handler::Berth => BERTH_HANDLER,
            Handler::Runc => RUNC_HANDLER,
        }
    }

    /// The file name of the handler's shim binary.
    pub fn shim_binary(self) -> &'static str {
        match self {
            Handler::Berth => "containerd-shim-berth-v2",
            Handler::Runc => "containerd-shim-runc-v2",
        }
    }
}

impl std::fmt::Display for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.cri_name())
    }
}

/// One `T` per handler.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PerHandler<T> {
    pub berth: T,
    pub runc: T,
}

impl<T> PerHandler<T> {
    pub fn get(&self, h: Handler) -> &T {
        match h {
            Handler::Berth => &self.berth,
            Handler::Runc => &self.runc,
        }
    }

    pub fn get_mut(&mut self, h: Handler) -> &mut T {
        match h {
            Handler::Berth => &mut self.berth,
            Handler::Runc => &mut self.runc,
        }
    }
}
