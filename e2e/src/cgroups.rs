//! The host's cgroup hierarchies, as far as the harness looks at them: finding cgroups
//! named after a pod, and removing the parent cgroups a test instance caused to exist.
//!
//! The host lane's machine runs cgroup v1 hybrid (`/sys/fs/cgroup/<controller>` plus
//! `unified`), the VM lane's guest a pure v2 hierarchy at `/sys/fs/cgroup` itself.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Base of the cgroup mounts.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Whether `/sys/fs/cgroup` is one unified (v2) hierarchy.
pub fn is_v2() -> bool {
    Path::new(CGROUP_ROOT).join("cgroup.controllers").exists()
}

/// Each hierarchy's root directory (`/sys/fs/cgroup/memory`, `.../unified`, ...;
/// on a v2 host `/sys/fs/cgroup` alone).
pub fn hierarchies() -> Vec<PathBuf> {
    if is_v2() {
        return vec![PathBuf::from(CGROUP_ROOT)];
    }
    let Ok(dir) = fs::read_dir(CGROUP_ROOT) else {
        return Vec::new();
    };
    let mut roots: Vec<PathBuf> = dir
        .filter_map(|e| e.ok())
        // Controllers mounted together (`cpu,cpuacct`) appear again as symlinks.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    roots.sort();
    roots
}

/// `cgroup_parent` as a directory in every hierarchy (`/a/b` -> `<root>/a/b`).
pub fn in_every_hierarchy(cgroup_path: &str) -> Vec<PathBuf> {
    let rel = cgroup_path.trim_start_matches('/');
    hierarchies()
        .into_iter()
        .map(|root| root.join(rel))
        .collect()
}

/// Makes cgroup `cgroup_path` in every hierarchy, as an operator would for a
/// process to join: each new v1 `cpuset` level gets its parent's CPUs and
/// memory nodes (a cpuset with none takes no process). On v2, a parent's
/// `cgroup.subtree_control` is left as it is (the shim's cgroup must take
/// processes, so it may not delegate controllers).
pub fn create(cgroup_path: &str) -> io::Result<()> {
    for root in hierarchies() {
        let mut dir = root.clone();
        for part in cgroup_path.split('/').filter(|p| !p.is_empty()) {
            let parent = dir.clone();
            dir.push(part);
            if dir.is_dir() {
                continue;
            }
            fs::create_dir(&dir)?;
            // v2's cpuset children take their parent's CPUs by themselves.
            if is_v2() {
                continue;
            }
            for knob in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(value) = fs::read_to_string(parent.join(knob)) {
                    fs::write(dir.join(knob), value.trim())?;
                }
            }
        }
    }
    Ok(())
}

/// Every cgroup directory under `base` (itself excluded) whose name contains `needle`.
pub fn find_named(base: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            if entry.file_name().to_string_lossy().contains(needle) {
                found.push(path.clone());
            }
            stack.push(path);
        }
    }
    found
}

/// Every cgroup directory in every hierarchy whose name contains `needle`.
pub fn find_named_anywhere(needle: &str) -> Vec<PathBuf> {
    hierarchies()
        .iter()
        .flat_map(|root| find_named(root, needle))
        .collect()
}

/// Thaws every frozen cgroup at or below `cgroup_path` (v1 `freezer.state`, v2
/// `cgroup.freeze`), so that the processes in them can be killed. Returns what failed.
pub fn thaw_tree(cgroup_path: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for top in in_every_hierarchy(cgroup_path) {
        let mut dirs = find_named(&top, "");
        dirs.push(top);
        for dir in dirs {
            for (knob, thawed) in [("freezer.state", "THAWED"), ("cgroup.freeze", "0")] {
                let path = dir.join(knob);
                let frozen = fs::read_to_string(&path).is_ok_and(|v| v.trim() != thawed);
                if frozen {
                    if let Err(e) = fs::write(&path, thawed) {
                        errors.push(format!("thaw {}: {e}", path.display()));
                    }
                }
            }
        }
    }
    errors
}

/// Removes the cgroup `cgroup_path` (with everything below it) from every hierarchy,
/// deepest first. A cgroup that still holds processes cannot be removed: those are
/// returned as errors, together with any other failure. Absent directories are fine.
pub fn remove_tree(cgroup_path: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for top in in_every_hierarchy(cgroup_path) {
        if !top.exists() {
            continue;
        }
        let mut dirs = find_named(&top, "");
        dirs.push(top);
        // Deeper paths are longer: remove children before their parents.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => errors.push(format!("rmdir {}: {e}", dir.display())),
            }
        }
    }
    errors
}
