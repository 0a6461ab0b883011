//! The helper's side: `berth-sandbox-helper` reads one request, serves it,
//! answers and exits. Compiled only with the `helper` feature.

use std::io::{Read, Write};

use crate::error::{ErrorKind, HelperError};
use crate::helper::protocol::{Request, Response, HELPER_NAME, PROTOCOL};

/// The helper's entry point: reads one request, serves it, answers, exits.
///
/// Must run before any other thread exists in the process.
pub fn main() -> ! {
    // Run as /proc/self/fd/<n>, the helper would be called "<n>" by ps.
    let _ = nix::sys::prctl::set_name(c"berth-helper");
    super::trace::install();
    let mut input = Vec::new();
    let protocol = std::env::args().nth(2).unwrap_or_default();
    let response = match std::io::stdin().read_to_end(&mut input) {
        Ok(_) if protocol != PROTOCOL => Response::Error(HelperError {
            kind: ErrorKind::FailedPrecondition,
            message: format!(
                "{HELPER_NAME} speaks helper protocol {PROTOCOL}, its caller {protocol:?}: \
                 install the shim and its helper from one build"
            ),
        }),
        Err(e) => Response::Error(HelperError::internal(format!("read request: {e}"))),
        Ok(_) => match serde_json::from_slice::<Request>(&input) {
            Err(e) => Response::Error(HelperError {
                kind: ErrorKind::InvalidArgument,
                message: format!("malformed helper request: {e}"),
            }),
            Ok(request) => serve(request),
        },
    };
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, &response);
    let _ = out.flush();
    std::process::exit(0)
}

/// Carries out one request, in this process.
fn serve(request: Request) -> Response {
    use crate::helper::{engine, pause};
    let process = |p: crate::state::ProcessRecord| Response::Created {
        pid: p.pid,
        start_time: p.start_time,
    };
    let result = match request {
        Request::SpawnPause(spec) => pause::spawn(&spec).map(|p| Response::Pause {
            pid: p.pid,
            start_time: p.start_time,
        }),
        Request::CreateContainer(spec) => engine::create(&spec).map(process),
        Request::ExecContainer(spec) => engine::exec(&spec).map(process),
        Request::StartContainer(c) => engine::start(&c).map(|()| Response::Done),
        Request::KillContainer { container, signal } => {
            engine::kill_all(&container, signal).map(|()| Response::Done)
        }
        Request::DeleteContainer(c) => engine::delete(&c).map(|()| Response::Done),
        Request::UpdateContainerUnit {
            container,
            resources,
        } => engine::update_unit(&container, &resources).map(|()| Response::Done),
    };
    result.unwrap_or_else(|e| Response::Error(HelperError::from(&e)))
}
