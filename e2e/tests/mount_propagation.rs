#![cfg(feature = "e2e")]
//! Mount propagation through CRI, as CSI node plugins use it. A host
//! directory on a shared mount is given to one container with
//! `PROPAGATION_BIDIRECTIONAL` and to another with
//! `PROPAGATION_HOST_TO_CONTAINER`:
//! - a mount the host makes under it appears in both containers;
//! - a mount the bidirectional container makes appears on the host, and
//!   from there in the other container;
//! - a mount the host-to-container one makes stays in that container;
//! - a private volume (no propagation) sees none of them.
//!
//! Nothing a container mounts reaches the host through its root. After the
//! pod is gone, the host keeps exactly the mounts it made and the
//! one the bidirectional container made (as kubelet expects: a CSI plugin
//! unmounts its own); the test takes them down.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use berth_e2e::container_config::ContainerSpec;
use berth_e2e::containerd_config::{BERTH_HANDLER, RUNC_HANDLER};
use berth_e2e::instance::mounts_under;
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{e2e_test, scenario, Containerd};
use k8s_cri::v1 as cri;

const MARKER: &str = "marker";

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {args:?}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("the instance path is UTF-8")
}

/// `dir` made a shared mount of its own (kubelet requires a shared source
/// for a bidirectional mount; a host's root may be private).
struct SharedDir(PathBuf);

impl SharedDir {
    fn new(dir: &Path) -> Result<SharedDir> {
        fs::create_dir_all(dir)?;
        let p = path_str(dir);
        run("mount", &["--bind", p, p])?;
        let shared = SharedDir(dir.to_path_buf());
        // A peer group of its own: a bind on a shared parent (systemd makes
        // `/` shared) would be the parent's peer, and every mount under it
        // would appear twice, once on the parent.
        run("mount", &["--make-private", p])?;
        run("mount", &["--make-shared", p])?;
        Ok(shared)
    }

    /// A tmpfs at `name` under the directory, holding `marker` with `text`.
    fn mount_tmpfs(&self, name: &str, text: &str) -> Result<PathBuf> {
        let at = self.0.join(name);
        fs::create_dir_all(&at)?;
        run("mount", &["-t", "tmpfs", "tmpfs", path_str(&at)])?;
        fs::write(at.join(MARKER), text)?;
        Ok(at)
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-R").arg(&self.0).status();
    }
}

fn with_mount(
    spec: ContainerSpec,
    host: &Path,
    at: &str,
    propagation: cri::MountPropagation,
) -> cri::ContainerConfig {
    let mut config = spec.to_cri();
    config.mounts = vec![cri::Mount {
        container_path: at.into(),
        host_path: path_str(host).into(),
        propagation: propagation as i32,
        ..Default::default()
    }];
    let linux = config.linux.get_or_insert_with(Default::default);
    let security = linux.security_context.get_or_insert_with(Default::default);
    // mount(2) inside the container.
    security.capabilities = Some(cri::Capability {
        add_capabilities: vec!["SYS_ADMIN".into()],
        ..Default::default()
    });
    security.apparmor = Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::Unconfined as i32,
        ..Default::default()
    });
    config
}

