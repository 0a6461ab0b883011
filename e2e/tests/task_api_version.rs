#![cfg(feature = "e2e")]
//! Each containerd gets the task API version it accepts: 3 from 2.x (which then
//! calls containerd.task.v3.Task), 2 from 1.7 (which refuses 3). containerd keeps
//! the shim's bootstrap reply in the task's bundle; the pod being ready proves the
//! API it chose works.

use anyhow::{ensure, Context, Result};
use berth_e2e::containerd_config::BERTH_HANDLER;
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{e2e_test, scenario, Containerd, Version};

async fn announces_the_version_containerd_accepts(cd: &Containerd) -> Result<()> {
    let config = scenario::pod_config(cd, "api")?;
    let id = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
    scenario::expect_ready(cd, &id).await?;
    match cd.version() {
        // containerd 2.x keeps the shim's bootstrap reply in the task's bundle.
        Version::V2_1 => {
            let path = cd
                .instance()
                .state()
                .join("io.containerd.runtime.v2.task/k8s.io")
                .join(&id)
                .join("bootstrap.json");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("read {}", path.display()))?;
            let reply: serde_json::Value =
                serde_json::from_str(&text).context("parse bootstrap.json")?;
            ensure!(
                reply["version"] == 3 && reply["protocol"] == "ttrpc",
                "containerd 2.1 was answered {reply}, expected task API version 3"
            );
            let address = reply["address"].as_str().unwrap_or_default();
            ensure!(
                address.starts_with(&format!("unix://{}", cd.berth_state_root().display())),
                "the shim's socket {address} is not under the instance's state root"
            );
        }
        // containerd 1.7 keeps no reply, and refuses a shim announcing 3 with
        // "unsupported shim version": the ready pod shows it was answered 2.
        Version::V1_7 => {
            let log = std::fs::read_to_string(cd.log_path())?;
            ensure!(
                !log.contains("unsupported shim version"),
                "containerd 1.7 refused the shim's version"
            );
        }
    }
    let trace = PodTrace::capture(cd, &id, "").await?;
    scenario::remove_and_check(cd, &trace).await
}

e2e_test!(task_api_version, announces_the_version_containerd_accepts);
