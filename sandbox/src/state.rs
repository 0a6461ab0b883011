//! A pod's state directory: what must survive a shim or containerd restart.
//!
//! Files are replaced atomically (temp file, fsync, rename, fsync of the
//! directory), so a crash leaves either the old or the new content.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Environment variable overriding [`DEFAULT_ROOT`].
pub const ROOT_ENV: &str = "BERTH_STATE_ROOT";
/// Where pods' state lives by default: tmpfs, so it survives restarts of the
/// shim and of containerd, but not of the machine.
pub const DEFAULT_ROOT: &str = "/run/berth";

pub(crate) const POD_FILE: &str = "pod.json";
pub(crate) const FORMAT_FILE: &str = "format";
const PAUSE_ROOT: &str = "pause-root";
const CONTAINERS: &str = "containers";
const ENGINE_ROOT: &str = "engine";
const LOCK_FILE: &str = "lock";
/// The shim's ttrpc socket, inside the pod's directory.
pub const SOCKET: &str = "shim.sock";

/// The revision of the pod directory's on-disk format that this build
/// writes: the files in it (`pod.json`, `container.json`, the exit journal),
/// their fields, and where they live. Bumped whenever a reader of the
/// previous revision would misread what this one writes.
pub const FORMAT: u32 = 1;
/// The oldest revision this build still reads, to clean up after a dead
/// shim of an earlier release. Pods stamped before revisions existed are 1.
pub const OLDEST_FORMAT: u32 = 1;
/// The release that writes [`FORMAT`], named in the stamp.
const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// The stamp in a pod's directory: the format its state is in, and the
/// release of the shim that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatStamp {
    pub format: u32,
    /// The berth release that wrote it (`0.1.0`), for the error that names it.
    #[serde(default)]
    pub release: String,
}

impl FormatStamp {
    /// The stamp of what this build writes.
    pub fn current() -> Self {
        FormatStamp {
            format: FORMAT,
            release: RELEASE.to_owned(),
        }
    }

    /// Who wrote it, for messages: `format 2 (berth 0.2.0)`.
    fn describe(&self) -> String {
        if self.release.is_empty() {
            format!("format {}", self.format)
        } else {
            format!("format {} (berth {})", self.format, self.release)
        }
    }
}

/// What this build is, for messages: `berth 0.1.0 reads formats 1 to 1`.
fn this_build() -> String {
    format!(
        "this berth {RELEASE} writes format {FORMAT} and reads formats {OLDEST_FORMAT} to {FORMAT}"
    )
}

/// The state root in force: `$BERTH_STATE_ROOT`, else [`DEFAULT_ROOT`].
pub fn root() -> PathBuf {
    std::env::var_os(ROOT_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from)
}

/// A process named so that a reused pid is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: i32,
    pub start_time: u64,
}

/// What berth knows of a pod, on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    pub sandbox_id: String,
    pub namespace: String,
    pub pause: Option<ProcessRecord>,
    /// The cgroup berth created for the pod, removed with it.
    pub cgroup: Option<String>,
}

/// The pod's lock, held until dropped.
pub type PodLock = nix::fcntl::Flock<File>;

/// One pod's directory under the state root.
#[derive(Debug, Clone)]
pub struct PodDir {
    path: PathBuf,
}

impl PodDir {
    /// The directory for `key` under `root`, not necessarily existing yet.
    pub fn new(root: &Path, key: &str) -> Self {
        PodDir {
            path: root.join(key),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shim's socket in this directory.
    pub fn socket(&self) -> PathBuf {
        self.path.join(SOCKET)
    }

    /// Creates the directory (and the empty mountpoint for pause's root).
    pub fn create(&self) -> Result<()> {
        let pause_root = self.path.join(PAUSE_ROOT);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&pause_root)
            .map_err(Error::io("create", &pause_root))
    }

    /// Takes the pod's lock, held while a shim's socket is probed, replaced
    /// or bound, so racing `start`s never serve one pod twice. Makes the
    /// directory, and makes it again if it went while we waited (the pod's
    /// last shim removes it under this lock, [`crate::pod::retire`]).
    pub fn lock(&self) -> Result<PodLock> {
        loop {
            self.create()?;
            if let Some(lock) = self.lock_file(true)? {
                return Ok(lock);
            }
        }
    }

    /// Takes the lock of a pod directory that is there, creating nothing:
    /// `None` when the directory is gone or is being removed by the holder
    /// of the lock, which removes it while holding it.
    pub fn lock_existing(&self) -> Result<Option<PodLock>> {
        self.lock_file(false)
    }

    fn lock_file(&self, create: bool) -> Result<Option<PodLock>> {
        let path = self.path.join(LOCK_FILE);
        let file = match OpenOptions::new()
            .create(create)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", &path)(e)),
        };
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io("lock", &path)(e.into()))?;
        // Removed while we waited: the lock is on a file no longer there.
        let held = lock.metadata().map_err(Error::io("stat", &path))?;
        match fs::metadata(&path) {
            Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => Ok(Some(lock)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat", &path)(e)),
        }
    }

