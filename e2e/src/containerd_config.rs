//! containerd's configuration for one instance, in the dialect of each version:
//! `version = 3` for 2.x (CRI split into `io.containerd.cri.v1.images` and
//! `io.containerd.cri.v1.runtime`) and `version = 2` for 1.7 (one
//! `io.containerd.grpc.v1.cri` plugin).
//!
//! The knobs that matter:
//! - own `root`, `state`, gRPC, ttrpc and NRI socket paths, `opt` dir: no collision with
//!   other instances or a system containerd;
//! - `restrict_oom_score_adj = true`: this machine cannot lower oom_score_adj;
//! - `netns_mounts_under_state_dir = true`: pod netns are pinned under the instance's
//!   state dir, not the shared `/run/netns`;
//! - the pause image pinned to the locally built [`crate::images::PAUSE`];
//! - runtimes `runc` (containerd's Go shim, own runc `Root`) and `berth`, and
//!   berth again under handlers that each set some runtime options; runc
//!   again with the systemd cgroup driver.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cni;
use crate::instance::Instance;
use crate::version::Version;

/// CRI runtime handler of berth.
pub const BERTH_HANDLER: &str = "berth";
/// CRI runtime handler of containerd's runc shim (the baseline).
pub const RUNC_HANDLER: &str = "runc";
/// containerd's runc shim with `SystemdCgroup = true`: the baseline of the
/// bench's systemd mode.
pub const RUNC_SYSTEMD_HANDLER: &str = "runc-systemd";
/// berth with runtime options: stdio pipes owned by [`OPTIONS_IO_ID`], no
/// session keyring per container, a state root of its own
/// ([`Instance::options_state_root`]) and a key berth does not know.
pub const BERTH_OPTIONS_HANDLER: &str = "berth-options";
/// berth with `SystemdCgroup = true`.
pub const BERTH_SYSTEMD_HANDLER: &str = "berth-systemd";
/// berth with `ShimCgroup` set to [`Instance::shim_cgroup`].
pub const BERTH_SHIM_CGROUP_HANDLER: &str = "berth-shim-cgroup";
/// berth with `LogLevel = 'warn'`: its shims log warnings and errors alone,
/// though containerd runs with `-debug`.
pub const BERTH_QUIET_HANDLER: &str = "berth-quiet";
/// The berth handlers with an options table, in the mode of [`BERTH_HANDLER`].
pub const BERTH_OPTION_HANDLERS: [&str; 4] = [
    BERTH_OPTIONS_HANDLER,
    BERTH_SYSTEMD_HANDLER,
    BERTH_QUIET_HANDLER,
    BERTH_SHIM_CGROUP_HANDLER,
];
/// berth in shim mode (`sandboxer = 'shim'`), beside [`BERTH_HANDLER`] in
/// podsandbox mode on containerd 2.x: the bench compares the two.
pub const BERTH_SHIM_MODE_HANDLER: &str = "berth-shim";
/// The `IoUid` and `IoGid` of [`BERTH_OPTIONS_HANDLER`].
pub const OPTIONS_IO_ID: u32 = 1000;
/// The unknown key in [`BERTH_OPTIONS_HANDLER`]'s options.
pub const OPTIONS_UNKNOWN_KEY: &str = "BerthE2eUnknown";
/// berth's shim runtime type: containerd looks for `containerd-shim-berth-v2`.
pub const BERTH_RUNTIME_TYPE: &str = "io.containerd.berth.v2";
/// What to put in the config besides the instance's paths.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Image reference CRI uses as the pod sandbox (pause) image.
    pub pause_image: String,
    /// Files containerd imports (globs). With any, the `berth` runtime is
    /// theirs to register: the config leaves its own entry out. Version 3
    /// configs (containerd 2.1) only.
    pub imports: Vec<PathBuf>,
    /// The sandboxer of the `berth` handler and of the berth handlers with
    /// options ([`BERTH_SHIM_MODE_HANDLER`] is always in shim mode).
    pub sandboxer: Sandboxer,
}

/// Who drives a handler's pods (containerd 2.x's `sandboxer`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sandboxer {
    /// containerd's podsandbox controller: a pause container, through the
    /// Task API (containerd 1.7 knows only this).
    #[default]
    Podsandbox,
    /// The shim's Sandbox API: berth is the pod sandbox manager.
    Shim,
}

