//! CRI's `runtime.v1.PodSandboxConfig`, as containerd's shim sandboxer
//! hands it to CreateSandbox, read into the sandbox spec CRI's podsandbox
//! mode would have written for the pod: one path from there to berth-pause
//! for both modes.
//!
//! Only the fields that shape the pod's namespaces and cgroup are read, off
//! the wire by field number (CRI's protos are not among containerd's shim
//! protos). Unknown fields are skipped, as protobuf readers do.

use std::collections::HashMap;
use std::path::PathBuf;

use berth_sandbox::spec::{CONTAINER_TYPE, SANDBOX_ID};
use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Spec};

use crate::error::{Error, Result};
use crate::wire::{fields, string, Field};

/// The message name containerd marshals the config under.
pub const TYPE_NAME: &str = "runtime.v1.PodSandboxConfig";

/// CRI's `NamespaceMode`: where a pod's namespace of one kind comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NamespaceMode {
    /// The pod's own (`POD`).
    #[default]
    Pod,
    /// Each container's own (`CONTAINER`): for PID, the pod shares none.
    Container,
    /// The node's (`NODE`): host network, host PID, host IPC.
    Node,
    /// Another container's (`TARGET`), for debugging containers only.
    Target,
}

impl NamespaceMode {
    fn from_wire(field: &str, value: u64) -> Result<Self> {
        Ok(match value {
            0 => NamespaceMode::Pod,
            1 => NamespaceMode::Container,
            2 => NamespaceMode::Node,
            3 => NamespaceMode::Target,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "{field}: unknown namespace mode {other}"
                )))
            }
        })
    }
}

/// What berth reads of a PodSandboxConfig.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodConfig {
    pub hostname: String,
    pub cgroup_parent: String,
    pub network: NamespaceMode,
    pub pid: NamespaceMode,
    pub ipc: NamespaceMode,
    pub sysctls: HashMap<String, String>,
    /// `dns_config`: what the pod's `/etc/resolv.conf` says.
    pub dns: crate::pod_files::Dns,
}