    /// Stamps the directory with this build's format unless it has a stamp,
    /// or state from before stamps existed. Call it holding the lock.
    pub fn stamp(&self) -> Result<()> {
        let path = self.path.join(FORMAT_FILE);
        if path.exists() || self.has_state() {
            return Ok(());
        }
        write_json(&path, &FormatStamp::current())
    }

    /// The stamp of the pod's state; a pod without one was made before
    /// stamps, in format 1.
    pub fn format(&self) -> Result<FormatStamp> {
        Ok(
            read_json(&self.path.join(FORMAT_FILE))?.unwrap_or(FormatStamp {
                format: 1,
                release: String::new(),
            }),
        )
    }

    /// Refuses a pod whose state this build cannot read: one from a newer
    /// release (a downgrade) or one too old to be read any more. What it
    /// reads of an older format it also writes in that format: the stamp
    /// is never rewritten.
    pub fn check_readable(&self) -> Result<FormatStamp> {
        let stamp = self.format()?;
        if (OLDEST_FORMAT..=FORMAT).contains(&stamp.format) {
            return Ok(stamp);
        }
        Err(Error::FailedPrecondition {
            what: format!("pod state {}", self.path.display()),
            reason: format!(
                "it is in {}, and {}: act on this pod with the release that made it",
                stamp.describe(),
                this_build()
            ),
        })
    }

    /// Refuses a pod that a shim of this build may not serve: only one of
    /// its own format is, so that no shim writes a newer or older format
    /// into a pod that another release's shim made. After [`PodDir::stamp`],
    /// so that a new pod reads as this build's.
    pub fn check_servable(&self) -> Result<()> {
        let stamp = self.check_readable()?;
        if stamp.format == FORMAT {
            return Ok(());
        }
        Err(Error::FailedPrecondition {
            what: format!("pod state {}", self.path.display()),
            reason: format!(
                "it is in {}, and {}; a shim serves only pods of its own format",
                stamp.describe(),
                this_build()
            ),
        })
    }

    /// Makes the pod this build's to serve (call it holding the lock, with
    /// no shim serving): a new pod is stamped with this build's format, a
    /// pod from another release is refused. A dead shim's pod of another
    /// format is its `delete`'s to clean up.
    pub fn claim(&self) -> Result<()> {
        self.stamp()?;
        self.check_servable()
    }

    /// Whether anything of a pod is recorded here yet.
    fn has_state(&self) -> bool {
        self.path.join(POD_FILE).exists()
            || self.path.join(crate::journal::FILE).exists()
            || !self.container_ids().is_empty()
    }

