//! cgroupfs paths of pods: create and join, remove.

use cgroups_rs::fs::{hierarchies, Cgroup};
use cgroups_rs::CgroupPid;

use crate::error::{Error, Result};

/// Creates `path` in every hierarchy (if missing) and moves `pid` into it.
pub fn join(path: &str, pid: u32) -> Result<()> {
    let relative = path.trim_start_matches('/');
    let cg = Cgroup::new(hierarchies::auto(), relative).map_err(|source| Error::Cgroup {
        op: "create",
        path: path.to_owned(),
        source,
    })?;
    cg.add_task_by_tgid(CgroupPid::from(pid as u64))
        .map_err(|source| Error::Cgroup {
            op: "join",
            path: path.to_owned(),
            source,
        })
}

/// Removes `path` from every hierarchy. A cgroup that is already gone is fine.
pub fn remove(path: &str) -> Result<()> {
    let relative = path.trim_start_matches('/');
    let cg = Cgroup::load(hierarchies::auto(), relative);
    if !cg.exists() {
        return Ok(());
    }
    cg.delete().map_err(|source| Error::Cgroup {
        op: "remove",
        path: path.to_owned(),
        source,
    })
}

/// Whether `path` exists in any hierarchy.
pub fn exists(path: &str) -> bool {
    Cgroup::load(hierarchies::auto(), path.trim_start_matches('/')).exists()
}
