#![cfg(feature = "e2e")]
//! Symlinks in an image never reach the host, through CRI. Images are
//! crafted whose `/dev`, `/proc` or `/sys` is a link out of the rootfs
//! (absolute or climbing with `..`), and one whose mount destinations
//! (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, a service account
//! under `/run/secrets`, a volume under `/mnt`) lie behind links out of it.
//! All point at a canary host directory holding a file named `ptmx`. The
//! first kind is refused at StartContainer, naming the directory; the second
//! runs, its mounts land inside its rootfs where the links lead as the
//! container sees them. Either way the canary is unchanged and nothing is
//! mounted on it.
//!
//! Without berth's checks, libcontainer (whose mounts go through pathrs and
//! refuse a link in the path) fails both kinds with a "Not a directory" from
//! deep inside rootfs preparation: the host stays untouched through CRI's
//! spec, but the second image, which runc runs, does not run at all, and the
//! first is not named. The helper's root tests (`container_run`) show the
//! minimal spec through which the same links did write to the host.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use berth_e2e::container_config::ContainerSpec;
use berth_e2e::containerd_config::BERTH_HANDLER;
use berth_e2e::instance::mounts_under;
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{e2e_test, images, scenario, Containerd};
use k8s_cri::v1 as cri;

const CANARY_FILE: &str = "ptmx";
const CANARY_TEXT: &str = "host file, must stay\n";
const TOKEN: &str = "service-account-token\n";
const MARKER: &str = "volume-marker\n";

/// A host directory the images point into: one file, nothing mounted.
struct Canary(PathBuf);

impl Canary {
    fn new(dir: &Path) -> Result<Canary> {
        fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        fs::write(dir.join(CANARY_FILE), CANARY_TEXT)?;
        Ok(Canary(dir.to_path_buf()))
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("the instance path is UTF-8")
    }

    /// `../` enough times to climb past any rootfs, then the canary.
    fn climbing(&self) -> String {
        format!("{}{}", "../".repeat(12), &self.path()[1..])
    }

    fn check(&self, when: &str) -> Result<()> {
        let mut entries: Vec<String> = fs::read_dir(&self.0)?
            .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_>>()?;
        entries.sort();
        ensure!(
            entries == [CANARY_FILE],
            "{when}: the host directory {} was written: {entries:?}",
            self.0.display()
        );
        let text = fs::read_to_string(self.0.join(CANARY_FILE))?;
        ensure!(
            text == CANARY_TEXT,
            "{when}: the host file {CANARY_FILE} was changed: {text:?}"
        );
        let mounts = mounts_under(&self.0);
        ensure!(
            mounts.is_empty(),
            "{when}: something is mounted on the host directory: {mounts:?}"
        );
        Ok(())
    }
}

fn container(name: &str, image: &str) -> ContainerSpec {
    ContainerSpec {
        image: image.into(),
        ..ContainerSpec::shell(name, "exec sleep 600")
    }
}

