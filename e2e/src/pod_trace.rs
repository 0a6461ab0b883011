//! What a running pod looks like from the host, recorded while it runs so that the
//! leak checker can later look for each piece: its sandbox task pid, its pause and
//! shim processes, its network namespace file and its cgroup parent.

use std::path::PathBuf;

use anyhow::Result;

use crate::containerd::Containerd;
use crate::procs::{self, ProcId};

/// Facts about one pod, taken while it was running.
#[derive(Clone, Debug, Default)]
pub struct PodTrace {
    pub id: String,
    /// The pod's pinned network namespace (CRI's `NetNSPath`).
    pub netns: Option<PathBuf>,
    /// The sandbox task's pid as containerd reports it (berth: the pause).
    pub task: Option<ProcId>,
    /// Processes carrying `BERTH_SANDBOX_ID=<id>` (berth-pause).
    pub pauses: Vec<ProcId>,
    /// Shim processes of this containerd serving the pod (`-id <id>`).
    pub shims: Vec<ProcId>,
    /// The pod's cgroup parent, if it was given one. It must be this pod's alone: the
    /// leak checker counts every cgroup below it as the pod's.
    pub cgroup_parent: String,
}

impl PodTrace {
    /// Records pod `id` of `cd` as it is now. `cgroup_parent` is what the pod was
    /// created with (empty if none).
    pub async fn capture(cd: &Containerd, id: &str, cgroup_parent: &str) -> Result<PodTrace> {
        let info = cd.cri().pod_sandbox_info(id).await?;
        let task = info["pid"].as_i64().and_then(|p| ProcId::of(p as i32));
        Ok(PodTrace {
            id: id.to_string(),
            netns: netns_path(&info),
            task,
            pauses: pause_pids(id).into_iter().filter_map(ProcId::of).collect(),
            shims: procs::shims_of(&cd.address(), id)
                .into_iter()
                .filter_map(ProcId::of)
                .collect(),
            cgroup_parent: cgroup_parent.to_string(),
        })
    }
}

/// The network namespace path in containerd's verbose sandbox info: the network
/// namespace of the sandbox's runtime spec, or the sandbox metadata's `NetNSPath`.
pub fn netns_path(info: &serde_json::Value) -> Option<PathBuf> {
    let from_spec = info["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .and_then(|nss| {
            nss.iter()
                .find(|ns| ns["type"] == "network")
                .and_then(|ns| ns["path"].as_str())
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        });
    from_spec.or_else(|| {
        info["sandboxMetadata"]["NetNSPath"]
            .as_str()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    })
}

/// The berth-pause processes of pod `id`, found by their environment.
pub fn pause_pids(id: &str) -> Vec<i32> {
    procs::with_env(procs::SANDBOX_ID_ENV, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_netns_in_the_spec_or_metadata() {
        let spec = serde_json::json!({"runtimeSpec": {"linux": {"namespaces": [
            {"type": "pid"}, {"type": "network", "path": "/x/netns/cni-1"}]}}});
        assert_eq!(netns_path(&spec), Some(PathBuf::from("/x/netns/cni-1")));
        let meta = serde_json::json!({"sandboxMetadata": {"NetNSPath": "/y"}});
        assert_eq!(netns_path(&meta), Some(PathBuf::from("/y")));
        assert_eq!(netns_path(&serde_json::json!({})), None);
    }
}
