//! Checks, rather than assumes, that a removed pod left nothing behind: no process
//! (pause, shim, anything in its cgroups), no mount, no cgroup, no netns file, no state
//! file of berth or containerd. Also a census of an instance's processes and mounts,
//! to compare before and after many pods came and went.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::cgroups;
use crate::containerd::Containerd;
use crate::instance;
use crate::pod_trace::{self, PodTrace};
use crate::procs;
use crate::procs::SANDBOX_ID_ENV;

/// Tear-down may finish just after RemovePodSandbox returns (a shim exiting after its
/// Shutdown call): leaks must persist this long before they count.
/// Generous, because one scan walks all of /proc and the host's cgroups, and two
/// containerd instances may share the machine's two cores.
pub const GRACE: Duration = Duration::from_secs(10);

/// What kind of trace a pod left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeakKind {
    /// A process carrying `BERTH_SANDBOX_ID=<id>` (berth-pause).
    Pause,
    /// A shim of this containerd with `-id <id>`.
    Shim,
    /// A process recorded while the pod ran (task, pause, shim) still running.
    Recorded,
    /// A process inside one of the pod's cgroups.
    CgroupMember,
    /// A mount whose mountinfo line names the pod.
    Mount,
    /// The pod's pinned network namespace, still mounted or present.
    Netns,
    /// A cgroup directory named after the pod.
    Cgroup,
    /// A pod directory under `BERTH_STATE_ROOT` whose `pod.json` names the pod.
    BerthState,
    /// A path under containerd's state dir naming the pod.
    ContainerdState,
    /// CRI still lists the pod.
    CriRecord,
}

/// One trace of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leak {
    pub kind: LeakKind,
    pub what: String,
}

impl std::fmt::Display for Leak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.what)
    }
}

/// Fails, listing every leak, unless pod `trace.id` is gone without a trace from `cd`
/// (CRI, processes, mounts, cgroups, files), allowing [`GRACE`] for tear-down.
pub async fn check_pod_removed(cd: &Containerd, trace: &PodTrace) -> Result<()> {
    let deadline = Instant::now() + GRACE;
    loop {
        let mut leaks = scan_pod(cd, trace);
        let listed = cd.cri().list_pod_sandbox(None).await?;
        if listed.iter().any(|p| p.id == trace.id) {
            leaks.push(Leak {
                kind: LeakKind::CriRecord,
                what: "ListPodSandbox".into(),
            });
        }
        if leaks.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let lines: Vec<String> = leaks.iter().map(Leak::to_string).collect();
            bail!(
                "pod {} leaked after removal:\n  {}",
                trace.id,
                lines.join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fails unless scanning the running pod `trace.id` finds every kind in `kinds`:
/// proof that the leak checker is not blind to what the pod really has.
pub fn ensure_visible(cd: &Containerd, trace: &PodTrace, kinds: &[LeakKind]) -> Result<()> {
    let seen = scan_pod(cd, trace);
    let missing: Vec<&LeakKind> = kinds
        .iter()
        .filter(|k| !seen.iter().any(|l| l.kind == **k))
        .collect();
    if !missing.is_empty() {
        let lines: Vec<String> = seen.iter().map(Leak::to_string).collect();
        bail!(
            "the leak checker does not see {missing:?} of running pod {}; it sees:\n  {}",
            trace.id,
            lines.join("\n  ")
        );
    }
    Ok(())
}

/// Everything of pod `trace.id` present on the host now.
pub fn scan_pod(cd: &Containerd, trace: &PodTrace) -> Vec<Leak> {
    let id = trace.id.as_str();
    let mut leaks = Vec::new();
    let mut push = |kind, what: String| leaks.push(Leak { kind, what });

    for pid in pod_trace::pause_pids(id) {
        push(
            LeakKind::Pause,
            format!("{SANDBOX_ID_ENV}={id}: {}", procs::describe(pid)),
        );
    }
    for pid in procs::shims_of(&cd.address(), id) {
        push(LeakKind::Shim, procs::describe(pid));
    }
    let recorded = trace.task.iter().chain(&trace.pauses).chain(&trace.shims);
    for p in recorded.filter(|p| p.is_alive()) {
        push(LeakKind::Recorded, procs::describe(p.pid));
    }
    for pid in procs::all_pids() {
        if procs::cgroups(pid).is_some_and(|c| c.contains(id)) {
            push(LeakKind::CgroupMember, procs::describe(pid));
        }
    }

    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines().filter(|l| l.contains(id)) {
        push(LeakKind::Mount, line.to_string());
    }
    if let Some(netns) = &trace.netns {
        if instance::mount_points().iter().any(|p| p == netns) {
            push(LeakKind::Netns, format!("mounted: {}", netns.display()));
        } else if netns.exists() {
            push(LeakKind::Netns, format!("file: {}", netns.display()));
        }
    }

    // The pod's cgroup parent is its own: anything below it is the pod's.
    let mut cgroup_dirs = cgroups::find_named_anywhere(id);
    if !trace.cgroup_parent.is_empty() {
        for parent in cgroups::in_every_hierarchy(&trace.cgroup_parent) {
            cgroup_dirs.extend(cgroups::find_named(&parent, ""));
        }
    }
    cgroup_dirs.sort();
    cgroup_dirs.dedup();
    for dir in cgroup_dirs {
        push(LeakKind::Cgroup, dir.display().to_string());
    }

    // berth names pod directories by a hash; their pod.json names the pod.
    for dir in berth_pod_dirs(&cd.berth_state_root(), id) {
        push(LeakKind::BerthState, dir.display().to_string());
    }
    for path in paths_containing(&cd.instance().state(), id) {
        push(LeakKind::ContainerdState, path.display().to_string());
    }
    leaks
}

/// The pod directories under `root` whose `pod.json` records sandbox `id`.
fn berth_pod_dirs(root: &Path, id: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|dir| {
            fs::read(dir.join("pod.json"))
                .ok()
                .and_then(|data| serde_json::from_slice::<serde_json::Value>(&data).ok())
                .is_some_and(|record| record["sandbox_id"] == id)
        })
        .collect()
}

/// Files directly in `BERTH_STATE_ROOT` that belong to no pod: the shim's cache of the
/// task API version per containerd binary (`shim/src/api_version.rs`).
pub const INSTANCE_WIDE_STATE: &[&str] = &["containerd-api-"];

/// Fails unless `root` (an instance's `BERTH_STATE_ROOT`) holds nothing but
/// [`INSTANCE_WIDE_STATE`] files: call when every pod is gone. Directories count:
/// every pod directory must be gone, not only its files.
pub fn check_state_root_empty(root: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(root) else {
        return Ok(());
    };
    let left: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let instance_wide = e.file_type().is_ok_and(|t| t.is_file())
                && e.file_name()
                    .to_str()
                    .is_some_and(|n| INSTANCE_WIDE_STATE.iter().any(|pre| n.starts_with(pre)));
            !instance_wide
        })
        .map(|e| e.path().display().to_string())
        .collect();
    if !left.is_empty() {
        bail!(
            "{} is not empty after every pod was removed:\n  {}",
            root.display(),
            left.join("\n  ")
        );
    }
    Ok(())
}

