//! The files a pod's containers share: `/etc/hostname`, `/etc/hosts` and
//! `/etc/resolv.conf`.
//!
//! In podsandbox mode CRI writes them when it makes the pause container and
//! binds them into each container it creates. For a pod of a shim
//! sandboxer containerd 2.1 writes none, and binds them only where they
//! exist, so without berth a shim-mode container would keep its image's
//! files: no pod hostname file, and no cluster DNS. berth, the pod's
//! sandbox manager there, writes them into the pod's directory from the
//! PodSandboxConfig with CRI's contents, and binds each into every
//! container of the pod whose spec mounts nothing at that path.

use std::path::Path;

use crate::error::{Error, Result};
use crate::wire::{fields, string, Field};

/// The pod files' names, in the pod's `etc` directory and in a container's
/// `/etc`.
pub const NAMES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];

/// The pod directory's subdirectory holding them.
pub const DIR: &str = "etc";

/// CRI's `DNSConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// A value that goes into a line of a file: one line, no NUL.
fn one_line(what: &str, value: String) -> Result<String> {
    if value.contains(['\n', '\r', '\0']) {
        return Err(Error::InvalidArgument(format!(
            "{what}: {value:?} is not one line"
        )));
    }
    Ok(value)
}

impl Dns {
    /// Reads a serialized `runtime.v1.DNSConfig`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut dns = Dns::default();
        for field in fields("dns_config", bytes)? {
            let (list, name) = match field {
                Field::Bytes(1, b) => (&mut dns.servers, ("dns_config.servers", b)),
                Field::Bytes(2, b) => (&mut dns.searches, ("dns_config.searches", b)),
                Field::Bytes(3, b) => (&mut dns.options, ("dns_config.options", b)),
                _ => continue,
            };
            let (what, b) = name;
            list.push(one_line(what, string(what, b)?)?);
        }
        Ok(dns)
    }

    /// `/etc/resolv.conf` as CRI writes it from the config, `None` when the
    /// config says nothing (the node's is used).
    pub fn resolv_conf(&self) -> Option<String> {
        if self.servers.is_empty() && self.searches.is_empty() && self.options.is_empty() {
            return None;
        }
        let mut out = String::new();
        if !self.searches.is_empty() {
            out += &format!("search {}\n", self.searches.join(" "));
        }
        for server in &self.servers {
            out += &format!("nameserver {server}\n");
        }
        if !self.options.is_empty() {
            out += &format!("options {}\n", self.options.join(" "));
        }
        Some(out)
    }
}

/// The contents of the three files, in [`NAMES`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFiles {
    pub hostname: Vec<u8>,
    pub hosts: Vec<u8>,
    pub resolv_conf: Vec<u8>,
}

impl PodFiles {
    /// CRI's contents for a pod of `hostname` (empty: the node's, as for
    /// a host-network pod) and `dns`, with the node's files read from
    /// `host_etc`: its `hosts`, and its `resolv.conf` when `dns` says
    /// nothing.
    pub fn for_pod(hostname: &str, dns: &Dns, host_etc: &Path) -> Result<Self> {
        let hostname = if hostname.is_empty() {
            nix::unistd::gethostname()
                .map_err(|e| Error::Internal(format!("the node's hostname: {e}")))?
                .to_string_lossy()
                .into_owned()
        } else {
            one_line("hostname", hostname.to_owned())?
        };
        let read = |name: &str| {
            let path = host_etc.join(name);
            std::fs::read(&path)
                .map_err(|e| Error::Internal(format!("the node's {}: {e}", path.display())))
        };
        let resolv_conf = match dns.resolv_conf() {
            Some(text) => text.into_bytes(),
            None => read("resolv.conf")?,
        };
        Ok(PodFiles {
            hostname: format!("{hostname}\n").into_bytes(),
            hosts: read("hosts")?,
            resolv_conf,
        })
    }

    /// Each file's name and content.
    pub fn files(&self) -> [(&'static str, &[u8]); 3] {
        [
            (NAMES[0], &self.hostname),
            (NAMES[1], &self.hosts),
            (NAMES[2], &self.resolv_conf),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DNSConfig on the wire: each (field, value) as a string field.
    fn wire(entries: &[(u8, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (field, value) in entries {
            out.push(field << 3 | 2);
            out.push(value.len() as u8);
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    #[test]
    fn resolv_conf_is_written_as_cri_writes_it() {
        let dns = Dns::parse(&wire(&[
            (1, "10.96.0.10"),
            (2, "default.svc.cluster.local"),
            (2, "svc.cluster.local"),
            (3, "ndots:5"),
            (1, "10.96.0.11"),
        ]))
        .unwrap();
        assert_eq!(
            dns.resolv_conf().unwrap(),
            "search default.svc.cluster.local svc.cluster.local\n\
             nameserver 10.96.0.10\nnameserver 10.96.0.11\noptions ndots:5\n"
        );
        assert_eq!(Dns::default().resolv_conf(), None);
    }

    #[test]
    fn a_value_that_would_add_a_line_is_refused() {
        let err = Dns::parse(&wire(&[(1, "10.0.0.1\nnameserver 6.6.6.6")])).unwrap_err();
        assert!(err.to_string().contains("dns_config.servers"), "{err}");
        let host = tempfile::tempdir().unwrap();
        let err = PodFiles::for_pod("a\nb", &Dns::default(), host.path()).unwrap_err();
        assert!(err.to_string().contains("hostname"), "{err}");
    }

    #[test]
    fn the_nodes_files_fill_in_what_the_pod_does_not_say() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
        std::fs::write(host.path().join("resolv.conf"), "nameserver 192.0.2.53\n").unwrap();
        let files = PodFiles::for_pod("web-0", &Dns::default(), host.path()).unwrap();
        assert_eq!(files.hostname, b"web-0\n");
        assert_eq!(files.hosts, b"127.0.0.1 localhost\n");
        assert_eq!(files.resolv_conf, b"nameserver 192.0.2.53\n");
        let dns = Dns {
            servers: vec!["10.96.0.10".into()],
            ..Default::default()
        };
        let node = PodFiles::for_pod("", &dns, host.path()).unwrap();
        let name = nix::unistd::gethostname().unwrap();
        assert_eq!(
            node.hostname,
            format!("{}\n", name.to_string_lossy()).into_bytes()
        );
        assert_eq!(node.resolv_conf, b"nameserver 10.96.0.10\n");
        let missing = PodFiles::for_pod("web-0", &Dns::default(), &host.path().join("no"));
        assert!(missing.is_err());
    }
}
