//! The helper's side of app containers: the calls into the OCI engine
//! (libcontainer). Compiled only with the `helper` feature, into
//! `berth-sandbox-helper`; the shim links none of it.
//!
//! libcontainer forks with raw clone3 and runs Rust code in the child,
//! which is only sound in a single-threaded process such as the helper. A
//! container's init is a child of the helper and reparents to the shim, its
//! subreaper, when the helper exits.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::Spec;

use super::{propagation, scope, spec_policy};
use crate::error::{Error, Result};
use crate::helper::protocol::{ContainerRef, ContainerSpec, ExecSpec};
use crate::spec::CgroupDriver;
use crate::state::{remove_dir, ProcessRecord};

/// An engine failure of `op` on container `id`, with what libcontainer
/// logged as it failed.
fn failed(
    op: &'static str,
    id: &str,
) -> impl FnOnce(libcontainer::error::LibcontainerError) -> Error {
    let wrap = Error::engine(op, id);
    move |e| wrap(e).with_logged(super::trace::recorded())
}

/// The container's directory in the engine's state root.
fn dir(container: &ContainerRef) -> PathBuf {
    container.engine_root.join(&container.id)
}

/// The container's engine state, if the engine ever recorded it.
fn load(container: &ContainerRef) -> Result<Option<Container>> {
    let dir = dir(container);
    if !dir.join("state.json").exists() {
        return Ok(None);
    }
    Container::load(dir)
        .map(Some)
        .map_err(failed("load", &container.id))
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
    let oci = spec_policy::effective_spec(spec)?;
    let scope = match spec.cgroup_driver {
        CgroupDriver::Systemd => Some(scope::systemd_scope(&oci)?),
        CgroupDriver::Cgroupfs => None,
    };
    if let Some(process) = oci.process() {
        super::tenant::check_labels(process)?;
    }
    fs::create_dir_all(&spec.work_dir).map_err(Error::io("create", &spec.work_dir))?;
    // Made anew from the bundle by every create, and useless once the
    // container is gone: written plainly, not synced as state is.
    let config = spec.work_dir.join("config.json");
    let json = serde_json::to_vec(&oci).expect("a parsed spec serializes");
    fs::write(&config, json).map_err(Error::io("write", &config))?;
    let engine_root = &spec.engine_root;
    fs::create_dir_all(engine_root).map_err(Error::io("create", engine_root))?;
    let builder = ContainerBuilder::new(spec.id.clone(), SyscallType::Linux)
        .validate_id()
        .map_err(failed("create", &spec.id))?
        .with_root_path(engine_root)
        .map_err(failed("create", &spec.id))?
        .with_console_socket(spec.stdio.console_socket.as_ref())
        .with_stdin(open_stdio(&spec.stdio.stdin, false)?)
        .with_stdout(open_stdio(&spec.stdio.stdout, true)?)
        .with_stderr(open_stdio(&spec.stdio.stderr, true)?);
    if !spec.no_new_keyring {
        // Inherited by the container's processes from this one.
        session_keyring(&spec.id, true)?;
    }
    let built = builder
        .as_init(&spec.work_dir)
        .with_systemd(spec.cgroup_driver == CgroupDriver::Systemd)
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
            return Err(failed("create", &spec.id)(e));
        }
    };
    let pid = container
        .pid()
        .ok_or_else(|| Error::invalid("container", "libcontainer created no init process"))?
        .as_raw();
    if let Some(scope) = &scope {
        if let Err(e) = scope::init_in_scope(pid, scope) {
            // In a unit of that name that is not the one made for it: the
            // unit is someone else's, so it is neither changed nor stopped
            // (libcontainer's delete would stop it by name). Only the init
            // is killed and libcontainer's record of it removed.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let record = engine_root.join(&spec.id);
            if let Err(undo) = remove_dir(&record) {
                log::warn!("container {}: remove {}: {undo}", spec.id, record.display());
            }
            return Err(e);
        }
    }
    let checked = spec_policy::check_mount_table(pid, &oci)
        .and_then(|()| propagation::apply(pid, &oci))
        .and_then(|()| device_filter(pid, &oci))
        .and_then(|()| {
            scope
                .as_ref()
                .map_or(Ok(()), |_| scope::scope_files(pid, &oci))
        });
    if let Err(e) = checked {
        let cleanup = ContainerRef {
            id: spec.id.clone(),
            engine_root: engine_root.clone(),
        };
        if let Err(undo) = delete(&cleanup) {
            log::warn!("container {}: remove a refused container: {undo}", spec.id);
        }
        return Err(e);
    }
    let start_time =
        crate::process::start_time(pid).map_err(Error::sys(format!("read start time of {pid}")))?;
    Ok(ProcessRecord { pid, start_time })
}

