//! New limits for a task's cgroup: what Update asks for, as an OCI
//! `LinuxResources`.
//!
//! Memory and swap follow runc: a zero limit is no change; on v2 the OCI
//! swap limit (memory plus swap) becomes `memory.swap.max` (swap alone) and
//! is written before the memory limit, so that a tighter memory limit can
//! reclaim into swap; on v1 the `memsw` limit must stay above the memory
//! limit, so it goes first only when it is raised past it.
//!
//! CPU shares become v2's `cpu.weight` by the curve runc and libcontainer
//! use, and quota and period are one write of `cpu.max`; zero quota or
//! period is no change. `unified` keys (v2 only) are written
//! last, as they are, into the cgroup's own files, as runc does.

use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::{MaxValue, Subsystem};
use oci_spec::runtime::{LinuxMemory, LinuxResources};

use crate::cgroup::{is_not_found, TaskCgroup};
use crate::error::{Error, Result};

/// Parses Update's resources (an OCI `LinuxResources` as JSON), naming the
/// field that is wrong.
pub fn parse(json: &[u8]) -> Result<LinuxResources> {
    let de = &mut serde_json::Deserializer::from_slice(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        Error::invalid(
            format!("resources.{}", e.path()),
            e.into_inner().to_string(),
        )
    })
}

/// Applies `resources` to every controller of the cgroup they concern.
pub fn apply(cgroup: &TaskCgroup, resources: &LinuxResources) -> Result<()> {
    let cg = cgroup.load();
    let v2 = cg.v2();
    for subsystem in cg.subsystems() {
        match subsystem {
            Subsystem::Pid(c) => {
                if let Some(pids) = resources.pids() {
                    // Zero or less is no limit, as runc and libcontainer read it.
                    let max = match pids.limit() {
                        limit if limit > 0 => MaxValue::Value(limit),
                        _ => MaxValue::Max,
                    };
                    c.set_pid_max(max).map_err(cgroup.error("set pids limit"))?;
                }
            }
            Subsystem::Mem(c) => {
                if let Some(memory) = resources.memory() {
                    apply_memory(cgroup, c, memory, v2)?;
                }
            }
            Subsystem::CpuSet(c) => {
                let cpu = resources.cpu().as_ref();
                if let Some(cpus) = cpu.and_then(|cpu| cpu.cpus().as_deref()) {
                    c.set_cpus(cpus).map_err(cgroup.error("set cpuset cpus"))?;
                }
                if let Some(mems) = cpu.and_then(|cpu| cpu.mems().as_deref()) {
                    c.set_mems(mems).map_err(cgroup.error("set cpuset mems"))?;
                }
            }
            Subsystem::Cpu(c) => {
                let Some(cpu) = resources.cpu() else {
                    continue;
                };
                if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
                    let value = if v2 { shares_to_weight(shares) } else { shares };
                    c.set_shares(value)
                        .map_err(cgroup.error("set CPU shares"))?;
                }
                // Zero is no change, as containerd sends it and runc reads
                // it; -1 is no quota.
                let quota = cpu.quota().filter(|&q| q != 0);
                let period = cpu.period().filter(|&p| p != 0);
                if v2 {
                    if quota.is_some() || period.is_some() {
                        c.set_cfs_quota_and_period(quota, period)
                            .map_err(cgroup.error("set CPU quota and period"))?;
                    }
                    continue;
                }
                if let Some(quota) = quota {
                    c.set_cfs_quota(quota)
                        .map_err(cgroup.error("set CPU quota"))?;
                }
                if let Some(period) = period {
                    c.set_cfs_period(period)
                        .map_err(cgroup.error("set CPU period"))?;
                }
            }
            Subsystem::HugeTlb(c) => {
                for limit in resources.hugepage_limits().iter().flatten() {
                    c.set_limit_in_bytes(limit.page_size(), limit.limit() as u64)
                        .map_err(cgroup.error("set hugepage limit"))?;
                }
            }
            _ => {}
        }
    }
    if let Some(unified) = resources.unified().as_ref().filter(|u| !u.is_empty()) {
        apply_unified(cgroup, unified)?;
    }
    Ok(())
}

/// CPU shares (2..=262144) as v2's `cpu.weight` (1..=10000), by the curve
/// runc uses since 1.3.2 and libcontainer uses at create: on a log scale,
/// so that 1024 shares, the default, become weight 100, v2's default, and
/// the ends of both ranges meet. Update must agree with create, or the
/// same shares would change a running container's weight.
pub fn shares_to_weight(shares: u64) -> u64 {
    const MAX_WEIGHT: u64 = 10_000;
    match shares {
        0..=2 => 1,
        262_144.. => MAX_WEIGHT,
        _ => {
            // A parabola in l = log2(shares) through (1, 0), (10, 2) and
            // (18, 4) in log10(weight).
            let l = (shares as f64).log2();
            let log_weight = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            (10f64.powf(log_weight).ceil() as u64).clamp(1, MAX_WEIGHT)
        }
    }
}

