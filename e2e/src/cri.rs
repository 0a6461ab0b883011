//! A CRI v1 client over containerd's unix socket, with thin async wrappers for the
//! calls the tests and `berth-cri` make. Every error names the call that failed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    Container, ContainerConfig, ContainerFilter, ContainerStats, ContainerStatsRequest,
    ContainerStatus, ContainerStatusRequest, CreateContainerRequest, ExecSyncRequest,
    ExecSyncResponse, Image, ImageSpec, ImageStatusRequest, LinuxContainerResources,
    ListContainersRequest, ListImagesRequest, ListPodSandboxRequest, PodSandbox, PodSandboxConfig,
    PodSandboxFilter, PodSandboxStats, PodSandboxStatsRequest, PodSandboxStatusRequest,
    PodSandboxStatusResponse, RemoveContainerRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StatusRequest, StatusResponse,
    StopContainerRequest, StopPodSandboxRequest, UpdateContainerResourcesRequest, VersionRequest,
    VersionResponse,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// A gRPC channel to the unix socket `socket`.
pub async fn unix_channel(socket: &Path) -> Result<Channel> {
    let path = socket.to_path_buf();
    // The URI is a placeholder: the connector ignores it and dials the socket.
    Ok(Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await?)
}

/// A connection to one CRI endpoint (RuntimeService and ImageService).
#[derive(Clone, Debug)]
pub struct Cri {
    socket: PathBuf,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects to the unix socket `socket` (a path, or `unix://<path>`).
    pub async fn connect(socket: impl AsRef<Path>) -> Result<Cri> {
        let raw = socket.as_ref().to_string_lossy();
        let socket = PathBuf::from(raw.strip_prefix("unix://").unwrap_or(&raw));
        let channel = unix_channel(&socket)
            .await
            .with_context(|| format!("connect to CRI at {}", socket.display()))?;
        Ok(Cri {
            socket,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub async fn version(&self) -> Result<VersionResponse> {
        let req = VersionRequest {
            version: "v1".into(),
        };
        let resp = self
            .runtime
            .clone()
            .version(req)
            .await
            .context("CRI Version")?;
        Ok(resp.into_inner())
    }

    pub async fn status(&self) -> Result<StatusResponse> {
        let req = StatusRequest { verbose: false };
        let resp = self
            .runtime
            .clone()
            .status(req)
            .await
            .context("CRI Status")?;
        Ok(resp.into_inner())
    }

    /// RunPodSandbox; returns the sandbox id.
    pub async fn run_pod_sandbox(&self, config: PodSandboxConfig, handler: &str) -> Result<String> {
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let req = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: handler.into(),
        };
        let resp = self
            .runtime
            .clone()
            .run_pod_sandbox(req)
            .await
            .with_context(|| format!("CRI RunPodSandbox {name} (runtime handler {handler})"))?;
        Ok(resp.into_inner().pod_sandbox_id)
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.runtime
            .clone()
            .stop_pod_sandbox(req)
            .await
            .with_context(|| format!("CRI StopPodSandbox {id}"))?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.runtime
            .clone()
            .remove_pod_sandbox(req)
            .await
            .with_context(|| format!("CRI RemovePodSandbox {id}"))?;
        Ok(())
    }

    pub async fn pod_sandbox_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<PodSandboxStatusResponse> {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose,
        };
        let resp = self
            .runtime
            .clone()
            .pod_sandbox_status(req)
            .await
            .with_context(|| format!("CRI PodSandboxStatus {id}"))?;
        Ok(resp.into_inner())
    }

    /// The verbose `info` map of PodSandboxStatus, parsed from containerd's JSON.
    pub async fn pod_sandbox_info(&self, id: &str) -> Result<serde_json::Value> {
        let resp = self.pod_sandbox_status(id, true).await?;
        parse_info(&resp.info).with_context(|| format!("verbose info of pod {id}"))
    }

    pub async fn list_pod_sandbox(
        &self,
        filter: Option<PodSandboxFilter>,
    ) -> Result<Vec<PodSandbox>> {
        let req = ListPodSandboxRequest { filter };
        let resp = self
            .runtime
            .clone()
            .list_pod_sandbox(req)
            .await
            .context("CRI ListPodSandbox")?;
        Ok(resp.into_inner().items)
    }

    /// CreateContainer in pod `pod_id`; returns the container id.
    pub async fn create_container(
        &self,
        pod_id: &str,
        config: ContainerConfig,
        pod_config: PodSandboxConfig,
    ) -> Result<String> {
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let req = CreateContainerRequest {
            pod_sandbox_id: pod_id.into(),
            config: Some(config),
            sandbox_config: Some(pod_config),
        };
        let resp = self
            .runtime
            .clone()
            .create_container(req)
            .await
            .with_context(|| format!("CRI CreateContainer {name} in pod {pod_id}"))?;
        Ok(resp.into_inner().container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        let req = StartContainerRequest {
            container_id: id.into(),
        };
        self.runtime
            .clone()
            .start_container(req)
            .await
            .with_context(|| format!("CRI StartContainer {id}"))?;
        Ok(())
    }

    /// StopContainer: SIGTERM (or the image's stop signal), SIGKILL after
    /// `timeout` seconds.
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let req = StopContainerRequest {
            container_id: id.into(),
            timeout,
        };
        self.runtime
            .clone()
            .stop_container(req)
            .await
            .with_context(|| format!("CRI StopContainer {id}"))?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let req = RemoveContainerRequest {
            container_id: id.into(),
        };
        self.runtime
            .clone()
            .remove_container(req)
            .await
            .with_context(|| format!("CRI RemoveContainer {id}"))?;
        Ok(())
    }

    pub async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let req = ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        let resp = self
            .runtime
            .clone()
            .container_status(req)
            .await
            .with_context(|| format!("CRI ContainerStatus {id}"))?;
        resp.into_inner()
            .status
            .with_context(|| format!("ContainerStatus {id} has no status"))
    }

