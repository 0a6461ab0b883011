//! Scenarios of berth's systemd cgroup driver (`berth-systemd`, which sets
//! `SystemdCgroup = true`): where kubelet's systemd driver puts a pod, the
//! refusal on a host without systemd, the units left behind, and a
//! scenario's pod placed under either driver.

use std::path::Path;

use anyhow::{ensure, Context, Result};

use crate::containerd_config::{BERTH_HANDLER, BERTH_SYSTEMD_HANDLER};
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
    /// The slice kubelet's systemd driver gives a BestEffort pod of uid
    /// `uid` (which holds no `-`: systemd reads it as a level).
    pub fn besteffort(uid: &str) -> PodSlice {
        let slice = format!("kubepods-besteffort-pod{uid}.slice");
        let dir = format!("/kubepods.slice/kubepods-besteffort.slice/{slice}");
        PodSlice { slice, dir }
    }

    /// The slice of a scenario's pod, named for the instance.
    pub fn of(cd: &Containerd) -> PodSlice {
        PodSlice::besteffort(&format!("berth{}", cd.instance().slot()))
    }

    /// The scope unit containerd's `cri-containerd` prefix makes of `id`.
    pub fn unit(id: &str) -> String {
        format!("cri-containerd-{id}.scope")
    }

    /// The cgroup path (from the hierarchy's root) of `id`'s scope.
    pub fn scope_dir(&self, id: &str) -> String {
        format!("{}/{}", self.dir, Self::unit(id))
    }

    /// Fails unless `id`'s scope unit is active and its cgroup is in the
    /// slice.
    pub fn expect_scope(&self, id: &str) -> Result<()> {
        let unit = Self::unit(id);
        let state = systemctl(&["is-active", &unit])?;
        ensure!(state == "active", "unit {unit} is {state:?}, not active");
        let dir = format!("/sys/fs/cgroup{}", self.scope_dir(id));
        ensure!(Path::new(&dir).is_dir(), "unit {unit} has no cgroup {dir}");
        Ok(())
    }

    /// Waits for each of `ids`' scope units to go, checks their cgroups are
    /// gone, then releases the slice.
    pub async fn expect_gone(&self, ids: &[&str]) -> Result<()> {
        for id in ids {
            let unit = Self::unit(id);
            let mut loaded = Ok(String::new());
            let gone = scenario::wait_until(&format!("unit {unit} to go"), leaks::GRACE, || {
                loaded = loaded_units(&unit);
                loaded.as_ref().is_ok_and(|u| u.is_empty())
            })
            .await;
            gone.with_context(|| format!("systemd still has {loaded:?}"))?;
            let dir = format!("/sys/fs/cgroup{}", self.scope_dir(id));
            ensure!(!Path::new(&dir).exists(), "{dir} is left");
        }
        self.release().await
    }

    /// Kubelet's part once the slice's pods are removed (here the test's):
    /// checks that the slice holds no cgroup any more, stops it whatever it
    /// holds, and checks that its cgroup went.
    pub async fn release(&self) -> Result<()> {
        let dir = format!("/sys/fs/cgroup{}", self.dir);
        let children = || -> Vec<String> {
            std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        };
        let emptied =
            scenario::wait_until(&format!("{} to empty", self.slice), leaks::GRACE, || {
                children().is_empty()
            })
            .await;
        let left = children();
        let stopped = systemctl_ok(&["stop", &self.slice]);
        ensure!(
            emptied.is_ok(),
            "{} still holds {left:?} after its pods were removed",
            self.slice
        );
        stopped?;
        scenario::wait_until(&format!("{dir} to go"), leaks::GRACE, || {
            !Path::new(&dir).exists()
        })
        .await
    }
}

/// Which cgroup driver a scenario's pod is run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// berth's default: the pod under a cgroupfs parent of its own.
    Cgroupfs,
    /// `berth-systemd`: the pod in a kubelet-style slice, its pause and
    /// each container in a scope unit.
    Systemd,
}

/// Where a scenario's pod lives and how to find its containers' cgroups.
pub struct Placement {
    pub handler: &'static str,
    /// The pod's cgroup parent.
    pub parent: String,
    pub slice: Option<PodSlice>,
}

impl Placement {
    pub fn new(cd: &Containerd, name: &str, driver: Driver) -> Placement {
        match driver {
            Driver::Cgroupfs => Placement {
                handler: BERTH_HANDLER,
                parent: cd.cgroup_parent(name),
                slice: None,
            },
            Driver::Systemd => {
                let slice = PodSlice::of(cd);
                Placement {
                    handler: BERTH_SYSTEMD_HANDLER,
                    parent: slice.slice.clone(),
                    slice: Some(slice),
                }
            }
        }
    }

    /// Container `id`'s cgroup path: `<parent>/<id>` as CRI names it, or
    /// its scope.
    pub fn cgroup(&self, id: &str) -> String {
        match &self.slice {
            Some(slice) => slice.scope_dir(id),
            None => format!("{}/{id}", self.parent),
        }
    }

    /// The parent the pod's trace checks for leaks: the scopes are checked
    /// by their units ([`Placement::expect_gone`]).
    pub fn traced_parent(&self) -> &str {
        match self.slice {
            Some(_) => "",
            None => &self.parent,
        }
    }

    /// Under the systemd driver, while the pod runs: the scope units of
    /// `ids` are active, each with its cgroup in the slice.
    pub fn expect_scopes(&self, ids: &[&str]) -> Result<()> {
        match &self.slice {
            Some(slice) => ids.iter().try_for_each(|id| slice.expect_scope(id)),
            None => Ok(()),
        }
    }

    /// Under the systemd driver, once the pod is removed: the scope units
    /// of `ids` (the pod's and its containers') and their cgroups are gone,
    /// and the slice is stopped.
    pub async fn expect_gone(&self, ids: &[&str]) -> Result<()> {
        match &self.slice {
            Some(slice) => slice.expect_gone(ids).await,
            None => Ok(()),
        }
    }
}

/// `systemctl` in the host's systemd, its stdout trimmed (whatever its
/// exit status: `is-active` ends non-zero on purpose).
pub fn systemctl(args: &[&str]) -> Result<String> {
    Ok(stdout(&run_systemctl(args)?))
}

fn run_systemctl(args: &[&str]) -> Result<std::process::Output> {
    std::process::Command::new("systemctl")
        .args(args)
        .output()
        .context("run systemctl")
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `systemctl` in the host's systemd, failing unless it succeeds.
pub fn systemctl_ok(args: &[&str]) -> Result<String> {
    let out = run_systemctl(args)?;
    ensure!(
        out.status.success(),
        "systemctl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(stdout(&out))
}

/// The units systemd has loaded named `unit` (active or not). A systemctl
/// that fails (no answer from systemd) is an error, not "none".
pub fn loaded_units(unit: &str) -> Result<String> {
    systemctl_ok(&["list-units", "--all", "--plain", "--no-legend", unit])
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
