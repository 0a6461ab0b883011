//! Reading the OCI spec of a bundle and deciding what it asks of berth.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// CRI's annotation naming the kind of container (`sandbox` or `container`).
pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// CRI's annotation naming the pod a container belongs to.
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// berth's own grouping label, for clients other than CRI.
pub const GROUP: &str = "io.containerd.berth.v2.group";

/// The longest id containerd accepts (`pkg/identifiers`).
pub const MAX_ID_LEN: usize = 76;

/// Checks a task or exec id as containerd's identifiers are checked: 1 to
/// 76 characters, runs of ASCII letters and digits joined by single `.`,
/// `_` or `-`. Ids name directories and files: nothing else reaches a path.
pub fn check_id(what: &str, id: &str) -> Result<()> {
    let shown: String = id.chars().take(80).collect();
    let bad = |why: &str| Err(Error::invalid(what, format!("{shown:?} {why}")));
    if id.is_empty() {
        return bad("is empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad(&format!("is longer than {MAX_ID_LEN} characters"));
    }
    let separator = |c: u8| matches!(c, b'.' | b'_' | b'-');
    let bytes = id.as_bytes();
    let well_formed = bytes
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || separator(c))
        && !separator(bytes[0])
        && !separator(bytes[bytes.len() - 1])
        && !bytes.windows(2).any(|w| separator(w[0]) && separator(w[1]));
    if !well_formed {
        return bad("is not an identifier: letters and digits, joined by single '.', '_' or '-'");
    }
    Ok(())
}

/// Reads and parses `config.json` in `bundle`.
///
/// A spec that does not parse is an invalid argument whose field is the JSON
/// path where parsing stopped, e.g. `linux.namespaces[0].type`.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(Error::io("read", &path))?;
    parse(&data)
}

/// Parses an OCI spec, naming the offending field on failure. Capability
/// names are read as runc reads them ([`runc_capabilities`]).
pub fn parse(data: &[u8]) -> Result<Spec> {
    parse_as(data, "spec", |v| v.pointer_mut("/process/capabilities"))
}

/// Parses an OCI process (an exec's), as [`parse`] does a spec.
pub fn parse_process(data: &[u8]) -> Result<oci_spec::runtime::Process> {
    parse_as(data, "exec spec", |v| v.pointer_mut("/capabilities"))
}

fn parse_as<T: serde::de::DeserializeOwned>(
    data: &[u8],
    what: &str,
    capabilities: impl FnOnce(&mut serde_json::Value) -> Option<&mut serde_json::Value>,
) -> Result<T> {
    let mut value: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| Error::invalid(what, format!("not JSON: {e}")))?;
    if let Some(sets) = capabilities(&mut value) {
        for dropped in crate::capabilities::runc_names(sets) {
            log::warn!("{what}: capability {dropped:?} ignored: not a name runc knows");
        }
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = match e.path().to_string() {
            p if p == "." => what.to_string(),
            p => format!("{what}.{p}"),
        };
        Error::invalid(field, e.into_inner().to_string())
    })
}

/// The pod a container belongs to, from its annotations: CRI's sandbox id,
/// else berth's group label. `None` for a container that is a pod of its own.
pub fn group_of(spec: &Spec) -> Option<&str> {
    let annotations = spec.annotations().as_ref()?;
    annotations
        .get(SANDBOX_ID)
        .or_else(|| annotations.get(GROUP))
        .map(String::as_str)
        .filter(|g| !g.is_empty())
}

/// The grouping id a shim is started for: the pod's id when the bundle's spec
/// names one, else the container's own id. A bundle without a readable
/// config.json (containerd's Sandbox API may create one) groups by id.
pub fn grouping(bundle: &Path, id: &str) -> String {
    load(bundle)
        .ok()
        .and_then(|spec| group_of(&spec).map(str::to_owned))
        .unwrap_or_else(|| id.to_owned())
}

