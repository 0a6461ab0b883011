//! Pod sandbox configs in crictl's `pod-config.json` shape (snake_case keys, every
//! field optional), their builder for tests, and their CRI form.
//!
//! Namespace modes are accepted as crictl writes them (numbers: 0 POD, 1 CONTAINER,
//! 2 NODE, 3 TARGET) or as names (`"POD"`, `"CONTAINER"`, `"NODE"`, `"TARGET"`).

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use serde::{Deserialize, Serialize};

/// The namespace the tests' pods live in (the Kubernetes one, not a Linux one).
pub const TEST_NAMESPACE: &str = "berth-e2e";

/// A pod config as in crictl's `pod-config.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PodConfig {
    pub metadata: Metadata,
    pub hostname: String,
    pub log_directory: String,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
    pub linux: Linux,
    pub dns_config: Option<DnsConfig>,
}

/// CRI's `DNSConfig`: what the pod's `/etc/resolv.conf` says.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Metadata {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Linux {
    pub cgroup_parent: String,
    pub sysctls: HashMap<String, String>,
    pub security_context: SecurityContext,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SecurityContext {
    pub namespace_options: NamespaceOptions,
    pub privileged: bool,
}

/// Which Linux namespaces the pod shares (kubelet's defaults: network and IPC per
/// pod, PID per container).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct NamespaceOptions {
    pub network: NamespaceMode,
    pub pid: NamespaceMode,
    pub ipc: NamespaceMode,
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        NamespaceOptions {
            network: NamespaceMode::Pod,
            pid: NamespaceMode::Container,
            ipc: NamespaceMode::Pod,
        }
    }
}

/// CRI's `NamespaceMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ModeRepr", into = "String")]
pub enum NamespaceMode {
    Pod,
    Container,
    Node,
    Target,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ModeRepr {
    Number(i32),
    Name(String),
}

impl TryFrom<ModeRepr> for NamespaceMode {
    type Error = String;

    fn try_from(repr: ModeRepr) -> Result<Self, String> {
        let mode = match repr {
            ModeRepr::Number(n) => cri::NamespaceMode::try_from(n).ok(),
            ModeRepr::Name(s) => cri::NamespaceMode::from_str_name(&s.to_ascii_uppercase()),
        };
        mode.map(NamespaceMode::from_cri)
            .ok_or_else(|| "unknown namespace mode".to_string())
    }
}

impl From<NamespaceMode> for String {
    fn from(mode: NamespaceMode) -> String {
        mode.to_cri().as_str_name().to_string()
    }
}

impl NamespaceMode {
    pub fn to_cri(self) -> cri::NamespaceMode {
        match self {
            NamespaceMode::Pod => cri::NamespaceMode::Pod,
            NamespaceMode::Container => cri::NamespaceMode::Container,
            NamespaceMode::Node => cri::NamespaceMode::Node,
            NamespaceMode::Target => cri::NamespaceMode::Target,
        }
    }

    pub fn from_cri(mode: cri::NamespaceMode) -> NamespaceMode {
        match mode {
            cri::NamespaceMode::Pod => NamespaceMode::Pod,
            cri::NamespaceMode::Container => NamespaceMode::Container,
            cri::NamespaceMode::Node => NamespaceMode::Node,
            cri::NamespaceMode::Target => NamespaceMode::Target,
        }
    }
}

impl PodConfig {
    /// A pod named `name` in [`TEST_NAMESPACE`], with hostname `name`, a uid derived
    /// from the name, and kubelet's default namespace sharing.
    pub fn new(name: &str) -> PodConfig {
        PodConfig {
            metadata: Metadata {
                name: name.into(),
                namespace: TEST_NAMESPACE.into(),
                uid: format!("uid-{name}"),
                attempt: 0,
            },
            hostname: name.into(),
            ..Default::default()
        }
    }

    pub fn log_directory(mut self, dir: impl Into<String>) -> Self {
        self.log_directory = dir.into();
        self
    }

    pub fn cgroup_parent(mut self, parent: impl Into<String>) -> Self {
        self.linux.cgroup_parent = parent.into();
        self
    }

    /// On the host's network, as kubelet asks for a `hostNetwork` pod: with
    /// the node's network namespace, and so its UTS namespace, and no
    /// hostname (runc refuses one without a UTS namespace of the pod's).
    pub fn host_network(mut self) -> Self {
        self.linux.security_context.namespace_options.network = NamespaceMode::Node;
        self.hostname.clear();
        self
    }

    pub fn pid_mode(mut self, mode: NamespaceMode) -> Self {
        self.linux.security_context.namespace_options.pid = mode;
        self
    }

    pub fn dns(mut self, dns: DnsConfig) -> Self {
        self.dns_config = Some(dns);
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Parses crictl-style JSON.
    pub fn from_json(text: &str) -> serde_json::Result<PodConfig> {
        serde_json::from_str(text)
    }

    /// The CRI `PodSandboxConfig`.
    pub fn to_cri(&self) -> cri::PodSandboxConfig {
        let ns = &self.linux.security_context.namespace_options;
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: self.metadata.name.clone(),
                uid: self.metadata.uid.clone(),
                namespace: self.metadata.namespace.clone(),
                attempt: self.metadata.attempt,
            }),
            hostname: self.hostname.clone(),
            log_directory: self.log_directory.clone(),
            dns_config: self.dns_config.as_ref().map(|d| cri::DnsConfig {
                servers: d.servers.clone(),
                searches: d.searches.clone(),
                options: d.options.clone(),
            }),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.linux.cgroup_parent.clone(),
                sysctls: self.linux.sysctls.clone(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: ns.network.to_cri() as i32,
                        pid: ns.pid.to_cri() as i32,
                        ipc: ns.ipc.to_cri() as i32,
                        ..Default::default()
                    }),
                    privileged: self.linux.security_context.privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_crictl_json_with_numbers_or_names() {
        let cfg = PodConfig::from_json(
            r#"{"metadata": {"name": "nginx", "namespace": "default", "uid": "u1", "attempt": 1},
                "log_directory": "/tmp",
                "linux": {"cgroup_parent": "/x",
                          "security_context": {"namespace_options": {"network": 0, "pid": "POD"}}}}"#,
        )
        .unwrap();
        assert_eq!(cfg.metadata.name, "nginx");
        assert_eq!(cfg.metadata.attempt, 1);
        assert_eq!(cfg.linux.cgroup_parent, "/x");
        let ns = &cfg.linux.security_context.namespace_options;
        assert_eq!(
            (ns.network, ns.pid, ns.ipc),
            (NamespaceMode::Pod, NamespaceMode::Pod, NamespaceMode::Pod)
        );
    }

    #[test]
    fn rejects_unknown_modes() {
        let err = PodConfig::from_json(
            r#"{"linux": {"security_context": {"namespace_options": {"pid": 9}}}}"#,
        );
        assert!(err.is_err());
    }

    #[test]
    fn converts_to_cri() {
        let cri = PodConfig::new("p")
            .cgroup_parent("/a/b")
            .pid_mode(NamespaceMode::Pod)
            .to_cri();
        assert_eq!(cri.metadata.unwrap().namespace, TEST_NAMESPACE);
        let linux = cri.linux.unwrap();
        assert_eq!(linux.cgroup_parent, "/a/b");
        let ns = linux.security_context.unwrap().namespace_options.unwrap();
        assert_eq!(ns.pid, cri::NamespaceMode::Pod as i32);
        assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
    }
}
