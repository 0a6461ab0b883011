//! The counters of a task's cgroup, read for Stats.
//!
//! v1 and v2 count differently (v1 keeps CPU time in `cpuacct`, in
//! nanoseconds, and swap together with memory; v2 keeps CPU time in
//! `cpu.stat`, in microseconds, and swap apart), so each has a shape of its
//! own, which the shim turns into containerd's v1 or v2 metrics. v2's
//! flat-keyed files (`cpu.stat`, `memory.stat`, `memory.events`) are handed
//! over whole, by key.

use std::collections::HashMap;

use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Controller, MaxValue, Subsystem};

use crate::cgroup::{is_not_found, TaskCgroup};
use crate::error::Result;

/// The `key value` lines of a flat-keyed cgroup file, by key.
pub type FlatKeyed = HashMap<String, u64>;

/// What a task's cgroup has counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stats {
    V1(V1Stats),
    V2(V2Stats),
}

/// A v1 (or hybrid host's) cgroup's counters; a controller the host lacks
/// is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Stats {
    pub cpu: Option<V1Cpu>,
    pub memory: Option<V1Memory>,
    pub pids: Option<Pids>,
}

/// v1 CPU time (`cpuacct`, nanoseconds) and throttling (the `cpu`
/// controller's `cpu.stat`, where the host has that controller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Cpu {
    pub usage_total: u64,
    pub usage_user: u64,
    pub usage_kernel: u64,
    pub throttling: Option<V1Throttling>,
}

/// v1 CFS throttling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    /// Nanoseconds.
    pub throttled_time: u64,
}

/// v1 memory, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Memory {
    pub usage: u64,
    pub total_inactive_file: u64,
    pub kernel_usage: u64,
    /// The `memsw` counter: memory and swap together.
    pub swap_usage: u64,
    pub oom_kill: u64,
}

/// A v2 cgroup's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V2Stats {
    /// `cpu.stat`: `usage_usec`, `user_usec`, `nr_throttled`...
    pub cpu: Option<FlatKeyed>,
    pub memory: Option<V2Memory>,
    pub pids: Option<Pids>,
}

/// v2 memory, in bytes, with swap apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V2Memory {
    /// `memory.stat`: `anon`, `file`, `inactive_file`...
    pub stat: FlatKeyed,
    pub usage: u64,
    /// `u64::MAX` when unlimited.
    pub usage_limit: u64,
    pub max_usage: u64,
    pub swap_usage: u64,
    /// `u64::MAX` when unlimited.
    pub swap_limit: u64,
    pub swap_max_usage: u64,
    /// `memory.events`: `low`, `high`, `max`, `oom`, `oom_kill`...
    pub events: FlatKeyed,
}

/// Process counts; a limit of 0 is none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pids {
    pub current: u64,
    pub limit: u64,
}

/// Reads the counters of `cgroup`.
pub fn read(cgroup: &TaskCgroup) -> Result<Stats> {
    let cg = cgroup.load();
    let pids = |c: &PidController| pids(cgroup, c);
    if cg.v2() {
        let mut stats = V2Stats::default();
        for subsystem in cg.subsystems() {
            match subsystem {
                Subsystem::Cpu(c) => stats.cpu = Some(flat_keyed(&c.cpu().stat)),
                Subsystem::Mem(c) => stats.memory = Some(v2_memory(c)?),
                Subsystem::Pid(c) => stats.pids = Some(pids(c)?),
                _ => {}
            }
        }
        return Ok(Stats::V2(stats));
    }
    let mut stats = V1Stats::default();
    for subsystem in cg.subsystems() {
        match subsystem {
            Subsystem::Cpu(c) => {
                let stat = flat_keyed(&c.cpu().stat);
                let key = |k: &str| stat.get(k).copied().unwrap_or(0);
                stats.cpu.get_or_insert_with(V1Cpu::default).throttling = Some(V1Throttling {
                    periods: key("nr_periods"),
                    throttled_periods: key("nr_throttled"),
                    throttled_time: key("throttled_time"),
                });
            }
            Subsystem::CpuAcct(c) => {
                let acct = CpuAcctController::cpuacct(c);
                let cpu = stats.cpu.get_or_insert_with(V1Cpu::default);
                cpu.usage_total = acct.usage;
                cpu.usage_user = acct.usage_user;
                cpu.usage_kernel = acct.usage_sys;
            }
            Subsystem::Mem(c) => {
                let memory = c.memory_stat();
                stats.memory = Some(V1Memory {
                    usage: memory.usage_in_bytes,
                    total_inactive_file: memory.stat.total_inactive_file,
                    kernel_usage: c.kmem_stat().usage_in_bytes,
                    swap_usage: c.memswap().usage_in_bytes,
                    oom_kill: memory.oom_control.oom_kill,
                });
            }
            Subsystem::Pid(c) => stats.pids = Some(pids(c)?),
            _ => {}
        }
    }
    Ok(Stats::V1(stats))
}