async fn sh(cd: &Containerd, id: &str, script: &str) -> Result<String> {
    let out = cd.cri().exec_sync(id, &["sh", "-c", script], 10).await?;
    ensure!(
        out.exit_code == 0,
        "{script:?} in {id} exited {}: {}",
        out.exit_code,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What `dir/name/marker` reads in container `id`, or None if it is absent.
async fn marker_in(cd: &Containerd, id: &str, dir: &str, name: &str) -> Result<Option<String>> {
    let out = sh(
        cd,
        id,
        &format!("cat {dir}/{name}/{MARKER} 2>/dev/null || true"),
    )
    .await?;
    Ok((!out.is_empty()).then_some(out))
}

async fn berth(cd: &Containerd) -> Result<()> {
    propagation_reaches_where_it_is_asked_for(cd, BERTH_HANDLER).await
}

/// The same expectations, met by containerd's runc shim.
async fn runc(cd: &Containerd) -> Result<()> {
    propagation_reaches_where_it_is_asked_for(cd, RUNC_HANDLER).await
}

async fn propagation_reaches_where_it_is_asked_for(cd: &Containerd, handler: &str) -> Result<()> {
    let dir = cd.instance().dir().to_path_buf();
    let shared = SharedDir::new(&dir.join("shared"))?;

    let config = scenario::pod_config(cd, "propagation")?;
    let pod = scenario::run_pod(cd, &config, handler).await?;
    scenario::expect_ready(cd, &pod).await?;
    let trace = PodTrace::capture(cd, &pod, "").await?;
    let sleeper = |name: &str| ContainerSpec::shell(name, "exec sleep 600");
    let mut ids = Vec::new();
    for (name, host, at, propagation) in [
        (
            "bidi",
            &shared.0,
            "/mnt/bidi",
            cri::MountPropagation::PropagationBidirectional,
        ),
        (
            "h2c",
            &shared.0,
            "/mnt/h2c",
            cri::MountPropagation::PropagationHostToContainer,
        ),
        (
            "private",
            &shared.0,
            "/mnt/private",
            cri::MountPropagation::PropagationPrivate,
        ),
    ] {
        let cri_config = with_mount(sleeper(name), host, at, propagation);
        let id = cd
            .cri()
            .create_container(&pod, cri_config, config.to_cri())
            .await?;
        ids.push(id.clone());
        if let Err(e) = cd.cri().start_container(&id).await {
            bail!("starting {name} ({propagation:?}): {e:#}");
        }
    }
    let (bidi, h2c, private_c) = (&ids[0], &ids[1], &ids[2]);

    // Host to containers.
    shared.mount_tmpfs("from-host", "host\n")?;
    for (id, at) in [(bidi, "/mnt/bidi"), (h2c, "/mnt/h2c")] {
        let seen = marker_in(cd, id, at, "from-host").await?;
        ensure!(
            seen.as_deref() == Some("host\n"),
            "{id}: the host's mount under {at} reads {seen:?}"
        );
    }
    let seen = marker_in(cd, private_c, "/mnt/private", "from-host").await?;
    ensure!(
        seen.is_none(),
        "the private volume sees the host's mount: {seen:?}"
    );

    // Bidirectional container to the host, and on to the other container.
    for name in ["from-bidi", "from-h2c"] {
        fs::create_dir_all(shared.0.join(name))?;
    }
    sh(
        cd,
        bidi,
        &format!(
            "mount -t tmpfs tmpfs /mnt/bidi/from-bidi && echo bidi > /mnt/bidi/from-bidi/{MARKER}"
        ),
    )
    .await?;
    let on_host = fs::read_to_string(shared.0.join("from-bidi").join(MARKER)).ok();
    ensure!(
        on_host.as_deref() == Some("bidi\n"),
        "the bidirectional container's mount on the host reads {on_host:?}"
    );
    let seen = marker_in(cd, h2c, "/mnt/h2c", "from-bidi").await?;
    ensure!(
        seen.as_deref() == Some("bidi\n"),
        "the host-to-container container does not see the other's mount: {seen:?}"
    );
    let seen = marker_in(cd, private_c, "/mnt/private", "from-bidi").await?;
    ensure!(
        seen.is_none(),
        "the private volume sees bidi's mount: {seen:?}"
    );

    // Host-to-container: its own mount stays inside.
    sh(
        cd,
        h2c,
        &format!("mount -t tmpfs tmpfs /mnt/h2c/from-h2c && echo h2c > /mnt/h2c/from-h2c/{MARKER}"),
    )
    .await?;
    let seen = marker_in(cd, h2c, "/mnt/h2c", "from-h2c").await?;
    ensure!(
        seen.as_deref() == Some("h2c\n"),
        "h2c's own mount reads {seen:?}"
    );
    ensure!(
        !shared.0.join("from-h2c").join(MARKER).exists(),
        "the host-to-container container's mount reached the host"
    );
    let seen = marker_in(cd, bidi, "/mnt/bidi", "from-h2c").await?;
    ensure!(
        seen.is_none(),
        "h2c's mount reached the bidirectional container"
    );

    // Nothing the containers mounted (their /proc, /dev, volumes) reached
    // the host through their roots.
    for id in &ids {
        let rootfs = mounts_under(&dir)
            .into_iter()
            .find(|p| p.ends_with(format!("{id}/rootfs")))
            .with_context(|| format!("no rootfs of {id} mounted on the host"))?;
        let under = mounts_under(&rootfs);
        ensure!(
            under == [rootfs.clone()],
            "the host has mounts under {id}'s rootfs: {under:?}"
        );
    }

    scenario::remove_containers(cd, &ids).await?;
    scenario::remove_and_check(cd, &trace).await?;
    let mut left = mounts_under(&shared.0);
    left.sort();
    let want = vec![
        shared.0.clone(),
        shared.0.join("from-bidi"),
        shared.0.join("from-host"),
    ];
    ensure!(
        left == want,
        "mounts left under the shared directory: {left:?}"
    );
    drop(shared);
    let left = mounts_under(&dir);
    ensure!(left.is_empty(), "mounts left after clean-up: {left:?}");
    Ok(())
}

e2e_test!(mount_propagation, berth, both_modes);
e2e_test!(mount_propagation_runc, runc);
