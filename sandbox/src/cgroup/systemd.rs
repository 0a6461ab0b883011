//! The systemd cgroup driver (`SystemdCgroup = true`): a `slice:prefix:name`
//! cgroups path names a transient scope unit `<prefix>-<name>.scope` in
//! the slice, which systemd creates over D-Bus with the task's first
//! process in it and removes once the scope is empty. A container's scope
//! is libcontainer's to create (its systemd manager); berth-pause's is
//! made by the helper through the same manager.
//!
//! Only on the unified v2 hierarchy, as libcontainer's driver works: on a
//! v1 or hybrid host systemd leaves the controllers to cgroupfs drivers.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const FIELD: &str = "linux.cgroupsPath";

/// The scope unit of a task and where systemd puts its cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// The slice the scope is in (`system.slice` when the path names none).
    pub slice: String,
    /// The scope unit, `<prefix>-<name>.scope`.
    pub unit: String,
    /// The path as the spec gives it, as libcontainer takes it.
    pub spec_path: String,
}

impl Scope {
    /// Reads a systemd `slice:prefix:name` cgroups path, as runc's and
    /// libcontainer's systemd drivers read it.
    pub fn parse(path: &str) -> Result<Scope> {
        let parts: Vec<&str> = path.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            return Err(Error::invalid(
                FIELD,
                format!("{path:?} is not slice:prefix:name, as the systemd cgroup driver needs"),
            ));
        };
        let slice = if slice.is_empty() {
            "system.slice"
        } else {
            slice
        };
        slice_dir(slice)?;
        for (what, part) in [("prefix", prefix), ("name", name)] {
            if part.is_empty() || !part.chars().all(unit_char) {
                return Err(Error::invalid(
                    FIELD,
                    format!("{path:?}: the {what} {part:?} is not part of a unit name"),
                ));
            }
        }
        if name.ends_with(".slice") {
            return Err(Error::invalid(
                FIELD,
                format!("{path:?}: {name:?} does not name a scope"),
            ));
        }
        let unit = format!("{prefix}-{name}.scope");
        plain_cgroup_name(&unit)
            .map_err(|why| Error::invalid(FIELD, format!("{path:?}: {why}")))?;
        Ok(Scope {
            slice: slice.to_owned(),
            unit,
            spec_path: path.to_owned(),
        })
    }

    /// The scope's cgroup, from the root of the unified hierarchy:
    /// `/a.slice/a-b.slice/<unit>` for slice `a-b.slice`.
    pub fn cgroup_path(&self) -> String {
        let dir = slice_dir(&self.slice).expect("checked when parsed");
        format!("{dir}/{}", self.unit)
    }
}

/// Characters of unit names (systemd also allows `\\`, `@` and `:`, which
/// escape and template units use; a task's scope needs none of them).
fn unit_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Refuses a unit whose cgroup directory systemd would not name after it:
/// it escapes (prefixes `_` to) names that begin with `_` or `.` or with a
/// controller's name and a dot, and unit names are at most 255 bytes.
fn plain_cgroup_name(unit: &str) -> std::result::Result<(), String> {
    const CONTROLLERS: [&str; 16] = [
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "hugetlb",
        "io",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
        "systemd",
    ];
    if unit.len() > 255 {
        return Err(format!("the unit name is {} bytes, over 255", unit.len()));
    }
    let first = unit.split('.').next().unwrap_or_default();
    if unit.starts_with(['_', '.', '-'])
        || unit.starts_with("cgroup.")
        || CONTROLLERS.contains(&first)
    {
        return Err(format!("systemd would escape the cgroup name of {unit:?}"));
    }
    Ok(())
}

/// The cgroup directory of a unit named `unit` that systemd already has
/// in some slice, if any: a scope name in use is someone else's (another
/// pod's, another runtime's), and libcontainer's driver would join it
/// rather than fail. Walks the slices, where systemd puts scopes.
pub fn in_use(unit: &str) -> Option<std::path::PathBuf> {
    let mut todo = vec![std::path::PathBuf::from(ROOT)];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == unit && entry.path().is_dir() {
                return Some(entry.path());
            }
            if name.ends_with(".slice") && entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(entry.path());
            }
        }
    }
    None
}

/// Fails if `scope`'s unit already exists anywhere.
pub fn check_unused(scope: &Scope) -> Result<()> {
    match in_use(&scope.unit) {
        Some(dir) => Err(Error::invalid(
            FIELD,
            format!(
                "systemd unit {} already exists (its cgroup is {})",
                scope.unit,
                dir.display()
            ),
        )),
        None => Ok(()),
    }
}

/// Where the unified hierarchy is mounted.
const ROOT: &str = "/sys/fs/cgroup";

