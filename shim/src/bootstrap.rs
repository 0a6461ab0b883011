//! The shim binary's actions: `start`, `delete`, and serving a pod.
//!
//! containerd runs `containerd-shim-berth-v2 ... start` in the bundle of each
//! new task. All tasks of one pod share a shim: `start` derives the pod's
//! directory from containerd's address, the namespace and the pod's id (CRI's
//! sandbox id), returns the address of the shim already serving it, or starts
//! one as a daemon and returns its address.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use berth_proto::bootstrap_api::{BootstrapParams, BootstrapResult};
use berth_proto::protobuf::Message;
use berth_sandbox::state::{self, PodDir};
use containerd_shim::Flags;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::events::timestamp;

const PROTOCOL: &str = "ttrpc";

/// Runs the action containerd asked for; returns the process exit code.
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
        println!("containerd-shim-berth-v2 {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let result = match flags.action.as_str() {
        "start" => start(&flags).await,
        "delete" => delete(&flags).await,
        "" => crate::server::serve(&flags).await,
        other => Err(Error::InvalidArgument(format!("unknown action {other:?}"))),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let message = berth_sandbox::helper::error_chain(&e);
            log::error!("{}: {message}", flags.action);
            eprintln!("containerd-shim-berth-v2 {}: {message}", flags.action);
            1
        }
    }
}

/// The pod directory of the shim that serves `grouping` for this containerd
/// and namespace.
pub fn pod_dir(address: &str, namespace: &str, grouping: &str) -> PodDir {
    let mut hash = Sha256::new();
    for part in [address, namespace, grouping] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let key: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    PodDir::new(&state::root(), &key)
}

fn bundle_dir(flags: &Flags) -> PathBuf {
    if flags.bundle.is_empty() {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
    } else {
        PathBuf::from(&flags.bundle)
    }
}

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

async fn start(flags: &Flags) -> Result<()> {
    let params = bootstrap_params(flags);
    let bundle = bundle_dir(flags);
    let grouping = berth_sandbox::spec::grouping(&bundle, &flags.id);
    let dir = pod_dir(&flags.address, &flags.namespace, &grouping);
    let socket = dir.socket();
    let address = format!("unix://{}", socket.display());

    if !crate::server::is_serving(&socket).await {
        dir.create()?;
        spawn_server(flags, &bundle, &address)?;
        if !crate::server::is_serving(&socket).await {
            return Err(Error::Unavailable(format!(
                "the shim for pod {grouping} did not start"
            )));
        }
    }
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
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(&reply)
        .and_then(|()| out.flush())
        .map_err(|e| Error::Internal(format!("write the bootstrap reply: {e}")))
}

/// Starts the serving shim as a daemon and waits until it listens: it closes
/// its stdout (our pipe) once the socket accepts connections.
fn spawn_server(flags: &Flags, bundle: &Path, address: &str) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Error::Internal(format!("current_exe: {e}")))?;
    let mut command = Command::new(exe);
    command
        .current_dir(bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .args([
            "-namespace",
            &flags.namespace,
            "-id",
            &flags.id,
            "-address",
            &flags.address,
        ])
        .args(["-socket", address]);
    if !flags.publish_binary.is_empty() {
        command.args(["-publish-binary", &flags.publish_binary]);
    }
    if flags.debug {
        command.arg("-debug");
    }
    // SAFETY: setsid is async-signal-safe, allocates nothing and takes no
    // lock; it detaches the daemon from containerd's session.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| Error::Internal(format!("spawn the shim server: {e}")))?;
    let mut sink = Vec::new();
    let _ = child.stdout.take().expect("piped").read_to_end(&mut sink);
    // The daemon outlives us; its parent is containerd's subreaper or init.
    Ok(())
}

/// containerd's clean-up after a shim died: kill what is left of the task,
/// remove its cgroup and state, and report an exit.
async fn delete(flags: &Flags) -> Result<()> {
    let bundle = bundle_dir(flags);
    let grouping = berth_sandbox::spec::grouping(&bundle, &flags.id);
    let dir = pod_dir(&flags.address, &flags.namespace, &grouping);
    let id = flags.id.clone();
    let pid = tokio::task::spawn_blocking(move || cleanup_dead_pod(&dir, &id))
        .await
        .map_err(|e| Error::Internal(format!("clean-up task: {e}")))??;
    let response = berth_proto::api::DeleteResponse {
        pid: pid.unwrap_or(0) as u32,
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: Some(timestamp(SystemTime::now())).into(),
        ..Default::default()
    };
    let bytes = response
        .write_to_bytes()
        .map_err(|e| Error::Internal(format!("encode delete response: {e}")))?;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Error::Internal(format!("write the delete response: {e}")))
}

fn cleanup_dead_pod(dir: &PodDir, id: &str) -> Result<Option<i32>> {
    let Some(record) = dir.read_record()? else {
        return Ok(None);
    };
    if record.sandbox_id != id {
        return Ok(None);
    }
    let pid = record.pause.map(|p| p.pid);
    if let Some(pause) = record.pause {
        if berth_sandbox::pod::signal(pause, nix::sys::signal::Signal::SIGKILL)? {
            log::info!(
                "pod {id}: killed berth-pause {} left by a dead shim",
                pause.pid
            );
        }
    }
    if let Some(cgroup) = &record.cgroup {
        berth_sandbox::pod::remove_cgroup(cgroup)?;
    }
    dir.remove()?;
    Ok(pid)
}

/// The berth-pause binary: `$BERTH_PAUSE`, else beside this binary.
pub fn pause_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_PAUSE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("berth-pause")))
        .unwrap_or_else(|| PathBuf::from("berth-pause"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_keyed_by_containerd_namespace_and_group() {
        let a = pod_dir("/run/containerd/containerd.sock", "k8s.io", "pod1");
        assert_eq!(
            a.path(),
            pod_dir("/run/containerd/containerd.sock", "k8s.io", "pod1").path()
        );
        assert_ne!(
            a.path(),
            pod_dir("/run/other.sock", "k8s.io", "pod1").path()
        );
        assert_ne!(
            a.path(),
            pod_dir("/run/containerd/containerd.sock", "default", "pod1").path()
        );
        assert_ne!(
            a.path(),
            pod_dir("/run/containerd/containerd.sock", "k8s.io", "pod2").path()
        );
        // Unix socket paths are limited to 108 bytes.
        let name = a.path().file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name.len(), 32);
    }

    #[test]
    fn cleanup_of_an_unknown_pod_is_a_no_op() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "x");
        assert_eq!(cleanup_dead_pod(&dir, "c1").unwrap(), None);
    }
}
