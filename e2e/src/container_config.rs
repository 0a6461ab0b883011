//! App container configs for tests and `berth-cri`: a busybox command with a
//! CRI log file, in CRI's form.

use k8s_cri::v1 as cri;
use serde::Deserialize;

use crate::images::BUSYBOX;
use crate::pod_config::NamespaceMode;

const HTTP_SERVER: &str = "mkdir -p /tmp/www && echo hello-from-berth > /tmp/www/index.html \
    && hostname > /tmp/www/hostname && readlink /proc/self/ns/ipc > /tmp/www/ipc \
    && exec httpd -f -p 127.0.0.1:8080 -h /tmp/www";

const HTTP_CLIENT: &str = "for i in $(seq 100); do \
      wget -q -O - http://127.0.0.1:8080/index.html && break; sleep 0.1; done; \
    echo \"hostname $(wget -q -O - http://127.0.0.1:8080/hostname) $(hostname)\"; \
    echo \"ipc $(wget -q -O - http://127.0.0.1:8080/ipc) $(readlink /proc/self/ns/ipc)\"";

/// A container to create in a pod.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// The command (the image has no entrypoint).
    pub command: Vec<String>,
    /// The command's arguments, after it.
    pub args: Vec<String>,
    /// Relative to the pod's log directory.
    pub log_path: String,
    /// Whether the container has a PID namespace of its own (kubelet's
    /// default) or shares the pod's.
    pub pid: NamespaceMode,
    /// The memory limit in bytes; 0 for none.
    pub memory_limit: i64,
    /// CPU shares, as kubelet derives them from the CPU request; 0 for
    /// CRI's default.
    pub cpu_shares: i64,
    /// The CFS quota per 100 ms period, in microseconds; 0 for none.
    pub cpu_quota: i64,
    /// Whether the process runs on a terminal.
    pub tty: bool,
}