/// [`check_state_root_empty`], allowing [`GRACE`] for shims still exiting.
pub async fn wait_state_root_empty(root: &Path) -> Result<()> {
    let deadline = Instant::now() + GRACE;
    loop {
        match check_state_root_empty(root) {
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            result => return result,
        }
    }
}

/// The processes and mounts of one instance at one moment.
#[derive(Clone, Debug, Default)]
pub struct Census {
    pub processes: BTreeMap<i32, String>,
    pub mounts: BTreeSet<PathBuf>,
}

impl Census {
    /// The instance's processes (containerd, shims, anything inheriting its
    /// `BERTH_STATE_ROOT`) and the mounts below its directory.
    pub fn take(cd: &Containerd) -> Census {
        let processes = cd
            .instance()
            .processes()
            .into_iter()
            .map(|pid| (pid, procs::describe(pid)))
            .collect();
        let mounts = instance::mounts_under(cd.instance().dir())
            .into_iter()
            .collect();
        Census { processes, mounts }
    }

    /// What `later` has that `self` had not, one line each.
    pub fn grown(&self, later: &Census) -> Vec<String> {
        let procs = later
            .processes
            .iter()
            .filter(|(pid, _)| !self.processes.contains_key(pid))
            .map(|(_, what)| format!("new process: {what}"));
        let mounts = later
            .mounts
            .difference(&self.mounts)
            .map(|m| format!("new mount: {}", m.display()));
        procs.chain(mounts).collect()
    }
}

/// Paths below `root` whose path (relative to `root`) contains `needle`.
fn paths_containing(root: &Path, needle: &str) -> Vec<PathBuf> {
    walk(root)
        .into_iter()
        .filter(|p| {
            p.strip_prefix(root)
                .is_ok_and(|rel| rel.to_string_lossy().contains(needle))
        })
        .collect()
}

/// Every path below `root` (not following symlinks), `root` excluded.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}
