#![cfg(feature = "e2e")]
//! A pod's hostname, hosts and DNS config reach each of its containers as
//! `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`: CRI writes them in
//! podsandbox mode, berth in shim mode (containerd 2.1 writes none for a
//! shim sandboxer). A container that mounts its own `/etc/hosts` keeps it.

use anyhow::{ensure, Result};
use berth_e2e::container_config::ContainerSpec;
use berth_e2e::containerd_config::BERTH_HANDLER;
use berth_e2e::pod_config::DnsConfig;
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{e2e_test, scenario, Containerd};

async fn the_pods_files_reach_its_containers(cd: &Containerd) -> Result<()> {
    let config = scenario::pod_config(cd, "files")?.dns(DnsConfig {
        servers: vec!["192.0.2.10".into(), "192.0.2.11".into()],
        searches: vec!["berth.test".into(), "svc.berth.test".into()],
        options: vec!["ndots:2".into()],
    });
    let pod = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    let trace = PodTrace::capture(cd, &pod, "").await?;
    let spec = ContainerSpec::shell(
        "reader",
        "cat /etc/hostname /etc/resolv.conf; grep -c localhost /etc/hosts; echo ready; \
         exec sleep 1000",
    );
    scenario::run_container(cd, &pod, &config, &spec).await?;
    scenario::wait_ready(&config, &spec).await?;
    let lines = scenario::stdout_lines(&config, &spec)?;
    let expected = [
        "files",
        "search berth.test svc.berth.test",
        "nameserver 192.0.2.10",
        "nameserver 192.0.2.11",
        "options ndots:2",
    ];
    ensure!(
        lines.len() > expected.len() && lines[..expected.len()] == expected,
        "the container of pod {pod} read {lines:?}, expected {expected:?} first"
    );
    ensure!(
        lines[expected.len()].parse::<u32>().is_ok_and(|n| n > 0),
        "the container's /etc/hosts is not the node's: {lines:?}"
    );
    scenario::remove_and_check(cd, &trace).await
}

e2e_test!(pod_files, the_pods_files_reach_its_containers, both_modes);