    /// berth's directory for one app container of the pod.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.path.join(CONTAINERS).join(id)
    }

    /// The ids of the app containers with a directory in the pod.
    pub fn container_ids(&self) -> Vec<String> {
        fs::read_dir(self.path.join(CONTAINERS))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// libcontainer's state root for the pod's containers.
    pub fn engine_root(&self) -> PathBuf {
        self.path.join(ENGINE_ROOT)
    }

    /// The empty directory pause's root tmpfs is mounted on, in the helper's
    /// private mount namespace.
    pub fn pause_root(&self) -> PathBuf {
        self.path.join(PAUSE_ROOT)
    }

    pub fn write_record(&self, record: &PodRecord) -> Result<()> {
        write_json(&self.path.join(POD_FILE), record)
    }

    /// Removes the pod's record: the pod is gone, its directory not yet.
    pub fn remove_record(&self) -> Result<()> {
        remove_file(&self.path.join(POD_FILE))
    }

    pub fn read_record(&self) -> Result<Option<PodRecord>> {
        read_json(&self.path.join(POD_FILE))
    }

    /// Removes the directory and everything in it, its lock file last; a
    /// missing one is fine. Call it holding the lock: whoever waits for the
    /// lock meanwhile finds the directory gone once it has it, and no one
    /// takes it anew in a directory half removed.
    pub fn remove(&self) -> Result<()> {
        let entries = match fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("read", &self.path)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(Error::io("read", &self.path))?;
            if entry.file_name() == LOCK_FILE {
                continue;
            }
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dir(&path)?;
            } else {
                remove_file(&path)?;
            }
        }
        remove_file(&self.path.join(LOCK_FILE))?;
        match fs::remove_dir(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove", &self.path)(e))
            }
            _ => Ok(()),
        }
    }

    /// Whether a shim answers on the pod's socket.
    pub fn probe(&self) -> Probe {
        probe(&self.socket())
    }
}

/// Whether a shim answers on a socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    Serving,
    /// The file is there but nobody listens: a dead shim's.
    Stale,
    Absent,
}

/// Probes `socket`. Only a refused connection or a missing file count as
/// "nobody there"; any other failure (a full backlog, say) is taken as a live
/// shim, never as licence to replace its socket.
pub fn probe(socket: &Path) -> Probe {
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(_) => Probe::Serving,
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Probe::Stale,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Probe::Absent,
        Err(e) => {
            log::warn!("probe {}: {e}; taking it as served", socket.display());
            Probe::Serving
        }
    }
}

/// Removes a directory tree; one already gone is not an error.
pub fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", dir)(e)),
        _ => Ok(()),
    }
}

/// Removes a file; one already gone is not an error.
pub fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Replaces `path` with `data` atomically and durably.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(Error::io("create", &tmp))?;
    let written = file
        .write_all(data)
        .map_err(Error::io("write", &tmp))
        .and_then(|()| file.sync_all().map_err(Error::io("fsync", &tmp)))
        .and_then(|()| fs::rename(&tmp, path).map_err(Error::io("rename into", path)));
    if written.is_err() {
        // A full or failing disk leaves the old file, and no half of the new.
        let _ = fs::remove_file(&tmp);
    }
    written?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync", dir))
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let data = serde_json::to_vec_pretty(value).expect("state always serializes");
    write_atomic(path, &data)
}

