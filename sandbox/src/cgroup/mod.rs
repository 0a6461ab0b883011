//! Cgroups, in one place: where a pod's or a task's cgroup is, and what is
//! done with it.
//!
//! - here: a pod's cgroupfs path created, joined and removed, and a task's
//!   cgroup found from its init ([`TaskCgroup`]);
//! - [`devices`]: the device allow-list on v2, an eBPF program;
//! - [`freezer`]: freezing and thawing;
//! - [`oom`]: the source of OOM-kill notifications;
//! - [`stats`]: the counters Stats reports;
//! - [`resources`]: the limits Update sets;
//! - [`systemd`]: the systemd driver's scope units.
//!
//! cgroup v1 (and hybrid hosts, which count as v1) and the unified v2
//! hierarchy are handled side by side in each of them.

pub mod devices;
pub mod freezer;
pub mod oom;
pub mod resources;
pub mod stats;
pub mod systemd;

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::fs::{hierarchies, Cgroup};
use cgroups_rs::CgroupPid;

use crate::error::{Error, Result};

/// Where every hierarchy is mounted.
const ROOT: &str = "/sys/fs/cgroup";

/// Creates `path` in every hierarchy (if missing) and moves `pid` into it.
pub fn join(path: &str, pid: u32) -> Result<()> {
    create(path)?
        .add_task_by_tgid(CgroupPid::from(pid as u64))
        .map_err(|source| Error::Cgroup {
            op: "join",
            path: path.to_owned(),
            source,
        })
}

/// How the helper puts pause into a pod's cgroupfs cgroup, which
/// [`Placement::prepare`] has created.
#[derive(Debug)]
pub enum Placement {
    /// Pause inherits the helper's cgroup: the helper has joined the pod's
    /// (on v1 and hybrid hosts, where each hierarchy needs a write of its
    /// own, and with a systemd scope), or there is none to join.
    Inherited,
    /// On the unified hierarchy: the cgroup's directory, to clone pause
    /// into, and its `cgroup.procs`, to join instead where the kernel
    /// cannot. Both are opened while the host's cgroupfs is still in view.
    Into {
        /// The cgroup's directory, opened `O_PATH`.
        dir: OwnedFd,
        /// Its `cgroup.procs`, open for writing.
        procs: File,
        /// The cgroup's path, for errors.
        path: String,
    },
}

impl Placement {
    /// Creates `path` (with the parents' controllers enabled, as
    /// [`join`] does) and readies it for pause.
    pub fn prepare(path: &str) -> Result<Placement> {
        if !hierarchies::is_cgroup2_unified_mode() {
            join(path, std::process::id())?;
            return Ok(Placement::Inherited);
        }
        create(path)?;
        Placement::open(&Path::new(ROOT).join(path.trim_start_matches('/')), path)
    }

    /// Opens the v2 cgroup whose directory is `dir`; `path` names it.
    pub fn open(dir: &Path, path: &str) -> Result<Placement> {
        let dir_fd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(dir)
            .map(OwnedFd::from)
            .map_err(Error::io("open", dir))?;
        let procs_path = dir.join("cgroup.procs");
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(&procs_path)
            .map_err(Error::io("open", &procs_path))?;
        Ok(Placement::Into {
            dir: dir_fd,
            procs,
            path: path.to_owned(),
        })
    }

    /// Moves the calling process into the cgroup, when it is not there
    /// yet. Allocates nothing unless it fails.
    pub fn join_self(&self) -> Result<()> {
        match self {
            Placement::Inherited => Ok(()),
            Placement::Into { procs, path, .. } => {
                let mut procs: &File = procs;
                // "0" is the writer itself.
                procs
                    .write_all(b"0")
                    .map_err(|e| Error::sys(format!("join cgroup {path}"))(e))
            }
        }
    }
}

/// Creates `path` in every hierarchy, if missing.
fn create(path: &str) -> Result<Cgroup> {
    Cgroup::new(hierarchies::auto(), path.trim_start_matches('/')).map_err(|source| Error::Cgroup {
        op: "create",
        path: path.to_owned(),
        source,
    })
}