impl Sandboxer {
    /// Its name in containerd's config.
    pub fn name(self) -> &'static str {
        match self {
            Sandboxer::Podsandbox => "podsandbox",
            Sandboxer::Shim => "shim",
        }
    }
}

/// Renders the config file of `instance` for `version`.
pub fn render(version: Version, instance: &Instance, settings: &Settings) -> String {
    match version {
        Version::V2_1 => render_v3(instance, settings),
        Version::V1_7 => render_v2(instance, settings),
    }
}

/// Plugins that only slow start-up down or touch global paths.
fn disabled_plugins(version: Version) -> &'static [&'static str] {
    match version {
        Version::V2_1 => &[
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.snapshotter.v1.blockfile",
            "io.containerd.snapshotter.v1.erofs",
            "io.containerd.differ.v1.erofs",
            "io.containerd.tracing.processor.v1.otlp",
            "io.containerd.internal.v1.tracing",
        ],
        Version::V1_7 => &[
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.snapshotter.v1.zfs",
            "io.containerd.snapshotter.v1.blockfile",
            "io.containerd.tracing.processor.v1.otlp",
            "io.containerd.internal.v1.tracing",
        ],
    }
}

fn header(
    out: &mut String,
    config_version: u32,
    version: Version,
    instance: &Instance,
    imports: &[PathBuf],
) {
    let disabled: Vec<String> = disabled_plugins(version).iter().map(|p| q(p)).collect();
    let imports: Vec<String> = imports.iter().map(|p| qp(p)).collect();
    let _ = write!(
        out,
        r#"# containerd {v} for berth-e2e instance {slot} (generated)
version = {config_version}
root = {root}
state = {state}
disabled_plugins = [{disabled}]
{imports}
[grpc]
  address = {grpc}

[ttrpc]
  address = {ttrpc}

"#,
        v = version.as_str(),
        slot = instance.slot(),
        root = qp(&instance.root()),
        state = qp(&instance.state()),
        disabled = disabled.join(", "),
        imports = if imports.is_empty() {
            String::new()
        } else {
            format!("imports = [{}]\n", imports.join(", "))
        },
        grpc = qp(&instance.grpc_socket()),
        ttrpc = qp(&instance.ttrpc_socket()),
    );
}

fn render_v3(instance: &Instance, settings: &Settings) -> String {
    let mut out = String::new();
    header(&mut out, 3, Version::V2_1, instance, &settings.imports);
    let runtime = "plugins.'io.containerd.cri.v1.runtime'";
    let _ = write!(
        out,
        r#"[plugins.'io.containerd.nri.v1.nri']
  disable = true
  socket_path = {nri}

[plugins.'io.containerd.internal.v1.opt']
  path = {opt}

[plugins.'io.containerd.image-verifier.v1.bindir']
  bin_dir = {verifiers}

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = {pause}

[{runtime}]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false

[{runtime}.cni]
  bin_dirs = [{cni_bin}]
  conf_dir = {cni_conf}
  max_conf_num = 1

[{runtime}.containerd]
  default_runtime_name = {runc}

[{runtime}.containerd.runtimes.{runc_name}]
  runtime_type = 'io.containerd.runc.v2'
  sandboxer = 'podsandbox'

[{runtime}.containerd.runtimes.{runc_name}.options]
  BinaryName = {runc_bin}
  Root = {runc_root}
{berth}"#,
        nri = qp(&instance.nri_socket()),
        opt = qp(&instance.opt_dir()),
        verifiers = qp(&instance.opt_dir().join("image-verifier/bin")),
        pause = q(&settings.pause_image),
        cni_bin = q(cni::PLUGIN_DIR),
        cni_conf = qp(&instance.cni_conf_dir()),
        runc = q(RUNC_HANDLER),
        runc_name = RUNC_HANDLER,
        runc_bin = q(crate::paths::RUNC_BINARY),
        runc_root = qp(&instance.runc_root()),
        berth = if settings.imports.is_empty() {
            format!(
                "\n[{runtime}.containerd.runtimes.{BERTH_HANDLER}]\n  runtime_type = {}\n  \
                 sandboxer = {}\n\n\
                 [{runtime}.containerd.runtimes.{BERTH_SHIM_MODE_HANDLER}]\n  runtime_type = {}\n  \
                 sandboxer = 'shim'\n",
                q(BERTH_RUNTIME_TYPE),
                q(settings.sandboxer.name()),
                q(BERTH_RUNTIME_TYPE),
            )
        } else {
            String::new()
        },
    );
    handlers_with_options(
        &mut out,
        instance,
        &format!("{runtime}.containerd.runtimes"),
        "sandboxer",
        settings.sandboxer,
    );
    out
}

