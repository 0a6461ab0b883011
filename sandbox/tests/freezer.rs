#![cfg(feature = "root-tests")]
//! Freezing real cgroups: the v1 freezer controller and v2's `cgroup.freeze`
//! (the cgroup2 mount of a hybrid host, or the unified root of a v2 host).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use berth_sandbox::cgroup::freezer::{freeze_all, Freezer, FreezerState};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A cgroup of the test's own with one busy process in it; killed and
/// removed on drop.
struct Frozen {
    freezer: Freezer,
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

impl Frozen {
    fn new(freezer: Freezer) -> Self {
        common::require_root();
        fs::create_dir_all(freezer.dir()).unwrap();
        let log = tempfile::NamedTempFile::new().unwrap();
        // Appends to its log every 10 ms: its progress shows whether it runs.
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg("while :; do echo x >> \"$0\"; sleep 0.01; done")
            .arg(log.path())
            .spawn()
            .unwrap();
        fs::write(freezer.dir().join("cgroup.procs"), child.id().to_string()).unwrap();
        Frozen {
            freezer,
            child: Some(child),
            log,
        }
    }

    fn progress(&self) -> u64 {
        fs::metadata(self.log.path()).unwrap().len()
    }

    /// Whether the process's log grows over 200 ms.
    fn runs(&self) -> bool {
        let before = self.progress();
        std::thread::sleep(Duration::from_millis(200));
        self.progress() > before
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = self.freezer.thaw(TIMEOUT);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The shell's `sleep` children die with their cgroup's last task.
        for _ in 0..200 {
            if fs::remove_dir(self.freezer.dir()).is_ok() || !self.freezer.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "cgroup {} could not be removed",
            self.freezer.dir().display()
        );
    }
}

fn test_dir(under: &str, name: &str) -> PathBuf {
    Path::new(under).join(format!("berth-test-{}-{name}", std::process::id()))
}

fn v1(name: &str) -> Freezer {
    Freezer::V1(test_dir("/sys/fs/cgroup/freezer", name))
}

/// The v2 hierarchy: `/sys/fs/cgroup/unified` on a hybrid host.
fn v2(name: &str) -> Freezer {
    let root = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "/sys/fs/cgroup"
    } else {
        "/sys/fs/cgroup/unified"
    };
    assert!(
        Path::new(root).join("cgroup.procs").exists(),
        "no cgroup2 mount at {root}"
    );
    Freezer::V2(test_dir(root, name))
}

fn freeze_and_thaw(freezer: Freezer) {
    let cg = Frozen::new(freezer);
    assert_eq!(cg.freezer.state().unwrap(), FreezerState::Thawed);
    assert!(cg.runs(), "the process runs before the freeze");
    cg.freezer.freeze(TIMEOUT).unwrap();
    assert_eq!(cg.freezer.state().unwrap(), FreezerState::Frozen);
    assert!(!cg.runs(), "a frozen process makes no progress");
    cg.freezer.thaw(TIMEOUT).unwrap();
    assert_eq!(cg.freezer.state().unwrap(), FreezerState::Thawed);
    assert!(cg.runs(), "the process runs again after the thaw");
}

#[test]
fn v1_freezes_and_thaws() {
    freeze_and_thaw(v1("cycle"));
}

#[test]
fn v2_freezes_and_thaws() {
    freeze_and_thaw(v2("cycle"));
}

/// SIGKILL lands on a frozen process once it is thawed, the order Kill uses.
fn a_killed_frozen_process_dies_when_thawed(freezer: Freezer) {
    let mut cg = Frozen::new(freezer);
    cg.freezer.freeze(TIMEOUT).unwrap();
    let mut child = cg.child.take().unwrap();
    child.kill().unwrap();
    cg.freezer.thaw(TIMEOUT).unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

#[test]
fn v1_a_killed_frozen_process_dies_when_thawed() {
    a_killed_frozen_process_dies_when_thawed(v1("kill"));
}

#[test]
fn v2_a_killed_frozen_process_dies_when_thawed() {
    a_killed_frozen_process_dies_when_thawed(v2("kill"));
}

#[test]
fn freeze_all_freezes_every_cgroup() {
    let cgs = [Frozen::new(v1("all-a")), Frozen::new(v1("all-b"))];
    let freezers: Vec<Freezer> = cgs.iter().map(|c| c.freezer.clone()).collect();
    freeze_all(&freezers, TIMEOUT).unwrap();
    for cg in &cgs {
        assert_eq!(cg.freezer.state().unwrap(), FreezerState::Frozen);
        assert!(!cg.runs());
    }
}

#[test]
fn freeze_all_leaves_nothing_frozen_when_a_cgroup_is_missing() {
    let cg = Frozen::new(v1("partial"));
    let missing = v1("missing");
    assert!(!missing.exists());
    let freezers = [cg.freezer.clone(), missing];
    assert!(freeze_all(&freezers, TIMEOUT).is_err());
    assert_eq!(cg.freezer.state().unwrap(), FreezerState::Thawed);
    assert!(cg.runs(), "the cgroup frozen first was thawed again");
}
