//! App containers: created, started, signalled and deleted by libcontainer.
//!
//! Every libcontainer call runs in a helper process (see [`crate::helper`]):
//! it forks with raw clone3 and runs Rust code in the child, which is only
//! sound in a single-threaded process. The container's init is a child of
//! the helper and reparents to the shim, its subreaper, when the helper exits.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::error::LibcontainerError;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::Spec;
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

impl ContainerRef {
    fn dir(&self) -> PathBuf {
        self.engine_root.join(&self.id)
    }

    fn load(&self) -> Result<Option<Container>> {
        let dir = self.dir();
        if !dir.join("state.json").exists() {
            return Ok(None);
        }
        Container::load(dir)
            .map(Some)
            .map_err(Error::engine("load", &self.id))
    }
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

/// The spec libcontainer runs: containerd's, with the root made absolute and
/// an oom_score_adj the shim may not set raised to what it may.
fn effective_spec(spec: &ContainerSpec) -> Result<Spec> {
    let mut oci = crate::spec::load(&spec.bundle)?;
    if let Some(mut root) = oci.root().clone() {
        if root.path().is_relative() {
            root.set_path(spec.bundle.join(root.path()));
            oci.set_root(Some(root));
        }
    }
    if let Some(mut process) = oci.process().clone() {
        if let Some(wanted) = process.oom_score_adj() {
            let clamped = clamp_oom_score_adj(wanted, own_oom_score_adj()?, may_lower_oom()?);
            if clamped != wanted {
                log::warn!(
                    "container {}: oom_score_adj {wanted} raised to {clamped}: this host does not let berth lower it",
                    spec.id
                );
                process.set_oom_score_adj(Some(clamped));
                oci.set_process(Some(process));
            }
        }
    }
    Ok(oci)
}

/// Without CAP_SYS_RESOURCE a process may not go below its own score.
fn clamp_oom_score_adj(wanted: i32, own: i32, may_lower: bool) -> i32 {
    if may_lower {
        wanted
    } else {
        wanted.max(own)
    }
}

fn own_oom_score_adj() -> Result<i32> {
    let path = "/proc/self/oom_score_adj";
    let text = fs::read_to_string(path).map_err(Error::io("read", path))?;
    text.trim()
        .parse()
        .map_err(|_| Error::invalid(path, format!("not a number: {text:?}")))
}

/// Whether this process holds CAP_SYS_RESOURCE, which lowering needs.
fn may_lower_oom() -> Result<bool> {
    const CAP_SYS_RESOURCE: u32 = 24;
    let path = "/proc/self/status";
    let status = fs::read_to_string(path).map_err(Error::io("read", path))?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| Error::invalid(path, "no CapEff line"))?;
    Ok(effective & (1 << CAP_SYS_RESOURCE) != 0)
}

/// Opens one stdio path; `None` is /dev/null, never the helper's own stdio
/// (its request and answer pipes).
fn open_stdio(path: &Option<PathBuf>, write: bool) -> Result<File> {
    let path = path.as_deref().unwrap_or(Path::new("/dev/null"));
    // Append: a reopened log file does not keep the shim's O_APPEND, and
    // stdout and stderr must not write over each other. Pipes ignore it.
    OpenOptions::new()
        .read(!write)
        .append(write)
        .open(path)
        .map_err(Error::io("open stdio", path))
}

/// Creates the container: its init waits for [`start`] before it execs the
/// spec's process. Runs in the helper.
pub(crate) fn create(spec: &ContainerSpec) -> Result<ProcessRecord> {
    let oci = effective_spec(spec)?;
    fs::create_dir_all(&spec.work_dir).map_err(Error::io("create", &spec.work_dir))?;
    crate::state::write_json(&spec.work_dir.join("config.json"), &oci)?;
    let engine_root = &spec.engine_root;
    fs::create_dir_all(engine_root).map_err(Error::io("create", engine_root))?;

    let builder = ContainerBuilder::new(spec.id.clone(), SyscallType::Linux)
        .validate_id()
        .map_err(Error::engine("create", &spec.id))?
        .with_root_path(engine_root)
        .map_err(Error::engine("create", &spec.id))?
        .with_console_socket(spec.stdio.console_socket.as_ref())
        .with_stdin(open_stdio(&spec.stdio.stdin, false)?)
        .with_stdout(open_stdio(&spec.stdio.stdout, true)?)
        .with_stderr(open_stdio(&spec.stdio.stderr, true)?);
    let built = builder
        .as_init(&spec.work_dir)
        .with_systemd(false)
        .with_detach(true)
        .build();
    let container = match built {
        Ok(c) => c,
        Err(e) => {
            // libcontainer leaves its directory (and maybe a cgroup) behind.
            let cleanup = ContainerRef {
                id: spec.id.clone(),
                engine_root: engine_root.clone(),
            };
            if let Err(undo) = delete(&cleanup) {
                log::warn!("container {}: clean up a failed create: {undo}", spec.id);
            }
            return Err(Error::engine("create", &spec.id)(e));
        }
    };
    let pid = container
        .pid()
        .ok_or_else(|| Error::invalid("container", "libcontainer created no init process"))?
        .as_raw();
    let start_time =
        crate::process::start_time(pid).map_err(Error::sys(format!("read start time of {pid}")))?;
    Ok(ProcessRecord { pid, start_time })
}