/// What kind of task a spec describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A pod sandbox: berth runs berth-pause instead of the spec's process.
    Sandbox,
    /// An app container of the pod named by its annotations.
    Container { sandbox_id: String },
    /// A container without a pod: it runs as a pod of one.
    Standalone,
}

/// Classifies a spec by CRI's container-type annotation.
pub fn kind(spec: &Spec) -> Result<Kind> {
    let ty = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(CONTAINER_TYPE))
        .map(String::as_str);
    match ty {
        Some("sandbox") => Ok(Kind::Sandbox),
        Some("container") => match group_of(spec) {
            Some(sandbox_id) => Ok(Kind::Container {
                sandbox_id: sandbox_id.to_owned(),
            }),
            None => Err(Error::invalid(
                format!("annotations[{SANDBOX_ID}]"),
                "a container of type container must name its sandbox",
            )),
        },
        None => Ok(Kind::Standalone),
        Some(other) => Err(Error::invalid(
            format!("annotations[{CONTAINER_TYPE}]"),
            format!("unknown container type {other:?}"),
        )),
    }
}

/// Whether the spec's process gets a PID namespace of its own. One that
/// joins another's (a pod sharing its PID namespace) or the host's does
/// not: its processes outlive its init unless they are killed.
pub fn has_own_pid_namespace(spec: &Spec) -> bool {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    namespaces.into_iter().flatten().any(|ns| {
        ns.typ() == LinuxNamespaceType::Pid
            && ns.path().as_ref().is_none_or(|p| p.as_os_str().is_empty())
    })
}

/// The pod's network namespace, as the spec asks for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Network {
    /// No network namespace in the spec: the host's.
    Host,
    /// A new namespace whose loopback berth brings up.
    New,
    /// The namespace pinned at this path (CRI's CNI namespace).
    Join(PathBuf),
}

/// Who makes a task's cgroup from its `linux.cgroupsPath` (the runtime
/// options' `SystemdCgroup`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CgroupDriver {
    /// A directory the runtime makes in each hierarchy.
    #[default]
    Cgroupfs,
    /// A transient scope unit systemd makes ([`crate::cgroup::systemd`]).
    Systemd,
}

/// Everything needed to start a pod's berth-pause, validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SandboxConfig {
    pub hostname: Option<String>,
    pub network: Network,
    pub new_ipc: bool,
    pub new_uts: bool,
    pub new_pid: bool,
    /// cgroupfs path, relative to each hierarchy's root (with the systemd
    /// driver, where systemd puts the scope).
    pub cgroup: Option<String>,
    /// With the systemd driver: the scope unit pause goes into.
    #[serde(default)]
    pub scope: Option<crate::cgroup::systemd::Scope>,
    /// Kernel parameters of the pod's namespaces, as (`/proc/sys` path
    /// relative to it, value).
    pub sysctls: Vec<(String, String)>,
}

impl SandboxConfig {
    /// Reads what berth-pause needs from a sandbox spec, for the cgroupfs
    /// driver.
    pub fn from_spec(spec: &Spec) -> Result<Self> {
        Self::from_spec_with(spec, CgroupDriver::Cgroupfs)
    }

