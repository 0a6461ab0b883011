use berth_proto::protobuf::well_known_types::any::Any;
use berth_proto::protobuf::CodedOutputStream;
use berth_sandbox::spec::{CgroupDriver, Kind, Network, SandboxConfig};

use super::*;

/// A message of `(field, bytes)` length-delimited fields and
/// `(field, value)` varints, encoded as protobuf does.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn bytes(mut self, field: u32, value: &[u8]) -> Self {
        let mut out = CodedOutputStream::vec(&mut self.0);
        out.write_bytes(field, value).unwrap();
        out.flush().unwrap();
        drop(out);
        self
    }

    fn string(self, field: u32, value: &str) -> Self {
        self.bytes(field, value.as_bytes())
    }

    fn message(self, field: u32, value: Message) -> Self {
        self.bytes(field, &value.0)
    }

    fn varint(mut self, field: u32, value: u64) -> Self {
        let mut out = CodedOutputStream::vec(&mut self.0);
        out.write_uint64(field, value).unwrap();
        out.flush().unwrap();
        drop(out);
        self
    }
}

fn sysctl(key: &str, value: &str) -> Message {
    Message::default().string(1, key).string(2, value)
}

/// A config as kubelet sends it: metadata, hostname, log directory,
/// labels, and the Linux part with namespace options and sysctls.
fn kubelet_config(network: u64, pid: u64, ipc: u64) -> Vec<u8> {
    let namespaces = Message::default()
        .varint(1, network)
        .varint(2, pid)
        .varint(3, ipc);
    let security = Message::default().message(1, namespaces).varint(6, 0);
    let linux = Message::default()
        .string(1, "/kubepods/besteffort/pod1234")
        .message(2, security)
        .message(3, sysctl("net.ipv4.ip_unprivileged_port_start", "0"))
        .message(3, sysctl("kernel.shm_rmid_forced", "1"));
    let metadata = Message::default().string(1, "web").string(2, "uid-1");
    Message::default()
        .message(1, metadata)
        .string(2, "web-0")
        .string(3, "/var/log/pods/x")
        .message(6, Message::default().string(1, "app").string(2, "web"))
        .message(8, linux)
        .0
}

#[test]
fn reads_what_shapes_the_pod() {
    let config = PodConfig::parse(&kubelet_config(0, 1, 0)).unwrap();
    assert_eq!(config.hostname, "web-0");
    assert_eq!(config.cgroup_parent, "/kubepods/besteffort/pod1234");
    assert_eq!(config.network, NamespaceMode::Pod);
    assert_eq!(config.pid, NamespaceMode::Container);
    assert_eq!(config.ipc, NamespaceMode::Pod);
    assert_eq!(config.sysctls.len(), 2);
    assert_eq!(config.sysctls["kernel.shm_rmid_forced"], "1");
}

#[test]
fn an_empty_config_is_a_pod_of_its_own_namespaces() {
    assert_eq!(PodConfig::parse(&[]).unwrap(), PodConfig::default());
}

#[test]
fn the_spec_is_what_pause_is_started_from() {
    let config = PodConfig::parse(&kubelet_config(0, 0, 0)).unwrap();
    let spec = config.sandbox_spec("sb1", "/var/run/netns/cni-1").unwrap();
    assert_eq!(berth_sandbox::spec::kind(&spec).unwrap(), Kind::Sandbox);
    let pause = SandboxConfig::from_spec(&spec).unwrap();
    assert_eq!(pause.hostname.as_deref(), Some("web-0"));
    assert_eq!(
        pause.network,
        Network::Join(PathBuf::from("/var/run/netns/cni-1"))
    );
    assert!(pause.new_ipc && pause.new_uts && pause.new_pid);
    assert_eq!(
        pause.cgroup.as_deref(),
        Some("/kubepods/besteffort/pod1234/sb1")
    );
    assert_eq!(pause.sysctls.len(), 2);
    // Nothing of oci-spec's defaults: no process, mounts or root.
    assert!(spec.process().is_none() && spec.mounts().is_none() && spec.root().is_none());
}

#[test]
fn the_systemd_driver_gets_a_scope_in_the_pod_slice() {
    let config = PodConfig {
        cgroup_parent: "kubepods-besteffort-pod1234.slice".into(),
        ..Default::default()
    };
    let spec = config.sandbox_spec("sb1", "/run/netns/x").unwrap();
    let path = spec.linux().as_ref().unwrap().cgroups_path().clone();
    assert_eq!(
        path,
        Some(PathBuf::from(
            "kubepods-besteffort-pod1234.slice:cri-containerd:sb1"
        ))
    );
    SandboxConfig::from_spec_with(&spec, CgroupDriver::Systemd).unwrap();
}