/// Writes each `unified` key into the file of that name in the task's v2
/// cgroup. A key must name a file that exists there; a v1 host has none.
fn apply_unified(
    cgroup: &TaskCgroup,
    unified: &std::collections::HashMap<String, String>,
) -> Result<()> {
    check_unified(unified, "resources.unified")?;
    let Some(dir) = cgroup.unified() else {
        return Err(Error::invalid(
            "resources.unified",
            "this host has no cgroup v2 hierarchy with controllers",
        ));
    };
    let mut keys: Vec<&String> = unified.keys().collect();
    keys.sort();
    for key in keys {
        let field = || format!("resources.unified.{key}");
        let path = dir.join(key);
        // Only an existing file: a name the kernel does not offer (or a
        // controller not enabled for this cgroup) is the caller's error.
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(Error::invalid(field(), "not a cgroup file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::invalid(
                    field(),
                    format!("no such file in cgroup {}", cgroup.name()),
                ))
            }
            Err(e) => return Err(Error::io("stat unified key", &path)(e)),
        }
        write_lines(&path, &unified[key])?;
    }
    Ok(())
}

/// Refuses `unified` keys that are not the name of a limit in the task's
/// own cgroup directory: a path (which would reach files outside it, even
/// on the host) or one of the core's `cgroup.*` files, through which the
/// runtime places, freezes and kills the task. `field` is where the map is
/// in the request.
pub fn check_unified(
    unified: &std::collections::HashMap<String, String>,
    field: &str,
) -> Result<()> {
    // The core files that are limits.
    const CORE_LIMITS: [&str; 2] = ["cgroup.max.depth", "cgroup.max.descendants"];
    for key in unified.keys() {
        let field = || format!("{field}.{key}");
        if key.is_empty() || key.contains('/') || key.starts_with('.') || key.contains('\0') {
            return Err(Error::invalid(field(), "not a cgroup file name"));
        }
        if key.starts_with("cgroup.") && !CORE_LIMITS.contains(&key.as_str()) {
            return Err(Error::invalid(
                field(),
                "the runtime's own file, not a limit",
            ));
        }
    }
    Ok(())
}

/// Writes `value` into the cgroup file at `path` a line at a time, as the
/// kernel reads one entry a write (`io.max` takes one device a line).
fn write_lines(path: &std::path::Path, value: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(Error::io("open unified key", path))?;
    let mut lines = value.lines().filter(|l| !l.trim().is_empty()).peekable();
    if lines.peek().is_none() {
        // An empty value is written as it is: some files take it.
        return file
            .write_all(value.as_bytes())
            .map_err(Error::io("write unified key", path));
    }
    for line in lines {
        file.write_all(line.as_bytes())
            .map_err(Error::io("write unified key", path))?;
    }
    Ok(())
}

fn apply_memory(
    cgroup: &TaskCgroup,
    c: &MemController,
    memory: &LinuxMemory,
    v2: bool,
) -> Result<()> {
    let limit = memory.limit().filter(|&limit| limit != 0);
    let current = || c.memory_stat().limit_in_bytes;
    let swap = if v2 {
        // Unset swap is none, so that lifting the memory limit lifts the
        // swap limit with it. Swap alone is measured against the memory
        // limit in force.
        let swap = memory.swap().unwrap_or(0);
        let against = match limit {
            None if swap > 0 => Some(current()),
            limit => limit,
        };
        swap_for_v2(swap, against)?
    } else {
        memory.swap().filter(|&swap| swap != 0)
    };
    let set_limit = || match limit {
        Some(limit) => c.set_limit(limit).map_err(|e| {
            if !v2 && errno_of(&e) == Some(libc::EBUSY) {
                // v1 reclaims, then refuses a limit below what it could
                // not reclaim (v2 OOM-kills instead). runc names the usage.
                let stat = c.memory_stat();
                return below_usage(limit, stat.usage_in_bytes, stat.max_usage_in_bytes);
            }
            cgroup.error("set memory limit")(e)
        }),
        None => Ok(()),
    };
    let set_swap = || {
        let Some(swap) = swap else {
            return Ok(());
        };
        match c.set_memswap_limit(swap) {
            // A host without swap accounting has no memory.swap.max: as
            // runc does, that is fine for no swap or unlimited swap.
            Err(e) if v2 && matches!(swap, 0 | -1) && is_not_found(&e) => Ok(()),
            other => other.map_err(cgroup.error("set swap limit")),
        }
    };
    let swap_first =
        v2 || matches!((limit, swap), (Some(_), Some(swap)) if swap == -1 || current() < swap);
    if swap_first {
        set_swap()?;
        set_limit()
    } else {
        set_limit()?;
        set_swap()
    }
}

