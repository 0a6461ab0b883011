//! Stats in containerd's terms: a task cgroup's counters, read by the
//! sandbox crate, as containerd's own metrics protos.
//!
//! cgroups v1 `Metrics` on a v1 or hybrid host, v2 `Metrics` on a unified
//! one, as CRI's ContainerStats and PodSandboxStats expect.

use berth_proto::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryOomControl, MemoryStat, Metrics, PidsStat, Throttle,
};
use berth_proto::cgroups_v2::metrics::{
    CPUStat as CPUStatV2, MemoryEvents, MemoryStat as MemoryStatV2, Metrics as MetricsV2,
    PidsStat as PidsStatV2,
};
use berth_proto::protobuf::well_known_types::any::Any;
use berth_sandbox::cgroup::stats::{FlatKeyed, Stats, V1Stats, V2Stats};

use crate::error::{Error, Result};
use crate::events::pack;

/// The protobuf packages of containerd's cgroup metrics.
const METRICS_V1: &str = "io.containerd.cgroups.v1";
const METRICS_V2: &str = "io.containerd.cgroups.v2";

/// The metrics of a task's cgroup, packed for a StatsResponse.
pub fn pack_stats(stats: &Stats) -> Result<Any> {
    match stats {
        Stats::V1(v1) => pack(&v1_metrics(v1), METRICS_V1),
        Stats::V2(v2) => pack(&v2_metrics(v2), METRICS_V2),
    }
    .map_err(|e| Error::Internal(format!("encode metrics: {e}")))
}

fn v1_metrics(stats: &V1Stats) -> Metrics {
    let mut metrics = Metrics::new();
    if let Some(cpu) = &stats.cpu {
        let mut usage = CPUUsage::new();
        usage.set_total(cpu.usage_total);
        usage.set_user(cpu.usage_user);
        usage.set_kernel(cpu.usage_kernel);
        let mut stat = CPUStat::new();
        stat.set_usage(usage);
        if let Some(t) = &cpu.throttling {
            let mut throttling = Throttle::new();
            throttling.set_periods(t.periods);
            throttling.set_throttled_periods(t.throttled_periods);
            throttling.set_throttled_time(t.throttled_time);
            stat.set_throttling(throttling);
        }
        metrics.set_cpu(stat);
    }
    if let Some(memory) = &stats.memory {
        let entry = |usage| {
            let mut entry = MemoryEntry::new();
            entry.set_usage(usage);
            entry
        };
        let mut stat = MemoryStat::new();
        stat.set_usage(entry(memory.usage));
        stat.set_total_inactive_file(memory.total_inactive_file);
        stat.set_kernel(entry(memory.kernel_usage));
        // v1's swap entry is the memsw counter: memory and swap together.
        stat.set_swap(entry(memory.swap_usage));
        metrics.set_memory(stat);
        let mut oom = MemoryOomControl::new();
        oom.set_oom_kill(memory.oom_kill);
        metrics.set_memory_oom_control(oom);
    }
    if let Some(pids) = &stats.pids {
        let mut stat = PidsStat::new();
        stat.set_current(pids.current);
        stat.set_limit(pids.limit);
        metrics.set_pids(stat);
    }
    metrics
}

/// A proto setter for one key of a flat-keyed cgroup file.
type Setter<T> = fn(&mut T, u64);

/// Sets each field of `message` from its key in `file`; a key the file
/// lacks is 0.
fn set_keyed<T>(message: &mut T, file: &FlatKeyed, fields: &[(&str, Setter<T>)]) {
    for (key, set) in fields {
        set(message, file.get(*key).copied().unwrap_or(0));
    }
}

