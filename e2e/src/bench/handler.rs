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

/// A pod's runner in the bench's alternation: berth in podsandbox mode,
/// berth in shim mode (containerd 2.x, cgroupfs driver), or runc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    Berth,
    /// berth as the pod sandbox manager (`sandboxer = "shim"`).
    BerthShim,
    Runc,
}

impl Runner {
    /// The shim the runner's pods run on.
    pub fn handler(self) -> Handler {
        match self {
            Runner::Berth | Runner::BerthShim => Handler::Berth,
            Runner::Runc => Handler::Runc,
        }
    }
}

impl From<Handler> for Runner {
    fn from(h: Handler) -> Runner {
        match h {
            Handler::Berth => Runner::Berth,
            Handler::Runc => Runner::Runc,
        }
    }
}

impl std::fmt::Display for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Runner::BerthShim => f.write_str("berth (shim mode)"),
            r => r.handler().fmt(f),
        }
    }
}

/// The samples of each runner of one figure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PerRunner {
    pub berth: Vec<f64>,
    pub berth_shim: Vec<f64>,
    pub runc: Vec<f64>,
}

impl PerRunner {
    pub fn get_mut(&mut self, r: Runner) -> &mut Vec<f64> {
        match r {
            Runner::Berth => &mut self.berth,
            Runner::BerthShim => &mut self.berth_shim,
            Runner::Runc => &mut self.runc,
        }
    }

    /// berth in podsandbox mode against runc.
    pub fn podsandbox(&self) -> PerHandler<Vec<f64>> {
        PerHandler {
            berth: self.berth.clone(),
            runc: self.runc.clone(),
        }
    }

    /// berth in shim mode against the same runc samples, if it ran.
    pub fn shim_mode(&self) -> Option<PerHandler<Vec<f64>>> {
        (!self.berth_shim.is_empty()).then(|| PerHandler {
            berth: self.berth_shim.clone(),
            runc: self.runc.clone(),
        })
    }
}
