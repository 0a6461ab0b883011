//! A task's cgroup, as containerd sees it: typed metrics for Stats, and new
//! limits for Update.
//!
//! The metrics are containerd's own protos: cgroups v1 `Metrics` on a v1 or
//! hybrid host, v2 `Metrics` on a unified one, as CRI's ContainerStats and
//! PodSandboxStats expect.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth_proto::protobuf::well_known_types::any::Any;
use berth_sandbox::freezer::Freezer;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::{hierarchies, Cgroup};
use containerd_shim::cgroup;

use crate::error::{Error, Result};
use crate::events::pack;

/// Where a task's cgroup is. Read from its init's `/proc/<pid>/cgroup` when
/// the task is created, so that Stats, Update and Pids still find it after
/// the init has exited, until Delete removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskCgroup {
    /// Each v1 controller's path (a hybrid host counts as v1).
    V1(HashMap<String, String>),
    /// The path under the unified hierarchy.
    V2(PathBuf),
}

impl TaskCgroup {
    /// The cgroup process `pid` is in now.
    pub fn of_pid(pid: i32) -> std::io::Result<TaskCgroup> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        TaskCgroup::parse(&text, hierarchies::is_cgroup2_unified_mode()).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("/proc/{pid}/cgroup names no cgroup"),
            )
        })
    }

    /// Parses a `/proc/<pid>/cgroup` file. A path may itself hold colons.
    fn parse(text: &str, unified: bool) -> Option<TaskCgroup> {
        let entries = text.lines().filter_map(|line| {
            let (_id, rest) = line.split_once(':')?;
            rest.split_once(':')
        });
        if unified {
            return entries
                .filter(|(controllers, _)| controllers.is_empty())
                .map(|(_, path)| TaskCgroup::V2(PathBuf::from(path.trim_start_matches('/'))))
                .next();
        }
        let paths: HashMap<String, String> = entries
            .filter(|(controllers, _)| !controllers.is_empty())
            .flat_map(|(controllers, path)| {
                controllers
                    .split(',')
                    .map(move |c| (c.to_owned(), path.to_owned()))
            })
            .collect();
        (!paths.is_empty()).then_some(TaskCgroup::V1(paths))
    }

    /// The v1 memory controller's directory, where OOM kills are signalled.
    pub fn memory_v1(&self) -> Option<PathBuf> {
        self.v1_dir("memory")
    }

    /// The directory of a v1 controller's cgroup, on a v1 host.
    fn v1_dir(&self, controller: &str) -> Option<PathBuf> {
        match self {
            TaskCgroup::V1(paths) => paths.get(controller).map(|p| {
                Path::new("/sys/fs/cgroup")
                    .join(controller)
                    .join(p.trim_start_matches('/'))
            }),
            TaskCgroup::V2(_) => None,
        }
    }

    /// The cgroup's freezer: the v1 freezer controller, or v2's own.
    pub fn freezer(&self) -> Option<Freezer> {
        match self {
            TaskCgroup::V1(_) => self.v1_dir("freezer").map(Freezer::V1),
            TaskCgroup::V2(_) => self.unified().map(Freezer::V2),
        }
    }

    /// The cgroup's directory in the unified hierarchy, on a v2 host.
    pub fn unified(&self) -> Option<PathBuf> {
        match self {
            TaskCgroup::V2(path) => Some(Path::new("/sys/fs/cgroup").join(path)),
            TaskCgroup::V1(_) => None,
        }
    }

    fn load(&self) -> Cgroup {
        match self {
            TaskCgroup::V1(paths) => {
                Cgroup::load_with_relative_paths(hierarchies::auto(), ".", paths.clone())
            }
            TaskCgroup::V2(path) => Cgroup::load(hierarchies::auto(), path),
        }
    }

    /// Every process in the cgroup, as the shim's PID namespace numbers them.
    pub fn pids(&self) -> Vec<u32> {
        self.load()
            .procs()
            .into_iter()
            .map(|p| p.pid as u32)
            .collect()
    }
}

/// The protobuf packages of containerd's cgroup metrics.
const METRICS_V1: &str = "io.containerd.cgroups.v1";
const METRICS_V2: &str = "io.containerd.cgroups.v2";