#[test]
fn a_slice_parent_gives_the_path_podsandbox_mode_gets() {
    // containerd's rule: a slice parent makes a systemd path, whichever
    // driver then reads it (cgroupfs takes it literally, as runc does).
    let config = PodConfig {
        cgroup_parent: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice"
            .into(),
        ..Default::default()
    };
    let spec = config.sandbox_spec("sb1", "/run/netns/x").unwrap();
    let path = spec.linux().as_ref().unwrap().cgroups_path().clone();
    assert_eq!(
        path,
        Some(PathBuf::from(
            "kubepods-besteffort-pod1.slice:cri-containerd:sb1"
        ))
    );
    let pause = SandboxConfig::from_spec_with(&spec, CgroupDriver::Cgroupfs).unwrap();
    assert_eq!(
        pause.cgroup.as_deref(),
        Some("/kubepods-besteffort-pod1.slice:cri-containerd:sb1")
    );
}

#[test]
fn only_the_nodes_user_namespace() {
    let userns = |mode: u64| {
        let namespaces = Message::default().message(5, Message::default().varint(1, mode));
        let linux = Message::default().message(2, Message::default().message(1, namespaces));
        Message::default().message(8, linux).0
    };
    assert!(PodConfig::parse(&userns(2)).is_ok());
    for mode in [0, 1] {
        let err = PodConfig::parse(&userns(mode)).unwrap_err();
        assert!(matches!(err, Error::Unimplemented(_)), "{err}");
        assert!(err.to_string().contains("userns_options"), "{err}");
    }
}

#[test]
fn host_namespaces_are_the_nodes() {
    let config = PodConfig::parse(&kubelet_config(2, 2, 2)).unwrap();
    let spec = config.sandbox_spec("sb1", "").unwrap();
    // The hostname is the node's: not set in a UTS namespace it lacks.
    assert_eq!(spec.hostname(), &None);
    let pause = SandboxConfig::from_spec_with(&spec, CgroupDriver::Cgroupfs);
    // The pod's sysctls name net and ipc keys: the node's are not the pod's.
    let err = pause.unwrap_err().to_string();
    assert!(err.contains("sysctl"), "{err}");
    let bare = PodConfig {
        network: NamespaceMode::Node,
        pid: NamespaceMode::Node,
        ipc: NamespaceMode::Node,
        ..Default::default()
    };
    let spec = bare.sandbox_spec("sb1", "").unwrap();
    let pause = SandboxConfig::from_spec(&spec).unwrap();
    assert_eq!(pause.network, Network::Host);
    assert!(!pause.new_ipc && !pause.new_uts && !pause.new_pid);
}

#[test]
fn a_pod_network_needs_its_netns() {
    let err = PodConfig::default().sandbox_spec("sb1", "").unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)));
    assert!(err.to_string().contains("netns_path"), "{err}");
}

#[test]
fn namespace_modes_a_pod_cannot_have_are_refused_by_name() {
    for (bytes, field) in [
        (kubelet_config(1, 0, 0), "network"),
        (kubelet_config(0, 0, 3), "ipc"),
        (kubelet_config(0, 3, 0), "pid"),
    ] {
        let err = PodConfig::parse(&bytes)
            .unwrap()
            .sandbox_spec("sb1", "/run/netns/x")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("namespace_options.{field}")),
            "{err}"
        );
    }
    let err = PodConfig::parse(&kubelet_config(9, 0, 0)).unwrap_err();
    assert!(
        err.to_string().contains("unknown namespace mode 9"),
        "{err}"
    );
}

#[test]
fn garbage_is_an_invalid_argument() {
    for bytes in [&[0x12, 0x05, b'a'][..], &[0x0f], &[0x42, 0x02, 0xff, 0xff]] {
        let err = PodConfig::parse(bytes).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
}

#[test]
fn the_any_must_name_the_pod_config() {
    let value = kubelet_config(0, 0, 0);
    for url in [
        TYPE_NAME.to_owned(),
        format!("type.googleapis.com/{TYPE_NAME}"),
    ] {
        let any = Any {
            type_url: url,
            value: value.clone(),
            ..Default::default()
        };
        assert_eq!(from_any(&any).unwrap().hostname, "web-0");
    }
    let any = Any {
        type_url: "runtime.v1.ContainerConfig".into(),
        value,
        ..Default::default()
    };
    let err = from_any(&any).unwrap_err().to_string();
    assert!(err.contains("runtime.v1.ContainerConfig"), "{err}");
}
