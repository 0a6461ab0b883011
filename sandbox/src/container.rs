//! App containers, from the caller's side: what the helper is asked to do to
//! them, their rootfs mounts and their records in the pod's directory.
//!
//! Every libcontainer call runs in a helper process (see [`crate::helper`]
//! and [`crate::engine`]): it forks with raw clone3 and runs Rust code in the
//! child, which is only sound in a single-threaded process. The container's
//! init is a child of the helper and reparents to the shim, its subreaper,
//! when the helper exits.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::helper::{Helper, Request};
use crate::state::{PodDir, ProcessRecord};

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

/// Everything the helper needs to create one container.
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
}

/// An extra process to run in a created or running container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    pub container: ContainerRef,
    /// The OCI process (JSON) to run.
    pub process: PathBuf,
    pub stdio: StdioPaths,
}

/// Names a container in a pod's libcontainer state root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRef {
    pub id: String,
    pub engine_root: PathBuf,
}

/// Creates a container through a helper; see [`create`].
pub fn create_with(helper: &Helper, spec: &ContainerSpec) -> Result<ProcessRecord> {
    helper
        .call(&Request::CreateContainer(spec.clone()))?
        .into_process()
}

/// Ids name directories: no separators, nothing hidden, nothing empty.
fn check_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return Err(Error::invalid(what, format!("{id:?} is not a valid id")));
    }
    Ok(())
}

/// Runs an extra process in container `id` of the pod through a helper.
/// `process` is the OCI process as JSON, as containerd sends it.
pub fn exec_in_pod(
    helper: &Helper,
    dir: &PodDir,
    id: &str,
    exec_id: &str,
    process: &[u8],
    stdio: StdioPaths,
) -> Result<ProcessRecord> {
    let parsed: oci_spec::runtime::Process = {
        let de = &mut serde_json::Deserializer::from_slice(process);
        serde_path_to_error::deserialize(de).map_err(|e| {
            Error::invalid(
                format!("exec spec.{}", e.path()),
                e.into_inner().to_string(),
            )
        })?
    };
    check_id("exec id", exec_id)?;
    if parsed.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::invalid("exec spec.args", "must name a program"));
    }
    let work_dir = dir.container_dir(id);
    if !work_dir.exists() {
        return Err(Error::not_found(format!("container {id}")));
    }
    let path = work_dir.join(format!("exec-{exec_id}.json"));
    crate::state::write_json(&path, &parsed)?;
    let spec = ExecSpec {
        container: reference(dir, id),
        process: path.clone(),
        stdio,
    };
    let result = helper
        .call(&Request::ExecContainer(spec))
        .and_then(|r| r.into_process());
    let _ = fs::remove_file(&path);
    result
}

/// Starts a created container through a helper.
pub fn start_with(helper: &Helper, container: &ContainerRef) -> Result<()> {
    helper
        .call(&Request::StartContainer(container.clone()))?
        .into_done()
}

/// Signals every process of a container through a helper.
pub fn kill_all_with(helper: &Helper, container: &ContainerRef, signal: i32) -> Result<()> {
    helper
        .call(&Request::KillContainer {
            container: container.clone(),
            signal,
        })?
        .into_done()
}

/// Deletes a container's cgroup and engine state through a helper.
pub fn delete_with(helper: &Helper, container: &ContainerRef) -> Result<()> {
    helper
        .call(&Request::DeleteContainer(container.clone()))?
        .into_done()
}

/// What berth records of a container in its directory, so that whoever
/// removes it (Delete, or `delete` after a shim died) finds its rootfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// containerd's bundle.
    pub bundle: PathBuf,
    /// Whether berth mounted the bundle's rootfs (and must unmount it).
    pub rootfs_mounted: bool,
}

const RECORD: &str = "container.json";

/// A container to create in a pod, in the shim's terms.
#[derive(Debug, Clone)]
pub struct NewContainer {
    pub id: String,
    pub bundle: PathBuf,
    /// containerd's rootfs mounts, mounted on `<bundle>/rootfs`.
    pub rootfs: Vec<crate::mount::Mount>,
    pub stdio: StdioPaths,
}

/// The container `id` of the pod in `dir`.
pub fn reference(dir: &PodDir, id: &str) -> ContainerRef {
    ContainerRef {
        id: id.to_owned(),
        engine_root: dir.engine_root(),
    }
}

/// Mounts the container's rootfs and creates it through a helper. On
/// failure nothing of it is left.
pub fn create_in_pod(helper: &Helper, dir: &PodDir, req: &NewContainer) -> Result<ProcessRecord> {
    check_id("id", &req.id)?;
    let work_dir = dir.container_dir(&req.id);
    fs::create_dir_all(&work_dir).map_err(Error::io("create", &work_dir))?;
    let record = ContainerRecord {
        bundle: req.bundle.clone(),
        rootfs_mounted: !req.rootfs.is_empty(),
    };
    // Written first: a shim that dies from here on leaves enough to undo.
    crate::state::write_json(&work_dir.join(RECORD), &record)?;
    let created = (|| {
        if record.rootfs_mounted {
            crate::mount::mount_all(&req.rootfs, &req.bundle.join("rootfs"))?;
        }
        let spec = ContainerSpec {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            engine_root: dir.engine_root(),
            work_dir: work_dir.clone(),
            stdio: req.stdio.clone(),
        };
        create_with(helper, &spec)
    })();
    if created.is_err() {
        if let Err(e) = remove_from_pod(helper, dir, &req.id) {
            log::warn!("container {}: clean up a failed create: {e}", req.id);
        }
    }
    created
}

/// Removes a container of the pod: its processes, cgroup, engine state,
/// rootfs mount and directory. Removing one that is gone is not an error.
pub fn remove_from_pod(helper: &Helper, dir: &PodDir, id: &str) -> Result<()> {
    let work_dir = dir.container_dir(id);
    let record: Option<ContainerRecord> = crate::state::read_json(&work_dir.join(RECORD))?;
    delete_with(helper, &reference(dir, id))?;
    if let Some(record) = record.filter(|r| r.rootfs_mounted) {
        crate::mount::unmount_all(&record.bundle.join("rootfs"))?;
    }
    remove_dir(&work_dir)
}

/// Removes every container still recorded in the pod, trying each; the
/// first failure is reported.
pub fn remove_all_in_pod(helper: &Helper, dir: &PodDir) -> Result<()> {
    let mut first = None;
    for id in dir.container_ids() {
        if let Err(e) = remove_from_pod(helper, dir, &id) {
            log::warn!("container {id}: {e}");
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Removes a directory tree; one already gone is not an error.
pub(crate) fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", dir)(e)),
        _ => Ok(()),
    }
}