/// Reads a JSON file; `None` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|source| Error::State {
                path: path.to_owned(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_replace_atomically() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "abc");
        dir.create().unwrap();
        assert!(dir.pause_root().is_dir());
        assert_eq!(dir.read_record().unwrap(), None);
        let mut record = PodRecord {
            sandbox_id: "pod".into(),
            namespace: "k8s.io".into(),
            pause: Some(ProcessRecord {
                pid: 7,
                start_time: 99,
            }),
            cgroup: None,
        };
        dir.write_record(&record).unwrap();
        record.cgroup = Some("/a/b".into());
        dir.write_record(&record).unwrap();
        assert_eq!(dir.read_record().unwrap(), Some(record));
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        dir.remove().unwrap();
        assert!(!dir.path().exists());
        dir.remove().unwrap();
    }

    fn stamped(dir: &PodDir, format: u32, release: &str) {
        let stamp = FormatStamp {
            format,
            release: release.into(),
        };
        write_json(&dir.path().join(FORMAT_FILE), &stamp).unwrap();
    }

    #[test]
    fn a_new_pod_is_stamped_with_this_build_s_format_once() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "abc");
        dir.create().unwrap();
        dir.stamp().unwrap();
        assert_eq!(dir.format().unwrap(), FormatStamp::current());
        dir.check_servable().unwrap();
        // An existing stamp is never rewritten, whatever it says.
        stamped(&dir, FORMAT + 1, "9.9.9");
        dir.stamp().unwrap();
        assert_eq!(dir.format().unwrap().format, FORMAT + 1);
    }

    #[test]
    fn a_pod_from_before_stamps_is_format_1_and_stays_unstamped() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "abc");
        dir.create().unwrap();
        dir.write_record(&PodRecord::default()).unwrap();
        dir.stamp().unwrap();
        assert!(!dir.path().join(FORMAT_FILE).exists());
        let stamp = dir.check_readable().unwrap();
        assert_eq!(stamp.format, 1);
        // A journal alone, or a container's directory, is state as well.
        for made in ["journal", "container"] {
            let dir = PodDir::new(root.path(), made);
            dir.create().unwrap();
            match made {
                "journal" => fs::write(dir.path().join(crate::journal::FILE), b"").unwrap(),
                _ => fs::create_dir_all(dir.container_dir("c1")).unwrap(),
            }
            dir.stamp().unwrap();
            assert!(!dir.path().join(FORMAT_FILE).exists(), "{made}");
        }
    }

    #[test]
    fn a_newer_format_is_refused_naming_both_releases() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "abc");
        dir.create().unwrap();
        stamped(&dir, FORMAT + 1, "9.9.9");
        for result in [dir.check_readable().map(|_| ()), dir.check_servable()] {
            let e = result.unwrap_err();
            assert!(matches!(e, Error::FailedPrecondition { .. }), "{e:?}");
            let text = e.to_string();
            let theirs = format!("format {} (berth 9.9.9)", FORMAT + 1);
            let ours = format!("this berth {RELEASE} writes format {FORMAT}");
            assert!(text.contains(&theirs), "{text}");
            assert!(text.contains(&ours), "{text}");
            assert!(text.contains(&dir.path().display().to_string()), "{text}");
        }
        stamped(&dir, OLDEST_FORMAT - 1, "");
        let text = dir.check_readable().unwrap_err().to_string();
        assert!(
            text.contains(&format!("in format {}, and", OLDEST_FORMAT - 1)),
            "{text}"
        );
    }

    #[test]
    fn an_unreadable_stamp_is_a_state_error_naming_the_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "abc");
        dir.create().unwrap();
        fs::write(dir.path().join(FORMAT_FILE), b"{\"format\": \"two\"}").unwrap();
        match dir.check_readable() {
            Err(Error::State { path, .. }) => assert_eq!(path, dir.path().join(FORMAT_FILE)),
            other => panic!("{other:?}"),
        }
    }

    /// Runs `f` on a thread while the test holds the pod's lock, then lets
    /// `meanwhile` act as the holder before the lock goes.
    fn behind_the_lock<T: Send + 'static>(
        dir: &PodDir,
        f: impl FnOnce(PodDir) -> T + Send + 'static,
        meanwhile: impl FnOnce(&PodDir),
    ) -> T {
        let held = dir.lock().unwrap();
        let waiter = {
            let dir = dir.clone();
            std::thread::spawn(move || f(dir))
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!waiter.is_finished(), "the lock did not hold the waiter");
        meanwhile(dir);
        drop(held);
        waiter.join().unwrap()
    }

    #[test]
    fn a_lock_on_a_directory_removed_meanwhile_is_no_lock() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "x");
        assert!(dir.lock_existing().unwrap().is_none());
        dir.create().unwrap();
        let got = behind_the_lock(
            &dir,
            |d| d.lock_existing().unwrap().is_some(),
            |d| d.remove().unwrap(),
        );
        assert!(!got);
        assert!(!dir.path().exists());
    }

    #[test]
    fn lock_makes_the_directory_again_if_it_went_meanwhile() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "x");
        behind_the_lock(&dir, |d| drop(d.lock().unwrap()), |d| d.remove().unwrap());
        assert!(dir.path().join(LOCK_FILE).exists());
        assert!(dir.pause_root().exists());
        assert!(dir.lock_existing().unwrap().is_some());
    }

    #[test]
    fn probe_tells_served_from_stale_and_absent() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "x");
        dir.create().unwrap();
        assert_eq!(dir.probe(), Probe::Absent);
        let listener = std::os::unix::net::UnixListener::bind(dir.socket()).unwrap();
        assert_eq!(dir.probe(), Probe::Serving);
        drop(listener);
        assert_eq!(dir.probe(), Probe::Stale);
    }

    #[test]
    fn a_torn_record_is_an_error_not_a_panic() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("pod.json");
        fs::write(&path, b"{\"sandbox_id\": \"x\", \"na").unwrap();
        assert!(matches!(
            read_json::<PodRecord>(&path),
            Err(Error::State { .. })
        ));
    }
}
