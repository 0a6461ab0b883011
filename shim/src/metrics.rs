//! A task's cgroup, as containerd sees it: typed metrics for Stats, and new
//! limits for Update.
//!
//! The metrics are containerd's own protos: cgroups v1 `Metrics` on a v1 or
//! hybrid host, v2 `Metrics` on a unified one, as CRI's ContainerStats and
//! PodSandboxStats expect.

use berth_proto::protobuf::well_known_types::any::Any;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::Cgroup;
use containerd_shim::cgroup;
use containerd_shim::util::convert_to_any;

use crate::error::{Error, Result};

fn cgroup_of(pid: u32) -> Result<Cgroup> {
    cgroup::get_cgroup(pid).map_err(|e| Error::Internal(format!("cgroup of pid {pid}: {e}")))
}

/// The metrics of the cgroup process `pid` is in.
pub fn collect(pid: u32) -> Result<Any> {
    let cg = cgroup_of(pid)?;
    let failed = |e: containerd_shim::Error| Error::Internal(format!("metrics of pid {pid}: {e}"));
    let any = if cg.v2() {
        convert_to_any(Box::new(cgroup::collect_metrics_v2(&cg).map_err(failed)?))
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
        convert_to_any(Box::new(metrics))
    };
    any.map_err(|e| Error::Internal(format!("encode metrics: {e}")))
}

/// Applies `resources` (an OCI `LinuxResources`, as JSON) to the cgroup
/// process `pid` is in.
pub fn update(pid: u32, resources: &[u8]) -> Result<()> {
    let resources: oci_spec::runtime::LinuxResources = {
        let de = &mut serde_json::Deserializer::from_slice(resources);
        serde_path_to_error::deserialize(de)
            .map_err(|e| Error::InvalidArgument(format!("resources.{}: {}", e.path(), e.inner())))?
    };
    let cg = cgroup_of(pid)?;
    cgroup::update_resources(&cg, &resources)
        .map_err(|e| Error::Internal(format!("update the cgroup of pid {pid}: {e}")))
}
