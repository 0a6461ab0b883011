//! containerd-shim-berth-v2: a containerd shim v2 with a built-in pod
//! sandbox manager. The binary's `main` only starts the runtime and calls
//! [`run`], which dispatches containerd's actions; the rest of the crate is
//! private but for the `fuzz` module (with the `fuzz` feature): the entry
//! points of the fuzz targets.

mod api_version;
mod backend;
mod bootstrap;
mod console;
mod error;
mod events;
mod info;
mod io;
mod layout;
mod logger;
mod metrics;
mod oom;
mod options;
mod pod;
mod pod_config;
mod pod_files;
mod process;
mod reaper;
mod server;
mod service;
mod shimlog;
mod sys;
mod task;
mod wire;

#[cfg(feature = "fuzz")]
pub mod fuzz;

use std::ffi::OsString;

use crate::error::{Error, Result};

/// Runs the action containerd asked for, as the process arguments say;
/// returns the process exit code.
pub async fn run() -> i32 {
    let args: Vec<OsString> = std::env::args_os().collect();
    let flags = match containerd_shim::parse(&args[1..]) {
        Ok(flags) => flags,
        Err(e) => {
            eprintln!("containerd-shim-berth-v2: {e}");
            return 2;
        }
    };
    if flags.version {
        print!("{}", info::version_text("containerd-shim-berth-v2"));
        return 0;
    }
    if flags.info {
        // Before anything that needs a namespace, an address or a pod:
        // containerd passes none of them.
        return match info::run() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("containerd-shim-berth-v2 -info: {e}");
                1
            }
        };
    }
    let result: Result<()> = match flags.action.as_str() {
        "start" => bootstrap::start(&flags).await,
        "delete" => bootstrap::delete(&flags).await,
        "" => server::serve(&flags).await,
        other => Err(Error::InvalidArgument(format!("unknown action {other:?}"))),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let message = berth_sandbox::error_chain(&e);
            let action = if flags.action.is_empty() {
                "serve"
            } else {
                flags.action.as_str()
            };
            log::error!(container = flags.id.as_str(); "{action}: {message}");
            eprintln!(
                "containerd-shim-berth-v2 {action} (namespace {}, task {}): {message}",
                flags.namespace, flags.id
            );
            if flags.action.is_empty() {
                // Until the server is ready, stdout is the pipe `start` reads:
                // it relays why the server did not start.
                println!("{message}");
            }
            1
        }
    }
}