/// Moves `pid` into `path` in every hierarchy where it exists, creating
/// nothing (the shim's own cgroup, which its operator made: containerd's
/// Go shims join a `ShimCgroup` the same way). Not found if it exists in
/// none.
pub fn join_existing(path: &str, pid: u32) -> Result<()> {
    let invalid = || Error::invalid("ShimCgroup", format!("{path:?} is not a cgroupfs path"));
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(invalid());
    }
    let cg = Cgroup::load(hierarchies::auto(), path.trim_start_matches('/'));
    let mut joined = 0;
    for subsystem in cg.subsystems() {
        let controller = subsystem.to_controller();
        if !controller.exists() {
            continue;
        }
        controller
            .add_task_by_tgid(&CgroupPid::from(pid as u64))
            .map_err(|source| Error::Cgroup {
                op: "join",
                path: path.to_owned(),
                source,
            })?;
        joined += 1;
    }
    if joined == 0 {
        return Err(Error::NotFound(format!("cgroup {path}")));
    }
    Ok(())
}

/// Removes `path` from every hierarchy. A cgroup that is already gone is fine.
pub fn remove(path: &str) -> Result<()> {
    let relative = path.trim_start_matches('/');
    let cg = Cgroup::load(hierarchies::auto(), relative);
    if !cg.exists() {
        return Ok(());
    }
    cg.delete().map_err(|source| Error::Cgroup {
        op: "remove",
        path: path.to_owned(),
        source,
    })
}