/// The metrics of the task's cgroup.
pub fn collect(cgroup: &TaskCgroup) -> Result<Any> {
    let cg = cgroup.load();
    let failed = |e: containerd_shim::Error| Error::Internal(format!("cgroup metrics: {e}"));
    let any = if cg.v2() {
        pack(
            &cgroup::collect_metrics_v2(&cg).map_err(failed)?,
            METRICS_V2,
        )
    } else {
        let mut metrics = cgroup::collect_metrics(&cg).map_err(failed)?;
        // collect_metrics reads CPU time the v2 way; v1 keeps it in cpuacct.
        if let Some(acct) = cg.controller_of::<CpuAcctController>() {
            let acct = acct.cpuacct();
            let cpu = metrics.cpu.mut_or_insert_default();
            let usage = cpu.usage.mut_or_insert_default();
            usage.total = acct.usage;
            usage.user = acct.usage_user;
            usage.kernel = acct.usage_sys;
        }
        pack(&metrics, METRICS_V1)
    };
    any.map_err(|e| Error::Internal(format!("encode metrics: {e}")))
}

/// Applies `resources` (an OCI `LinuxResources`, as JSON) to the task's
/// cgroup.
pub fn update(cgroup: &TaskCgroup, resources: &[u8]) -> Result<()> {
    let resources: oci_spec::runtime::LinuxResources = {
        let de = &mut serde_json::Deserializer::from_slice(resources);
        serde_path_to_error::deserialize(de)
            .map_err(|e| Error::InvalidArgument(format!("resources.{}: {}", e.path(), e.inner())))?
    };
    cgroup::update_resources(&cgroup.load(), &resources)
        .map_err(|e| Error::Internal(format!("update the cgroup: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_packed_under_their_descriptors_names() {
        use berth_proto::protobuf::MessageFull;
        use berth_proto::{cgroups, cgroups_v2};
        let v1 = pack(&cgroups::metrics::Metrics::default(), METRICS_V1).unwrap();
        assert_eq!(
            v1.type_url,
            cgroups::metrics::Metrics::descriptor().full_name()
        );
        let v2 = pack(&cgroups_v2::metrics::Metrics::default(), METRICS_V2).unwrap();
        assert_eq!(
            v2.type_url,
            cgroups_v2::metrics::Metrics::descriptor().full_name()
        );
    }

    #[test]
    fn reads_every_v1_controller_and_colons_in_paths() {
        let text =
            "12:pids:/k8s.io/a:b\n9:cpu,cpuacct:/k8s.io/a:b\n1:name=systemd:/x\n0::/user.slice\n";
        let cg = TaskCgroup::parse(text, false).unwrap();
        let TaskCgroup::V1(paths) = &cg else {
            panic!("a hybrid host is v1: {cg:?}")
        };
        assert_eq!(paths["cpu"], "/k8s.io/a:b");
        assert_eq!(paths["cpuacct"], "/k8s.io/a:b");
        assert_eq!(paths["pids"], "/k8s.io/a:b");
        assert_eq!(cg.memory_v1(), None);
        assert_eq!(cg.freezer(), None);
        let with_memory = TaskCgroup::parse("4:cpu,memory:/x\n3:freezer:/x\n", false).unwrap();
        assert_eq!(
            with_memory.memory_v1(),
            Some(PathBuf::from("/sys/fs/cgroup/memory/x"))
        );
        assert_eq!(
            with_memory.freezer(),
            Some(Freezer::V1(PathBuf::from("/sys/fs/cgroup/freezer/x")))
        );
    }

    #[test]
    fn takes_the_unified_entry_on_a_v2_host() {
        let cg = TaskCgroup::parse("0::/kubepods/pod1/c1\n", true).unwrap();
        assert_eq!(cg, TaskCgroup::V2(PathBuf::from("kubepods/pod1/c1")));
        assert_eq!(
            cg.unified(),
            Some(PathBuf::from("/sys/fs/cgroup/kubepods/pod1/c1"))
        );
        assert_eq!(
            cg.freezer(),
            Some(Freezer::V2(PathBuf::from(
                "/sys/fs/cgroup/kubepods/pod1/c1"
            )))
        );
        assert_eq!(TaskCgroup::parse("0::/only/v2\n", false), None);
    }
}