fn v2_memory(c: &MemController) -> Result<V2Memory> {
    let memory = c.memory_stat();
    let swap = c.memswap();
    // cgroups-rs reads an unlimited `memory.swap.max` as 0: read it here.
    let swap_limit = match std::fs::read_to_string(c.path().join("memory.swap.max")) {
        Ok(value) if value.trim() == "max" => u64::MAX,
        Ok(value) => value.trim().parse().unwrap_or(0),
        Err(_) => 0,
    };
    let events_path = c.path().join("memory.events");
    let events = match std::fs::read_to_string(&events_path) {
        Ok(text) => flat_keyed(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FlatKeyed::new(),
        Err(e) => return Err(crate::Error::io("read", events_path)(e)),
    };
    Ok(V2Memory {
        stat: memory.stat.raw.clone(),
        usage: memory.usage_in_bytes,
        usage_limit: u64::try_from(memory.limit_in_bytes).unwrap_or(u64::MAX),
        max_usage: memory.max_usage_in_bytes,
        swap_usage: swap.usage_in_bytes,
        swap_limit,
        swap_max_usage: swap.max_usage_in_bytes,
        events,
    })
}

/// The current and maximum pid counts, 0 for either once the cgroup has
/// gone.
fn pids(cgroup: &TaskCgroup, c: &PidController) -> Result<Pids> {
    let current = match c.get_pid_current() {
        Err(e) if is_not_found(&e) => 0,
        other => other.map_err(cgroup.error("read pids.current"))?,
    };
    let limit = match c.get_pid_max() {
        Err(e) if is_not_found(&e) => 0,
        other => match other.map_err(cgroup.error("read pids.max"))? {
            MaxValue::Max => 0,
            MaxValue::Value(v) => u64::try_from(v).unwrap_or(0),
        },
    };
    Ok(Pids { current, limit })
}

/// The `key value` lines of a flat-keyed cgroup file; lines that are not
/// one key and one number are left out.
pub fn flat_keyed(text: &str) -> FlatKeyed {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_files_are_read_by_key() {
        let stat = flat_keyed("usage_usec 120\nuser_usec 80\nbogus\nodd one two\n\nnr_bursts 0\n");
        assert_eq!(stat.len(), 3, "{stat:?}");
        assert_eq!(stat["usage_usec"], 120);
        assert_eq!(stat["user_usec"], 80);
        assert_eq!(stat["nr_bursts"], 0);
    }

    #[test]
    fn the_test_process_s_own_cgroup_can_be_read() {
        let own = TaskCgroup::of_pid(std::process::id() as i32).unwrap();
        match read(&own).unwrap() {
            Stats::V1(v1) => {
                let cpu = v1.cpu.expect("a v1 host accounts CPU time");
                assert!(cpu.usage_total > 0, "this process has used CPU: {cpu:?}");
                assert!(cpu.usage_user + cpu.usage_kernel > 0, "{cpu:?}");
            }
            // Which controllers a v2 cgroup has is the host's choice: that
            // it reads at all is what is checked there.
            Stats::V2(_) => {}
        }
    }
}
