#![cfg(feature = "e2e")]
//! An image of 60 layers runs. containerd's overlay options for it (a
//! lowerdir per layer, each a full snapshot path) are longer than the page
//! mount(2) reads, so the shim must shorten them as containerd's own
//! mount.All does. The container sees every layer's file, in order, on
//! berth as on runc, and the rootfs mount is gone with the pod.

use anyhow::{ensure, Context, Result};
use berth_e2e::container_config::ContainerSpec;
use berth_e2e::containerd_config::{BERTH_HANDLER, RUNC_HANDLER};
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{e2e_test, images, scenario, Containerd};

const IMAGE: &str = "localhost/berth/layers-60:e2e";
/// Layers on top of busybox's: 60 in all.
const UPPER: usize = 59;
/// The most mount(2) reads of its data argument.
const PAGE: usize = 4096;

async fn sixty_layers_run(cd: &Containerd, handler: &str) -> Result<()> {
    let layout = tokio::task::spawn_blocking(|| images::layered_image(IMAGE, UPPER)).await??;
    cd.import_layout(&layout).await?;
    let config = scenario::pod_config(cd, "layers")?;
    let pod = scenario::run_pod(cd, &config, handler).await?;
    scenario::expect_ready(cd, &pod).await?;
    let trace = PodTrace::capture(cd, &pod, "").await?;
    let spec = ContainerSpec {
        image: IMAGE.into(),
        ..ContainerSpec::shell("layers", "exec sleep 600")
    };
    let id = cd
        .cri()
        .create_container(&pod, spec.to_cri(), config.to_cri())
        .await?;
    cd.cri()
        .start_container(&id)
        .await
        .with_context(|| format!("{handler}: start a container of {} layers", UPPER + 1))?;

    // The snapshot's own options, as containerd hands them to the shim,
    // are indeed longer than the page mount(2) reads.
    let mounts = cd.ctr_ok(&["snapshots", "mounts", "/berth-unused", &id])?;
    let options = mounts
        .split_whitespace()
        .skip_while(|w| *w != "-o")
        .nth(1)
        .with_context(|| format!("no options in the snapshot's mount: {mounts}"))?;
    ensure!(
        options.len() >= PAGE && options.contains("lowerdir="),
        "{handler}: the snapshot's options are {} bytes, not over a page: {options}",
        options.len()
    );
    // What the host shows mounted has every layer.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let rootfs = mountinfo
        .lines()
        .find(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|p| p.ends_with(&format!("{id}/rootfs")))
        })
        .with_context(|| format!("no rootfs of {id} on the host"))?;
    let lower = rootfs
        .split(',')
        .find_map(|o| o.strip_prefix("lowerdir="))
        .with_context(|| format!("no lowerdir in {rootfs}"))?;
    ensure!(
        lower.split(':').count() == UPPER + 1,
        "{handler}: the rootfs has {} lower layers: {rootfs}",
        lower.split(':').count()
    );

    let out = cd
        .cri()
        .exec_sync(
            &id,
            &["sh", "-c", "cat /layers/[0-9]* | sort -n | tr '\\n' ' '"],
            10,
        )
        .await?;
    ensure!(
        out.exit_code == 0,
        "{handler}: cat exited {}",
        out.exit_code
    );
    let seen = String::from_utf8_lossy(&out.stdout);
    let want: Vec<String> = (1..=UPPER).map(|i| i.to_string()).collect();
    ensure!(
        seen.split_whitespace().collect::<Vec<_>>() == want,
        "{handler}: the container's /layers holds {seen:?}"
    );
    // The layers are stacked in the image's order: the last is on top.
    let top = cd.cri().exec_sync(&id, &["cat", "/layers/top"], 10).await?;
    let top = String::from_utf8_lossy(&top.stdout);
    ensure!(
        top.trim() == UPPER.to_string(),
        "{handler}: /layers/top reads {top:?}, not the uppermost layer's {UPPER}"
    );
    ensure!(
        cd.cri()
            .exec_sync(&id, &["busybox", "true"], 10)
            .await?
            .exit_code
            == 0,
        "{handler}: busybox from the bottom layer does not run"
    );
    scenario::remove_containers(cd, &[id]).await?;
    scenario::remove_and_check(cd, &trace).await
}

async fn berth(cd: &Containerd) -> Result<()> {
    sixty_layers_run(cd, BERTH_HANDLER).await
}

async fn runc(cd: &Containerd) -> Result<()> {
    sixty_layers_run(cd, RUNC_HANDLER).await
}

e2e_test!(many_layers, berth, both_modes);
e2e_test!(many_layers_runc, runc);
