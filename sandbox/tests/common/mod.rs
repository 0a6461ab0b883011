//! Shared set-up of the root tests: a subreaper test process, the helper and
//! berth-pause binaries, and pods that clean up after themselves.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_sandbox::helper::protocol::{ContainerRef, ContainerSpec, StdioPaths};
use berth_sandbox::helper::Helper;
use berth_sandbox::spec::SandboxConfig;
use berth_sandbox::state::{PodDir, ProcessRecord};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{
    LinuxBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, ProcessBuilder, RootBuilder, Spec,
};

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the root tests need root; run them through `make test` as root"
    );
}

/// The berth-pause binary: `$BERTH_PAUSE` (make test sets it), else the one
/// `make build` staged.
pub fn pause_binary() -> PathBuf {
    let path = std::env::var_os("BERTH_PAUSE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/berth/bin/berth-pause")
        });
    assert!(
        path.is_file(),
        "berth-pause not found at {}: run `make build` or set BERTH_PAUSE",
        path.display()
    );
    path
}

pub fn helper() -> Helper {
    Helper::new(helper_path(), true)
}

/// The helper binary cargo built for these tests.
pub fn helper_path() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth-sandbox-helper"))
}

/// A pod started for a test; killed, reaped and cleaned up on drop.
pub struct TestPod {
    pub id: String,
    pub dir: PodDir,
    pub pause: ProcessRecord,
    pub config: SandboxConfig,
    _root: tempfile::TempDir,
}

impl TestPod {
    pub fn start(id: &str, config: SandboxConfig) -> Result<Self, berth_sandbox::Error> {
        require_root();
        // Like the shim, the test process adopts pause when the helper exits.
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), id);
        let pause = berth_sandbox::pod::start_pause(&helper(), &dir, id, &config, pause_binary())?;
        Ok(TestPod {
            id: id.to_owned(),
            dir,
            pause,
            config,
            _root: root,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pause.pid
    }

    pub fn status_field(&self, field: &str) -> String {
        status_field(self.pid(), field)
    }

    /// Stops pause (SIGTERM), reaps it and returns its exit status code.
    pub fn stop(&self) -> i32 {
        kill(Pid::from_raw(self.pid()), Signal::SIGTERM).unwrap();
        match waitpid(Pid::from_raw(self.pid()), None).unwrap() {
            nix::sys::wait::WaitStatus::Exited(_, code) => code,
            other => panic!("pause ended with {other:?}"),
        }
    }
}

impl Drop for TestPod {
    fn drop(&mut self) {
        if berth_sandbox::process::signal(self.pause, Signal::SIGKILL).unwrap_or(false) {
            let _ = waitpid(Pid::from_raw(self.pid()), None);
        }
        if let Some(cgroup) = &self.config.cgroup {
            let _ = berth_sandbox::cgroup::remove_when_empty(cgroup);
            let parent = Path::new(cgroup)
                .parent()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if parent != "/" {
                let _ = berth_sandbox::cgroup::remove_when_empty(&parent);
            }
        }
    }
}

pub fn status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

