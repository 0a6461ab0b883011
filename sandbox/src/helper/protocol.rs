//! The helper's wire: how it is run, what it is asked and what it answers.
//!
//! The shim runs `berth-sandbox-helper` with [`HELPER_ARG`] and [`PROTOCOL`]
//! as its arguments. The request is one JSON document on the helper's
//! stdin, the answer one on its stdout: a result, or a structured
//! [`HelperError`], never a bare exit code.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, HelperError, Result};
use crate::spec::SandboxConfig;
use crate::state::ProcessRecord;

/// First argument of every helper run.
pub const HELPER_ARG: &str = "__berth-helper";

/// Second argument: the version of the requests and answers below. A helper
/// refuses a caller of another version (a shim and helper from two builds)
/// rather than misread it. Changed whenever [`Request`] or [`Response`]
/// change in a way the other side would misread.
pub const PROTOCOL: &str = "3";

/// The helper binary's file name, and its `argv[0]` however it is reached.
pub const HELPER_NAME: &str = "berth-sandbox-helper";

/// What the shim asks of a helper.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Set up a pod's namespaces and exec berth-pause in them.
    SpawnPause(PauseSpec),
    /// Create an app container; its init waits for `StartContainer`.
    CreateContainer(ContainerSpec),
    /// Run an extra process in a container.
    ExecContainer(ExecSpec),
    /// Let a created container's init exec its process.
    StartContainer(ContainerRef),
    /// Signal every process of a container.
    KillContainer {
        container: ContainerRef,
        signal: i32,
    },
    /// Remove a container's cgroup and engine state.
    DeleteContainer(ContainerRef),
    /// Set new limits as the properties of a systemd-driven container's
    /// scope unit (nothing for a cgroupfs one).
    UpdateContainerUnit {
        container: ContainerRef,
        resources: Box<oci_spec::runtime::LinuxResources>,
    },
}

/// A helper's answer.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// berth-pause runs, with this pid in the shim's PID namespace and this
    /// start time (see [`crate::process::start_time`]).
    Pause {
        pid: i32,
        start_time: u64,
    },
    /// A container's init, or an exec process, was made: it has this pid
    /// and start time.
    Created {
        pid: i32,
        start_time: u64,
    },
    /// The request was carried out.
    Done,
    Error(HelperError),
}

impl Response {
    /// The process a `SpawnPause`, `CreateContainer` or `ExecContainer`
    /// answer names.
    pub fn into_process(self) -> Result<ProcessRecord> {
        match self {
            Response::Pause { pid, start_time } | Response::Created { pid, start_time } => {
                Ok(ProcessRecord { pid, start_time })
            }
            other => Err(other.unexpected()),
        }
    }

    /// Succeeds for a `Done` answer.
    pub fn into_done(self) -> Result<()> {
        match self {
            Response::Done => Ok(()),
            other => Err(other.unexpected()),
        }
    }

    fn unexpected(self) -> Error {
        match self {
            Response::Error(e) => e.into(),
            other => HelperError::internal(format!("unexpected helper answer {other:?}")).into(),
        }
    }
}

/// A `SpawnPause` request: start berth-pause for one pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PauseSpec {
    pub sandbox_id: String,
    /// The berth-pause binary.
    pub binary: PathBuf,
    /// An empty directory the helper mounts pause's root tmpfs on, in its own
    /// mount namespace (the host never sees that mount).
    pub root_dir: PathBuf,
    /// The namespaces, hostname and cgroup the pod's spec asks for.
    pub config: SandboxConfig,
}

/// Where a container's stdio comes from and goes to: paths the helper opens
/// (typically `/proc/<shim>/fd/<n>` for the shim's pipe ends). `None` is
/// /dev/null.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdioPaths {
    pub stdin: Option<PathBuf>,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
    /// For a terminal: the unix socket the pty master is sent to. The
    /// process's stdio is then the pty, and the three above go unused.
    pub console_socket: Option<PathBuf>,
}

/// A `CreateContainer` request: everything the helper needs to create one
/// container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub id: String,
    /// containerd's bundle: its config.json, and its rootfs, already mounted.
    pub bundle: PathBuf,
    /// libcontainer's state root, one per pod.
    pub engine_root: PathBuf,
    /// berth's own directory for the container: the spec libcontainer runs
    /// (containerd's, adjusted) is written there.
    pub work_dir: PathBuf,
    pub stdio: StdioPaths,
    /// Keep the helper's session keyring instead of one of the container's
    /// own (`NoNewKeyring`).
    #[serde(default)]
    pub no_new_keyring: bool,
    /// Who makes the container's cgroup from its `linux.cgroupsPath`.
    #[serde(default)]
    pub cgroup_driver: crate::spec::CgroupDriver,
    /// The pod's shared files, bound into the container where its spec
    /// mounts nothing (shim mode: no CRI wrote them).
    #[serde(default)]
    pub pod_files: Vec<PodFile>,
}

/// A file of the pod (`/etc/hosts`, say) bound into its containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodFile {
    /// Where in the container.
    pub destination: PathBuf,
    /// The pod's file on the host.
    pub source: PathBuf,
}

/// An `ExecContainer` request: an extra process to run in a created or
/// running container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    pub container: ContainerRef,
    /// The OCI process (JSON) to run.
    pub process: PathBuf,
    pub stdio: StdioPaths,
    /// The container was made without a session keyring of its own.
    #[serde(default)]
    pub no_new_keyring: bool,
}

/// Names a container in a pod's libcontainer state root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRef {
    pub id: String,
    pub engine_root: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_name_what_they_carry() {
        let created = Response::Created {
            pid: 7,
            start_time: 9,
        };
        assert_eq!(
            created.into_process().unwrap(),
            ProcessRecord {
                pid: 7,
                start_time: 9
            }
        );
        assert!(Response::Done.into_done().is_ok());
        let err = Response::Done.into_process().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Internal);
        let refused = Response::Error(HelperError {
            kind: crate::ErrorKind::InvalidArgument,
            message: "invalid spec.process".into(),
        });
        let err = refused.into_done().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert_eq!(err.to_string(), "invalid spec.process");
    }

    #[test]
    fn the_wire_format_is_stable() {
        let request = Request::KillContainer {
            container: ContainerRef {
                id: "c".into(),
                engine_root: "/e".into(),
            },
            signal: 9,
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"kill_container":{"container":{"id":"c","engine_root":"/e"},"signal":9}}"#
        );
        assert_eq!(serde_json::to_string(&Response::Done).unwrap(), r#""done""#);
    }
}
