//! A private containerd of one [`Version`] ready for CRI: started, waited for until
//! CRI answers with the runtime and the network ready, and loaded with the test
//! images. Stopping and clean-up live in [`crate::daemon::Daemon`], run on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::containerd_config::{Sandboxer, BERTH_HANDLER};
use crate::cri::Cri;
use crate::daemon::{Daemon, Installation};
use crate::images::{self, ImageArchive};
use crate::instance::Instance;
use crate::oci_layout;
use crate::paths;
use crate::version::Version;

/// How long containerd may take to answer CRI with runtime and network ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long CRI may take to see an image `ctr` imported.
const IMAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running private containerd with the test images imported. Dropping it stops
/// containerd and cleans its instance up.
pub struct Containerd {
    daemon: Daemon,
    cri: Cri,
    images: Option<ImageArchive>,
    ready_after: Duration,
    images_after: Duration,
}

impl Containerd {
    /// Starts containerd `version` in a fresh instance, waits until CRI reports the
    /// runtime and the network ready, and imports the pause and busybox images.
    pub async fn start(version: Version) -> Result<Containerd> {
        Self::start_with(version, Installation::built()).await
    }

    /// [`Containerd::start`], with berth installed as `install` says.
    pub async fn start_with(version: Version, install: Installation) -> Result<Containerd> {
        let started = Instant::now();
        let mut daemon = Daemon::spawn(version, install)?;
        let cri = match wait_ready(&mut daemon).await {
            Ok(cri) => cri,
            Err(e) => {
                daemon.mark_failed();
                return Err(e);
            }
        };
        let ready_after = started.elapsed();
        let mut cd = Containerd {
            daemon,
            cri,
            images: None,
            ready_after,
            images_after: Duration::ZERO,
        };
        if let Err(e) = cd.import_images().await {
            cd.mark_failed();
            return Err(e);
        }
        cd.images_after = started.elapsed();
        eprintln!(
            "berth-e2e: {version} CRI ready after {:?}, images imported after {:?}",
            cd.ready_after, cd.images_after
        );
        Ok(cd)
    }

    pub fn version(&self) -> Version {
        self.daemon.version()
    }

    /// Who drives the `berth` handler's pods on this containerd.
    pub fn sandboxer(&self) -> Sandboxer {
        self.daemon.install().sandboxer
    }

    /// The instance's paths and network.
    pub fn instance(&self) -> &Instance {
        self.daemon.instance()
    }

    /// The CRI client connected to this containerd.
    pub fn cri(&self) -> &Cri {
        &self.cri
    }

    /// containerd's gRPC socket (CRI, and `-address` of its shims).
    pub fn address(&self) -> PathBuf {
        self.instance().grpc_socket()
    }

    /// containerd's pid.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// `BERTH_STATE_ROOT` of this instance's berth shims.
    pub fn berth_state_root(&self) -> PathBuf {
        self.instance().berth_state_root()
    }

    /// containerd's log file (removed with the instance unless the run failed).
    pub fn log_path(&self) -> PathBuf {
        self.instance().log_path()
    }

    /// The last `lines` lines of containerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }

    /// Time from spawn until CRI answered with runtime and network ready.
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    /// Time from spawn until the test images were imported and visible to CRI.
    pub fn images_after(&self) -> Duration {
        self.images_after
    }

    /// The imported image archive.
    pub fn images(&self) -> Option<&ImageArchive> {
        self.images.as_ref()
    }

    /// A cgroupfs parent for a pod of this instance, e.g. `/berth-e2e-7/pod-1`;
    /// the instance removes `/berth-e2e-<slot>` from every hierarchy when dropped.
    pub fn cgroup_parent(&self, name: &str) -> String {
        format!("{}/{name}", self.instance().cgroup_root())
    }

    /// Keeps the log when the instance is dropped, and prints where.
    pub fn mark_failed(&self) {
        self.daemon.mark_failed();
    }

