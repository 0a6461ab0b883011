//! The containerd process of one instance: spawned with the instance's config and
//! environment, and always stopped. Dropping a [`Daemon`] sends SIGTERM (SIGKILL after
//! 10 s), then sweeps the instance (leftover shims and pauses, mounts, bridge, cgroups,
//! directory). The log of a failed instance, or one that left something behind, is
//! kept under `target/e2e-logs/` and its path printed (every log, with
//! `BERTH_E2E_KEEP_LOGS=1`).

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};

use crate::containerd_config::{self, Sandboxer, Settings};
use crate::instance::Instance;
use crate::version::Version;
use crate::{cni, images, paths};

/// How long containerd may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Set to keep every instance's containerd log, failed or not.
pub const KEEP_LOGS_ENV: &str = "BERTH_E2E_KEEP_LOGS";
/// containerd's log level (debug: the shim's authors read these logs).
const LOG_LEVEL: &str = "debug";

/// How berth is installed on the node containerd runs on: where its
/// binaries are (the shim on containerd's `PATH`, berth-pause through
/// `BERTH_PAUSE`), and the config files containerd imports, which register
/// the `berth` runtime in place of the harness's own entry when there are any.
#[derive(Clone, Debug)]
pub struct Installation {
    pub dir: PathBuf,
    pub pause: OsString,
    pub imports: Vec<PathBuf>,
    /// Who drives the `berth` handler's pods: containerd's podsandbox
    /// controller through the Task API, or berth's own Sandbox API.
    pub sandboxer: Sandboxer,
}

impl Installation {
    /// The build's: `BERTH_BIN_DIR`, and `BERTH_PAUSE` as the caller set it.
    pub fn built() -> Self {
        Installation {
            dir: paths::bin_dir(),
            pause: pause_binary(),
            imports: Vec::new(),
            sandboxer: Sandboxer::Podsandbox,
        }
    }

    /// This installation, with the `berth` handler's pods driven by
    /// `sandboxer`.
    pub fn with_sandboxer(self, sandboxer: Sandboxer) -> Self {
        Installation { sandboxer, ..self }
    }

    /// An installed copy in `dir`, all three binaries from there.
    pub fn installed(dir: PathBuf) -> Self {
        let pause = dir.join(paths::PAUSE).into_os_string();
        Installation {
            dir,
            pause,
            imports: Vec::new(),
            sandboxer: Sandboxer::Podsandbox,
        }
    }

    /// berth as its Debian package installs it: the binaries in /usr/bin,
    /// the runtime registered by the drop-in containerd imports.
    pub fn packaged() -> Self {
        Installation {
            imports: vec![PathBuf::from("/etc/containerd/conf.d/*.toml")],
            ..Self::installed(PathBuf::from("/usr/bin"))
        }
    }
}

/// A containerd process and the instance it owns.
pub struct Daemon {
    version: Version,
    install: Installation,
    instance: Instance,
    child: Option<Child>,
    failed: AtomicBool,
}

impl Daemon {
    /// Takes an instance slot, writes the CNI and containerd configs and starts
    /// containerd `version` with stdout/stderr going to the instance's log.
    pub fn spawn(version: Version, install: Installation) -> Result<Daemon> {
        let binary = version.bin_dir().join("containerd");
        ensure!(
            binary.exists(),
            "{} is missing: run `make deps` (BERTH_DEPS_DIR={})",
            binary.display(),
            paths::deps_dir().display()
        );
        let instance = Instance::acquire()?;
        cni::write(&instance)?;
        let settings = Settings {
            pause_image: images::PAUSE.to_string(),
            imports: install.imports.clone(),
            sandboxer: install.sandboxer,
        };
        let config = containerd_config::render(version, &instance, &settings);
        fs::write(instance.config_path(), config)
            .with_context(|| format!("write {}", instance.config_path().display()))?;
        let child = start(version, &install, &instance, false)?;
        Ok(Daemon {
            version,
            install,
            instance,
            child: Some(child),
            failed: AtomicBool::new(false),
        })
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn install(&self) -> &Installation {
        &self.install
    }

    /// Sends `signal` to containerd (its shims live on) and waits up to
    /// [`STOP_TIMEOUT`] for it to exit.
    pub fn halt(&mut self, signal: i32) -> Result<()> {
        let mut child = self.child.take().context("containerd is not running")?;
        // SAFETY: kill(2) on our own child, not reaped yet, so the pid is ours.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                eprintln!(
                    "berth-e2e: {} halted with signal {signal}: {status}",
                    self.version
                );
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        anyhow::bail!("containerd took more than {STOP_TIMEOUT:?} to exit on signal {signal}")
    }