/// Runs an extra process in a container, in its namespaces and cgroup.
/// Returns once the process has exec'd. Runs in the helper.
pub(crate) fn exec(spec: &ExecSpec) -> Result<ProcessRecord> {
    let id = &spec.container.id;
    let pid = ContainerBuilder::new(id.clone(), SyscallType::Linux)
        .with_root_path(&spec.container.engine_root)
        .map_err(Error::engine("exec in", id))?
        .with_stdin(open_stdio(&spec.stdio.stdin, false)?)
        .with_stdout(open_stdio(&spec.stdio.stdout, true)?)
        .with_stderr(open_stdio(&spec.stdio.stderr, true)?)
        .with_console_socket(spec.stdio.console_socket.as_ref())
        .as_tenant()
        .with_process(Some(&spec.process))
        .with_detach(true)
        .build()
        .map_err(Error::engine("exec in", id))?
        .as_raw();
    let start_time =
        crate::process::start_time(pid).map_err(Error::sys(format!("read start time of {pid}")))?;
    Ok(ProcessRecord { pid, start_time })
}

/// Lets a created container's init exec its process. Runs in the helper.
pub(crate) fn start(container: &ContainerRef) -> Result<()> {
    let mut c = container
        .load()?
        .ok_or_else(|| Error::not_found(format!("container {}", container.id)))?;
    c.start().map_err(Error::engine("start", &container.id))
}

/// Sends `signal` to every process of the container. Runs in the helper.
pub(crate) fn kill_all(container: &ContainerRef, signal: i32) -> Result<()> {
    let mut c = container
        .load()?
        .ok_or_else(|| Error::not_found(format!("container {}", container.id)))?;
    let signal = libcontainer::signal::Signal::try_from(signal)
        .map_err(|_| Error::invalid("signal", format!("{signal} is not a signal")))?;
    c.kill(signal, true)
        .map_err(Error::engine("kill", &container.id))
}

/// Removes the container's cgroup and libcontainer state, killing what is
/// left of it. A container libcontainer never recorded is already gone.
pub(crate) fn delete(container: &ContainerRef) -> Result<()> {
    match container.load()? {
        Some(mut c) => c
            .delete(true)
            .map_err(Error::engine("delete", &container.id))?,
        None => remove_dir(&container.dir())?,
    }
    Ok(())
}

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", dir)(e)),
        _ => Ok(()),
    }
}

/// The error class of a libcontainer failure.
pub(crate) fn engine_kind(e: &LibcontainerError) -> crate::ErrorKind {
    use crate::ErrorKind;
    match e {
        LibcontainerError::InvalidID(_)
        | LibcontainerError::MissingSpec(_)
        | LibcontainerError::InvalidSpec(_)
        | LibcontainerError::InvalidInput(_)
        | LibcontainerError::Spec(_) => ErrorKind::InvalidArgument,
        LibcontainerError::IncorrectStatus(_) => ErrorKind::FailedPrecondition,
        LibcontainerError::Exist => ErrorKind::FailedPrecondition,
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_score_adj_is_raised_only_when_it_may_not_be_lowered() {
        assert_eq!(clamp_oom_score_adj(-997, 0, false), 0);
        assert_eq!(clamp_oom_score_adj(-997, 0, true), -997);
        assert_eq!(clamp_oom_score_adj(1000, 0, false), 1000);
        assert_eq!(clamp_oom_score_adj(-500, -999, false), -500);
    }
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
