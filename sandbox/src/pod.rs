//! A pod's lifecycle: start its berth-pause, and remove what a dead shim
//! left of it.

use std::path::PathBuf;

use nix::sys::signal::Signal;

use crate::cgroup::freezer::{self, Freezer};
use crate::error::Result;
use crate::helper::protocol::PauseSpec;
use crate::helper::Helper;
use crate::journal::{self, ExitRecord, Record};
use crate::spec::SandboxConfig;
use crate::state::{PodDir, Probe, ProcessRecord};

/// Starts the pod's berth-pause through a helper and names the process.
///
/// The pause process is left a child of the caller's subreaper once the
/// helper exits; the caller reaps it.
pub fn start_pause(
    helper: &Helper,
    dir: &PodDir,
    sandbox_id: &str,
    config: &SandboxConfig,
    pause_binary: PathBuf,
) -> Result<ProcessRecord> {
    dir.create()?;
    let answer = helper.spawn_pause(PauseSpec {
        sandbox_id: sandbox_id.to_owned(),
        binary: pause_binary,
        root_dir: dir.pause_root(),
        config: config.clone(),
    });
    if answer.is_err() {
        // The helper may have created the pod's cgroup before it failed.
        if let Some(path) = &config.cgroup {
            if let Err(e) = crate::cgroup::remove_when_empty(path) {
                log::warn!("pod {sandbox_id}: remove cgroup {path} after a failed start: {e}");
            }
        }
    }
    answer
}

/// What [`retire`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Retired {
    /// The pod's directory is gone.
    Removed,
    /// The socket went; the directory stays for `delete` or the next shim.
    Kept,
    /// A new shim serves the pod: nothing was touched.
    TakenOver,
}

/// What a shim that has stopped listening removes on its way out: its
/// socket; if it is done with the pod, also any container whose failed
/// create could not be undone (known to no one else), then the pod's
/// directory if they went.
///
/// Under the pod's lock, so that neither a `start` of the same pod nor the
/// `delete` containerd runs as soon as the shim hangs up works in a
/// directory half removed: a `delete` waits, then finds it gone; a `start`
/// that came first found the socket refusing connections and bound a new
/// one, and this shim then leaves the directory to the shim serving it.
pub fn retire(helper: &Helper, dir: &PodDir, done_with_pod: bool) -> Result<Retired> {
    let Some(_lock) = dir.lock_existing()? else {
        // Already removed, by the clean-up of the pod's task.
        return Ok(Retired::Removed);
    };
    if dir.probe() == Probe::Serving {
        return Ok(Retired::TakenOver);
    }
    if let Err(e) = crate::state::remove_file(&dir.socket()) {
        log::warn!("{e}");
    }
    if !done_with_pod {
        return Ok(Retired::Kept);
    }
    crate::container::remove_all_in_pod(helper, dir)?;
    dir.remove()?;
    Ok(Retired::Removed)
}

/// What the clean-up of a dead shim's task found.
#[derive(Debug, Default, PartialEq)]
pub struct Cleaned {
    /// The task's exit, as the shim journaled it.
    pub exit: Option<ExitRecord>,
    /// The pid of the pod's berth-pause, for the sandbox task.
    pub pid: Option<i32>,
}