    /// Reads what berth-pause needs from a sandbox spec, its cgroups path
    /// as `driver` reads it.
    pub fn from_spec_with(spec: &Spec, driver: CgroupDriver) -> Result<Self> {
        let linux = spec.linux().as_ref();
        let namespaces = linux.and_then(|l| l.namespaces().as_ref());
        let mut config = SandboxConfig {
            hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
            network: Network::Host,
            new_ipc: false,
            new_uts: false,
            new_pid: false,
            cgroup: None,
            scope: None,
            sysctls: Vec::new(),
        };
        for (i, ns) in namespaces.into_iter().flatten().enumerate() {
            let path = ns.path().as_ref().filter(|p| !p.as_os_str().is_empty());
            let field = || format!("linux.namespaces[{i}].path");
            match (ns.typ(), path) {
                (LinuxNamespaceType::Network, Some(p)) => config.network = Network::Join(p.clone()),
                (LinuxNamespaceType::Network, None) => config.network = Network::New,
                (LinuxNamespaceType::Ipc, None) => config.new_ipc = true,
                (LinuxNamespaceType::Uts, None) => config.new_uts = true,
                (LinuxNamespaceType::Pid, None) => config.new_pid = true,
                (LinuxNamespaceType::Mount, _) => {}
                (
                    LinuxNamespaceType::Ipc | LinuxNamespaceType::Uts | LinuxNamespaceType::Pid,
                    Some(_),
                ) => {
                    return Err(Error::invalid(
                        field(),
                        "a pod sandbox holds this namespace and cannot join another's",
                    ))
                }
                (LinuxNamespaceType::Cgroup, _) => {
                    log::debug!("the pod's cgroup namespace is not held by pause");
                }
                (LinuxNamespaceType::User | LinuxNamespaceType::Time, _) => {
                    // Running pause in the host's user namespace would make the
                    // pod's mapped root the host's root: refuse instead.
                    return Err(Error::Unsupported {
                        field: format!("linux.namespaces[{i}]"),
                        reason: format!("{:?} namespaces are not supported yet", ns.typ()),
                    });
                }
            }
        }
        if config.hostname.is_some() && !config.new_uts {
            return Err(Error::invalid(
                "hostname",
                "setting a hostname needs a new uts namespace",
            ));
        }
        if let Some(path) = linux.and_then(|l| l.cgroups_path().as_ref()) {
            let path = path.to_string_lossy();
            match driver {
                CgroupDriver::Cgroupfs => config.cgroup = Some(cgroupfs_path(&path)?),
                CgroupDriver::Systemd => {
                    let scope = crate::cgroup::systemd::Scope::parse(&path)?;
                    config.cgroup = Some(scope.cgroup_path());
                    config.scope = Some(scope);
                }
            }
        }
        let mut sysctls: Vec<_> = linux
            .and_then(|l| l.sysctl().as_ref())
            .into_iter()
            .flatten()
            .collect();
        sysctls.sort();
        for (key, value) in sysctls {
            config
                .sysctls
                .push((config.sysctl_path(key)?, value.clone()));
        }
        Ok(config)
    }

    /// Where sysctl `key` is under `/proc/sys`, if it belongs to a namespace
    /// the pod has of its own, as runc checks: a pod must not change the
    /// host's kernel.
    fn sysctl_path(&self, key: &str) -> Result<String> {
        const IPC: [&str; 8] = [
            "kernel.msgmax",
            "kernel.msgmnb",
            "kernel.msgmni",
            "kernel.sem",
            "kernel.shmall",
            "kernel.shmmax",
            "kernel.shmmni",
            "kernel.shm_rmid_forced",
        ];
        let field = || format!("linux.sysctl[{key}]");
        // As sysctl.d(5) reads names: the first separator says which one
        // the key uses. kubelet writes `net/ipv4/conf/eth0.100/rp_filter` as
        // `net.ipv4.conf.eth0/100.rp_filter`: dots and slashes swap.
        let path = match key.find(['.', '/']) {
            Some(i) if key.as_bytes()[i] == b'.' => key
                .chars()
                .map(|c| match c {
                    '.' => '/',
                    '/' => '.',
                    c => c,
                })
                .collect(),
            _ => key.to_owned(),
        };
        if path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Error::invalid(field(), "not a sysctl name"));
        }
        let dotted = path.replace('/', ".");
        let owned = if dotted.starts_with("net.") {
            match &self.network {
                Network::Host => false,
                Network::New => true,
                Network::Join(netns) if is_own_netns(netns) => {
                    return Err(Error::invalid(
                        field(),
                        format!("the network namespace at {} is the host's", netns.display()),
                    ))
                }
                Network::Join(_) => true,
            }
        } else if IPC.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
            self.new_ipc
        } else if dotted == "kernel.hostname" || dotted == "kernel.domainname" {
            self.new_uts
        } else {
            return Err(Error::invalid(
                field(),
                "not a namespaced sysctl: it would change the host's kernel",
            ));
        };
        if !owned {
            return Err(Error::invalid(
                field(),
                "the pod shares this sysctl's namespace with the host",
            ));
        }
        Ok(path)
    }
}

