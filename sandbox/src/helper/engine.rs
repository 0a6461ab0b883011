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

/// The spec libcontainer runs: containerd's, with the root made absolute,
/// mounts confined to the rootfs, a device list that denies what it does
/// not allow, `unified` keys checked and an oom_score_adj the shim may not
/// set raised to what it may.
fn effective_spec(spec: &ContainerSpec) -> Result<Spec> {
    let mut oci = crate::spec::load(&spec.bundle)?;
    if let Some(mut root) = oci.root().clone() {
        if root.path().is_relative() {
            root.set_path(spec.bundle.join(root.path()));
            oci.set_root(Some(root));
        }
    }
    confine_to_rootfs(&mut oci)?;
    refuse_user_namespace(&oci)?;
    deny_devices_by_default(&mut oci)?;
    // libcontainer writes each key to the path it makes of it, unchecked.
    let unified = oci.linux().as_ref().and_then(|l| l.resources().as_ref());
    if let Some(unified) = unified.and_then(|r| r.unified().as_ref()) {
        crate::cgroup::resources::check_unified(unified, "linux.resources.unified")?;
    }
    if let Some(mut process) = oci.process().clone() {
        settable_oom_score(&spec.id, &mut process)?;
        oci.set_process(Some(process));
    }
    Ok(oci)
}

/// A user namespace is refused, as the features document says: berth has
/// not made them work end to end (libcontainer would also switch to its
/// systemd cgroup driver for one, whatever the runtime options say).
fn refuse_user_namespace(oci: &Spec) -> Result<()> {
    let namespaces = oci.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    match namespaces
        .into_iter()
        .flatten()
        .position(|ns| ns.typ() == oci_spec::runtime::LinuxNamespaceType::User)
    {
        Some(i) => Err(Error::Unsupported {
            field: format!("linux.namespaces[{i}]"),
            reason: "user namespaces are not supported yet".into(),
        }),
        None => Ok(()),
    }
}

/// Device rules start from "deny all", as runc reads any list: unless the
/// first rule is about every device, one that denies them all goes first,
/// so that a container may use only what its rules allow and the devices
/// every container may ([`crate::cgroup::devices::with_defaults`], which
/// libcontainer adds on v1 and the filter on v2). Without it, v1's
/// controller, open to every device, would only have the allows added.
fn deny_devices_by_default(oci: &mut Spec) -> Result<()> {
    let mut linux = oci.linux().clone().unwrap_or_default();
    let mut resources = linux.resources().clone().unwrap_or_default();
    let mut rules = resources.devices().clone().unwrap_or_default();
    let all = |r: &oci_spec::runtime::LinuxDeviceCgroup| {
        matches!(r.typ(), None | Some(oci_spec::runtime::LinuxDeviceType::A))
    };
    if rules.first().is_some_and(all) {
        return Ok(());
    }
    let deny_all = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .typ(oci_spec::runtime::LinuxDeviceType::A)
        .access("rwm")
        .build()
        .map_err(|e| Error::invalid("linux.resources.devices", e.to_string()))?;
    rules.insert(0, deny_all);
    resources.set_devices(Some(rules));
    linux.set_resources(Some(resources));
    oci.set_linux(Some(linux));
    Ok(())
}

/// Raises the process's oom_score_adj to what the helper may set, if it
/// asks for less, with a warning.
fn settable_oom_score(id: &str, process: &mut oci_spec::runtime::Process) -> Result<()> {
    if let Some(wanted) = process.oom_score_adj() {
        let clamped = clamp_oom_score_adj(wanted, own_oom_score_adj()?, may_lower_oom()?);
        if clamped != wanted {
            log::warn!(
                "container {id}: oom_score_adj {wanted} raised to {clamped}: this host does not let berth lower it"
            );
            process.set_oom_score_adj(Some(clamped));
        }
    }
    Ok(())
}

/// Every path libcontainer takes from the image is resolved inside the
/// rootfs before it runs: it follows links the image holds as the host
/// sees them. A rootfs whose `/dev`, `/proc` or `/sys` is a link is
/// refused; each mount destination becomes the path it resolves to inside
/// the rootfs (what runc mounts on), so no link leads a mount out of it,
/// and none may land inside procfs but where runc lets it.
fn confine_to_rootfs(oci: &mut Spec) -> Result<()> {
    let Some(root) = oci.root().as_ref().map(|r| r.path().clone()) else {
        return Ok(());
    };
    crate::inroot::check_special_dirs(&root)?;
    let Some(mut mounts) = oci.mounts().clone() else {
        return Ok(());
    };
    for mount in &mut mounts {
        let resolved = crate::inroot::resolve(&root, mount.destination())?;
        crate::inroot::check_proc_mount(&resolved, mount.typ().as_deref())?;
        if resolved != *mount.destination() {
            log::info!(
                "mount destination {} is {} inside the rootfs",
                mount.destination().display(),
                resolved.display()
            );
            mount.set_destination(resolved);
        }
    }
    oci.set_mounts(Some(mounts));
    Ok(())
}

