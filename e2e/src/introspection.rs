//! containerd's introspection service, as far as the tests ask it: the
//! task runtime's `PluginInfo`, through which containerd 2.x runs a shim's
//! `-info` and hands back what it printed. The messages are declared here
//! by hand (field numbers from containerd's `introspection.proto` files):
//! four small messages do not call for a generated API crate.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use tonic::codegen::http::uri::PathAndQuery;

use crate::cri::unix_channel;

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `containerd.services.introspection.v1.PluginInfoRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct PluginInfoRequest {
    #[prost(string, tag = "1")]
    r#type: String,
    #[prost(string, tag = "2")]
    id: String,
    #[prost(message, optional, tag = "3")]
    options: Option<Any>,
}

/// `containerd.services.introspection.v1.PluginInfoResponse`, without the
/// plugin (field 1) the tests do not read.
#[derive(Clone, PartialEq, prost::Message)]
struct PluginInfoResponse {
    #[prost(message, optional, tag = "2")]
    extra: Option<Any>,
}

/// `containerd.types.RuntimeRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct RuntimeRequest {
    #[prost(string, tag = "1")]
    runtime_path: String,
    #[prost(message, optional, tag = "2")]
    options: Option<Any>,
}

/// `containerd.types.RuntimeVersion`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RuntimeVersion {
    #[prost(string, tag = "1")]
    pub version: String,
    #[prost(string, tag = "2")]
    pub revision: String,
}

/// `containerd.types.RuntimeInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RuntimeInfo {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub version: Option<RuntimeVersion>,
    #[prost(message, optional, tag = "3")]
    pub options: Option<Any>,
    #[prost(message, optional, tag = "4")]
    pub features: Option<Any>,
    #[prost(map = "string, string", tag = "5")]
    pub annotations: HashMap<String, String>,
}

/// `runtimeoptions.v1.Options`: what containerd sends a runtime that is not
/// runc for the `options` table of its config.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RuntimeOptions {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(string, tag = "2")]
    pub config_path: String,
    #[prost(bytes = "vec", tag = "3")]
    pub config_body: Vec<u8>,
}

impl RuntimeOptions {
    /// As containerd packs it: type `runtimeoptions.v1.Options`.
    pub fn to_any(&self) -> Any {
        Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value: prost::Message::encode_to_vec(self),
        }
    }
}

/// Asks containerd at `socket` (its gRPC socket) for the runtime info of
/// `runtime` (a runtime type such as `io.containerd.berth.v2`), sending
/// `options` along; containerd runs the shim's `-info` to answer.
pub async fn runtime_info(
    socket: &Path,
    runtime: &str,
    options: Option<Any>,
) -> Result<RuntimeInfo> {
    let channel = unix_channel(socket)
        .await
        .with_context(|| format!("connect to containerd at {}", socket.display()))?;
    let request = PluginInfoRequest {
        r#type: "io.containerd.runtime.v2".into(),
        id: "task".into(),
        options: Some(Any {
            type_url: "containerd.types.RuntimeRequest".into(),
            value: prost::Message::encode_to_vec(&RuntimeRequest {
                runtime_path: runtime.into(),
                options,
            }),
        }),
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.context("introspection: channel ready")?;
    let path =
        PathAndQuery::from_static("/containerd.services.introspection.v1.Introspection/PluginInfo");
    let mut call = tonic::Request::new(request);
    call.metadata_mut()
        .insert("containerd-namespace", "k8s.io".parse()?);
    let response: PluginInfoResponse = grpc
        .unary(call, path, tonic_prost::ProstCodec::default())
        .await
        .with_context(|| format!("introspection PluginInfo of {runtime}"))?
        .into_inner();
    let extra = response
        .extra
        .with_context(|| format!("PluginInfo of {runtime} has no extra"))?;
    anyhow::ensure!(
        extra.type_url.ends_with("containerd.types.RuntimeInfo"),
        "PluginInfo of {runtime} answered a {}",
        extra.type_url
    );
    Ok(prost::Message::decode(extra.value.as_slice())?)
}
