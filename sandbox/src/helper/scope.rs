//! The helper's side of the systemd cgroup driver for app containers: the
//! scope a container is to get, the checks once libcontainer made it, and
//! Update's unit properties. Runs in the helper.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::error::{Error, Result};

/// The scope the systemd driver is to make for the container, which must
/// be a new one: libcontainer's driver would join a unit of that name that
/// exists, and set its properties and stop it on delete.
pub(super) fn systemd_scope(oci: &Spec) -> Result<crate::cgroup::systemd::Scope> {
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
pub(super) fn init_in_scope(pid: i32, scope: &crate::cgroup::systemd::Scope) -> Result<()> {
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
pub(super) fn scope_files(pid: i32, oci: &Spec) -> Result<()> {
    let cgroup = crate::cgroup::TaskCgroup::of_pid(pid)?;
    match oci.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        Some(resources) => crate::cgroup::resources::apply(&cgroup, resources),
        None => Ok(()),
    }
}

/// Sets `resources` as the properties of container `id`'s scope unit,
/// whose cgroup path libcontainer recorded as `cgroup_path`.
pub(super) fn set_unit_properties(
    id: &str,
    cgroup_path: PathBuf,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<()> {
    use libcgroups::common::CgroupManager;
    let scope = crate::cgroup::systemd::Scope::parse(&cgroup_path.to_string_lossy())?;
    let dir = Path::new("/sys/fs/cgroup").join(scope.cgroup_path().trim_start_matches('/'));
    let resources = &for_systemd(resources, &dir);
    let manager = libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path,
        systemd_cgroup: true,
        container_name: id.to_string(),
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
}