impl ContainerSpec {
    /// A busybox container named `name` that runs `sh -c script`, logging to
    /// `<name>.log` in the pod's log directory.
    pub fn shell(name: &str, script: &str) -> Self {
        ContainerSpec {
            name: name.into(),
            image: BUSYBOX.into(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            args: Vec::new(),
            log_path: format!("{name}.log"),
            pid: NamespaceMode::Container,
            memory_limit: 0,
            cpu_shares: 0,
            cpu_quota: 0,
            tty: false,
        }
    }

    /// busybox httpd on 127.0.0.1:8080, serving `hello-from-berth` at
    /// /index.html and its hostname and IPC namespace at /hostname and /ipc.
    pub fn http_server(name: &str) -> Self {
        Self::shell(name, HTTP_SERVER)
    }

    /// Fetches the page of [`ContainerSpec::http_server`] over 127.0.0.1
    /// (retrying while the server starts), then prints `hostname <server's>
    /// <own>` and `ipc <server's> <own>`.
    pub fn http_client(name: &str) -> Self {
        Self::shell(name, HTTP_CLIENT)
    }

    /// The process runs on a terminal (CRI's `tty`).
    pub fn tty(mut self) -> Self {
        self.tty = true;
        self
    }

    /// The container may use at most `bytes` of memory.
    pub fn memory_limit(mut self, bytes: i64) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// The container has `shares` CPU shares.
    pub fn cpu_shares(mut self, shares: i64) -> Self {
        self.cpu_shares = shares;
        self
    }

    /// The container may use `quota` µs of CPU time per 100 ms.
    pub fn cpu_quota(mut self, quota: i64) -> Self {
        self.cpu_quota = quota;
        self
    }

    /// The container shares the pod's PID namespace, as kubelet asks for
    /// pods with `shareProcessNamespace`.
    pub fn share_pod_pids(mut self) -> Self {
        self.pid = NamespaceMode::Pod;
        self
    }

    /// Parses crictl-style `container-config.json`: snake_case keys, every
    /// field optional; the fields berth-cri knows (name, image, command,
    /// args, log_path, tty, the memory limit, CPU shares and quota and the PID
    /// namespace mode).
    pub fn from_json(text: &str) -> serde_json::Result<ContainerSpec> {
        let file: ConfigFile = serde_json::from_str(text)?;
        let linux = file.linux;
        Ok(ContainerSpec {
            name: file.metadata.name,
            image: file.image.image,
            command: file.command,
            args: file.args,
            log_path: file.log_path,
            pid: linux
                .security_context
                .namespace_options
                .pid
                .unwrap_or(NamespaceMode::Container),
            memory_limit: linux.resources.memory_limit_in_bytes,
            cpu_shares: linux.resources.cpu_shares,
            cpu_quota: linux.resources.cpu_quota,
            tty: file.tty,
        })
    }

    /// The CRI `ContainerConfig`.
    pub fn to_cri(&self) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: self.name.clone(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: self.command.clone(),
            args: self.args.clone(),
            log_path: self.log_path.clone(),
            tty: self.tty,
            // Kubelet always names the namespaces: without them CRI puts the
            // container in the pod's PID namespace.
            linux: Some(cri::LinuxContainerConfig {
                resources: (self.memory_limit > 0 || self.cpu_shares > 0 || self.cpu_quota > 0)
                    .then(|| cri::LinuxContainerResources {
                        memory_limit_in_bytes: self.memory_limit,
                        cpu_shares: self.cpu_shares,
                        cpu_quota: self.cpu_quota,
                        cpu_period: if self.cpu_quota > 0 { 100_000 } else { 0 },
                        ..Default::default()
                    }),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Pod as i32,
                        pid: self.pid.to_cri() as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}

/// What [`ContainerSpec::from_json`] reads.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ConfigFile {
    metadata: NameFile,
    image: ImageFile,
    command: Vec<String>,
    args: Vec<String>,
    log_path: String,
    tty: bool,
    linux: LinuxFile,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NameFile {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ImageFile {
    image: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LinuxFile {
    resources: ResourcesFile,
    security_context: SecurityFile,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResourcesFile {
    memory_limit_in_bytes: i64,
    cpu_shares: i64,
    cpu_quota: i64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SecurityFile {
    namespace_options: NamespacesFile,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NamespacesFile {
    pid: Option<NamespaceMode>,
}

/// The lines a container wrote, from a CRI log file (`<time> <stream> <tag>
/// <text>` per line), full lines only.
pub fn log_lines(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(4, ' ');
            let _time = parts.next()?;
            let stream = parts.next()?;
            let _tag = parts.next()?;
            Some((stream.to_owned(), parts.next().unwrap_or("").to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cri_log_lines() {
        let log = "2026-11-23T10:00:00.000000000Z stdout F hello world\n\
                   2026-11-23T10:00:00.000000001Z stderr F \n";
        assert_eq!(
            log_lines(log),
            vec![
                ("stdout".to_string(), "hello world".to_string()),
                ("stderr".to_string(), String::new())
            ]
        );
    }

    #[test]
    fn reads_crictl_container_configs() {
        let spec = ContainerSpec::from_json(
            r#"{"metadata": {"name": "web"}, "image": {"image": "busybox"},
                "command": ["httpd"], "args": ["-f"], "log_path": "web.0.log",
                "linux": {"resources": {"memory_limit_in_bytes": 1048576},
                          "security_context": {"namespace_options": {"pid": 0}}}}"#,
        )
        .unwrap();
        assert_eq!(spec.name, "web");
        assert_eq!(spec.image, "busybox");
        assert_eq!(
            (spec.command, spec.args),
            (vec!["httpd".to_string()], vec!["-f".to_string()])
        );
        assert_eq!(spec.log_path, "web.0.log");
        assert_eq!(spec.memory_limit, 1 << 20);
        assert_eq!(spec.pid, NamespaceMode::Pod);
        let bare = ContainerSpec::from_json(r#"{"metadata": {"name": "x"}}"#).unwrap();
        assert_eq!(bare.pid, NamespaceMode::Container, "kubelet's default");
        assert!(!bare.tty);
    }

    #[test]
    fn a_shell_container_logs_under_its_name() {
        let c = ContainerSpec::shell("web", "echo hi").to_cri();
        assert_eq!(c.command, ["sh", "-c", "echo hi"]);
        assert_eq!(c.log_path, "web.log");
        assert_eq!(c.image.unwrap().image, BUSYBOX);
    }
}
