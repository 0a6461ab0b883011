//! The bench's pods: each one run through CRI with a fresh name and its own cgroup
//! parent (as kubelet gives each pod one: a directory under the instance's cgroup
//! root, or with the systemd driver a slice), timed around the CRI call only, and
//! remembered until it is stopped and removed, so that a failed bench still removes
//! every pod it made.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use futures::future::try_join_all;
use k8s_cri::v1::PodSandboxState;

use super::handler::{Handler, Runner};
use super::options::Driver;
use crate::container_config::ContainerSpec;
use crate::containerd::Containerd;
use crate::containerd_config::{
    BERTH_HANDLER, BERTH_SHIM_MODE_HANDLER, BERTH_SYSTEMD_HANDLER, RUNC_HANDLER,
    RUNC_SYSTEMD_HANDLER,
};
use crate::pod_config::PodConfig;
use crate::scenario;
use crate::systemd::PodSlice;
use crate::version::Version;

/// How long one CRI call may take before the bench gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How many pods [`Pods::run_many`] and [`Pods::remove_all`] handle at once.
pub const PARALLEL: usize = 8;

/// Runs and removes the bench's pods on one containerd.
pub struct Pods<'a> {
    cd: &'a Containerd,
    driver: Driver,
    next: AtomicUsize,
    /// Pods run and not yet removed.
    live: Mutex<BTreeSet<String>>,
    /// Every pod id ever run, for the final leak check.
    created: Mutex<Vec<String>>,
    /// The systemd driver's pod slices, released at the end.
    slices: Mutex<Vec<PodSlice>>,
}

impl<'a> Pods<'a> {
    pub fn new(cd: &'a Containerd, driver: Driver) -> Pods<'a> {
        Pods {
            cd,
            driver,
            next: AtomicUsize::new(0),
            live: Mutex::new(BTreeSet::new()),
            created: Mutex::new(Vec::new()),
            slices: Mutex::new(Vec::new()),
        }
    }

    /// Who the latency figures alternate between: berth in podsandbox mode,
    /// berth in shim mode where the bench's containerd has a Sandbox API
    /// (2.x; its shim-mode handler uses the cgroupfs driver), and runc.
    pub fn runners(&self) -> Vec<Runner> {
        let shim = self.cd.version() != Version::V1_7 && self.driver == Driver::Cgroupfs;
        if shim {
            vec![Runner::Berth, Runner::BerthShim, Runner::Runc]
        } else {
            vec![Runner::Berth, Runner::Runc]
        }
    }

    /// The CRI runtime handler of `r` with this bench's cgroup driver.
    pub fn handler_name(&self, r: Runner) -> Result<&'static str> {
        Ok(match (self.driver, r) {
            (Driver::Cgroupfs, Runner::Berth) => BERTH_HANDLER,
            (Driver::Cgroupfs, Runner::BerthShim) => BERTH_SHIM_MODE_HANDLER,
            (Driver::Cgroupfs, Runner::Runc) => RUNC_HANDLER,
            (Driver::Systemd, Runner::Berth) => BERTH_SYSTEMD_HANDLER,
            (Driver::Systemd, Runner::Runc) => RUNC_SYSTEMD_HANDLER,
            (Driver::Systemd, Runner::BerthShim) => {
                anyhow::bail!("the bench has no shim-mode handler with the systemd driver")
            }
        })
    }

    /// The cgroup parent of pod number `n`: a directory of its own, or the
    /// slice kubelet's systemd driver would give a BestEffort pod.
    fn cgroup_parent(&self, name: &str, n: usize) -> String {
        match self.driver {
            Driver::Cgroupfs => self.cd.cgroup_parent(name),
            Driver::Systemd => {
                let slot = self.cd.instance().slot();
                let slice = PodSlice::besteffort(&format!("bench{slot}n{n}"));
                let name = slice.slice.clone();
                self.slices.lock().expect("pods lock").push(slice);
                name
            }
        }
    }