/// v2's `cpu.stat` keys, as containerd's v2 CPU stat names them.
const CPU_V2: [(&str, Setter<CPUStatV2>); 8] = [
    ("usage_usec", CPUStatV2::set_usage_usec),
    ("user_usec", CPUStatV2::set_user_usec),
    ("system_usec", CPUStatV2::set_system_usec),
    ("nr_periods", CPUStatV2::set_nr_periods),
    ("nr_throttled", CPUStatV2::set_nr_throttled),
    ("throttled_usec", CPUStatV2::set_throttled_usec),
    ("nr_bursts", CPUStatV2::set_nr_bursts),
    ("burst_usec", CPUStatV2::set_burst_usec),
];

/// v2's `memory.stat` keys.
const MEMORY_V2: [(&str, Setter<MemoryStatV2>); 31] = [
    ("anon", MemoryStatV2::set_anon),
    ("file", MemoryStatV2::set_file),
    ("kernel_stack", MemoryStatV2::set_kernel_stack),
    ("slab", MemoryStatV2::set_slab),
    ("sock", MemoryStatV2::set_sock),
    ("shmem", MemoryStatV2::set_shmem),
    ("file_mapped", MemoryStatV2::set_file_mapped),
    ("file_dirty", MemoryStatV2::set_file_dirty),
    ("file_writeback", MemoryStatV2::set_file_writeback),
    ("anon_thp", MemoryStatV2::set_anon_thp),
    ("inactive_anon", MemoryStatV2::set_inactive_anon),
    ("active_anon", MemoryStatV2::set_active_anon),
    ("inactive_file", MemoryStatV2::set_inactive_file),
    ("active_file", MemoryStatV2::set_active_file),
    ("unevictable", MemoryStatV2::set_unevictable),
    ("slab_reclaimable", MemoryStatV2::set_slab_reclaimable),
    ("slab_unreclaimable", MemoryStatV2::set_slab_unreclaimable),
    ("pgfault", MemoryStatV2::set_pgfault),
    ("pgmajfault", MemoryStatV2::set_pgmajfault),
    ("workingset_refault", MemoryStatV2::set_workingset_refault),
    ("workingset_activate", MemoryStatV2::set_workingset_activate),
    (
        "workingset_nodereclaim",
        MemoryStatV2::set_workingset_nodereclaim,
    ),
    ("pgrefill", MemoryStatV2::set_pgrefill),
    ("pgscan", MemoryStatV2::set_pgscan),
    ("pgsteal", MemoryStatV2::set_pgsteal),
    ("pgactivate", MemoryStatV2::set_pgactivate),
    ("pgdeactivate", MemoryStatV2::set_pgdeactivate),
    ("pglazyfree", MemoryStatV2::set_pglazyfree),
    ("pglazyfreed", MemoryStatV2::set_pglazyfreed),
    ("thp_fault_alloc", MemoryStatV2::set_thp_fault_alloc),
    ("thp_collapse_alloc", MemoryStatV2::set_thp_collapse_alloc),
];

/// v2's `memory.events` keys.
const EVENTS_V2: [(&str, Setter<MemoryEvents>); 6] = [
    ("low", MemoryEvents::set_low),
    ("high", MemoryEvents::set_high),
    ("max", MemoryEvents::set_max),
    ("oom", MemoryEvents::set_oom),
    ("oom_kill", MemoryEvents::set_oom_kill),
    ("oom_group_kill", MemoryEvents::set_oom_group_kill),
];