async fn links_in_an_image_never_reach_the_host(cd: &Containerd) -> Result<()> {
    let dir = cd.instance().dir().to_path_buf();
    let canary = Canary::new(&dir.join("canary"))?;
    let (abs, up) = (canary.path().to_string(), canary.climbing());
    let file = |base: &str, name: &str| format!("{base}/{name}");

    let special: [(&str, &str, String); 3] = [
        ("dev", "localhost/berth/link-dev:e2e", abs.clone()),
        ("proc", "localhost/berth/link-proc:e2e", up.clone()),
        ("sys", "localhost/berth/link-sys:e2e", abs.clone()),
    ];
    const MOUNTS_IMAGE: &str = "localhost/berth/link-mounts:e2e";
    let mount_links = [
        ("etc/hosts", file(&abs, "hosts")),
        ("etc/resolv.conf", file(&up, "resolv.conf")),
        ("etc/hostname", file(&abs, "hostname")),
        // Not /run itself: the canary is under the host's /run, and a /run
        // leading to /run/... would be a loop inside the rootfs.
        ("run/secrets", abs.clone()),
        ("mnt", up.clone()),
    ];
    let mut wanted: Vec<(String, Vec<(String, String)>)> = special
        .iter()
        .map(|(d, image, target)| (image.to_string(), vec![(d.to_string(), target.clone())]))
        .collect();
    wanted.push((
        MOUNTS_IMAGE.into(),
        mount_links
            .iter()
            .map(|(p, t)| (p.to_string(), t.clone()))
            .collect(),
    ));
    let layout = tokio::task::spawn_blocking(move || images::linked_images(&wanted)).await??;
    cd.import_layout(&layout).await?;
    canary.check("after the import")?;

    let config = scenario::pod_config(cd, "links")?;
    let pod = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    scenario::expect_ready(cd, &pod).await?;
    let trace = PodTrace::capture(cd, &pod, "").await?;
    let mut containers = Vec::new();

    // /dev, /proc and /sys as links: refused when the task is created.
    for (dir, image, _) in &special {
        let spec = container(&format!("link-{dir}"), image);
        let id = cd
            .cri()
            .create_container(&pod, spec.to_cri(), config.to_cri())
            .await?;
        containers.push(id.clone());
        let err = match cd.cri().start_container(&id).await {
            Ok(()) => anyhow::bail!("a container of {image} (/{dir} a link out) started"),
            Err(e) => format!("{e:#}"),
        };
        let named = format!("rootfs /{dir}: is a symlink");
        ensure!(
            err.contains(&named),
            "starting {image}: the error does not say {named:?}: {err}"
        );
        canary.check(&format!("after {image} was refused"))?;
    }

    // Mount destinations behind links: they land inside the rootfs.
    let secrets = dir.join("secrets");
    fs::create_dir_all(&secrets)?;
    fs::write(secrets.join("token"), TOKEN)?;
    let volume = dir.join("volume");
    fs::create_dir_all(&volume)?;
    fs::write(volume.join("marker"), MARKER)?;
    let mut cri_config = container("link-mounts", MOUNTS_IMAGE).to_cri();
    cri_config.mounts = vec![
        cri::Mount {
            container_path: "/run/secrets/kubernetes.io/serviceaccount".into(),
            host_path: secrets.to_string_lossy().into_owned(),
            readonly: true,
            ..Default::default()
        },
        cri::Mount {
            container_path: "/mnt/data".into(),
            host_path: volume.to_string_lossy().into_owned(),
            ..Default::default()
        },
    ];
    let id = cd
        .cri()
        .create_container(&pod, cri_config, config.to_cri())
        .await?;
    containers.push(id.clone());
    cd.cri().start_container(&id).await?;
    canary.check("with the container running")?;
    let read = async |path: &str| -> Result<String> {
        let out = cd.cri().exec_sync(&id, &["cat", path], 10).await?;
        ensure!(
            out.exit_code == 0,
            "cat {path} in the container exited {}: {}",
            out.exit_code,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let hostname = read("/etc/hostname").await?;
    ensure!(
        hostname.trim() == "links",
        "/etc/hostname in the container is {hostname:?}, not the pod's"
    );
    let hosts = read("/etc/hosts").await?;
    ensure!(
        hosts.contains("localhost"),
        "/etc/hosts in the container is not CRI's: {hosts:?}"
    );
    read("/etc/resolv.conf").await?;
    let token = read("/run/secrets/kubernetes.io/serviceaccount/token").await?;
    ensure!(token == TOKEN, "the service account token reads {token:?}");
    let marker = read("/mnt/data/marker").await?;
    ensure!(marker == MARKER, "the volume's marker reads {marker:?}");
    // The container sees its mounts where its links lead, inside its root.
    let mountinfo = read("/proc/self/mountinfo").await?;
    for point in [
        file(&abs, "hosts"),
        file(&abs, "resolv.conf"),
        file(&abs, "hostname"),
        file(&abs, "kubernetes.io/serviceaccount"),
        file(&abs, "data"),
    ] {
        ensure!(
            mountinfo
                .lines()
                .any(|l| l.split(' ').nth(4) == Some(point.as_str())),
            "no mount at {point} in the container:\n{mountinfo}"
        );
    }
    canary.check("after the container read its mounts")?;

    scenario::remove_containers(cd, &containers).await?;
    scenario::remove_and_check(cd, &trace).await?;
    canary.check("after the pod was removed")
}

e2e_test!(
    image_links,
    links_in_an_image_never_reach_the_host,
    both_modes
);