/// Whether the namespace pinned at `path` is this process's own network
/// namespace, the host's: runc compares them the same way before it writes
/// a `net.*` sysctl. A path that cannot be read is left to the join to
/// report.
fn is_own_netns(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        std::fs::metadata("/proc/self/ns/net"),
    ) {
        (Ok(theirs), Ok(ours)) => theirs.dev() == ours.dev() && theirs.ino() == ours.ino(),
        _ => false,
    }
}

/// Validates a `linux.cgroupsPath` for the cgroupfs driver. A relative
/// path is taken from each hierarchy's root, as libcontainer takes it; a
/// systemd `slice:prefix:name` path is a literal directory name, as runc's
/// cgroupfs driver takes it (containerd 1.7 sends one for a `.slice` parent
/// even when no driver is configured).
pub(crate) fn cgroupfs_path(path: &str) -> Result<String> {
    const FIELD: &str = "linux.cgroupsPath";
    if path.is_empty() {
        return Err(Error::invalid(FIELD, "empty path"));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(Error::invalid(
            FIELD,
            format!("{path:?} leaves the cgroup root"),
        ));
    }
    Ok(format!("/{}", path.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_read_as_runc_reads_them() {
        let spec = serde_json::json!({
            "ociVersion": "1.2.0",
            "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0},
                "capabilities": {
                    "bounding": ["CAP_CHOWN", "CAP_CAP_SYS_ADMIN", "SYS_ADMIN",
                                 "cap_net_admin", "CAP_BOGUS", "CAP_KILL"],
                    "effective": ["CAP_CHOWN", "CAP_CAP_SYS_ADMIN"],
                    "permitted": ["CAP_CHOWN"]
                }}
        });
        let spec = parse(spec.to_string().as_bytes()).unwrap();
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        use oci_spec::runtime::Capability;
        let bounding = caps.bounding().as_ref().unwrap();
        assert_eq!(bounding.len(), 2, "{bounding:?}");
        assert!(bounding.contains(&Capability::Chown) && bounding.contains(&Capability::Kill));
        assert_eq!(
            caps.effective()
                .as_ref()
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            [&Capability::Chown]
        );

        let process = serde_json::json!({"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0},
            "capabilities": {"bounding": ["CAP_CAP_SYS_ADMIN", "CAP_SETUID"]}});
        let process = parse_process(process.to_string().as_bytes()).unwrap();
        let bounding = process
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .clone()
            .unwrap();
        assert_eq!(
            bounding.into_iter().collect::<Vec<_>>(),
            [Capability::Setuid]
        );
    }

    fn spec(json: serde_json::Value) -> Spec {
        let mut base = serde_json::json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"}});
        base.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        parse(base.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn malformed_spec_names_the_field() {
        let err = parse(br#"{"ociVersion": "1.0.2", "linux": {"namespaces": [{"type": 7}]}}"#)
            .unwrap_err();
        match err {
            Error::InvalidArgument { field, .. } => {
                assert_eq!(field, "spec.linux.namespaces[0].type")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            parse(b"{not json").unwrap_err(),
            Error::InvalidArgument { .. }
        ));
    }

    #[test]
    fn classifies_by_cri_annotations() {
        let sandbox = spec(serde_json::json!({"annotations": {
            CONTAINER_TYPE: "sandbox", SANDBOX_ID: "pod1"}}));
        assert_eq!(kind(&sandbox).unwrap(), Kind::Sandbox);
        assert_eq!(group_of(&sandbox), Some("pod1"));
        let app = spec(serde_json::json!({"annotations": {
            CONTAINER_TYPE: "container", SANDBOX_ID: "pod1"}}));
        assert_eq!(
            kind(&app).unwrap(),
            Kind::Container {
                sandbox_id: "pod1".into()
            }
        );
        let plain = spec(serde_json::json!({}));
        assert_eq!(kind(&plain).unwrap(), Kind::Standalone);
        assert_eq!(group_of(&plain), None);
        let grouped = spec(serde_json::json!({"annotations": {GROUP: "g"}}));
        assert_eq!(group_of(&grouped), Some("g"));
        let orphan = spec(serde_json::json!({"annotations": {CONTAINER_TYPE: "container"}}));
        assert!(matches!(kind(&orphan), Err(Error::InvalidArgument { .. })));
    }

    #[test]
    fn grouping_tolerates_a_bundle_without_config() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(grouping(dir.path(), "c1"), "c1");
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::json!({"ociVersion": "1.0.2", "annotations": {SANDBOX_ID: "pod9"}})
                .to_string(),
        )
        .unwrap();
        assert_eq!(grouping(dir.path(), "c1"), "pod9");
    }

    #[test]
    fn sandbox_config_follows_the_namespaces() {
        let s = spec(serde_json::json!({
            "hostname": "web",
            "linux": {
                "cgroupsPath": "/kubepods/pod1/abc",
                "namespaces": [
                    {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                    {"type": "network", "path": "/var/run/netns/cni-1"}
                ]
            }
        }));
        let c = SandboxConfig::from_spec(&s).unwrap();
        assert_eq!(c.network, Network::Join("/var/run/netns/cni-1".into()));
        assert!(c.new_ipc && c.new_uts && c.new_pid);
        assert_eq!(c.hostname.as_deref(), Some("web"));
        assert_eq!(c.cgroup.as_deref(), Some("/kubepods/pod1/abc"));

        let host = spec(serde_json::json!({"linux": {"namespaces": [{"type": "ipc"}]}}));
        let c = SandboxConfig::from_spec(&host).unwrap();
        assert_eq!(c.network, Network::Host);
        assert!(!c.new_pid && !c.new_uts);

        let new_net = spec(serde_json::json!({"linux": {"namespaces": [{"type": "network"}]}}));
        assert_eq!(
            SandboxConfig::from_spec(&new_net).unwrap().network,
            Network::New
        );
    }

    #[test]
    fn ids_are_containerd_identifiers() {
        for good in [
            "c",
            "e1",
            "frozen-solo-24",
            "a.b_c-d",
            &"f".repeat(64),
            &"x".repeat(76),
        ] {
            check_id("id", good).unwrap();
        }
        let long = "x".repeat(4096);
        for bad in [
            "", "a/b", "..", "../etc", ".hidden", "a..b", "a-", "a\0b", "é", &long, "a b",
        ] {
            match check_id("id", bad) {
                Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "id"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn sysctls_must_be_the_pod_s_own() {
        let pod = |sysctl: serde_json::Value, namespaces: serde_json::Value| {
            SandboxConfig::from_spec(&spec(serde_json::json!({
                "linux": {"sysctl": sysctl, "namespaces": namespaces}
            })))
        };
        let own = serde_json::json!([{"type": "network"}, {"type": "ipc"}, {"type": "uts"}]);
        let c = pod(
            serde_json::json!({
                "net.ipv4.ip_unprivileged_port_start": "0",
                "kernel.shm_rmid_forced": "1",
                "fs.mqueue.msg_max": "20",
                "net.ipv4.conf.eth0/100.rp_filter": "2",
                "net/ipv4/conf/eth0.200/rp_filter": "1",
                "kernel.hostname": "x"
            }),
            own.clone(),
        )
        .unwrap();
        assert_eq!(
            c.sysctls,
            [
                ("fs/mqueue/msg_max".to_string(), "20".to_string()),
                ("kernel/hostname".into(), "x".into()),
                ("kernel/shm_rmid_forced".into(), "1".into()),
                ("net/ipv4/conf/eth0.100/rp_filter".into(), "2".into()),
                ("net/ipv4/ip_unprivileged_port_start".into(), "0".into()),
                ("net/ipv4/conf/eth0.200/rp_filter".into(), "1".into()),
            ]
        );
        for (key, namespaces) in [
            ("kernel.panic", own.clone()),
            ("vm.swappiness", own),
            ("net.ipv4.ip_forward", serde_json::json!([{"type": "ipc"}])),
            ("kernel.sem", serde_json::json!([{"type": "network"}])),
            (
                "net.ipv4/../../vm",
                serde_json::json!([{"type": "network"}]),
            ),
            // The host's own network namespace, joined by path (runc
            // refuses the same).
            (
                "net.ipv4.ip_forward",
                serde_json::json!([{"type": "network", "path": "/proc/self/ns/net"}]),
            ),
        ] {
            match pod(serde_json::json!({ key: "1" }), namespaces) {
                Err(Error::InvalidArgument { field, .. }) => {
                    assert_eq!(field, format!("linux.sysctl[{key}]"))
                }
                other => panic!("{key}: {other:?}"),
            }
        }
        let cni = serde_json::json!([{"type": "network", "path": "/run/netns/cni-1"}]);
        assert!(pod(serde_json::json!({"net.ipv4.ip_forward": "1"}), cni).is_ok());
    }

    #[test]
    fn the_systemd_driver_puts_pause_in_a_scope() {
        let path = "kubepods-burstable-pod1.slice:cri-containerd:abc";
        let systemd = spec(serde_json::json!({"linux": {"cgroupsPath": path}}));
        let config = SandboxConfig::from_spec_with(&systemd, CgroupDriver::Systemd).unwrap();
        assert_eq!(
            config.cgroup.as_deref(),
            Some(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice\
                 /cri-containerd-abc.scope"
            )
        );
        assert_eq!(config.scope.unwrap().unit, "cri-containerd-abc.scope");
        let plain = spec(serde_json::json!({"linux": {"cgroupsPath": "/kubepods/pod1/abc"}}));
        let err = SandboxConfig::from_spec_with(&plain, CgroupDriver::Systemd).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{err}");
    }

    #[test]
    fn a_systemd_path_is_a_literal_cgroupfs_directory() {
        let systemd = spec(serde_json::json!({"linux": {"cgroupsPath": "kubepods.slice:cri:abc"}}));
        let config = SandboxConfig::from_spec(&systemd).unwrap();
        assert_eq!(config.cgroup.as_deref(), Some("/kubepods.slice:cri:abc"));
    }

    #[test]
    fn bad_sandbox_specs_are_invalid_arguments_naming_the_field() {
        let empty = spec(serde_json::json!({"linux": {"cgroupsPath": ""}}));
        match SandboxConfig::from_spec(&empty).unwrap_err() {
            Error::InvalidArgument { field, .. } => assert_eq!(field, "linux.cgroupsPath"),
            other => panic!("unexpected {other:?}"),
        }
        let escape = spec(serde_json::json!({"linux": {"cgroupsPath": "/a/../../b"}}));
        assert!(matches!(
            SandboxConfig::from_spec(&escape),
            Err(Error::InvalidArgument { .. })
        ));
        let join_pid = spec(serde_json::json!({"linux": {"namespaces": [
            {"type": "pid", "path": "/proc/1/ns/pid"}]}}));
        match SandboxConfig::from_spec(&join_pid).unwrap_err() {
            Error::InvalidArgument { field, .. } => assert_eq!(field, "linux.namespaces[0].path"),
            other => panic!("unexpected {other:?}"),
        }
        let userns = spec(serde_json::json!({"linux": {"namespaces": [{"type": "user"}]}}));
        let err = SandboxConfig::from_spec(&userns).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unimplemented, "{err}");
        let hostname_without_uts = spec(serde_json::json!({"hostname": "x"}));
        assert!(matches!(
            SandboxConfig::from_spec(&hostname_without_uts),
            Err(Error::InvalidArgument { .. })
        ));
    }
}