/// On a v2 host, the container's device allow-list, attached to its cgroup
/// before its process runs (libcontainer writes v1's `devices` controller
/// itself, but is built without its v2 filter).
fn device_filter(pid: i32, oci: &Spec) -> Result<()> {
    let rules = oci
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().as_ref());
    let Some(dir) = crate::cgroup::TaskCgroup::of_pid(pid)?.unified() else {
        return Ok(());
    };
    crate::cgroup::devices::install(&dir, rules.map_or(&[], Vec::as_slice))
}

/// Runs an extra process in a container, in its namespaces and cgroup and
/// under its seccomp filter. Returns once the process has exec'd. Runs in
/// the helper.
pub(crate) fn exec(spec: &ExecSpec) -> Result<ProcessRecord> {
    let id = &spec.container.id;
    let container =
        load(&spec.container)?.ok_or_else(|| Error::not_found(format!("container {id}")))?;
    let data = fs::read(&spec.process).map_err(Error::io("read", &spec.process))?;
    let mut process = crate::spec::parse_process(&data)?;
    spec_policy::settable_oom_score(id, &mut process)?;
    super::tenant::check_labels(&process)?;
    if !spec.no_new_keyring {
        // The container's own, which its init made searchable.
        session_keyring(id, false)?;
    }
    let tenant = super::tenant::Tenant {
        container: &container,
        process,
        console_socket: spec.stdio.console_socket.as_deref(),
    };
    let pid = super::tenant::run(
        tenant,
        open_stdio(&spec.stdio.stdin, false)?.into(),
        open_stdio(&spec.stdio.stdout, true)?.into(),
        open_stdio(&spec.stdio.stderr, true)?.into(),
    )
    .map_err(failed("exec in", id))?;
    let start_time =
        crate::process::start_time(pid).map_err(Error::sys(format!("read start time of {pid}")))?;
    Ok(ProcessRecord { pid, start_time })
}

/// Joins container `id`'s session keyring, `_ses.<id>` as runc names it, so
/// that its processes share no keys with the host's or another
/// container's. A kernel without keyrings is no reason to fail.
fn session_keyring(id: &str, searchable: bool) -> Result<()> {
    let name = std::ffi::CString::new(format!("_ses.{id}"))
        .map_err(|_| Error::invalid("id", "contains a NUL byte"))?;
    match crate::sys::join_session_keyring(&name, searchable) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            log::warn!("container {id}: no session keyring of its own: the kernel has none");
            Ok(())
        }
        result => result.map_err(Error::sys(format!(
            "container {id}: join a session keyring of its own (NoNewKeyring turns this off)"
        ))),
    }
}

/// Lets a created container's init exec its process. Runs in the helper.
pub(crate) fn start(container: &ContainerRef) -> Result<()> {
    let mut c =
        load(container)?.ok_or_else(|| Error::not_found(format!("container {}", container.id)))?;
    c.start().map_err(failed("start", &container.id))
}

/// Sends `signal` to every process of the container. Runs in the helper.
pub(crate) fn kill_all(container: &ContainerRef, signal: i32) -> Result<()> {
    let mut c =
        load(container)?.ok_or_else(|| Error::not_found(format!("container {}", container.id)))?;
    let signal = libcontainer::signal::Signal::try_from(signal)
        .map_err(|_| Error::invalid("signal", format!("{signal} is not a signal")))?;
    c.kill(signal, true).map_err(failed("kill", &container.id))
}

/// Sets `resources` as the properties of the container's scope unit, as
/// runc's systemd driver does on an update before it writes the files:
/// systemd keeps a unit's properties and writes them to the cgroup again
/// (on a `daemon-reload`, for one), so limits only in the files would be
/// undone. A container of the cgroupfs driver has no unit.
pub(crate) fn update_unit(
    container: &ContainerRef,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<()> {
    let id = &container.id;
    let c = load(container)?.ok_or_else(|| Error::not_found(format!("container {id}")))?;
    if !c.systemd() {
        return Ok(());
    }
    let config = c.spec().map_err(failed("update", id))?;
    super::scope::set_unit_properties(id, config.cgroup_path, resources)
}

/// Removes the container's cgroup and libcontainer state, killing what is
/// left of it. A container libcontainer never recorded is already gone.
pub(crate) fn delete(container: &ContainerRef) -> Result<()> {
    match load(container)? {
        Some(mut c) => c.delete(true).map_err(failed("delete", &container.id))?,
        None => remove_dir(&dir(container))?,
    }
    Ok(())
}
