//! The Sandbox API (`containerd.runtime.sandbox.v1.Sandbox`): containerd
//! 2.x's `sandboxer = "shim"` drives the pod through it, with no pause
//! container of its own.
//!
//! The pod sandbox is the same task as in podsandbox mode, in the same task
//! table: CreateSandbox makes it from CRI's pod config through the same
//! Create, so its berth-pause, its exit (journaled before it is announced),
//! Pause/Resume of the pod and Task Connect after a containerd restart are
//! one code path for both modes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use berth_proto::api::{CreateTaskRequest, DeleteRequest, KillRequest, StartRequest};
use berth_proto::protobuf::well_known_types::any::Any;
use berth_proto::sandbox_api::{
    CreateSandboxRequest, CreateSandboxResponse, PingRequest, PingResponse, PlatformRequest,
    PlatformResponse, SandboxMetricsRequest, SandboxMetricsResponse, SandboxStatusRequest,
    SandboxStatusResponse, ShutdownSandboxRequest, ShutdownSandboxResponse, StartSandboxRequest,
    StartSandboxResponse, StopSandboxRequest, StopSandboxResponse, WaitSandboxRequest,
    WaitSandboxResponse,
};
use berth_proto::sandbox_async::Sandbox as SandboxApi;
use berth_proto::ttrpc::r#async::TtrpcContext;
use berth_proto::types::platform::Platform;
use berth_sandbox::process::Sig;

use super::{Inner, Service, TtrpcResult};
use crate::backend::{Backend, SandboxRequest};
use crate::error::{Error, Result};
use crate::events::{timestamp, Publisher};
use crate::task::{State, Task};

/// The pod sandbox CreateSandbox made.
#[derive(Debug, Clone)]
pub(super) struct PodSandbox {
    pub id: String,
    pub created_at: SystemTime,
    /// The spec berth-pause was started from, for SandboxStatus's verbose
    /// info.
    pub spec: Arc<oci_spec::runtime::Spec>,
}

/// The one sandbox a shim serves, claimed by a CreateSandbox under way
/// (or done); dropped, a claim whose Create failed frees the slot again.
struct SandboxClaim<'a, B: Backend, P: Publisher> {
    inner: &'a Inner<B, P>,
}

impl<'a, B: Backend, P: Publisher> SandboxClaim<'a, B, P> {
    fn take(inner: &'a Inner<B, P>, id: &str) -> Result<Self> {
        let mut claimed = inner
            .sandbox_claim
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(other) = claimed.as_ref() {
            return Err(Error::AlreadyExists(format!(
                "this shim serves sandbox {other}"
            )));
        }
        *claimed = Some(id.to_owned());
        Ok(SandboxClaim { inner })
    }
}