/// Where systemd puts a slice's cgroup: each `-` in its name is a level
/// (`a-b.slice` is in `a.slice`), and `-.slice` is the root.
fn slice_dir(slice: &str) -> Result<String> {
    let bad = |why: &str| Error::invalid(FIELD, format!("slice {slice:?}: {why}"));
    let Some(name) = slice.strip_suffix(".slice") else {
        return Err(bad("not a .slice unit"));
    };
    if name == "-" {
        return Ok(String::new());
    }
    if name.is_empty() || !name.chars().all(unit_char) {
        return Err(bad("not a slice name"));
    }
    let mut dir = String::new();
    let mut prefix = String::new();
    for part in name.split('-') {
        if part.is_empty() {
            return Err(bad("an empty part between dashes"));
        }
        prefix.push_str(part);
        let level = format!("{prefix}.slice");
        plain_cgroup_name(&level).map_err(|why| bad(&why))?;
        dir.push('/');
        dir.push_str(&level);
        prefix.push('-');
    }
    Ok(dir)
}

/// Whether the host runs systemd as init (what `sd_booted` checks).
pub fn running() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

/// Whether the host has the unified v2 hierarchy alone, which the driver
/// needs.
pub fn unified_host() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Why this host cannot run the systemd driver, if it cannot.
pub fn unavailable() -> Option<String> {
    if !running() {
        return Some("this host does not run systemd (no /run/systemd/system)".into());
    }
    if !unified_host() {
        return Some(
            "berth's systemd driver needs the unified cgroup v2 hierarchy, \
             and /sys/fs/cgroup is not one"
                .into(),
        );
    }
    None
}

/// Puts `pid` into a new transient scope for `scope` (the helper's pause),
/// with the properties libcontainer gives a container's: delegated, with
/// CPU, memory, I/O and task accounting. Returns once the process is in the
/// scope's cgroup.
#[cfg(feature = "helper")]
pub fn start_scope(scope: &Scope, pid: i32, name: &str) -> Result<()> {
    use libcgroups::common::CgroupManager;
    check_unused(scope)?;
    let manager = manager(scope, name)?;
    manager
        .add_task(libcgroups_nix::unistd::Pid::from_raw(pid))
        .map_err(|e| Error::sys(format!("start systemd unit {}", scope.unit))(other(e)))?;
    // In the scope asked for, not one of the same name elsewhere.
    let want = std::path::PathBuf::from(scope.cgroup_path().trim_start_matches('/'));
    match super::TaskCgroup::of_pid(pid)? {
        super::TaskCgroup::V2(path) if path == want => Ok(()),
        other => Err(Error::invalid(
            FIELD,
            format!(
                "systemd put the process in {}, not in unit {}'s {}",
                other.name(),
                scope.unit,
                scope.cgroup_path()
            ),
        )),
    }
}

/// Stops the scope's unit, if it is still there (systemd also removes an
/// empty scope on its own).
#[cfg(feature = "helper")]
pub fn stop_scope(scope: &Scope, name: &str) -> Result<()> {
    use libcgroups::common::CgroupManager;
    manager(scope, name)?
        .remove()
        .map_err(|e| Error::sys(format!("stop systemd unit {}", scope.unit))(other(e)))
}

#[cfg(feature = "helper")]
fn manager(scope: &Scope, name: &str) -> Result<libcgroups::common::AnyCgroupManager> {
    libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path: scope.spec_path.clone().into(),
        systemd_cgroup: true,
        container_name: name.to_owned(),
    })
    .map_err(|e| Error::sys(format!("reach systemd for unit {}", scope.unit))(other(e)))
}

#[cfg(feature = "helper")]
fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_path_names_a_scope_in_the_slice_s_cgroup() {
        let scope = Scope::parse("kubepods-besteffort-pod12ab.slice:cri-containerd:abc").unwrap();
        assert_eq!(scope.unit, "cri-containerd-abc.scope");
        assert_eq!(scope.slice, "kubepods-besteffort-pod12ab.slice");
        assert_eq!(
            scope.cgroup_path(),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12ab.slice\
             /cri-containerd-abc.scope"
        );
        let root = Scope::parse("-.slice:p:n").unwrap();
        assert_eq!(root.cgroup_path(), "/p-n.scope");
        let default = Scope::parse(":p:n").unwrap();
        assert_eq!(default.cgroup_path(), "/system.slice/p-n.scope");
        let long = format!("a.slice:cri:{}", "x".repeat(250));
        assert!(Scope::parse(&long).is_err(), "a unit name over 255 bytes");
    }

    #[test]
    fn a_path_the_driver_cannot_read_is_refused_by_field() {
        for bad in [
            "/kubepods/pod1/abc",
            "a.slice:b",
            "a.slice:b:c:d",
            "a:cri:abc",
            "a--b.slice:cri:abc",
            "-a.slice:cri:abc",
            "../a.slice:cri:abc",
            "a.slice:cri/../..:abc",
            "a.slice:cri:../abc",
            "a.slice:cri:",
            "a.slice:cri:b.slice",
            "a.slice::abc",
            "a.slice:cri:a b",
            "a.slice:cri:a@b",
            "cpu.slice:cri:abc",
            "a-memory.slice:_cri:abc",
            "a.slice:.cri:abc",
            "a.slice:cgroup.x:abc",
        ] {
            match Scope::parse(bad) {
                Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, FIELD, "{bad}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