    /// Starts containerd again on the same instance, after [`Daemon::halt`];
    /// its log goes on in the same file.
    pub fn respawn(&mut self) -> Result<()> {
        ensure!(self.child.is_none(), "containerd is running already");
        self.child = Some(start(self.version, &self.install, &self.instance, true)?);
        Ok(())
    }

    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// containerd's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Fails if containerd has exited.
    pub fn check_running(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            anyhow::bail!("containerd was stopped")
        };
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "containerd exited ({status}); log tail:\n{}",
                self.log_tail(40)
            );
        }
        Ok(())
    }

    /// Keeps the log when the instance is dropped, and prints where.
    pub fn mark_failed(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    /// The last `lines` lines of containerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.instance.log_path(), lines)
    }

    /// Stops containerd and sweeps the instance; returns what was left over.
    /// Idempotent: the second call finds nothing to do.
    pub fn stop(&mut self) -> Vec<String> {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
        let failed = self.failed.load(Ordering::SeqCst) || std::thread::panicking();
        let keep = failed || std::env::var_os(KEEP_LOGS_ENV).is_some();
        let leftovers = self.instance.processes();
        if (keep || !leftovers.is_empty()) && self.instance.log_path().exists() {
            match self.keep_log() {
                Ok(path) => eprintln!("berth-e2e: {} log kept at {}", self.version, path.display()),
                Err(e) => eprintln!("berth-e2e: could not keep the containerd log: {e:#}"),
            }
        }
        let report = self.instance.sweep();
        for line in &report {
            eprintln!(
                "berth-e2e: {} slot {}: left over: {line}",
                self.version,
                self.instance.slot()
            );
        }
        report
    }

    fn keep_log(&self) -> Result<PathBuf> {
        let dir = paths::failed_logs_dir();
        fs::create_dir_all(&dir)?;
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let name = format!(
            "containerd-{}-slot{}-pid{}-{secs}.log",
            self.version.as_str(),
            self.instance.slot(),
            std::process::id()
        );
        let path = dir.join(name);
        fs::copy(self.instance.log_path(), &path)?;
        Ok(path)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts containerd `version` on `instance`, its stdout and stderr going to the
/// instance's log (appended to with `append`).
fn start(
    version: Version,
    install: &Installation,
    instance: &Instance,
    append: bool,
) -> Result<Child> {
    let binary = version.bin_dir().join("containerd");
    let log = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(instance.log_path())
        .with_context(|| format!("open {}", instance.log_path().display()))?;
    let child = Command::new(&binary)
        .arg("--config")
        .arg(instance.config_path())
        .arg("--log-level")
        .arg(LOG_LEVEL)
        .env("PATH", search_path(version, &install.dir))
        .env("BERTH_STATE_ROOT", instance.berth_state_root())
        .env("BERTH_BIN_DIR", &install.dir)
        .env("BERTH_PAUSE", &install.pause)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("spawn {}", binary.display()))?;
    eprintln!(
        "berth-e2e: {version} pid {} in {} (log {})",
        child.id(),
        instance.dir().display(),
        instance.log_path().display()
    );
    Ok(child)
}

/// SIGTERM, wait up to [`STOP_TIMEOUT`], then SIGKILL.
fn stop_child(child: &mut Child) {
    let pid = child.id() as i32;
    // SAFETY: kill(2) on our own child, which is not reaped yet so the pid is ours.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    eprintln!("berth-e2e: containerd {pid} ignored SIGTERM for {STOP_TIMEOUT:?}: SIGKILL");
    let _ = child.kill();
    let _ = child.wait();
}

/// `<berth's binaries>:<containerd's usr/bin>:/usr/sbin:/usr/bin:/sbin:/bin`.
fn search_path(version: Version, bin_dir: &std::path::Path) -> OsString {
    let mut path = OsString::from(bin_dir);
    path.push(":");
    path.push(version.bin_dir());
    path.push(":/usr/sbin:/usr/bin:/sbin:/bin");
    path
}

/// `BERTH_PAUSE` as the caller set it, else `berth-pause` in `BERTH_BIN_DIR`.
fn pause_binary() -> OsString {
    std::env::var_os("BERTH_PAUSE")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| paths::bin_dir().join("berth-pause").into_os_string())
}

/// The last `lines` lines of a log file (reading at most its last 256 KiB).
pub fn log_tail(path: &std::path::Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("({} unreadable)", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(256 * 1024)));
    let mut text = String::new();
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_ok() {
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| shorten(l, 400))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `line` cut to at most `max` bytes (on a char boundary), marked when cut.
fn shorten(line: &str, max: usize) -> String {
    if line.len() <= max {
        return line.to_string();
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [...]", &line[..end])
}
