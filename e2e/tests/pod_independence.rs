#![cfg(feature = "e2e")]
//! Two berth pods are independent: each has its own shim, its own berth-pause in its
//! own network namespace (the one CRI pinned for it), and its own IP.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

use anyhow::{ensure, Context, Result};
use berth_e2e::containerd_config::BERTH_HANDLER;
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{e2e_test, procs, scenario, Containerd};

struct Seen {
    trace: PodTrace,
    ip: String,
    pause: i32,
    net_ns: u64,
}

async fn start_pod(cd: &Containerd, name: &str) -> Result<Seen> {
    let config = scenario::pod_config(cd, name)?;
    let id = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    let ip = scenario::expect_ready(cd, &id).await?;
    let trace = PodTrace::capture(cd, &id, "").await?;
    let pause = scenario::pause_of(&id)?;
    let net_ns =
        procs::ns_inode(pause, "net").with_context(|| format!("netns of pause {pause}"))?;
    let pinned = trace
        .netns
        .clone()
        .with_context(|| format!("pod {id}: no netns path"))?;
    let pinned_ino = std::fs::metadata(&pinned)
        .with_context(|| format!("stat {}", pinned.display()))?
        .ino();
    ensure!(
        net_ns == pinned_ino,
        "pod {id}: pause {pause} is in netns {net_ns}, not the one CRI pinned ({} = {pinned_ino})",
        pinned.display()
    );
    ensure!(
        !trace.shims.is_empty(),
        "pod {id}: no shim process with -id {id}"
    );
    Ok(Seen {
        trace,
        ip,
        pause,
        net_ns,
    })
}

async fn pods_are_independent(cd: &Containerd) -> Result<()> {
    let a = start_pod(cd, "indep-a").await?;
    let b = start_pod(cd, "indep-b").await?;
    let host_ns = procs::ns_inode(std::process::id() as i32, "net").context("host netns")?;

    ensure!(a.net_ns != b.net_ns, "both pauses share netns {}", a.net_ns);
    ensure!(
        a.net_ns != host_ns && b.net_ns != host_ns,
        "a pause is in the host netns"
    );
    ensure!(a.pause != b.pause, "both pods report pause pid {}", a.pause);
    ensure!(a.ip != b.ip, "both pods have IP {}", a.ip);
    let shims_a: HashSet<i32> = a.trace.shims.iter().map(|p| p.pid).collect();
    let shims_b: HashSet<i32> = b.trace.shims.iter().map(|p| p.pid).collect();
    ensure!(
        shims_a.is_disjoint(&shims_b),
        "the pods share a shim: {shims_a:?} / {shims_b:?}"
    );

    scenario::remove_and_check(cd, &a.trace).await?;
    // Removing one pod must not disturb the other.
    scenario::expect_ready(cd, &b.trace.id).await?;
    ensure!(
        procs::ProcId::of(b.pause).is_some_and(|p| b.trace.pauses.contains(&p)),
        "pod {}'s pause {} died when the other pod was removed",
        b.trace.id,
        b.pause
    );
    scenario::remove_and_check(cd, &b.trace).await
}

e2e_test!(pod_independence, pods_are_independent, both_modes);