/// The berth handlers that differ from [`BERTH_HANDLER`] only in their
/// runtime options, in its mode `berth_mode`, and [`RUNC_SYSTEMD_HANDLER`],
/// under `runtimes` (the config's table of runtimes);
/// `mode_key` names the sandbox mode's key in the config's dialect.
fn handlers_with_options(
    out: &mut String,
    instance: &Instance,
    runtimes: &str,
    mode_key: &str,
    berth_mode: Sandboxer,
) {
    let handlers = [
        (
            BERTH_OPTIONS_HANDLER,
            format!(
                "  IoUid = {OPTIONS_IO_ID}\n  IoGid = {OPTIONS_IO_ID}\n  NoNewKeyring = true\n  \
                 StateRoot = {}\n  {OPTIONS_UNKNOWN_KEY} = 'ignored'\n",
                qp(&instance.options_state_root())
            ),
        ),
        (BERTH_SYSTEMD_HANDLER, "  SystemdCgroup = true\n".to_owned()),
        (BERTH_QUIET_HANDLER, "  LogLevel = 'warn'\n".to_owned()),
        (
            BERTH_SHIM_CGROUP_HANDLER,
            format!("  ShimCgroup = {}\n", q(&instance.shim_cgroup())),
        ),
    ];
    for (name, options) in handlers {
        let _ = write!(
            out,
            "\n[{runtimes}.{name}]\n  runtime_type = {}\n  {mode_key} = {}\n\n\
             [{runtimes}.{name}.options]\n{options}",
            q(BERTH_RUNTIME_TYPE),
            q(berth_mode.name())
        );
    }
    let _ = write!(
        out,
        "\n[{runtimes}.{RUNC_SYSTEMD_HANDLER}]\n  runtime_type = 'io.containerd.runc.v2'\n  \
         {mode_key} = 'podsandbox'\n\n[{runtimes}.{RUNC_SYSTEMD_HANDLER}.options]\n  \
         BinaryName = {}\n  Root = {}\n  SystemdCgroup = true\n",
        q(crate::paths::RUNC_BINARY),
        qp(&instance.runc_root())
    );
}

fn render_v2(instance: &Instance, settings: &Settings) -> String {
    let mut out = String::new();
    // An import replaces 1.7's whole CRI table (see the install test).
    assert!(
        settings.imports.is_empty(),
        "containerd 1.7's config imports nothing"
    );
    assert_eq!(
        settings.sandboxer,
        Sandboxer::Podsandbox,
        "containerd 1.7 has no Sandbox API"
    );
    header(&mut out, 2, Version::V1_7, instance, &[]);
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    let _ = write!(
        out,
        r#"[plugins."io.containerd.nri.v1.nri"]
  disable = true
  socket_path = {nri}

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[{cri}]
  sandbox_image = {pause}
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false

[{cri}.cni]
  bin_dir = {cni_bin}
  conf_dir = {cni_conf}
  max_conf_num = 1

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = {runc}

[{cri}.containerd.runtimes.{runc_name}]
  runtime_type = "io.containerd.runc.v2"
  sandbox_mode = "podsandbox"

[{cri}.containerd.runtimes.{runc_name}.options]
  BinaryName = {runc_bin}
  Root = {runc_root}

[{cri}.containerd.runtimes.{berth_name}]
  runtime_type = {berth_type}
  sandbox_mode = "podsandbox"
"#,
        nri = qp(&instance.nri_socket()),
        opt = qp(&instance.opt_dir()),
        pause = q(&settings.pause_image),
        cni_bin = q(cni::PLUGIN_DIR),
        cni_conf = qp(&instance.cni_conf_dir()),
        runc = q(RUNC_HANDLER),
        runc_name = RUNC_HANDLER,
        runc_bin = q(crate::paths::RUNC_BINARY),
        runc_root = qp(&instance.runc_root()),
        berth_name = BERTH_HANDLER,
        berth_type = q(BERTH_RUNTIME_TYPE),
    );
    handlers_with_options(
        &mut out,
        instance,
        &format!("{cri}.containerd.runtimes"),
        "sandbox_mode",
        settings.sandboxer,
    );
    out
}

/// A TOML basic string (JSON string syntax is valid TOML for these values).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn qp(p: &Path) -> String {
    q(&p.to_string_lossy())
}