impl<B: Backend, P: Publisher> Drop for SandboxClaim<'_, B, P> {
    fn drop(&mut self) {
        if self.inner.pod_sandbox().is_none() {
            *self
                .inner
                .sandbox_claim
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

/// How containerd names an OCI runtime spec in an `Any` (its value is the
/// spec's JSON).
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// containerd 2.3 passes the sandbox's annotations with CreateSandbox: they
/// go into its spec, as a pause container's spec carries CRI's; the two
/// berth classifies the task by stay its own.
fn add_annotations(
    spec: &mut oci_spec::runtime::Spec,
    extra: &std::collections::HashMap<String, String>,
) {
    if extra.is_empty() {
        return;
    }
    let mut all = spec.annotations().clone().unwrap_or_default();
    for (key, value) in extra {
        all.entry(key.clone()).or_insert_with(|| value.clone());
    }
    spec.set_annotations(Some(all));
}

/// What SandboxStatus calls a pod whose berth-pause runs, and one whose
/// does not (yet or any more): CRI compares these strings.
const READY: &str = "SANDBOX_READY";
const NOT_READY: &str = "SANDBOX_NOTREADY";

/// How long StopSandbox waits for a container that was sent SIGKILL, and
/// then for berth-pause, before it reports failure.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl<B: Backend, P: Publisher> Inner<B, P> {
    pub(super) fn pod_sandbox(&self) -> Option<PodSandbox> {
        self.sandbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The sandbox task of `id`, which CreateSandbox made.
    pub(super) fn sandbox_task(&self, id: &str) -> Result<(PodSandbox, Arc<Task>)> {
        let sandbox = self
            .pod_sandbox()
            .filter(|s| s.id == id)
            .ok_or_else(|| Error::NotFound(format!("sandbox {id}")))?;
        let task = self.task(id)?;
        Ok((sandbox, task))
    }

    pub(super) async fn create_sandbox(self: &Arc<Self>, req: CreateSandboxRequest) -> Result<()> {
        berth_sandbox::spec::check_id("sandbox_id", &req.sandbox_id)?;
        // Claimed before anything awaits: two CreateSandbox calls cannot
        // both start a berth-pause.
        let _claim = SandboxClaim::take(self, &req.sandbox_id)?;
        if !req.rootfs.is_empty() {
            return Err(Error::InvalidArgument(
                "rootfs: berth-pause runs in an empty root of its own, not in mounts".into(),
            ));
        }
        let config = match req.options.as_ref() {
            Some(any) => crate::pod_config::from_any(any)?,
            None => {
                return Err(Error::InvalidArgument(
                    "options: the pod's runtime.v1.PodSandboxConfig is missing".into(),
                ))
            }
        };
        let options = crate::bootstrap::recorded_options(std::path::Path::new(&req.bundle_path))?;
        let mut spec = config.sandbox_spec(&req.sandbox_id, &req.netns_path)?;
        add_annotations(&mut spec, &req.annotations);
        let create = CreateTaskRequest {
            id: req.sandbox_id.clone(),
            bundle: req.bundle_path.clone(),
            ..Default::default()
        };
        let files = crate::pod_files::PodFiles::for_pod(
            &config.hostname,
            &config.dns,
            std::path::Path::new("/etc"),
        )?;
        let spec = Arc::new(spec);
        let sandbox = SandboxRequest {
            spec: oci_spec::runtime::Spec::clone(&spec),
            files,
        };
        self.create_with(create, options, Some(sandbox)).await?;
        *self.sandbox.lock().unwrap_or_else(|p| p.into_inner()) = Some(PodSandbox {
            id: req.sandbox_id.clone(),
            created_at: SystemTime::now(),
            spec,
        });
        log::info!(container = req.sandbox_id.as_str(); "sandbox created");
        Ok(())
    }

    pub(super) async fn start_sandbox(self: &Arc<Self>, id: &str) -> Result<StartSandboxResponse> {
        let (sandbox, _) = self.sandbox_task(id)?;
        let started = self
            .start(StartRequest {
                id: id.to_owned(),
                ..Default::default()
            })
            .await?;
        // containerd 2.3 keeps the sandbox's spec from here.
        let spec = Any {
            type_url: SPEC_TYPE_URL.into(),
            value: serde_json::to_vec(&*sandbox.spec)
                .map_err(|e| Error::Internal(format!("sandbox {id}: its spec as JSON: {e}")))?,
            ..Default::default()
        };
        Ok(StartSandboxResponse {
            pid: started.pid,
            created_at: Some(timestamp(sandbox.created_at)).into(),
            spec: Some(spec).into(),
            ..Default::default()
        })
    }

    pub(super) fn sandbox_status(&self, id: &str, verbose: bool) -> Result<SandboxStatusResponse> {
        let (sandbox, task) = self.sandbox_task(id)?;
        let state = task.init().state();
        let exited_at = state.exit().map(|(_, at)| timestamp(at));
        let mut info = std::collections::HashMap::new();
        if verbose {
            // What CRI's podsandbox mode reports under "info", as far as
            // the shim knows it: crictl inspectp shows it.
            let details = serde_json::json!({
                "pid": task.init().pid(),
                "processStatus": state.describe(),
                "runtimeSpec": &*sandbox.spec,
            });
            info.insert("info".to_owned(), details.to_string());
        }
        Ok(SandboxStatusResponse {
            info,
            sandbox_id: sandbox.id,
            pid: task.init().pid() as u32,
            state: match state {
                State::Running => READY,
                State::Created | State::Stopped { .. } => NOT_READY,
            }
            .to_owned(),
            created_at: Some(timestamp(sandbox.created_at)).into(),
            exited_at: exited_at.into(),
            ..Default::default()
        })
    }

    pub(super) async fn wait_sandbox(&self, id: &str) -> Result<WaitSandboxResponse> {
        let (_, task) = self.sandbox_task(id)?;
        let (status, at) = task.init().wait().await;
        Ok(WaitSandboxResponse {
            exit_status: status,
            exited_at: Some(timestamp(at)).into(),
            ..Default::default()
        })
    }

    /// The pod's app containers whose init has not exited.
    fn running_containers(&self, sandbox: &str) -> Vec<Arc<Task>> {
        self.tasks()
            .live
            .values()
            .filter(|t| t.id != sandbox && t.init().state().exit().is_none())
            .cloned()
            .collect()
    }

    /// Sends `signal` to every process of task `task` unless it stopped
    /// (or a Delete took it meanwhile).
    async fn signal_all(&self, task: &Task, signal: Sig) -> Result<()> {
        if task.init().state().exit().is_some() {
            return Ok(());
        }
        let sent = self
            .kill(KillRequest {
                id: task.id.clone(),
                signal: signal.number() as u32,
                all: true,
                ..Default::default()
            })
            .await;
        match sent {
            // It exited meanwhile, or a Delete (which kills it) took it.
            Err(_) if task.init().state().exit().is_some() => Ok(()),
            Err(Error::NotFound(_)) => Ok(()),
            other => other,
        }
    }

    /// Sends `signal` to each of `tasks`, then waits for them all until
    /// `deadline`; what failed, by task.
    async fn signal_and_wait(
        &self,
        tasks: &[Arc<Task>],
        signal: Sig,
        deadline: tokio::time::Instant,
    ) -> Vec<String> {
        let mut failed = Vec::new();
        for task in tasks {
            if let Err(e) = self.signal_all(task, signal).await {
                failed.push(format!("signal {} to {}: {e}", signal.number(), task.id));
            }
        }
        for task in tasks {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if tokio::time::timeout(left, task.init().wait())
                .await
                .is_err()
                && signal == Sig::KILL
            {
                failed.push(format!(
                    "{} did not exit {KILL_WAIT:?} after SIGKILL",
                    task.id
                ));
            }
        }
        failed
    }

    /// Ends the pod's app containers still running: SIGTERM and `grace`
    /// to exit (none with a zero grace), then SIGKILL.
    async fn stop_containers(&self, sandbox: &str, grace: Duration) -> Vec<String> {
        let mut failed = Vec::new();
        let containers = self.running_containers(sandbox);
        if !containers.is_empty() && !grace.is_zero() {
            let deadline = tokio::time::Instant::now() + grace;
            failed.extend(self.signal_and_wait(&containers, Sig::TERM, deadline).await);
        }
        let left = self.running_containers(sandbox);
        let deadline = tokio::time::Instant::now() + KILL_WAIT;
        failed.extend(self.signal_and_wait(&left, Sig::KILL, deadline).await);
        failed
    }

    /// StopSandbox: the containers CRI has not stopped are sent SIGTERM,
    /// then SIGKILL after `timeout`; then berth-pause is killed, whatever
    /// failed before.
    pub(super) async fn stop_sandbox(self: Arc<Self>, id: String, timeout: Duration) -> Result<()> {
        let (_, sandbox) = self.sandbox_task(&id)?;
        let mut failed = self.stop_containers(&id, timeout).await;
        // Started or not: a berth-pause still waiting to run is killed too.
        let deadline = tokio::time::Instant::now() + KILL_WAIT;
        failed.extend(self.signal_and_wait(&[sandbox], Sig::KILL, deadline).await);
        if !failed.is_empty() {
            return Err(Error::Unavailable(format!(
                "stop sandbox {id}: {}",
                failed.join("; ")
            )));
        }
        log::info!(container = id.as_str(); "sandbox stopped");
        Ok(())
    }

    /// ShutdownSandbox: the pod stopped if it was not, every task deleted,
    /// then the shim exits (once a Create under way is done with).
    pub(super) async fn shutdown_sandbox(self: Arc<Self>, id: String) -> Result<()> {
        if self.pod_sandbox().is_some_and(|s| s.id != id) {
            return Err(Error::NotFound(format!("sandbox {id}")));
        }
        if self.task(&id).is_ok() {
            Arc::clone(&self)
                .stop_sandbox(id.clone(), Duration::ZERO)
                .await?;
        } else {
            // No sandbox task (its Create failed, or it was deleted): its
            // containers are still ended before they are deleted.
            let failed = self.stop_containers(&id, Duration::ZERO).await;
            if !failed.is_empty() {
                return Err(Error::Unavailable(format!(
                    "shutdown sandbox {id}: {}",
                    failed.join("; ")
                )));
            }
        }
        let ids: Vec<String> = {
            let tasks = self.tasks();
            // The containers first, the sandbox last, as CRI removes a pod.
            let mut ids: Vec<String> = tasks.live.keys().filter(|k| **k != id).cloned().collect();
            if tasks.live.contains_key(&id) {
                ids.push(id.clone());
            }
            ids
        };
        for task in ids {
            let deleted = self
                .delete(DeleteRequest {
                    id: task.clone(),
                    ..Default::default()
                })
                .await;
            match deleted {
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        log::info!(container = id.as_str(); "sandbox shut down, the shim exits");
        // Now, or when a Create still under way has ended.
        self.tasks().shutdown_deferred = true;
        self.shutdown_if_deferred();
        Ok(())
    }
}

#[async_trait]
impl<B: Backend, P: Publisher> SandboxApi for Service<B, P> {
    async fn create_sandbox(
        &self,
        _: &TtrpcContext,
        req: CreateSandboxRequest,
    ) -> TtrpcResult<CreateSandboxResponse> {
        let id = req.sandbox_id.clone();
        self.inner.create_sandbox(req).await.inspect_err(|e| {
            log::error!(container = id.as_str(); "create sandbox: {}", berth_sandbox::error_chain(e));
        })?;
        Ok(CreateSandboxResponse::default())
    }

    async fn start_sandbox(
        &self,
        _: &TtrpcContext,
        req: StartSandboxRequest,
    ) -> TtrpcResult<StartSandboxResponse> {
        Ok(self.inner.start_sandbox(&req.sandbox_id).await?)
    }

    async fn platform(
        &self,
        _: &TtrpcContext,
        _: PlatformRequest,
    ) -> TtrpcResult<PlatformResponse> {
        Ok(PlatformResponse {
            platform: Some(platform()).into(),
            ..Default::default()
        })
    }

    async fn stop_sandbox(
        &self,
        _: &TtrpcContext,
        req: StopSandboxRequest,
    ) -> TtrpcResult<StopSandboxResponse> {
        let timeout = Duration::from_secs(req.timeout_secs.into());
        let id = req.sandbox_id;
        // Finished even if containerd gives up waiting.
        self.inner
            .detached("stop sandbox", |this| this.stop_sandbox(id, timeout))
            .await?;
        Ok(StopSandboxResponse::default())
    }

    async fn wait_sandbox(
        &self,
        _: &TtrpcContext,
        req: WaitSandboxRequest,
    ) -> TtrpcResult<WaitSandboxResponse> {
        Ok(self.inner.wait_sandbox(&req.sandbox_id).await?)
    }

    async fn sandbox_status(
        &self,
        _: &TtrpcContext,
        req: SandboxStatusRequest,
    ) -> TtrpcResult<SandboxStatusResponse> {
        Ok(self.inner.sandbox_status(&req.sandbox_id, req.verbose)?)
    }

    async fn ping_sandbox(&self, _: &TtrpcContext, req: PingRequest) -> TtrpcResult<PingResponse> {
        self.inner.sandbox_task(&req.sandbox_id)?;
        Ok(PingResponse::default())
    }

    async fn shutdown_sandbox(
        &self,
        _: &TtrpcContext,
        req: ShutdownSandboxRequest,
    ) -> TtrpcResult<ShutdownSandboxResponse> {
        let id = req.sandbox_id;
        self.inner
            .detached("shutdown sandbox", |this| this.shutdown_sandbox(id))
            .await?;
        Ok(ShutdownSandboxResponse::default())
    }

    async fn sandbox_metrics(
        &self,
        _: &TtrpcContext,
        req: SandboxMetricsRequest,
    ) -> TtrpcResult<SandboxMetricsResponse> {
        self.inner.sandbox_task(&req.sandbox_id)?;
        let stats = self
            .inner
            .stats(berth_proto::api::StatsRequest {
                id: req.sandbox_id.clone(),
                ..Default::default()
            })
            .await?;
        let mut response = SandboxMetricsResponse::default();
        let metric = response.metrics.mut_or_insert_default();
        metric.timestamp = Some(timestamp(SystemTime::now())).into();
        metric.id = req.sandbox_id;
        metric.data = stats.stats;
        Ok(response)
    }
}

/// What the pod's containers run on, as containerd names platforms.
pub(super) fn platform() -> Platform {
    Platform {
        os: "linux".into(),
        architecture: go_arch().into(),
        ..Default::default()
    }
}

/// The machine's architecture as Go (and so containerd's platforms) names it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}
