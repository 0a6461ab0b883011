//! containerd's two short-lived actions: `start` and `delete`.
//!
//! containerd runs `containerd-shim-berth-v2 ... start` in the bundle of each
//! new task. All tasks of one pod share a shim: `start` derives the pod's
//! directory from containerd's address, the namespace and the pod's id (CRI's
//! sandbox id), returns the address of the shim already serving it, or starts
//! one as a daemon and returns its address. `delete` is containerd's
//! clean-up after a shim died.

use std::io::{Read, Write};
use std::os::fd::{AsFd, RawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::SystemTime;

use berth_proto::bootstrap_api::{BootstrapParams, BootstrapResult};
use berth_proto::protobuf::Message;
use berth_sandbox::helper::Helper;
use berth_sandbox::state::{self, Probe};
use containerd_shim::Flags;

use crate::error::{Error, Result};
use crate::events::timestamp;
use crate::layout::{bundle_dir, helper_binary, pod_dir_of};

const PROTOCOL: &str = "ttrpc";

/// Reads containerd 2.3+'s bootstrap parameters from stdin, if it sent any.
fn bootstrap_params(flags: &Flags) -> Option<BootstrapParams> {
    let mut input = Vec::new();
    if std::io::stdin()
        .lock()
        .take(10 << 20)
        .read_to_end(&mut input)
        .is_err()
        || input.is_empty()
    {
        return None;
    }
    BootstrapParams::parse_from_bytes(&input)
        .ok()
        .filter(|p| p.instance_id == flags.id && p.namespace == flags.namespace)
}

/// `start`: the address of the pod's shim, started first if none serves it.
pub async fn start(flags: &Flags) -> Result<()> {
    let params = bootstrap_params(flags);
    let bundle = bundle_dir(flags);
    let (grouping, dir) = pod_dir_of(flags, &bundle);
    let socket = dir.socket();
    let address = format!("unix://{}", socket.display());

    dir.create()?;
    {
        let _lock = dir.lock()?;
        if dir.probe() != Probe::Serving {
            remove_socket(&socket)?;
            let listener = UnixListener::bind(&socket).map_err(Error::io("bind", &socket))?;
            spawn_server(flags, &bundle, listener).map_err(|e| match e {
                Error::Unavailable(why) => {
                    Error::Unavailable(format!("the shim for pod {grouping} did not start: {why}"))
                }
                other => other,
            })?;
        }
    }
    // containerd 1.7 reconnects after a restart through this file (2.x
    // through its own bootstrap.json), as it does with Go shims.
    state::write_atomic(&bundle.join("address"), address.as_bytes())?;
    let containerd_version = params
        .as_ref()
        .map_or("", |p| p.containerd_version.as_str());
    let version = crate::api_version::detect(&state::root(), containerd_version);
    let reply = match params {
        Some(_) => BootstrapResult {
            version,
            address,
            protocol: PROTOCOL.into(),
            ..Default::default()
        }
        .write_to_bytes()
        .map_err(|e| Error::Internal(format!("encode bootstrap result: {e}")))?,
        None => serde_json::to_vec(&serde_json::json!({
            "version": version,
            "address": address,
            "protocol": PROTOCOL,
        }))
        .expect("json"),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&reply)
        .and_then(|()| out.flush())
        .map_err(|e| Error::Internal(format!("write the bootstrap reply: {e}")))
}

fn remove_socket(socket: &Path) -> Result<()> {
    Ok(state::remove_file(socket)?)
}

/// The descriptor number the serving shim finds its listening socket on.
pub const LISTEN_FD: RawFd = 3;
/// Set in the serving shim's environment when `start` hands it the socket.
pub const LISTEN_FD_ENV: &str = "BERTH_LISTEN_FD";

/// Starts the serving shim as a daemon on `listener` and waits until it is
/// ready: it closes its stdout (our pipe) once it accepts connections, or
/// writes why it failed there and exits.
fn spawn_server(flags: &Flags, bundle: &Path, listener: UnixListener) -> Result<()> {
    let mut command = Command::new("/proc/self/exe");
    command
        // The running binary, named as containerd named it (for ps).
        .arg0(
            std::env::args_os()
                .next()
                .unwrap_or_else(|| "containerd-shim-berth-v2".into()),
        )
        .current_dir(bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env(LISTEN_FD_ENV, LISTEN_FD.to_string())
        .args([
            "-namespace",
            &flags.namespace,
            "-id",
            &flags.id,
            "-address",
            &flags.address,
        ]);
    if !flags.publish_binary.is_empty() {
        command.args(["-publish-binary", &flags.publish_binary]);
    }
    if flags.debug {
        command.arg("-debug");
    }
    // The listener goes on LISTEN_FD, and the daemon leaves containerd's
    // session.
    let mut child =
        crate::sys::spawn_with_fds(&mut command, &[(listener.as_fd(), LISTEN_FD)], true)
            .map_err(|e| Error::Internal(format!("spawn the shim server: {e}")))?;
    // Our copy must go, or the socket would look served even if the child died.
    drop(listener);
    let mut said = String::new();
    let _ = child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut said);
    if pod_dir_of(flags, bundle).1.probe() == Probe::Serving {
        // The daemon outlives us; its parent becomes containerd's subreaper or init.
        return Ok(());
    }
    let said = said.trim();
    Err(Error::Unavailable(if said.is_empty() {
        "it exited without a word".into()
    } else {
        said.to_owned()
    }))
}

/// containerd's clean-up after a shim died: kill what is left of the task,
/// remove its cgroup and state, and report its exit: the journal's real one
/// where the shim recorded it, else SIGKILL now (the clean-up killed it).
pub async fn delete(flags: &Flags) -> Result<()> {
    let bundle = bundle_dir(flags);
    let (_, dir) = pod_dir_of(flags, &bundle);
    let id = flags.id.clone();
    let cleaned = crate::backend::blocking(move || {
        let helper = Helper::new(helper_binary(), true);
        Ok(berth_sandbox::pod::cleanup_dead(&helper, &dir, &id)?)
    })
    .await?;
    let (pid, status, at) = match cleaned.exit {
        Some(exit) => (exit.pid as u32, exit.status, exit.at()),
        None => (
            cleaned.pid.unwrap_or(0) as u32,
            128 + libc::SIGKILL as u32,
            SystemTime::now(),
        ),
    };
    let response = berth_proto::api::DeleteResponse {
        pid,
        exit_status: status,
        exited_at: Some(timestamp(at)).into(),
        ..Default::default()
    };
    let bytes = response
        .write_to_bytes()
        .map_err(|e| Error::Internal(format!("encode delete response: {e}")))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Error::Internal(format!("write the delete response: {e}")))
}