impl PodConfig {
    /// Reads a serialized `runtime.v1.PodSandboxConfig`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut config = PodConfig::default();
        for field in fields("options (PodSandboxConfig)", bytes)? {
            match field {
                Field::Bytes(2, b) => config.hostname = string("hostname", b)?,
                Field::Bytes(4, b) => config.dns = crate::pod_files::Dns::parse(&b)?,
                Field::Bytes(8, b) => config.read_linux(&b)?,
                _ => {}
            }
        }
        Ok(config)
    }

    fn read_linux(&mut self, bytes: &[u8]) -> Result<()> {
        for field in fields("linux", bytes)? {
            match field {
                Field::Bytes(1, b) => self.cgroup_parent = string("linux.cgroup_parent", b)?,
                Field::Bytes(2, b) => self.read_security_context(&b)?,
                Field::Bytes(3, b) => {
                    let (key, value) = map_entry("linux.sysctls", &b)?;
                    self.sysctls.insert(key, value);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn read_security_context(&mut self, bytes: &[u8]) -> Result<()> {
        for field in fields("linux.security_context", bytes)? {
            if let Field::Bytes(1, b) = field {
                for option in fields("linux.security_context.namespace_options", &b)? {
                    if let Field::Bytes(5, userns) = &option {
                        check_userns(userns)?;
                        continue;
                    }
                    let (slot, name) = match &option {
                        Field::Varint(1, _) => (&mut self.network, "network"),
                        Field::Varint(2, _) => (&mut self.pid, "pid"),
                        Field::Varint(3, _) => (&mut self.ipc, "ipc"),
                        _ => continue,
                    };
                    let Field::Varint(_, value) = option else {
                        unreachable!("matched as a varint above")
                    };
                    *slot = NamespaceMode::from_wire(
                        &format!("linux.security_context.namespace_options.{name}"),
                        value,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The pod sandbox's spec, as CRI's podsandbox mode writes it for the
    /// pause container: the namespaces the pod holds (joining `netns`, the
    /// network namespace CRI made and ran CNI in), its hostname, sysctls
    /// and cgroup under `cgroup_parent`.
    pub fn sandbox_spec(&self, id: &str, netns: &str) -> Result<Spec> {
        for (mode, name) in [(self.network, "network"), (self.ipc, "ipc")] {
            if !matches!(mode, NamespaceMode::Pod | NamespaceMode::Node) {
                return Err(Error::InvalidArgument(format!(
                    "linux.security_context.namespace_options.{name}: a pod's {name} namespace is the pod's or the node's, not {mode:?}"
                )));
            }
        }
        if self.pid == NamespaceMode::Target {
            return Err(Error::InvalidArgument(
                "linux.security_context.namespace_options.pid: a pod cannot share a target's PID namespace".into(),
            ));
        }
        let host_network = self.network == NamespaceMode::Node;
        let namespace = |typ, path: Option<PathBuf>| {
            let mut ns = LinuxNamespaceBuilder::default().typ(typ);
            if let Some(path) = path {
                ns = ns.path(path);
            }
            ns.build()
                .map_err(|e| Error::Internal(format!("sandbox spec: {e}")))
        };
        let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, None)?];
        if !host_network {
            if netns.is_empty() {
                return Err(Error::InvalidArgument(
                    "netns_path: must name the pod's network namespace unless it uses the node's"
                        .into(),
                ));
            }
            namespaces.push(namespace(
                LinuxNamespaceType::Network,
                Some(PathBuf::from(netns)),
            )?);
            namespaces.push(namespace(LinuxNamespaceType::Uts, None)?);
        }
        if self.ipc != NamespaceMode::Node {
            namespaces.push(namespace(LinuxNamespaceType::Ipc, None)?);
        }
        if self.pid != NamespaceMode::Node {
            namespaces.push(namespace(LinuxNamespaceType::Pid, None)?);
        }
        let mut linux = LinuxBuilder::default()
            .namespaces(namespaces)
            .sysctl(self.sysctls.clone());
        if !self.cgroup_parent.is_empty() {
            linux = linux.cgroups_path(PathBuf::from(cgroups_path(&self.cgroup_parent, id)));
        }
        let annotations = HashMap::from([
            (CONTAINER_TYPE.to_owned(), "sandbox".to_owned()),
            (SANDBOX_ID.to_owned(), id.to_owned()),
        ]);
        // oci-spec's defaults (a hostname, a process, mounts) are not the
        // pod's: only what is set here is.
        let mut spec = Spec::default();
        spec.set_hostname(None)
            .set_process(None)
            .set_mounts(None)
            .set_root(None)
            .set_annotations(Some(annotations))
            .set_linux(Some(
                linux
                    .build()
                    .map_err(|e| Error::Internal(format!("sandbox spec: {e}")))?,
            ));
        // A host-network pod has the node's UTS namespace and hostname.
        if !host_network && !self.hostname.is_empty() {
            spec.set_hostname(Some(self.hostname.clone()));
        }
        Ok(spec)
    }
}

/// `namespace_options.userns_options`: only the node's user namespace
/// (mode NODE), as in podsandbox mode: pause in the host's user namespace
/// would make the pod's mapped root the host's root.
fn check_userns(bytes: &[u8]) -> Result<()> {
    const FIELD: &str = "linux.security_context.namespace_options.userns_options";
    let mut mode = 0;
    for field in fields(FIELD, bytes)? {
        if let Field::Varint(1, m) = field {
            mode = m;
        }
    }
    if NamespaceMode::from_wire(&format!("{FIELD}.mode"), mode)? != NamespaceMode::Node {
        return Err(Error::Unimplemented(format!(
            "{FIELD}: user namespaces are not supported yet"
        )));
    }
    Ok(())
}

/// A `map<string, string>` entry: key 1, value 2.
fn map_entry(what: &str, bytes: &[u8]) -> Result<(String, String)> {
    let (mut key, mut value) = (String::new(), String::new());
    for field in fields(what, bytes)? {
        match field {
            Field::Bytes(1, b) => key = string(what, b)?,
            Field::Bytes(2, b) => value = string(what, b)?,
            _ => {}
        }
    }
    Ok((key, value))
}

/// The sandbox's cgroups path under `parent`, as CRI derives it in
/// podsandbox mode: `<slice>:cri-containerd:<id>` when the parent is a
/// systemd slice, else `<parent>/<id>`. The driver then reads it, and
/// refuses a form that is not its own.
fn cgroups_path(parent: &str, id: &str) -> String {
    let parent = parent.trim_end_matches('/');
    let base = parent.rsplit('/').next().unwrap_or(parent);
    if base.ends_with(".slice") {
        format!("{base}:cri-containerd:{id}")
    } else {
        format!("{parent}/{id}")
    }
}

/// The config in CreateSandbox's `options`, which containerd marshals as
/// an `Any` of [`TYPE_NAME`] (with or without a type URL prefix).
pub fn from_any(any: &berth_proto::protobuf::well_known_types::any::Any) -> Result<PodConfig> {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    if name != TYPE_NAME {
        return Err(Error::InvalidArgument(format!(
            "options: a {TYPE_NAME} was expected, not {:?}",
            any.type_url
        )));
    }
    PodConfig::parse(&any.value)
}

#[cfg(test)]
mod tests;