/// containerd's clean-up of task `id` after its shim died: kills what is
/// left of it, removes its rootfs, cgroup and state, and tells what the
/// journal says of its exit. For the pod's own task, every container still
/// in the pod goes too, then berth-pause and the pod's cgroup.
///
/// containerd runs this for each task of the pod, in any order, maybe at
/// once: it works under the pod's lock. A pod a live shim still serves is
/// left alone. Every step is tried; the directory goes last, and only once
/// pause is gone, so a failed clean-up can be retried from what is left.
pub fn cleanup_dead(helper: &Helper, dir: &PodDir, id: &str) -> Result<Cleaned> {
    if !dir.path().exists() {
        return Ok(Cleaned::default());
    }
    let Some(_lock) = dir.lock_existing()? else {
        // Removed meanwhile, by its shim or the clean-up of another task.
        return Ok(Cleaned::default());
    };
    if dir.probe() == Probe::Serving {
        log::warn!("task {id}: its pod is still served by a live shim; leaving it alone");
        return Ok(Cleaned::default());
    }
    // What it writes (journal records) is in the pod's own format.
    dir.check_readable()?;
    let records = journal::read(dir);
    let mut cleaned = Cleaned {
        exit: journal::exit_of(&records, id),
        pid: None,
    };
    // The pod's directory outlives this clean-up while the journal holds
    // an exit another task's clean-up is still to report.
    let others_unreported = !journal::unreported(&records, id).is_empty();
    let reported = || journal::append(dir, &Record::Deleted { id: id.to_owned() });
    let container = dir.container_ids().iter().any(|c| c == id);
    if container {
        // An app container: its processes, cgroup, rootfs and state.
        crate::container::remove_from_pod(helper, dir, id)?;
        log::info!("container {id}: removed what a dead shim left");
    }
    let record = match dir.read_record() {
        Ok(record) => record,
        // The container is gone; the pod's own task will meet the record.
        Err(e) if container => {
            log::warn!("task {id}: unreadable pod record: {e}");
            reported()?;
            return Ok(cleaned);
        }
        // Only the record knows pause and the pod's cgroup: removing the
        // directory without them would leave both running untraced.
        Err(e) => return Err(e),
    };
    let Some(record) = record else {
        if dir.container_ids().is_empty() && !others_unreported {
            dir.remove()?;
        } else {
            reported()?;
        }
        return Ok(cleaned);
    };
    if !record.sandbox_id.is_empty() && record.sandbox_id != id {
        reported()?;
        return Ok(cleaned);
    }
    let mut failures = Vec::new();
    // berth-pause first: the pod's namespaces (and, with a shared PID
    // namespace, every process in it) go at once, however long the rest
    // takes of the few seconds containerd gives `delete`.
    let mut pause_gone = true;
    if let Some(pause) = record.pause {
        match crate::process::signal(pause, Signal::SIGKILL) {
            Ok(true) => log::info!(
                "pod {id}: killed berth-pause {} left by a dead shim",
                pause.pid
            ),
            Ok(false) => {}
            Err(e) => {
                pause_gone = false;
                failures.push(e);
            }
        }
    }
    if let Err(e) = crate::container::remove_all_in_pod(helper, dir) {
        failures.push(e);
    }
    if let Some(cgroup) = &record.cgroup {
        // A pod paused when its shim died: pause dies only once thawed.
        let freezer = Freezer::of_path(cgroup);
        if freezer.exists() {
            if let Err(e) = freezer.thaw(freezer::TIMEOUT) {
                failures.push(e);
            }
        }
        if let Err(e) = crate::cgroup::remove_when_empty(cgroup) {
            failures.push(e);
        }
    }
    if pause_gone {
        let removed = if others_unreported {
            // Only the journal stays, for the other tasks' clean-up.
            dir.remove_record().and_then(|()| reported())
        } else {
            dir.remove()
        };
        if let Err(e) = removed {
            failures.push(e);
        }
    }
    match failures.into_iter().next() {
        Some(e) => Err(e),
        None => {
            cleaned.pid = record.pause.map(|p| p.pid);
            Ok(cleaned)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::error::ErrorKind;
    use crate::helper::fake::FakeHelper;
    use crate::helper::protocol::{Request, Response};
    use crate::state::PodRecord;

    /// Makes a pod's directory as `start` does, lock file and all.
    fn made(dir: &PodDir) {
        drop(dir.lock().unwrap());
    }

    /// A helper that is never run: these pods hold no container.
    fn no_helper() -> Helper {
        Helper::new("/nonexistent/berth-sandbox-helper", true)
    }

    /// A pod directory holding a journaled exit, as a shim leaves it.
    fn served_pod(root: &Path) -> PodDir {
        let dir = PodDir::new(root, "x");
        made(&dir);
        std::fs::write(dir.socket(), b"").unwrap();
        journal::append(&dir, &Record::Deleted { id: "c1".into() }).unwrap();
        dir
    }

    #[test]
    fn a_retiring_shim_waits_for_a_clean_up_in_progress() {
        let root = tempfile::tempdir().unwrap();
        let dir = served_pod(root.path());
        let held = dir.lock().unwrap();
        let shim = {
            let dir = dir.clone();
            std::thread::spawn(move || retire(&no_helper(), &dir, true))
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!shim.is_finished(), "retire did not wait for the lock");
        // What a `delete` writes while it holds the lock stays in place
        // until it lets go, then goes with the directory.
        journal::append(&dir, &Record::Deleted { id: "c2".into() }).unwrap();
        assert!(dir.socket().exists());
        drop(held);
        assert_eq!(shim.join().unwrap().unwrap(), Retired::Removed);
        assert!(!dir.path().exists());
    }

    #[test]
    fn a_clean_up_behind_a_retiring_shim_finds_nothing_and_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let dir = served_pod(root.path());
        let held = dir.lock().unwrap();
        let delete = {
            let dir = dir.clone();
            std::thread::spawn(move || cleanup_dead(&no_helper(), &dir, "c1"))
        };
        std::thread::sleep(Duration::from_millis(100));
        dir.remove().unwrap();
        drop(held);
        assert_eq!(delete.join().unwrap().unwrap(), Cleaned::default());
        assert!(!dir.path().exists());
    }

    #[test]
    fn a_shim_stopped_by_sigterm_keeps_the_pod_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = served_pod(root.path());
        assert_eq!(retire(&no_helper(), &dir, false).unwrap(), Retired::Kept);
        assert!(!dir.socket().exists());
        assert_eq!(journal::read(&dir).len(), 1);
        assert_eq!(retire(&no_helper(), &dir, true).unwrap(), Retired::Removed);
        assert!(!dir.path().exists());
        // Removed already, by the clean-up of the pod's task: nothing to do.
        assert_eq!(retire(&no_helper(), &dir, true).unwrap(), Retired::Removed);
    }

    #[test]
    fn a_retiring_shim_leaves_the_pod_to_a_new_shim_that_bound_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = served_pod(root.path());
        // A `start` found our socket refusing connections and bound anew.
        std::fs::remove_file(dir.socket()).unwrap();
        let _theirs = UnixListener::bind(dir.socket()).unwrap();
        assert_eq!(
            retire(&no_helper(), &dir, true).unwrap(),
            Retired::TakenOver
        );
        assert_eq!(dir.probe(), Probe::Serving);
        assert_eq!(journal::read(&dir).len(), 1);
    }

    #[test]
    fn cleanup_of_an_unknown_pod_is_a_no_op() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "x");
        assert_eq!(
            cleanup_dead(&no_helper(), &dir, "c1").unwrap(),
            Cleaned::default()
        );
    }

    #[test]
    fn cleanup_removes_a_pod_dir_without_a_record() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "x");
        made(&dir);
        std::fs::write(dir.socket(), b"").unwrap();
        assert_eq!(
            cleanup_dead(&no_helper(), &dir, "c1").unwrap(),
            Cleaned::default()
        );
        assert!(!dir.path().exists());
    }

    #[test]
    fn cleanup_leaves_a_pod_that_a_live_shim_serves() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "x");
        made(&dir);
        let _listener = UnixListener::bind(dir.socket()).unwrap();
        assert_eq!(dir.probe(), Probe::Serving);
        assert_eq!(
            cleanup_dead(&no_helper(), &dir, "c1").unwrap(),
            Cleaned::default()
        );
        assert!(dir.path().exists());
    }

    /// A dead pod whose shim journaled the exits of its sandbox (0) and of
    /// container c1 (42).
    fn dead_pod(root: &Path) -> PodDir {
        let dir = PodDir::new(root, "x");
        made(&dir);
        dir.write_record(&PodRecord {
            sandbox_id: "pod".into(),
            ..Default::default()
        })
        .unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for (id, status) in [("pod", 0), ("c1", 42)] {
            let exit = ExitRecord::new(id, "", 7, status, at);
            journal::append(&dir, &Record::Exit(exit)).unwrap();
        }
        dir
    }

    fn status(cleaned: Cleaned) -> Option<u32> {
        cleaned.exit.map(|e| e.status)
    }

    #[test]
    fn cleanup_reports_journaled_exits_in_any_order() {
        for order in [["pod", "c1"], ["c1", "pod"]] {
            let root = tempfile::tempdir().unwrap();
            let dir = dead_pod(root.path());
            let first = cleanup_dead(&no_helper(), &dir, order[0]).unwrap();
            assert!(
                dir.path().exists(),
                "{order:?}: the journal stays for the other task"
            );
            let second = cleanup_dead(&no_helper(), &dir, order[1]).unwrap();
            let (pod, c1) = if order[0] == "pod" {
                (first, second)
            } else {
                (second, first)
            };
            assert_eq!((status(pod), status(c1)), (Some(0), Some(42)), "{order:?}");
            assert!(
                !dir.path().exists(),
                "{order:?}: the last clean-up removes it"
            );
        }
    }

    #[test]
    fn cleanup_refuses_a_pod_of_a_newer_format_and_leaves_it_whole() {
        let root = tempfile::tempdir().unwrap();
        let dir = dead_pod(root.path());
        let newer = crate::state::FormatStamp {
            format: crate::state::FORMAT + 1,
            release: "9.9.9".into(),
        };
        crate::state::write_json(&dir.path().join(crate::state::FORMAT_FILE), &newer).unwrap();
        let before = journal::read(&dir);
        let e = cleanup_dead(&no_helper(), &dir, "pod").unwrap_err();
        assert!(
            matches!(e, crate::error::Error::FailedPrecondition { .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("(berth 9.9.9)"), "{e}");
        assert_eq!(journal::read(&dir), before, "nothing is journaled");
        assert!(dir.read_record().unwrap().is_some(), "the record stays");
    }

    #[test]
    fn an_unreadable_record_fails_the_pod_s_clean_up_and_keeps_its_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = dead_pod(root.path());
        let record = dir.path().join(crate::state::POD_FILE);
        std::fs::write(&record, b"{\"sandbox_id\": \"pod\", \"pause\": ").unwrap();
        // Without the record no task can tell pause or the pod's cgroup:
        // the clean-up fails, naming the file, and nothing is removed.
        let before = journal::read(&dir);
        for id in ["pod", "c1"] {
            let e = cleanup_dead(&no_helper(), &dir, id).unwrap_err();
            assert!(matches!(e, crate::error::Error::State { .. }), "{e:?}");
            assert!(e.to_string().contains(&*record.to_string_lossy()), "{e}");
        }
        assert!(record.exists(), "the record stays for a look");
        assert_eq!(journal::read(&dir), before, "nothing is journaled");
    }

    #[test]
    fn a_pause_that_does_not_start_is_reported_with_its_class() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "x");
        let fake = FakeHelper::new(&root.path().join("fake"));
        fake.refuse(
            "spawn_pause",
            ErrorKind::InvalidArgument,
            "invalid linux.namespaces[0].path",
        );
        let config = SandboxConfig {
            hostname: None,
            network: crate::spec::Network::Host,
            new_ipc: true,
            new_uts: false,
            new_pid: false,
            cgroup: None,
            scope: None,
            sysctls: Vec::new(),
        };
        let err =
            start_pause(&fake.helper(), &dir, "pod", &config, "/bin/pause".into()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        let Request::SpawnPause(spec) = &fake.requests()[0] else {
            panic!("a spawn request");
        };
        assert_eq!(spec.root_dir, dir.pause_root(), "an empty root made first");
        assert!(dir.pause_root().is_dir());
    }

    #[test]
    fn cleanup_removes_a_dead_pod_s_container_and_reports_its_exit() {
        let root = tempfile::tempdir().unwrap();
        let dir = dead_pod(root.path());
        let fake = FakeHelper::new(&root.path().join("fake"));
        std::fs::create_dir_all(dir.container_dir("c1")).unwrap();
        let cleaned = cleanup_dead(&fake.helper(), &dir, "c1").unwrap();
        assert_eq!(status(cleaned), Some(42));
        assert_eq!(fake.kinds(), ["delete_container"]);
        assert!(dir.container_ids().is_empty());
        // The pod's own clean-up finds the container gone, kills no pause
        // (none was recorded) and removes the directory.
        let cleaned = cleanup_dead(&fake.helper(), &dir, "pod").unwrap();
        assert_eq!(status(cleaned), Some(0));
        assert!(!dir.path().exists());
        assert_eq!(fake.kinds().len(), 1);
    }

    #[test]
    fn a_container_the_helper_cannot_delete_is_left_for_its_own_clean_up() {
        let root = tempfile::tempdir().unwrap();
        let dir = dead_pod(root.path());
        let fake = FakeHelper::new(&root.path().join("fake"));
        std::fs::create_dir_all(dir.container_dir("c1")).unwrap();
        fake.refuse("delete_container", ErrorKind::Internal, "busy");
        let err = cleanup_dead(&fake.helper(), &dir, "pod").unwrap_err();
        assert_eq!(err.to_string(), "busy");
        assert_eq!(
            dir.container_ids(),
            ["c1"],
            "the container's record stays for its own clean-up"
        );
        // Once the helper can, the container's clean-up finishes the job.
        fake.answer("delete_container", &Response::Done);
        assert_eq!(
            status(cleanup_dead(&fake.helper(), &dir, "c1").unwrap()),
            Some(42)
        );
        assert!(!dir.path().exists());
    }

    #[test]
    fn a_task_without_a_journaled_exit_is_reported_killed() {
        let root = tempfile::tempdir().unwrap();
        let dir = dead_pod(root.path());
        assert_eq!(cleanup_dead(&no_helper(), &dir, "c2").unwrap().exit, None);
    }
}
