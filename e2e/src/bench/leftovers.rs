//! The bench's closing check, once every pod it ran is removed: CRI lists none, the
//! instance has no process or mount it did not have before the first pod, no process
//! carries a bench pod's `BERTH_SANDBOX_ID`, no mount, cgroup or state file names a
//! bench pod, and `BERTH_STATE_ROOT` is empty. Tear-down may trail the last
//! RemovePodSandbox by a moment, so leftovers must persist for [`leaks::GRACE`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::containerd::Containerd;
use crate::leaks::{self, Census};
use crate::procs::SANDBOX_ID_ENV;
use crate::{cgroups, procs};

/// Fails, listing what is left, unless pods `ids` left nothing behind; `before` is the
/// instance's census taken before the first pod.
pub async fn check(cd: &Containerd, before: &Census, ids: &[String]) -> Result<()> {
    let deadline = Instant::now() + leaks::GRACE;
    loop {
        let found = scan(cd, before, ids).await?;
        if found.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the {} pods of the bench left traces after removal:\n  {}",
                ids.len(),
                found.join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn scan(cd: &Containerd, before: &Census, ids: &[String]) -> Result<Vec<String>> {
    let ids: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let names_pod = |s: &str| ids.iter().any(|id| s.contains(id));
    let mut found: Vec<String> = cd
        .cri()
        .list_pod_sandbox(None)
        .await?
        .into_iter()
        .map(|p| format!("CRI still lists pod {}", p.id))
        .collect();
    found.extend(before.grown(&Census::take(cd)));

    let prefix = format!("{SANDBOX_ID_ENV}=");
    for pid in procs::all_pids() {
        let env = procs::environ(pid).unwrap_or_default();
        let id = env.iter().find_map(|kv| kv.strip_prefix(&prefix));
        if id.is_some_and(|id| ids.contains(id)) {
            found.push(format!("pause process {}", procs::describe(pid)));
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines().filter(|l| names_pod(l)) {
        found.push(format!("mount {line}"));
    }
    for dir in cgroups::find_named_anywhere("") {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        // A pod's own cgroup, or its systemd scope (`cri-containerd-<id>.scope`).
        if names_pod(&name) {
            found.push(format!("cgroup {}", dir.display()));
        }
    }
    // With the cgroupfs driver each pod had its own parent under the
    // instance's cgroup root: only those (empty) parents may remain, never
    // anything below them. (The systemd driver's slices are checked when
    // they are released.)
    let root = cd.instance().cgroup_root();
    for top in cgroups::in_every_hierarchy(&root) {
        for dir in cgroups::find_named(&top, "") {
            let rel = dir.strip_prefix(&top).unwrap_or(&dir);
            if rel.components().count() > 1 {
                found.push(format!("cgroup {}", dir.display()));
            }
        }
    }
    for path in walk(&cd.instance().state()) {
        if names_pod(&path.to_string_lossy()) {
            found.push(format!("containerd state {}", path.display()));
        }
    }
    if let Err(e) = leaks::check_state_root_empty(&cd.berth_state_root()) {
        found.push(format!("{e:#}"));
    }
    Ok(found)
}

/// Every path below `root`, not following symlinks.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
            out.push(entry.path());
        }
    }
    out
}