/// Removes a pod's cgroup, waiting a little for exiting tasks to leave it.
pub fn remove_when_empty(path: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match remove(path) {
            Err(e) if Instant::now() < deadline => {
                log::debug!("cgroup {path} not removable yet: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

/// Whether `path` exists in any hierarchy.
pub fn exists(path: &str) -> bool {
    Cgroup::load(hierarchies::auto(), path.trim_start_matches('/')).exists()
}

/// Where a task's cgroup is. Read from its init's `/proc/<pid>/cgroup` when
/// the task is created, so that Stats, Update and Pids still find it after
/// the init has exited, until Delete removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskCgroup {
    /// Each v1 controller's path (a hybrid host counts as v1).
    V1(HashMap<String, String>),
    /// The path under the unified hierarchy.
    V2(PathBuf),
}

impl TaskCgroup {
    /// The cgroup process `pid` is in now.
    pub fn of_pid(pid: i32) -> Result<TaskCgroup> {
        let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
        let text = std::fs::read_to_string(&path).map_err(Error::io("read", &path))?;
        TaskCgroup::parse(&text, hierarchies::is_cgroup2_unified_mode())
            .ok_or_else(|| Error::invalid(path.display().to_string(), "names no cgroup"))
    }

    /// Parses a `/proc/<pid>/cgroup` file. A path may itself hold colons.
    pub(crate) fn parse(text: &str, unified: bool) -> Option<TaskCgroup> {
        let entries = text.lines().filter_map(|line| {
            let (_id, rest) = line.split_once(':')?;
            rest.split_once(':')
        });
        if unified {
            return entries
                .filter(|(controllers, _)| controllers.is_empty())
                .map(|(_, path)| TaskCgroup::V2(PathBuf::from(path.trim_start_matches('/'))))
                .next();
        }
        let paths: HashMap<String, String> = entries
            .filter(|(controllers, _)| !controllers.is_empty())
            .flat_map(|(controllers, path)| {
                controllers
                    .split(',')
                    .map(move |c| (c.to_owned(), path.to_owned()))
            })
            .collect();
        (!paths.is_empty()).then_some(TaskCgroup::V1(paths))
    }

    /// The directory of a v1 controller's cgroup, on a v1 host.
    pub fn v1_dir(&self, controller: &str) -> Option<PathBuf> {
        match self {
            TaskCgroup::V1(paths) => paths.get(controller).map(|p| {
                Path::new(ROOT)
                    .join(controller)
                    .join(p.trim_start_matches('/'))
            }),
            TaskCgroup::V2(_) => None,
        }
    }

    /// The cgroup's directory in the unified hierarchy, on a v2 host.
    pub fn unified(&self) -> Option<PathBuf> {
        match self {
            TaskCgroup::V2(path) => Some(Path::new(ROOT).join(path)),
            TaskCgroup::V1(_) => None,
        }
    }

    /// The cgroup's freezer: the v1 freezer controller, or v2's own.
    pub fn freezer(&self) -> Option<freezer::Freezer> {
        match self {
            TaskCgroup::V1(_) => self.v1_dir("freezer").map(freezer::Freezer::V1),
            TaskCgroup::V2(_) => self.unified().map(freezer::Freezer::V2),
        }
    }

    /// What error messages call the cgroup: its path (v1: its memory
    /// controller's, the one most asked about).
    pub fn name(&self) -> String {
        match self {
            TaskCgroup::V1(paths) => paths
                .get("memory")
                .or_else(|| paths.values().next())
                .cloned()
                .unwrap_or_default(),
            TaskCgroup::V2(path) => format!("/{}", path.display()),
        }
    }

    /// The cgroup as cgroups-rs reads and writes it.
    fn load(&self) -> Cgroup {
        match self {
            TaskCgroup::V1(paths) => {
                Cgroup::load_with_relative_paths(hierarchies::auto(), ".", paths.clone())
            }
            TaskCgroup::V2(path) => Cgroup::load(hierarchies::auto(), path),
        }
    }

    /// Every process in the cgroup, as the caller's PID namespace numbers
    /// them.
    pub fn pids(&self) -> Vec<u32> {
        self.load()
            .procs()
            .into_iter()
            .map(|p| p.pid as u32)
            .collect()
    }

    /// A failure of cgroups-rs on this cgroup; the name is made only then.
    fn error(&self, op: &'static str) -> impl FnOnce(cgroups_rs::fs::error::Error) -> Error + '_ {
        move |source| Error::Cgroup {
            op,
            path: self.name(),
            source,
        }
    }
}

/// Whether cgroups-rs failed because a cgroup file is not there (a cgroup
/// gone, a controller file the host lacks).
fn is_not_found(e: &cgroups_rs::fs::error::Error) -> bool {
    use std::error::Error as _;
    e.source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|s| s.kind() == std::io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use freezer::Freezer;

    #[test]
    fn the_placement_of_a_missing_cgroup_names_it() {
        let missing = Path::new("/sys/fs/cgroup/berth-no-such-cgroup");
        let err = Placement::open(missing, "/berth-no-such-cgroup").unwrap_err();
        assert!(err.to_string().contains("berth-no-such-cgroup"), "{err}");
        assert_eq!(err.kind(), crate::error::ErrorKind::NotFound);
    }

    #[test]
    fn reads_every_v1_controller_and_colons_in_paths() {
        let text =
            "12:pids:/k8s.io/a:b\n9:cpu,cpuacct:/k8s.io/a:b\n1:name=systemd:/x\n0::/user.slice\n";
        let cg = TaskCgroup::parse(text, false).unwrap();
        let TaskCgroup::V1(paths) = &cg else {
            panic!("a hybrid host is v1: {cg:?}")
        };
        assert_eq!(paths["cpu"], "/k8s.io/a:b");
        assert_eq!(paths["cpuacct"], "/k8s.io/a:b");
        assert_eq!(paths["pids"], "/k8s.io/a:b");
        assert_eq!(cg.v1_dir("memory"), None);
        assert_eq!(cg.freezer(), None);
        let with_memory = TaskCgroup::parse("4:cpu,memory:/x\n3:freezer:/x\n", false).unwrap();
        assert_eq!(
            with_memory.v1_dir("memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/x"))
        );
        assert_eq!(with_memory.name(), "/x");
        assert_eq!(
            with_memory.freezer(),
            Some(Freezer::V1(PathBuf::from("/sys/fs/cgroup/freezer/x")))
        );
    }

    #[test]
    fn takes_the_unified_entry_on_a_v2_host() {
        let cg = TaskCgroup::parse("0::/kubepods/pod1/c1\n", true).unwrap();
        assert_eq!(cg, TaskCgroup::V2(PathBuf::from("kubepods/pod1/c1")));
        assert_eq!(
            cg.unified(),
            Some(PathBuf::from("/sys/fs/cgroup/kubepods/pod1/c1"))
        );
        assert_eq!(cg.name(), "/kubepods/pod1/c1");
        assert_eq!(
            cg.freezer(),
            Some(Freezer::V2(PathBuf::from(
                "/sys/fs/cgroup/kubepods/pod1/c1"
            )))
        );
        assert_eq!(TaskCgroup::parse("0::/only/v2\n", false), None);
    }

    #[test]
    fn the_cgroup_of_a_process_that_is_gone_is_not_found() {
        let err = TaskCgroup::of_pid(i32::MAX).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::NotFound, "{err}");
    }
}

#[cfg(all(test, feature = "root-tests"))]
mod root_tests {
    use super::*;
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::Pid;
    use std::os::fd::AsFd;

    /// A fresh cgroup in the unified hierarchy (at /sys/fs/cgroup on a v2
    /// host, /sys/fs/cgroup/unified on a hybrid one), removed on drop.
    struct V2Cgroup(PathBuf);

    impl V2Cgroup {
        fn new(name: &str) -> V2Cgroup {
            let base = [PathBuf::from(ROOT), Path::new(ROOT).join("unified")]
                .into_iter()
                .find(|b| b.join("cgroup.controllers").exists())
                .expect("these tests need a cgroup2 hierarchy, pure or hybrid");
            let dir = base.join(format!("berth-{name}-{}", std::process::id()));
            std::fs::create_dir(&dir).unwrap();
            V2Cgroup(dir)
        }

        fn name(&self) -> String {
            format!("/{}", self.0.file_name().unwrap().to_str().unwrap())
        }

        fn placement(&self) -> Placement {
            Placement::open(&self.0, &self.name()).unwrap()
        }
    }

    impl Drop for V2Cgroup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    /// The cgroup of process `pid` in the unified hierarchy, as
    /// `/proc/<pid>/cgroup`'s `0::` line names it.
    fn unified_cgroup_of(pid: i32) -> String {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or_else(|| panic!("no unified line in {text}"))
            .to_owned()
    }

    /// In a child: runs `first` (which exits on failure), then parks until
    /// SIGKILLed. The test process has threads, so the child makes only
    /// async-signal-safe calls, and holds no pipe another test could wait on.
    fn park(first: impl FnOnce()) -> ! {
        first();
        loop {
            // SAFETY: pause has no preconditions; it returns on a signal.
            unsafe { libc::pause() };
        }
    }

    /// A parked child: killed and reaped when dropped, so a failed assert
    /// leaves no process holding the test's cgroup.
    struct Parked(Pid);

    impl Parked {
        /// Kills and reaps the child, which must not have exited by itself.
        fn reap(self) {
            let pid = self.0;
            kill(pid, Signal::SIGKILL).unwrap();
            let status = waitpid(pid, None).unwrap();
            std::mem::forget(self);
            assert_eq!(status, WaitStatus::Signaled(pid, Signal::SIGKILL, false));
        }
    }

    impl Drop for Parked {
        fn drop(&mut self) {
            let _ = kill(self.0, Signal::SIGKILL);
            let _ = waitpid(self.0, None);
        }
    }

    #[test]
    fn a_child_cloned_into_a_v2_cgroup_is_born_there_and_the_parent_stays() {
        let cgroup = V2Cgroup::new("clone-into");
        let placement = cgroup.placement();
        let Placement::Into { dir, .. } = &placement else {
            panic!("not a v2 placement")
        };
        let me = std::process::id() as i32;
        let mine = unified_cgroup_of(me);
        // SAFETY: the child only parks (pause) until it is killed.
        let child = unsafe { crate::sys::fork_into_cgroup(dir.as_fd()) }
            .expect("clone3 with CLONE_INTO_CGROUP (Linux 5.7)");
        if child == 0 {
            park(|| {});
        }
        let parked = Parked(Pid::from_raw(child));
        assert_eq!(unified_cgroup_of(child), cgroup.name());
        let procs = std::fs::read_to_string(cgroup.0.join("cgroup.procs")).unwrap();
        assert_eq!(
            procs.trim(),
            child.to_string(),
            "the cgroup holds the child alone"
        );
        assert_eq!(unified_cgroup_of(me), mine, "the parent was not moved");
        parked.reap();
    }

    #[test]
    fn joining_through_the_open_cgroup_procs_moves_the_writer_only() {
        let cgroup = V2Cgroup::new("join-self");
        let placement = cgroup.placement();
        let me = std::process::id() as i32;
        let mine = unified_cgroup_of(me);
        // SAFETY: the child writes one buffer to a descriptor (join_self
        // allocates only on failure, and then exits at once), then parks.
        let child = match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => park(|| {
                if placement.join_self().is_err() {
                    crate::sys::exit_now(3);
                }
            }),
            nix::unistd::ForkResult::Parent { child } => child,
        };
        let parked = Parked(child);
        // The child joins in its own time: its cgroup is read until it shows
        // the move, or the child is found to have exited.
        let deadline = Instant::now() + Duration::from_secs(5);
        while unified_cgroup_of(child.as_raw()) != cgroup.name() {
            let status = waitpid(child, Some(WaitPidFlag::WNOHANG)).unwrap();
            if status != WaitStatus::StillAlive {
                // Reaped already: nothing is left to kill.
                std::mem::forget(parked);
                panic!("the child could not join: {status:?}");
            }
            assert!(Instant::now() < deadline, "the child never joined");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(unified_cgroup_of(me), mine, "the parent was not moved");
        parked.reap();
    }
}