    /// Fails if containerd has exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.daemon.check_running()
    }

    /// Fails with a clear message unless berth's shim is where containerd will look.
    pub fn require_berth(&self) -> Result<()> {
        let dir = &self.daemon.install().dir;
        for binary in [paths::SHIM, paths::HELPER].map(|name| dir.join(name)) {
            ensure!(
                binary.exists(),
                "the `{BERTH_HANDLER}` runtime needs {}: run `make build` or set BERTH_BIN_DIR",
                binary.display()
            );
        }
        Ok(())
    }

    /// Stops containerd with `signal` (SIGKILL for a crash, SIGTERM for a clean
    /// stop), leaving its shims running, until [`Containerd::restart`].
    pub fn halt(&mut self, signal: i32) -> Result<()> {
        self.daemon.halt(signal)
    }

    /// Starts containerd again after [`Containerd::halt`] and waits until CRI
    /// answers ready, as it does after a node's containerd restarts.
    pub async fn restart(&mut self) -> Result<()> {
        let started = Instant::now();
        self.daemon.respawn()?;
        self.cri = wait_ready(&mut self.daemon).await?;
        eprintln!(
            "berth-e2e: {} restarted, CRI ready after {:?}",
            self.version(),
            started.elapsed()
        );
        Ok(())
    }

    /// The size of containerd's log so far: what it logs later starts there.
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(self.log_path()).map_or(0, |m| m.len())
    }

    /// containerd's log from byte `offset` on.
    pub fn log_since(&self, offset: u64) -> Result<String> {
        let log = std::fs::read(self.log_path())
            .with_context(|| format!("read {}", self.log_path().display()))?;
        let from = (offset as usize).min(log.len());
        Ok(String::from_utf8_lossy(&log[from..]).into_owned())
    }

    /// Stops containerd now and sweeps the instance; returns what was left over.
    pub fn stop(mut self) -> Vec<String> {
        self.daemon.stop()
    }

    async fn import_images(&mut self) -> Result<()> {
        let archive = tokio::task::spawn_blocking(images::build_archive).await??;
        self.ctr_import(&archive.path)?;
        for (name, _) in &archive.images {
            wait_image(&self.cri, name).await?;
        }
        self.images = Some(archive);
        Ok(())
    }

    /// Imports the images of `layout` (beside the test images) and waits until CRI
    /// sees each of them.
    pub async fn import_layout(&self, layout: &oci_layout::Layout) -> Result<()> {
        let tarball = self.instance().dir().join("extra-images.tar");
        std::fs::write(&tarball, &layout.tar)
            .with_context(|| format!("write {}", tarball.display()))?;
        let imported = self.ctr_import(&tarball);
        let _ = std::fs::remove_file(&tarball);
        imported?;
        for (name, _) in &layout.manifests {
            wait_image(&self.cri, name).await?;
        }
        Ok(())
    }

    /// `ctr -a <socket> -n k8s.io images import <tarball>`.
    fn ctr_import(&self, tarball: &Path) -> Result<()> {
        let out = self.ctr(&["images".as_ref(), "import".as_ref(), tarball.as_os_str()])?;
        if !out.status.success() {
            bail!(
                "ctr images import {}: {}\n{}{}",
                tarball.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Runs this version's `ctr -a <socket> -n k8s.io <args>` to completion.
    pub fn ctr(&self, args: &[&std::ffi::OsStr]) -> Result<std::process::Output> {
        let ctr = self.version().bin_dir().join("ctr");
        Command::new(&ctr)
            .arg("-a")
            .arg(self.address())
            .args(["-n", "k8s.io"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("run {}", ctr.display()))
    }

    /// Runs `ctr <args>` and fails unless it succeeds; returns its stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> Result<String> {
        let os: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        let out = self.ctr(&os)?;
        ensure!(
            out.status.success(),
            "ctr {args:?}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `ctr` with a pty as its stdin, stdout and stderr, as a user at
    /// a terminal would (`ctr run -t` needs one). Returns how it ended and
    /// everything it wrote to the terminal.
    pub fn ctr_on_terminal(
        &self,
        args: &[&std::ffi::OsStr],
        timeout: Duration,
    ) -> Result<(std::process::ExitStatus, String)> {
        let pty = nix::pty::openpty(None, None).context("openpty")?;
        let ctr = self.version().bin_dir().join("ctr");
        let stdio = || -> Result<std::process::Stdio> { Ok(pty.slave.try_clone()?.into()) };
        let mut child = Command::new(&ctr)
            .arg("-a")
            .arg(self.address())
            .args(["-n", "k8s.io"])
            .args(args)
            .stdin(stdio()?)
            .stdout(stdio()?)
            .stderr(stdio()?)
            .spawn()
            .with_context(|| format!("run {}", ctr.display()))?;
        drop(pty.slave);
        // Read while ctr runs: a full pty would stall it. EIO once the last
        // holder of the slave is gone reads as the end.
        let mut master = std::fs::File::from(pty.master);
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut master, &mut buf) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
            }
            String::from_utf8_lossy(&all).into_owned()
        });
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("ctr {args:?} still running after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = reader
            .join()
            .map_err(|_| anyhow::anyhow!("the pty reader panicked"))?;
        Ok((status, output))
    }
}

/// Connects to CRI and polls Version and Status until the runtime and the network
/// conditions are true.
async fn wait_ready(daemon: &mut Daemon) -> Result<Cri> {
    let socket = daemon.instance().grpc_socket();
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = String::from("no attempt yet");
    while Instant::now() < deadline {
        daemon.check_running()?;
        match probe(&socket).await {
            Ok(cri) => return Ok(cri),
            Err(e) if is_unimplemented(&e) => bail!(
                "{}: CRI is not served ({e:#}); plugins that failed to load:\n{}",
                daemon.version(),
                plugin_failures(&daemon.instance().log_path())
            ),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "{} not ready after {READY_TIMEOUT:?}: {last}\nlog {} ends with:\n{}",
        daemon.version(),
        daemon.instance().log_path().display(),
        daemon.log_tail(40)
    )
}

/// containerd serves gRPC but CRI is absent: a plugin failed, waiting will not help.
fn is_unimplemented(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<tonic::Status>()
            .is_some_and(|s| s.code() == tonic::Code::Unimplemented)
    })
}

/// The `failed to load plugin` lines of containerd's log.
fn plugin_failures(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("failed to load plugin"))
        .collect();
    lines.join("\n")
}

async fn probe(socket: &Path) -> Result<Cri> {
    ensure!(socket.exists(), "{} does not exist yet", socket.display());
    let cri = Cri::connect(socket).await?;
    cri.version().await?;
    let status = cri.status().await?;
    let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
    for wanted in ["RuntimeReady", "NetworkReady"] {
        let ok = conditions.iter().any(|c| c.r#type == wanted && c.status);
        ensure!(ok, "CRI condition {wanted} is not true: {conditions:?}");
    }
    Ok(cri)
}

/// Polls ImageStatus until CRI knows `name`.
async fn wait_image(cri: &Cri, name: &str) -> Result<()> {
    let deadline = Instant::now() + IMAGE_TIMEOUT;
    loop {
        if let Some(image) = cri.image_status(name).await? {
            ensure!(
                image.repo_tags.iter().any(|t| t == name),
                "CRI image {} lacks the tag {name}: {:?}",
                image.id,
                image.repo_tags
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            let known: Vec<String> = cri
                .list_images()
                .await?
                .into_iter()
                .flat_map(|i| i.repo_tags)
                .collect();
            bail!("CRI does not see image {name} after import; it knows {known:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