pub fn ns_inode(pid: i32, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Runs a command, returning (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A cgroup path unique to this test process.
pub fn test_cgroup(name: &str) -> String {
    format!("/berth-test-{}/{name}", std::process::id())
}

/// Removes the per-process parent of a test cgroup made by [`test_cgroup`].
pub fn remove_test_cgroup_parent(path: &str) {
    let parent = Path::new(path)
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let _ = berth_sandbox::cgroup::remove_when_empty(&parent);
}

/// A network namespace pinned at a path, removed on drop.
pub struct PinnedNetns {
    pub name: String,
}

impl PinnedNetns {
    pub fn create() -> Self {
        let name = format!("berth-test-{}", std::process::id());
        let (ok, _, err) = run(Command::new("ip").args(["netns", "add", &name]));
        assert!(ok, "ip netns add {name}: {err}");
        PinnedNetns { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }
}

impl Drop for PinnedNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// A bundle whose rootfs holds a static busybox, removed on drop.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub id: String,
    pub engine_root: PathBuf,
}

impl Bundle {
    pub fn new(
        id: &str,
        args: &[&str],
        namespaces: Vec<(LinuxNamespaceType, Option<PathBuf>)>,
    ) -> Self {
        require_root();
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let mut spec = Spec::default();
        spec.set_root(Some(
            RootBuilder::default()
                .path("rootfs")
                .readonly(true)
                .build()
                .unwrap(),
        ));
        spec.set_hostname(None);
        let process = ProcessBuilder::default()
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .env(vec!["PATH=/bin".to_string()])
            .cwd("/")
            .no_new_privileges(true)
            .build()
            .unwrap();
        spec.set_process(Some(process));
        let mut linux = spec
            .linux()
            .clone()
            .unwrap_or_else(|| LinuxBuilder::default().build().unwrap());
        linux.set_namespaces(Some(
            namespaces
                .into_iter()
                .map(|(typ, path)| {
                    let mut b = LinuxNamespaceBuilder::default().typ(typ);
                    if let Some(p) = path {
                        b = b.path(p);
                    }
                    b.build().unwrap()
                })
                .collect(),
        ));
        linux.set_cgroups_path(Some(PathBuf::from(test_cgroup(id))));
        spec.set_linux(Some(linux));
        spec.save(dir.path().join("config.json")).unwrap();
        // The pod directory layout the shim uses (see `pod_dir`).
        let engine_root = berth_sandbox::state::PodDir::new(dir.path(), "pod").engine_root();
        Bundle {
            dir,
            id: id.to_owned(),
            engine_root,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn pod_dir(&self) -> berth_sandbox::state::PodDir {
        berth_sandbox::state::PodDir::new(self.path(), "pod")
    }

    pub fn reference(&self) -> ContainerRef {
        ContainerRef {
            id: self.id.clone(),
            engine_root: self.engine_root.clone(),
        }
    }

    pub fn spec(&self, stdout: Option<PathBuf>) -> ContainerSpec {
        ContainerSpec {
            id: self.id.clone(),
            bundle: self.path().to_owned(),
            engine_root: self.engine_root.clone(),
            work_dir: self.path().join("work"),
            stdio: StdioPaths {
                stdout,
                ..Default::default()
            },
            no_new_keyring: false,
            cgroup_driver: Default::default(),
            pod_files: Vec::new(),
        }
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = helper().delete_container(&self.reference());
        remove_test_cgroup_parent(&test_cgroup(&self.id));
    }
}

pub fn own_namespaces() -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    use LinuxNamespaceType::*;
    [Pid, Ipc, Uts, Mount, Network]
        .into_iter()
        .map(|t| (t, None))
        .collect()
}

pub fn exit_code(pid: i32) -> i32 {
    match waitpid(Pid::from_raw(pid), None).unwrap() {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        other => panic!("container init ended with {other:?}"),
    }
}

/// A host directory the image points its links at: it must stay empty,
/// with nothing mounted on it.
pub struct Canary(tempfile::TempDir);

impl Canary {
    pub fn new() -> Self {
        Canary(tempfile::tempdir().unwrap())
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub fn check_untouched(&self) {
        let entries: Vec<_> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            entries.is_empty(),
            "the host directory was written: {entries:?}"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let path = self.path().to_string_lossy().into_owned();
        assert!(
            !mounts.lines().any(|l| l.contains(&path)),
            "something is mounted on the host directory"
        );
    }
}

/// Runs `script` as the init of container `id` (own namespaces, the OCI
/// default mounts, masked and read-only paths), after `prepare` has shaped
/// its bundle; returns its exit code and output.
pub fn run_init(id: &str, script: &str, prepare: impl FnOnce(&Bundle, &mut Spec)) -> (i32, String) {
    let bundle = Bundle::new(id, &["sh", "-c", script], own_namespaces());
    edit_spec(&bundle, |spec| prepare(&bundle, spec));
    let out = bundle.path().join("out");
    std::fs::write(&out, b"").unwrap();
    let mut spec = bundle.spec(Some(out.clone()));
    spec.stdio.stderr = Some(out.clone());
    let init = helper().create_container(spec).unwrap();
    helper().start_container(&bundle.reference()).unwrap();
    let code = exit_code(init.pid);
    helper().delete_container(&bundle.reference()).unwrap();
    (code, std::fs::read_to_string(&out).unwrap())
}

/// Loads the bundle's config.json, lets `edit` change it, saves it.
pub fn edit_spec(bundle: &Bundle, edit: impl FnOnce(&mut Spec)) {
    let config = bundle.path().join("config.json");
    let mut spec = Spec::load(&config).unwrap();
    edit(&mut spec);
    spec.save(&config).unwrap();
}