    pub fn containerd(&self) -> &'a Containerd {
        self.cd
    }

    /// RunPodSandbox with `h`; returns the pod id and the time the CRI call took.
    pub async fn run(&self, h: impl Into<Runner>) -> Result<(String, Duration)> {
        let (id, took, _) = self.run_with_config(h).await?;
        Ok((id, took))
    }

    /// [`Pods::run`], also returning the pod's config (CreateContainer needs it).
    pub async fn run_with_config(
        &self,
        h: impl Into<Runner>,
    ) -> Result<(String, Duration, PodConfig)> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let name = format!("bench-{n}");
        let parent = self.cgroup_parent(&name, n);
        let config = scenario::pod_config(self.cd, &name)?.cgroup_parent(&parent);
        let handler = self.handler_name(h.into())?;
        let what = format!("RunPodSandbox {name} with {handler}");
        let started = Instant::now();
        let id = timed_out(
            &what,
            self.cd.cri().run_pod_sandbox(config.to_cri(), handler),
        )
        .await?;
        let took = started.elapsed();
        self.live.lock().expect("pods lock").insert(id.clone());
        self.created.lock().expect("pods lock").push(id.clone());
        Ok((id, took, config))
    }

    /// CreateContainer then StartContainer of `spec` in pod `id`; returns the
    /// time both calls took. The pod's removal removes the container.
    pub async fn create_start(
        &self,
        id: &str,
        config: &PodConfig,
        spec: &ContainerSpec,
    ) -> Result<Duration> {
        let cri = self.cd.cri();
        let started = Instant::now();
        let container = timed_out(
            "CreateContainer",
            cri.create_container(id, spec.to_cri(), config.to_cri()),
        )
        .await?;
        timed_out("StartContainer", cri.start_container(&container)).await?;
        Ok(started.elapsed())
    }

    /// Fails unless CRI reports pod `id` ready.
    pub async fn expect_ready(&self, id: &str) -> Result<()> {
        let status = timed_out("PodSandboxStatus", scenario::status(self.cd, id)).await?;
        let state = scenario::state(&status);
        ensure!(
            state == PodSandboxState::SandboxReady,
            "pod {id} is {state:?} after RunPodSandbox returned"
        );
        Ok(())
    }

    /// StopPodSandbox then RemovePodSandbox; returns the time both calls took.
    pub async fn remove(&self, id: &str) -> Result<Duration> {
        let cri = self.cd.cri();
        let started = Instant::now();
        timed_out("StopPodSandbox", cri.stop_pod_sandbox(id)).await?;
        timed_out("RemovePodSandbox", cri.remove_pod_sandbox(id)).await?;
        let took = started.elapsed();
        self.live.lock().expect("pods lock").remove(id);
        Ok(took)
    }

    /// Runs `n` pods with `h`, [`PARALLEL`] at a time, each checked ready; returns
    /// their ids. For setting the stage: the calls overlap, so they are not timed.
    pub async fn run_many(&self, h: Handler, n: usize) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(n);
        while ids.len() < n {
            let batch = (n - ids.len()).min(PARALLEL);
            let up = (0..batch).map(|_| async move {
                let (id, _) = self.run(h).await?;
                self.expect_ready(&id).await?;
                Ok::<_, anyhow::Error>(id)
            });
            ids.extend(try_join_all(up).await?);
        }
        Ok(ids)
    }

    /// Removes every live pod, [`PARALLEL`] at a time; fails if any removal failed.
    pub async fn remove_all(&self) -> Result<()> {
        for batch in self.live().chunks(PARALLEL) {
            try_join_all(batch.iter().map(|id| self.remove(id))).await?;
        }
        Ok(())
    }

    /// Removes every live pod, trying all of them whatever fails; returns the failures.
    pub async fn remove_all_best_effort(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for id in self.live() {
            if let Err(e) = self.remove(&id).await {
                failures.push(format!("{e:#}"));
            }
        }
        failures
    }

    /// Pods run and not removed yet.
    pub fn live(&self) -> Vec<String> {
        self.live
            .lock()
            .expect("pods lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Every pod id this bench ran.
    pub fn created(&self) -> Vec<String> {
        self.created.lock().expect("pods lock").clone()
    }

    /// Once every pod is removed: releases every pod slice (each must hold
    /// no cgroup any more: each scope went with its pod or container), all
    /// of them whatever fails; fails naming each that did.
    pub async fn release_slices(&self) -> Result<()> {
        let slices = std::mem::take(&mut *self.slices.lock().expect("pods lock"));
        let mut failures = Vec::new();
        for slice in &slices {
            if let Err(e) = slice.release().await {
                failures.push(format!("{e:#}"));
            }
        }
        ensure!(failures.is_empty(), "pod slices: {}", failures.join("; "));
        Ok(())
    }
}

/// `call`, or an error naming `what` once [`CALL_TIMEOUT`] has passed.
async fn timed_out<T>(what: &str, call: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .with_context(|| format!("CRI {what}: no answer after {CALL_TIMEOUT:?}"))?
}
