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
use crate::layout::{bundle_dir, Layout};
use crate::options::{self, RuntimeOptions};

const PROTOCOL: &str = "ttrpc";

/// What containerd writes on `start`'s stdin: 2.3+'s bootstrap parameters,
/// whose extensions carry the runtime options, or (2.x before 2.3, and 1.7)
/// the runtime options alone, as a bare `Any`.
fn read_stdin(flags: &Flags) -> Result<(Option<BootstrapParams>, options::Read)> {
    let mut input = Vec::new();
    if std::io::stdin()
        .lock()
        .take(10 << 20)
        .read_to_end(&mut input)
        .is_err()
        || input.is_empty()
    {
        return Ok((None, options::Read::default()));
    }
    let params = BootstrapParams::parse_from_bytes(&input)
        .ok()
        .filter(|p| p.instance_id == flags.id && p.namespace == flags.namespace);
    let read = match &params {
        Some(params) => match params.extensions.iter().find_map(|e| {
            e.value
                .as_ref()
                .filter(|any| any.type_url.ends_with(options::TYPE_URL))
        }) {
            Some(any) => options::from_any(any)?,
            None => options::Read::default(),
        },
        None => options::from_any_bytes(&input)?,
    };
    Ok((params, read))
}

/// `start`: the address of the pod's shim, started first if none serves it.
pub async fn start(flags: &Flags) -> Result<()> {
    // `start` has no log (containerd takes its output for the address):
    // Create reads the same options again and logs their warnings.
    let (params, read) = read_stdin(flags)?;
    let layout = Layout::new(&read.options);
    let bundle = bundle_dir(flags);
    // `delete`, which gets no options, finds the layout here.
    let recorded = serde_json::to_vec(&read.options).expect("options serialize");
    state::write_atomic(&bundle.join(OPTIONS_FILE), &recorded)?;
    let (grouping, dir) = layout.pod_dir_of(flags, &bundle);
    let socket = dir.socket();
    let address = format!("unix://{}", socket.display());

    dir.create()?;
    {
        let _lock = dir.lock()?;
        if dir.probe() != Probe::Serving {
            dir.claim()?;
            remove_socket(&socket)?;
            let listener = UnixListener::bind(&socket).map_err(Error::io("bind", &socket))?;
            let server = Server {
                flags,
                bundle: &bundle,
                layout: &layout,
                cgroup: read.options.shim_cgroup.as_deref(),
                log_level: read.options.log_level.as_deref(),
            };
            let spawned = server.spawn(listener);
            if spawned.is_err()
                && dir.read_record().ok().flatten().is_none()
                && dir.container_ids().is_empty()
            {
                // No shim ever served this pod: nothing in it for `delete`,
                // which containerd does not run after a failed start.
                if let Err(e) = dir.remove() {
                    log::warn!("pod {grouping}: remove the directory of a failed start: {e}");
                }
            }
            spawned.map_err(|e| match e {
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
    let version = crate::api_version::detect(&layout.state_root, containerd_version);
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

/// The runtime options `start` read, in the task's bundle (as the Go runc
/// shim keeps its own).
const OPTIONS_FILE: &str = "options.json";

/// The layout `start` used for the task in `bundle`: `delete` is run
/// without the options. No record is the defaults (a bundle `start` never
/// wrote to); a record that cannot be read is an error, not a guess that
/// would clean up in the wrong state root and report success.
fn recorded_layout(bundle: &Path) -> Result<Layout> {
    Ok(Layout::new(&recorded_options(bundle)?))
}

/// The runtime options `start` recorded in `bundle`: the Sandbox API's
/// CreateSandbox carries none of its own.
pub fn recorded_options(bundle: &Path) -> Result<RuntimeOptions> {
    let path = bundle.join(OPTIONS_FILE);
    Ok(match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::FailedPrecondition(format!("runtime options record {}: {e}", path.display()))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => RuntimeOptions::default(),
        Err(e) => return Err(Error::io("read", &path)(e)),
    })
}

fn remove_socket(socket: &Path) -> Result<()> {
    Ok(state::remove_file(socket)?)
}

/// The descriptor number the serving shim finds its listening socket on.
pub const LISTEN_FD: RawFd = 3;
/// Set in the serving shim's environment when `start` hands it the socket.
pub const LISTEN_FD_ENV: &str = "BERTH_LISTEN_FD";

/// The serving shim `start` starts for a pod.
struct Server<'a> {
    flags: &'a Flags,
    bundle: &'a Path,
    layout: &'a Layout,
    /// The cgroup the options put the shim in.
    cgroup: Option<&'a str>,
    /// The options' `LogLevel`.
    log_level: Option<&'a str>,
}

impl Server<'_> {
    /// Starts the serving shim as a daemon on `listener` and waits until it
    /// is ready: it closes its stdout (our pipe) once it accepts
    /// connections, or writes why it failed there and exits.
    fn spawn(&self, listener: UnixListener) -> Result<()> {
        let flags = self.flags;
        let mut command = Command::new("/proc/self/exe");
        command
            // The running binary, named as containerd named it (for ps).
            .arg0(
                std::env::args_os()
                    .next()
                    .unwrap_or_else(|| "containerd-shim-berth-v2".into()),
            )
            .current_dir(self.bundle)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env(LISTEN_FD_ENV, LISTEN_FD.to_string())
            .envs(self.layout.env())
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
        // Only the options set the level, never containerd's environment.
        match self.log_level {
            Some(level) => command.env(crate::shimlog::LEVEL_ENV, level),
            None => command.env_remove(crate::shimlog::LEVEL_ENV),
        };
        // The listener goes on LISTEN_FD, and the daemon leaves containerd's
        // session.
        let mut child =
            crate::sys::spawn_with_fds(&mut command, &[(listener.as_fd(), LISTEN_FD)], true)
                .map_err(|e| Error::Internal(format!("spawn the shim server: {e}")))?;
        // Our copy must go, or the socket would look served even if the child died.
        drop(listener);
        if let Some(cgroup) = self.cgroup {
            // As the Go runc shim does: before the shim starts anything.
            if let Err(e) = berth_sandbox::cgroup::join_existing(cgroup, child.id()) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::from(e));
            }
        }
        let mut said = String::new();
        let _ = child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut said);
        if self.layout.pod_dir_of(flags, self.bundle).1.probe() == Probe::Serving {
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
}

/// containerd's clean-up after a shim died: kill what is left of the task,
/// remove its cgroup and state, and report its exit: the journal's real one
/// where the shim recorded it, else SIGKILL now (the clean-up killed it).
pub async fn delete(flags: &Flags) -> Result<()> {
    let bundle = bundle_dir(flags);
    let layout = recorded_layout(&bundle)?;
    let (_, dir) = layout.pod_dir_of(flags, &bundle);
    let id = flags.id.clone();
    let cleaned = crate::backend::blocking(move || {
        let helper = Helper::new(&layout.helper, true);
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

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::ttrpc::Code;

    #[test]
    fn delete_finds_the_layout_start_recorded_or_refuses_a_bad_record() {
        let bundle = tempfile::tempdir().unwrap();
        let defaults = Layout::new(&RuntimeOptions::default());
        let none = recorded_layout(bundle.path()).unwrap();
        assert_eq!(
            none.state_root, defaults.state_root,
            "no record: the defaults"
        );

        let options = RuntimeOptions {
            state_root: Some("/run/berth-elsewhere".into()),
            ..Default::default()
        };
        let record = bundle.path().join(OPTIONS_FILE);
        std::fs::write(&record, serde_json::to_vec(&options).unwrap()).unwrap();
        let recorded = recorded_layout(bundle.path()).unwrap();
        assert_eq!(recorded.state_root, Path::new("/run/berth-elsewhere"));

        std::fs::write(&record, b"{\"state_root\": ").unwrap();
        let err = recorded_layout(bundle.path()).unwrap_err();
        assert_eq!(err.code(), Code::FAILED_PRECONDITION, "{err}");
        assert!(err.to_string().contains(OPTIONS_FILE), "{err}");
    }
}
