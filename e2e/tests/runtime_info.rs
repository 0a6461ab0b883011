#![cfg(feature = "e2e")]
//! containerd 2.x learns what berth is through the shim's `-info`: asked
//! over its introspection API, containerd 2.1 runs
//! `containerd-shim-berth-v2 -info` with the runtime options on stdin and
//! answers with the RuntimeInfo the shim printed: berth's name, the version
//! and revision `-v` shows, the options given back, and the OCI features
//! document; options the shim cannot read are refused by name. Nothing is
//! started and no state is left (the scenario frame checks the state root
//! and the instance's processes).

use std::process::Command;

use anyhow::{ensure, Context, Result};
use berth_e2e::introspection::{runtime_info, RuntimeOptions};
use berth_e2e::{paths, scenario, Containerd, Version};

const FEATURES_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

async fn info_answers_through_containerd(cd: &Containerd) -> Result<()> {
    let options = RuntimeOptions {
        config_body: b"SystemdCgroup = false\n".to_vec(),
        ..Default::default()
    }
    .to_any();
    let info = runtime_info(
        &cd.instance().grpc_socket(),
        "io.containerd.berth.v2",
        Some(options.clone()),
    )
    .await?;
    ensure!(
        info.name == "io.containerd.berth.v2",
        "name {:?}",
        info.name
    );
    let version = info.version.context("no version")?;
    let shown = Command::new(paths::shim_binary()).arg("-v").output()?;
    let shown = String::from_utf8_lossy(&shown.stdout);
    for (what, value) in [
        ("Version:", &version.version),
        ("Revision:", &version.revision),
    ] {
        ensure!(
            !value.is_empty()
                && shown
                    .lines()
                    .any(|l| l.split_whitespace().eq([what, value.as_str()])),
            "-info's {what} {value:?} is not what -v shows:\n{shown}"
        );
    }
    ensure!(
        info.options.as_ref() == Some(&options),
        "the options came back as {:?}",
        info.options
    );
    let features = info.features.context("no features")?;
    ensure!(
        features.type_url == FEATURES_TYPE,
        "features are a {}",
        features.type_url
    );
    let features: serde_json::Value = serde_json::from_slice(&features.value)?;
    let rro = features["mountOptions"]
        .as_array()
        .is_some_and(|o| o.iter().any(|o| o == "rro"));
    ensure!(rro, "no rro among the mount options: {features}");
    ensure!(
        features["linux"]["mountExtensions"]["idmap"]["enabled"] == false,
        "idmap mounts are claimed: {features}"
    );

    // Options berth cannot read are refused, by name, as a create with them
    // would be.
    let bad = RuntimeOptions {
        config_body: b"SystemdCgroup = 'yes'\n".to_vec(),
        ..Default::default()
    }
    .to_any();
    let refused = runtime_info(
        &cd.instance().grpc_socket(),
        "io.containerd.berth.v2",
        Some(bad),
    )
    .await;
    let why = format!(
        "{:#}",
        refused.err().context("-info took a bad SystemdCgroup")?
    );
    ensure!(
        why.contains("SystemdCgroup must be a boolean"),
        "the refusal does not name the key: {why}"
    );

    // Without options, stdin is empty.
    let bare = runtime_info(&cd.instance().grpc_socket(), "io.containerd.berth.v2", None).await?;
    ensure!(
        bare.options.is_none(),
        "options from nowhere: {:?}",
        bare.options
    );
    Ok(())
}

/// containerd 1.7 has no `-info` caller: its PluginInfo is not implemented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_2_1() -> Result<()> {
    scenario::run(Version::V2_1, info_answers_through_containerd).await
}