/// The errno under a cgroups-rs failure, if a system call's.
fn errno_of(e: &cgroups_rs::fs::error::Error) -> Option<i32> {
    use std::error::Error as _;
    e.source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .and_then(std::io::Error::raw_os_error)
}

/// v1's refusal of a memory limit below the usage it could not reclaim.
fn below_usage(limit: i64, usage: u64, peak: u64) -> Error {
    Error::FailedPrecondition {
        what: format!("memory limit {limit}"),
        reason: format!(
            "below what the container uses and the kernel could not reclaim \
             (current usage: {usage}, peak usage: {peak}); the limit is unchanged"
        ),
    }
}

/// What v2's `memory.swap.max` takes (swap alone) for an OCI swap limit
/// (memory plus swap) and the memory limit it goes with; `None` is no
/// change. -1 is unlimited.
fn swap_for_v2(swap: i64, limit: Option<i64>) -> Result<Option<i64>> {
    const FIELD: &str = "resources.memory.swap";
    match (swap, limit.unwrap_or(0)) {
        (0, -1) => Ok(Some(-1)),
        (0, _) => Ok(None),
        (-1, _) | (_, -1) => Ok(Some(swap)),
        (_, 0) => Err(Error::invalid(FIELD, "a swap limit needs a memory limit")),
        (_, limit) if limit < 0 => Err(Error::invalid(
            "resources.memory.limit",
            format!("{limit} is not a limit"),
        )),
        (_, limit) if swap < limit => Err(Error::invalid(
            FIELD,
            format!("memory+swap {swap} is below the memory limit {limit}"),
        )),
        (_, limit) => Ok(Some(swap - limit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_below_usage_names_the_usage() {
        let e = below_usage(16 << 20, 42_000_000, 43_000_000);
        assert_eq!(e.kind(), crate::error::ErrorKind::FailedPrecondition);
        let text = e.to_string();
        assert!(
            text.contains("memory limit 16777216")
                && text.contains("current usage: 42000000")
                && text.contains("peak usage: 43000000"),
            "{text}"
        );
    }

    #[test]
    fn swap_is_converted_to_v2_s_swap_alone() {
        assert_eq!(swap_for_v2(0, Some(-1)).unwrap(), Some(-1), "all unlimited");
        assert_eq!(swap_for_v2(0, Some(100)).unwrap(), None, "no change");
        assert_eq!(swap_for_v2(0, None).unwrap(), None);
        assert_eq!(swap_for_v2(-1, Some(100)).unwrap(), Some(-1));
        assert_eq!(swap_for_v2(300, Some(100)).unwrap(), Some(200));
        assert_eq!(swap_for_v2(100, Some(100)).unwrap(), Some(0));
        for (swap, limit) in [(100, None), (50, Some(100)), (100, Some(-5))] {
            let err = swap_for_v2(swap, limit).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{err}");
        }
    }

    #[test]
    fn shares_become_runc_s_cpu_weight() {
        for (shares, weight) in [
            (1, 1),
            (2, 1),
            (3, 2),
            (102, 17),
            (512, 59),
            (1024, 100),
            (2048, 174),
            (262_143, 10_000),
            (262_144, 10_000),
        ] {
            assert_eq!(shares_to_weight(shares), weight, "{shares} shares");
        }
        let weights: Vec<u64> = (2..=262_144).step_by(97).map(shares_to_weight).collect();
        assert!(weights.windows(2).all(|w| w[0] <= w[1]), "monotonic");
        // Above about 9.8 CPUs' shares a raw write would exceed cpu.weight's range.
        assert!(shares_to_weight(u64::MAX) <= 10_000);
    }

    #[test]
    fn unified_keys_are_limits_of_the_cgroup_itself() {
        let map = |key: &str| [(key.to_owned(), "1".to_owned())].into();
        for bad in [
            "",
            "/etc/passwd",
            "../cgroup.procs",
            "..",
            ".",
            "cgroup.procs",
            "cgroup.freeze",
            "cgroup.kill",
            "cgroup.subtree_control",
        ] {
            let err = check_unified(&map(bad), "linux.resources.unified").unwrap_err();
            match err {
                Error::InvalidArgument { field, .. } => {
                    assert_eq!(field, format!("linux.resources.unified.{bad}"))
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        for good in [
            "memory.high",
            "memory.oom.group",
            "io.max",
            "cgroup.max.depth",
        ] {
            check_unified(&map(good), "resources.unified").unwrap();
        }
    }

    #[test]
    fn bad_resources_name_their_field() {
        let err = parse(br#"{"cpu": {"shares": "many"}}"#).unwrap_err();
        match err {
            Error::InvalidArgument { field, .. } => assert_eq!(field, "resources.cpu.shares"),
            other => panic!("{other:?}"),
        }
        let ok = parse(br#"{"memory": {"limit": 1048576}}"#).unwrap();
        assert_eq!(ok.memory().as_ref().unwrap().limit(), Some(1048576));
    }
}
