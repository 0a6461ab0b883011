#![cfg(feature = "e2e")]
//! Host-network pods (Kubernetes' `hostNetwork: true`).
//!
//! On the podsandbox handler a berth pod on the host's network runs, and
//! its containers are in the host's network namespace.
//!
//! In shim mode, CRI of containerd 2.1.x and 2.2.x dereferences the nil
//! spec it has for such a pod in `NewBundle` and the whole containerd
//! panics, before any shim is started (containerd#12983, fixed in 2.3.0).
//! berth cannot answer that; the test expects the crash, so that a
//! packaged containerd with the fix is noticed and the README's advice
//! (host-network pods on the podsandbox handler) is revisited.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use berth_e2e::container_config::ContainerSpec;
use berth_e2e::containerd_config::{BERTH_HANDLER, RUNC_HANDLER};
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{e2e_test, scenario, Containerd};

async fn a_host_network_pod_is_on_the_hosts_network(cd: &Containerd) -> Result<()> {
    on_the_hosts_network(cd, BERTH_HANDLER).await
}

/// The same with containerd's runc shim, what berth must match.
async fn a_runc_host_network_pod_is_on_the_hosts_network(cd: &Containerd) -> Result<()> {
    on_the_hosts_network(cd, RUNC_HANDLER).await
}

async fn on_the_hosts_network(cd: &Containerd, handler: &str) -> Result<()> {
    let parent = cd.cgroup_parent("hostnet");
    let config = scenario::pod_config(cd, "hostnet")?
        .cgroup_parent(&parent)
        .host_network();
    let pod = scenario::run_pod(cd, &config, handler).await?;
    let trace = PodTrace::capture(cd, &pod, &parent).await?;
    let spec = ContainerSpec::shell(
        "netns",
        "readlink /proc/self/ns/net; echo ready; exec sleep 1000",
    );
    scenario::run_container(cd, &pod, &config, &spec).await?;
    scenario::wait_ready(&config, &spec).await?;
    // containerd, and so the node, is on this process's network.
    let host = std::fs::read_link("/proc/self/ns/net").context("readlink /proc/self/ns/net")?;
    let seen = scenario::stdout_lines(&config, &spec)?;
    ensure!(
        seen.first().map(String::as_str) == Some(&*host.to_string_lossy()),
        "a container of host-network pod {pod} is in network namespace {seen:?}, \
         the host's is {}",
        host.display()
    );
    scenario::remove_and_check(cd, &trace).await
}

e2e_test!(
    on_the_hosts_network,
    a_host_network_pod_is_on_the_hosts_network
);
e2e_test!(
    on_the_hosts_network_runc,
    a_runc_host_network_pod_is_on_the_hosts_network
);

/// containerd 2.1's CRI panics on a host-network pod of a shim sandboxer.
async fn a_host_network_pod_crashes_containerd(cd: &mut Containerd) -> Result<()> {
    let config = scenario::pod_config(cd, "hostnet-shim")?.host_network();
    let log_from = cd.log_len();
    let result = scenario::run_pod(cd, &config, BERTH_HANDLER).await;
    ensure!(
        result.is_err(),
        "containerd {} ran a host-network pod of a shim sandboxer: it has the fix for \
         containerd#12983; run this pod's scenarios in shim mode and update the README",
        cd.version()
    );
    scenario::wait_until(
        "containerd to exit after its panic",
        Duration::from_secs(20),
        || cd.check_running().is_err(),
    )
    .await?;
    let log = cd.log_since(log_from)?;
    ensure!(
        log.contains("nil pointer dereference") && log.contains("NewBundle"),
        "containerd failed a host-network pod of a shim sandboxer, but not with the \
         known NewBundle panic: {result:?}; its log:\n{log}"
    );
    // Reap it, start it again and remove whatever CRI kept of the pod.
    cd.halt(libc::SIGKILL)?;
    cd.restart().await?;
    for pod in cd.cri().list_pod_sandbox(None).await? {
        cd.cri().stop_pod_sandbox(&pod.id).await?;
        cd.cri().remove_pod_sandbox(&pod.id).await?;
    }
    Ok(())
}

mod crashes_containerd {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn containerd_2_1_shim_mode() -> anyhow::Result<()> {
        berth_e2e::scenario::run_mut_shim_mode(super::a_host_network_pod_crashes_containerd).await
    }
}
