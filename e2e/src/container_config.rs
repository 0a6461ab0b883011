//! App container configs for tests and `berth-cri`: a busybox command with a
//! CRI log file, in CRI's form.

use k8s_cri::v1 as cri;

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
    /// The command and its arguments (the image has no entrypoint).
    pub command: Vec<String>,
    /// Relative to the pod's log directory.
    pub log_path: String,
    /// Whether the container has a PID namespace of its own (kubelet's
    /// default) or shares the pod's.
    pub pid: NamespaceMode,
    /// The memory limit in bytes; 0 for none.
    pub memory_limit: i64,
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
            log_path: format!("{name}.log"),
            pid: NamespaceMode::Container,
            memory_limit: 0,
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

    /// The container shares the pod's PID namespace, as kubelet asks for
    /// pods with `shareProcessNamespace`.
    pub fn share_pod_pids(mut self) -> Self {
        self.pid = NamespaceMode::Pod;
        self
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
            log_path: self.log_path.clone(),
            tty: self.tty,
            // Kubelet always names the namespaces: without them CRI puts the
            // container in the pod's PID namespace.
            linux: Some(cri::LinuxContainerConfig {
                resources: (self.memory_limit > 0).then(|| cri::LinuxContainerResources {
                    memory_limit_in_bytes: self.memory_limit,
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
    fn a_shell_container_logs_under_its_name() {
        let c = ContainerSpec::shell("web", "echo hi").to_cri();
        assert_eq!(c.command, ["sh", "-c", "echo hi"]);
        assert_eq!(c.log_path, "web.log");
        assert_eq!(c.image.unwrap().image, BUSYBOX);
    }
}
