//! App containers, from the caller's side: what the helper is asked to do to
//! them, their rootfs mounts and their records in the pod's directory.
//!
//! Every libcontainer call runs in a helper process (see [`crate::helper`]).

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::helper::protocol::{ContainerRef, ContainerSpec, ExecSpec, StdioPaths};
use crate::helper::Helper;
use crate::state::{remove_dir, PodDir, ProcessRecord};

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
    let result = helper.exec_container(ExecSpec {
        container: reference(dir, id),
        process: path.clone(),
        stdio,
    });
    let _ = fs::remove_file(&path);
    result
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
        helper.create_container(spec)
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
    helper.delete_container(&reference(dir, id))?;
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
