//! A pod's state directory: what must survive a shim or containerd restart.
//!
//! Files are replaced atomically (temp file, fsync, rename, fsync of the
//! directory), so a crash leaves either the old or the new content.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Environment variable overriding [`DEFAULT_ROOT`].
pub const ROOT_ENV: &str = "BERTH_STATE_ROOT";
/// Where pods' state lives by default: tmpfs, so it survives restarts of the
/// shim and of containerd, but not of the machine.
pub const DEFAULT_ROOT: &str = "/run/berth";

const POD_FILE: &str = "pod.json";
const PAUSE_ROOT: &str = "pause-root";
const CONTAINERS: &str = "containers";
const ENGINE_ROOT: &str = "engine";
/// The shim's ttrpc socket, inside the pod's directory.
pub const SOCKET: &str = "shim.sock";

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
    /// or bound, so racing `start`s never serve one pod twice.
    pub fn lock(&self) -> Result<nix::fcntl::Flock<File>> {
        let path = self.path.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(Error::io("open", &path))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io("lock", &path)(e.into()))
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

    /// Removes the directory and everything in it; a missing one is fine.
    pub fn remove(&self) -> Result<()> {
        remove_dir(&self.path)
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
    file.write_all(data).map_err(Error::io("write", &tmp))?;
    file.sync_all().map_err(Error::io("fsync", &tmp))?;
    fs::rename(&tmp, path).map_err(Error::io("rename into", path))?;
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