/// The created container's mounts, before its process runs: nothing may
/// have landed inside /proc but what the spec masks or makes read-only
/// there (see [`crate::inroot::check_proc_mount_points`]).
fn check_mount_table(pid: i32, oci: &Spec) -> Result<()> {
    let path = format!("/proc/{pid}/mountinfo");
    let table = fs::read_to_string(&path).map_err(Error::io("read", &path))?;
    let linux = oci.linux().as_ref();
    let declared: Vec<PathBuf> = linux
        .and_then(|l| l.masked_paths().clone())
        .into_iter()
        .chain(linux.and_then(|l| l.readonly_paths().clone()))
        .flatten()
        .map(PathBuf::from)
        .collect();
    crate::inroot::check_proc_mount_points(&table, &declared)
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
    let scope = match spec.cgroup_driver {
        CgroupDriver::Systemd => Some(systemd_scope(&oci)?),
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
        if let Err(e) = init_in_scope(pid, scope) {
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
    let checked = check_mount_table(pid, &oci)
        .and_then(|()| device_filter(pid, &oci))
        .and_then(|()| scope.as_ref().map_or(Ok(()), |_| scope_files(pid, &oci)));
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

/// The scope the systemd driver is to make for the container, which must
/// be a new one: libcontainer's driver would join a unit of that name that
/// exists, and set its properties and stop it on delete.
fn systemd_scope(oci: &Spec) -> Result<crate::cgroup::systemd::Scope> {
    let path = oci.linux().as_ref().and_then(|l| l.cgroups_path().as_ref());
    let path = path.ok_or_else(|| {
        Error::invalid(
            "linux.cgroupsPath",
            "the systemd cgroup driver needs a slice:prefix:name path",
        )
    })?;
    let scope = crate::cgroup::systemd::Scope::parse(&path.to_string_lossy())?;
    crate::cgroup::systemd::check_unused(&scope)?;
    Ok(scope)
}

/// With the systemd driver: whether the init is in its own scope's cgroup.
fn init_in_scope(pid: i32, scope: &crate::cgroup::systemd::Scope) -> Result<()> {
    let cgroup = crate::cgroup::TaskCgroup::of_pid(pid)?;
    let want = PathBuf::from(scope.cgroup_path().trim_start_matches('/'));
    if cgroup != crate::cgroup::TaskCgroup::V2(want) {
        return Err(Error::invalid(
            "linux.cgroupsPath",
            format!(
                "the init is in {}, not in unit {}'s {}",
                cgroup.name(),
                scope.unit,
                scope.cgroup_path()
            ),
        ));
    }
    Ok(())
}

/// With the systemd driver, the limits are in the cgroup's files too.
/// systemd takes the ones it has properties for; libcontainer's driver
/// drops the rest (hugepages, most `unified` keys), which runc's writes to
/// the files itself, as this does.
fn scope_files(pid: i32, oci: &Spec) -> Result<()> {
    let cgroup = crate::cgroup::TaskCgroup::of_pid(pid)?;
    match oci.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        Some(resources) => crate::cgroup::resources::apply(&cgroup, resources),
        None => Ok(()),
    }
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
    let mut process: oci_spec::runtime::Process = serde_json::from_slice(&data)
        .map_err(|e| Error::invalid("process", format!("not an OCI process: {e}")))?;
    settable_oom_score(id, &mut process)?;
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
    use libcgroups::common::CgroupManager;
    let id = &container.id;
    let c = load(container)?.ok_or_else(|| Error::not_found(format!("container {id}")))?;
    if !c.systemd() {
        return Ok(());
    }
    let config = c.spec().map_err(failed("update", id))?;
    let scope = crate::cgroup::systemd::Scope::parse(&config.cgroup_path.to_string_lossy())?;
    let dir = Path::new("/sys/fs/cgroup").join(scope.cgroup_path().trim_start_matches('/'));
    let resources = &for_systemd(resources, &dir);
    let manager = libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: true,
        container_name: id.clone(),
    })
    .map_err(|e| Error::sys(format!("reach systemd for container {id}"))(other(e)))?;
    manager
        .apply(&libcgroups::common::ControllerOpt {
            resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .map_err(|e| Error::sys(format!("set the unit properties of container {id}"))(other(e)))
}

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Update's resources as libcgroups' systemd driver must see them to do
/// what Update means: it reads an unset (or zero) CPU quota as "no quota"
/// and an unset period as 100 ms, so those come from the cgroup's
/// `cpu.max`; a zero memory limit, reservation or swap (no change) is an
/// error to it, so they go; and `unified` keys, which it partly misreads
/// (`cpu.weight` as shares), are berth's to write to the files alone.
fn for_systemd(
    resources: &oci_spec::runtime::LinuxResources,
    dir: &Path,
) -> oci_spec::runtime::LinuxResources {
    let mut r = resources.clone();
    r.set_unified(None);
    if let Some(mut cpu) = r.cpu().clone() {
        let current = fs::read_to_string(dir.join("cpu.max")).unwrap_or_default();
        let mut words = current.split_whitespace();
        let quota = match words.next() {
            Some("max") => Some(-1),
            Some(q) => q.parse().ok(),
            None => None,
        };
        let period = words.next().and_then(|p| p.parse().ok());
        if cpu.quota().is_none_or(|q| q == 0) {
            cpu.set_quota(quota);
        }
        if cpu.period().is_none_or(|p| p == 0) {
            cpu.set_period(period);
        }
        r.set_cpu(Some(cpu));
    }
    if let Some(mut memory) = *r.memory() {
        memory.set_limit(memory.limit().filter(|&v| v != 0));
        memory.set_reservation(memory.reservation().filter(|&v| v != 0));
        memory.set_swap(memory.swap().filter(|&v| v != 0));
        r.set_memory(Some(memory));
    }
    r
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_gets_update_s_resources_as_no_change_where_unset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cpu.max"), "50000 100000\n").unwrap();
        let resources: oci_spec::runtime::LinuxResources =
            serde_json::from_value(serde_json::json!({
                "cpu": {"shares": 512, "quota": 0},
                "memory": {"limit": 0, "reservation": 0, "swap": 0},
                "unified": {"memory.high": "max"}
            }))
            .unwrap();
        let r = for_systemd(&resources, dir.path());
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(
            (cpu.shares(), cpu.quota(), cpu.period()),
            (Some(512), Some(50000), Some(100000))
        );
        let memory = r.memory().as_ref().unwrap();
        assert_eq!(
            (memory.limit(), memory.reservation(), memory.swap()),
            (None, None, None)
        );
        assert!(r.unified().is_none());

        std::fs::write(dir.path().join("cpu.max"), "max 100000\n").unwrap();
        let r = for_systemd(&resources, dir.path());
        assert_eq!(
            r.cpu().as_ref().unwrap().quota(),
            Some(-1),
            "no quota stays none"
        );
        let set: oci_spec::runtime::LinuxResources =
            serde_json::from_value(serde_json::json!({"cpu": {"quota": 20000, "period": 50000}}))
                .unwrap();
        let cpu = for_systemd(&set, dir.path()).cpu().clone().unwrap();
        assert_eq!(
            (cpu.quota(), cpu.period()),
            (Some(20000), Some(50000)),
            "as asked"
        );
    }

    #[test]
    fn an_empty_device_list_denies_all_but_the_defaults() {
        let mut oci = Spec::default();
        if let Some(linux) = oci.linux().clone() {
            let mut linux = linux;
            linux.set_resources(None);
            oci.set_linux(Some(linux));
        }
        deny_devices_by_default(&mut oci).unwrap();
        let rules = oci.linux().as_ref().unwrap().resources().as_ref().unwrap();
        let rules = rules.devices().as_ref().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].to_string(), "a *:* rwm");
        assert!(!rules[0].allow());

        // A list without an all-devices rule first gets one.
        let tun = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(oci_spec::runtime::LinuxDeviceType::C)
            .major(10)
            .minor(200)
            .access("rwm")
            .build()
            .unwrap();
        let mut resources = oci_spec::runtime::LinuxResources::default();
        resources.set_devices(Some(vec![tun.clone()]));
        let mut linux = oci.linux().clone().unwrap();
        linux.set_resources(Some(resources));
        oci.set_linux(Some(linux));
        deny_devices_by_default(&mut oci).unwrap();
        let rules = oci.linux().as_ref().unwrap().resources().as_ref().unwrap();
        let rules = rules.devices().as_ref().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].to_string(), "a *:* rwm");
        assert_eq!(rules[1], tun);

        // A list that starts with an all-devices rule is left as it is.
        let allow_all = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .access("rwm")
            .build()
            .unwrap();
        let mut resources = oci_spec::runtime::LinuxResources::default();
        resources.set_devices(Some(vec![allow_all.clone()]));
        let mut linux = oci.linux().clone().unwrap();
        linux.set_resources(Some(resources));
        oci.set_linux(Some(linux));
        deny_devices_by_default(&mut oci).unwrap();
        let rules = oci.linux().as_ref().unwrap().resources().as_ref().unwrap();
        assert_eq!(rules.devices().as_ref().unwrap(), &vec![allow_all]);
    }

    #[test]
    fn oom_score_adj_is_raised_only_when_it_may_not_be_lowered() {
        assert_eq!(clamp_oom_score_adj(-997, 0, false), 0);
        assert_eq!(clamp_oom_score_adj(-997, 0, true), -997);
        assert_eq!(clamp_oom_score_adj(1000, 0, false), 1000);
        assert_eq!(clamp_oom_score_adj(-500, -999, false), -500);
    }
}