    /// The containers of pod `pod_id`, or every container.
    pub async fn list_containers(&self, pod_id: Option<&str>) -> Result<Vec<Container>> {
        let filter = pod_id.map(|p| ContainerFilter {
            pod_sandbox_id: p.into(),
            ..Default::default()
        });
        let req = ListContainersRequest { filter };
        let resp = self
            .runtime
            .clone()
            .list_containers(req)
            .await
            .context("CRI ListContainers")?;
        Ok(resp.into_inner().containers)
    }

    pub async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let req = ContainerStatsRequest {
            container_id: id.into(),
        };
        let resp = self
            .runtime
            .clone()
            .container_stats(req)
            .await
            .with_context(|| format!("CRI ContainerStats {id}"))?;
        resp.into_inner()
            .stats
            .with_context(|| format!("ContainerStats {id} has no stats"))
    }

    pub async fn update_container_resources(
        &self,
        id: &str,
        linux: LinuxContainerResources,
    ) -> Result<()> {
        let req = UpdateContainerResourcesRequest {
            container_id: id.into(),
            linux: Some(linux),
            ..Default::default()
        };
        self.runtime
            .clone()
            .update_container_resources(req)
            .await
            .with_context(|| format!("CRI UpdateContainerResources {id}"))?;
        Ok(())
    }

    pub async fn pod_sandbox_stats(&self, id: &str) -> Result<PodSandboxStats> {
        let req = PodSandboxStatsRequest {
            pod_sandbox_id: id.into(),
        };
        let resp = self
            .runtime
            .clone()
            .pod_sandbox_stats(req)
            .await
            .with_context(|| format!("CRI PodSandboxStats {id}"))?;
        resp.into_inner()
            .stats
            .with_context(|| format!("PodSandboxStats {id} has no stats"))
    }

    /// ExecSync: runs `cmd` in container `id`, waiting at most `timeout` seconds.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<ExecSyncResponse> {
        let req = ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        };
        let resp = self
            .runtime
            .clone()
            .exec_sync(req)
            .await
            .with_context(|| format!("CRI ExecSync {cmd:?} in {id}"))?;
        Ok(resp.into_inner())
    }

    /// ImageStatus of `image`; `None` if CRI does not know it.
    pub async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        let req = ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        let resp = self
            .images
            .clone()
            .image_status(req)
            .await
            .with_context(|| format!("CRI ImageStatus {image}"))?;
        Ok(resp.into_inner().image)
    }

    pub async fn list_images(&self) -> Result<Vec<Image>> {
        let req = ListImagesRequest { filter: None };
        let resp = self
            .images
            .clone()
            .list_images(req)
            .await
            .context("CRI ListImages")?;
        Ok(resp.into_inner().images)
    }
}

/// containerd puts its verbose sandbox info as JSON under the key `info`.
pub fn parse_info(info: &HashMap<String, String>) -> Result<serde_json::Value> {
    let raw = info
        .get("info")
        .context("no `info` key in the verbose status")?;
    serde_json::from_str(raw).context("parse the verbose `info` JSON")
}
