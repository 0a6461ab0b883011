//! The CNI network of one instance: its own bridge, subnet and IPAM data directory.
//!
//! containerd's CRI sets up the pod's loopback itself (go-cni's `WithLoNetwork`, using
//! the `loopback` plugin from the same `bin_dirs`), so the conflist chains only
//! `bridge` (with `host-local` IPAM) and `portmap`.

use std::fs;

use anyhow::{Context, Result};
use serde_json::json;

use crate::instance::Instance;

/// Where containerd looks for CNI plugins (Debian's containernetworking-plugins).
pub const PLUGIN_DIR: &str = "/usr/lib/cni";

/// The conflist of `instance`'s network.
pub fn conflist(instance: &Instance) -> serde_json::Value {
    json!({
        "cniVersion": "1.0.0",
        "name": instance.network_name(),
        "plugins": [
            {
                "type": "bridge",
                "bridge": instance.bridge(),
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": instance.subnet() }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": instance.cni_data_dir(),
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    })
}

/// Writes the conflist into the instance's CNI conf dir, after checking the plugins
/// it names exist.
pub fn write(instance: &Instance) -> Result<()> {
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        let path = std::path::Path::new(PLUGIN_DIR).join(plugin);
        anyhow::ensure!(
            path.exists(),
            "CNI plugin {} is missing: run `make deps` (containernetworking-plugins)",
            path.display()
        );
    }
    let path = instance.cni_conf_dir().join("10-berth-e2e.conflist");
    let text = serde_json::to_string_pretty(&conflist(instance))?;
    fs::write(&path, text).with_context(|| format!("write {}", path.display()))
}
