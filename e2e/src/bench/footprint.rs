//! The memory a handler's pods cost at one moment: its shim processes (found by
//! the instance's `-address` in their arguments and the shim binary's name) and each pod's
//! pause process (berth: the `berth-pause` carrying `BERTH_SANDBOX_ID`; runc: the
//! sandbox task pid CRI reports), with RSS from `/proc/<pid>/status` and PSS from
//! `/proc/<pid>/smaps_rollup`. A process that cannot be read fails the measurement:
//! the bench never reports a sum with a piece missing.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use super::handler::Handler;
use crate::containerd::Containerd;
use crate::procs;
use crate::procs::SANDBOX_ID_ENV;

/// Sums over one handler's processes, in KiB.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Footprint {
    pub shims: usize,
    pub shim_rss_kib: u64,
    pub shim_pss_kib: u64,
    pub pauses: usize,
    pub pause_rss_kib: u64,
    pub pause_pss_kib: u64,
}

/// Measures `h`'s shims and the pause processes of pods `ids`.
pub async fn measure(cd: &Containerd, h: Handler, ids: &[String]) -> Result<Footprint> {
    let shims = shims(&cd.address(), h);
    ensure!(
        !shims.is_empty(),
        "no {} with -address {} is running for {} pods",
        h.shim_binary(),
        cd.address().display(),
        ids.len()
    );
    let pauses = match h {
        Handler::Berth => berth_pauses(ids)?,
        Handler::Runc => runc_pauses(cd, ids).await?,
    };
    let (shim_rss_kib, shim_pss_kib) = sum_memory(&shims)?;
    let (pause_rss_kib, pause_pss_kib) = sum_memory(&pauses)?;
    Ok(Footprint {
        shims: shims.len(),
        shim_rss_kib,
        shim_pss_kib,
        pauses: pauses.len(),
        pause_rss_kib,
        pause_pss_kib,
    })
}

/// Live (non-zombie) shim daemons of `h` serving the containerd at `address`: the
/// arguments carry `-address <address>` but no `start`/`delete` action (those
/// invocations are short-lived), and the executable is `h`'s shim binary.
pub fn shims(address: &Path, h: Handler) -> Vec<i32> {
    procs::with_arg("-address", &address.to_string_lossy())
        .into_iter()
        .filter(|&pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            procs::cmdline(pid).is_some_and(|args| is_shim_daemon(exe.as_deref(), &args, h))
        })
        .filter(|&pid| procs::stat(pid).is_some_and(|s| s.state != 'Z'))
        .collect()
}

/// True if the process running `exe` with `args` is the long-running shim of `h`.
/// berth re-executes itself as `/proc/self/exe`, so argv[0] alone does not tell; the
/// executable's link does (` (deleted)` if the binary was replaced meanwhile).
pub fn is_shim_daemon(exe: Option<&Path>, args: &[String], h: Handler) -> bool {
    let named = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.trim_end_matches(" (deleted)") == h.shim_binary())
    };
    let binary = exe.is_some_and(named) || args.first().is_some_and(|a| named(Path::new(a)));
    let action = args.iter().skip(1).any(|a| a == "start" || a == "delete");
    binary && !action
}

/// The processes carrying `BERTH_SANDBOX_ID=<id>` for each of `ids`; fails if a pod
/// has none.
fn berth_pauses(ids: &[String]) -> Result<Vec<i32>> {
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let prefix = format!("{SANDBOX_ID_ENV}=");
    let mut found: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for pid in procs::all_pids() {
        let Some(env) = procs::environ(pid) else {
            continue;
        };
        let id = env.iter().find_map(|kv| kv.strip_prefix(&prefix));
        if let Some(id) = id.filter(|id| wanted.contains(id)) {
            if procs::stat(pid).is_some_and(|s| s.state != 'Z') {
                found.entry(id.to_string()).or_default().push(pid);
            }
        }
    }
    if let Some(missing) = ids.iter().find(|id| !found.contains_key(*id)) {
        bail!("no live process carries {SANDBOX_ID_ENV}={missing}: where is its berth-pause?");
    }
    Ok(found.into_values().flatten().collect())
}

/// The sandbox task pid CRI reports for each of `ids` (the pause container's process).
async fn runc_pauses(cd: &Containerd, ids: &[String]) -> Result<Vec<i32>> {
    let mut pids = Vec::with_capacity(ids.len());
    for id in ids {
        let info = cd.cri().pod_sandbox_info(id).await?;
        let pid = info["pid"]
            .as_i64()
            .filter(|&p| p > 0)
            .with_context(|| format!("pod {id}: no sandbox task `pid` in the verbose info"))?;
        pids.push(pid as i32);
    }
    Ok(pids)
}

/// Summed RSS and PSS of `pids`, in KiB.
fn sum_memory(pids: &[i32]) -> Result<(u64, u64)> {
    let mut rss = 0;
    let mut pss = 0;
    for &pid in pids {
        rss += procs::rss_kib(pid)
            .with_context(|| format!("read the RSS of {}", procs::describe(pid)))?;
        pss += pss_kib(pid).with_context(|| format!("read the PSS of {}", procs::describe(pid)))?;
    }
    Ok((rss, pss))
}

/// Proportional set size in KiB (`Pss:` of `/proc/<pid>/smaps_rollup`).
pub fn pss_kib(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    parse_pss(&text)
}

fn parse_pss(smaps_rollup: &str) -> Option<u64> {
    let line = smaps_rollup.lines().find(|l| l.starts_with("Pss:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn recognises_shim_daemons_by_executable_or_argv0() {
        let berth = args("/proc/self/exe -namespace k8s.io -id a -address /x/c.sock");
        let exe = Path::new("/w/target/berth/bin/containerd-shim-berth-v2");
        assert!(is_shim_daemon(Some(exe), &berth, Handler::Berth));
        assert!(!is_shim_daemon(Some(exe), &berth, Handler::Runc));
        assert!(!is_shim_daemon(None, &berth, Handler::Berth));
        let replaced = Path::new("/w/bin/containerd-shim-berth-v2 (deleted)");
        assert!(is_shim_daemon(Some(replaced), &berth, Handler::Berth));
        let runc =
            args("/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id a -address /x/c.sock");
        assert!(is_shim_daemon(None, &runc, Handler::Runc));
        let starting = args("containerd-shim-runc-v2 -namespace k8s.io -address /x/c.sock start");
        assert!(!is_shim_daemon(None, &starting, Handler::Runc));
    }

    #[test]
    fn parses_pss_from_smaps_rollup() {
        let text = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:  1234 kB\nPss:  567 kB\nPss_Anon:  12 kB\n";
        assert_eq!(parse_pss(text), Some(567));
        assert_eq!(parse_pss("Rss: 1 kB\n"), None);
    }
}
