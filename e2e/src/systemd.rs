//! Scenarios of berth's systemd cgroup driver (`berth-systemd`, which sets
//! `SystemdCgroup = true`): where kubelet's systemd driver puts a pod, the
//! refusal on a host without systemd, and the units left behind.

use std::path::Path;

use anyhow::{ensure, Context, Result};

use crate::containerd_config::BERTH_SYSTEMD_HANDLER;
use crate::pod_config::PodConfig;
use crate::{leaks, scenario, Containerd};

/// Whether this host runs systemd (the VM lane's guest does, this host
/// does not).
pub fn runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The slice kubelet's systemd driver gives a BestEffort pod, named for the
/// instance, and its cgroup path under `/sys/fs/cgroup`.
pub struct PodSlice {
    pub slice: String,
    pub dir: String,
}

impl PodSlice {
    pub fn of(cd: &Containerd) -> PodSlice {
        let slice = format!("kubepods-besteffort-podberth{}.slice", cd.instance().slot());
        let dir = format!("/kubepods.slice/kubepods-besteffort.slice/{slice}");
        PodSlice { slice, dir }
    }

    /// The scope unit containerd's `cri-containerd` prefix makes of `id`.
    pub fn unit(id: &str) -> String {
        format!("cri-containerd-{id}.scope")
    }

    /// The cgroup path (from the hierarchy's root) of `id`'s scope.
    pub fn scope_dir(&self, id: &str) -> String {
        format!("{}/{}", self.dir, Self::unit(id))
    }

    /// Waits for each of `ids`' scope units to go, checks their cgroups are
    /// gone, then stops the slice (kubelet's to remove: here the test's).
    pub async fn expect_gone(&self, ids: &[&str]) -> Result<()> {
        for id in ids {
            let unit = Self::unit(id);
            scenario::wait_until(&format!("unit {unit} to go"), leaks::GRACE, || {
                loaded_units(&unit).is_ok_and(|u| u.is_empty())
            })
            .await?;
            let dir = format!("/sys/fs/cgroup{}", self.scope_dir(id));
            ensure!(!Path::new(&dir).exists(), "{dir} is left");
        }
        systemctl(&["stop", &self.slice])?;
        Ok(())
    }
}

/// `systemctl` in the host's systemd, its stdout trimmed.
pub fn systemctl(args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("systemctl")
        .args(args)
        .output()
        .context("run systemctl")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The units systemd has loaded named `unit` (active or not).
pub fn loaded_units(unit: &str) -> Result<String> {
    systemctl(&["list-units", "--all", "--plain", "--no-legend", unit])
}

/// On a host without systemd: a pod of the systemd handler is refused,
/// saying why, and its shim goes.
pub async fn expect_refused(cd: &Containerd, config: &PodConfig) -> Result<()> {
    let before = leaks::Census::take(cd);
    let refused = cd
        .cri()
        .run_pod_sandbox(config.to_cri(), BERTH_SYSTEMD_HANDLER)
        .await;
    let why = format!("{:#}", refused.err().context("a systemd driver pod ran")?);
    ensure!(
        why.contains("SystemdCgroup = true") && why.contains("does not run systemd"),
        "the refusal does not say why: {why}"
    );
    scenario::wait_until("the refused pod's shim to go", leaks::GRACE, || {
        before.grown(&leaks::Census::take(cd)).is_empty()
    })
    .await
}