fn v2_metrics(stats: &V2Stats) -> MetricsV2 {
    let mut metrics = MetricsV2::new();
    if let Some(cpu) = &stats.cpu {
        let mut stat = CPUStatV2::new();
        set_keyed(&mut stat, cpu, &CPU_V2);
        metrics.set_cpu(stat);
    }
    if let Some(memory) = &stats.memory {
        let mut stat = MemoryStatV2::new();
        set_keyed(&mut stat, &memory.stat, &MEMORY_V2);
        stat.set_usage(memory.usage);
        stat.set_usage_limit(memory.usage_limit);
        stat.set_max_usage(memory.max_usage);
        stat.set_swap_usage(memory.swap_usage);
        stat.set_swap_limit(memory.swap_limit);
        stat.set_swap_max_usage(memory.swap_max_usage);
        metrics.set_memory(stat);
        let mut events = MemoryEvents::new();
        set_keyed(&mut events, &memory.events, &EVENTS_V2);
        metrics.set_memory_events(events);
    }
    if let Some(pids) = &stats.pids {
        let mut stat = PidsStatV2::new();
        stat.set_current(pids.current);
        stat.set_limit(pids.limit);
        metrics.set_pids(stat);
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::protobuf::Message;
    use berth_sandbox::cgroup::stats::{Pids, V1Cpu, V1Memory, V1Throttling, V2Memory};

    #[test]
    fn metrics_are_packed_under_their_descriptors_names() {
        use berth_proto::protobuf::MessageFull;
        let v1 = pack_stats(&Stats::V1(V1Stats::default())).unwrap();
        assert_eq!(v1.type_url, Metrics::descriptor().full_name());
        let v2 = pack_stats(&Stats::V2(V2Stats::default())).unwrap();
        assert_eq!(v2.type_url, MetricsV2::descriptor().full_name());
    }

    #[test]
    fn v1_counters_land_in_their_fields() {
        let stats = Stats::V1(V1Stats {
            cpu: Some(V1Cpu {
                usage_total: 30,
                usage_user: 20,
                usage_kernel: 10,
                throttling: Some(V1Throttling {
                    periods: 5,
                    throttled_periods: 2,
                    throttled_time: 7,
                }),
            }),
            memory: Some(V1Memory {
                usage: 4096,
                total_inactive_file: 1024,
                kernel_usage: 512,
                swap_usage: 8192,
                oom_kill: 1,
            }),
            pids: Some(Pids {
                current: 3,
                limit: 0,
            }),
        });
        let any = pack_stats(&stats).unwrap();
        let m = Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(
            (m.cpu.usage.total, m.cpu.usage.user, m.cpu.usage.kernel),
            (30, 20, 10)
        );
        assert_eq!(m.cpu.throttling.throttled_time, 7);
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.memory.total_inactive_file, 1024);
        assert_eq!(m.memory.swap.usage, 8192);
        assert_eq!(m.memory_oom_control.oom_kill, 1);
        assert_eq!(m.pids.current, 3);
        let without_cpu_controller = Stats::V1(V1Stats {
            cpu: Some(V1Cpu {
                usage_total: 1,
                ..Default::default()
            }),
            ..Default::default()
        });
        let any = pack_stats(&without_cpu_controller).unwrap();
        let m = Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage.total, 1);
        assert!(
            m.cpu.throttling.is_none(),
            "no cpu controller, no throttling"
        );
    }

    #[test]
    fn v2_files_are_mapped_by_key() {
        let keyed = |pairs: &[(&str, u64)]| -> FlatKeyed {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let stats = Stats::V2(V2Stats {
            cpu: Some(keyed(&[("usage_usec", 120), ("throttled_usec", 9)])),
            memory: Some(V2Memory {
                stat: keyed(&[("anon", 4096), ("inactive_file", 100)]),
                usage: 8192,
                usage_limit: u64::MAX,
                swap_limit: u64::MAX,
                events: keyed(&[("oom_kill", 2)]),
                ..Default::default()
            }),
            pids: None,
        });
        let any = pack_stats(&stats).unwrap();
        let m = MetricsV2::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage_usec, 120);
        assert_eq!(m.cpu.throttled_usec, 9);
        assert_eq!(m.cpu.user_usec, 0, "a missing key is 0");
        assert_eq!((m.memory.anon, m.memory.inactive_file), (4096, 100));
        assert_eq!(m.memory.usage, 8192);
        assert_eq!(m.memory.usage_limit, u64::MAX);
        assert_eq!(m.memory_events.oom_kill, 2);
        assert!(m.pids.is_none());
    }
}
