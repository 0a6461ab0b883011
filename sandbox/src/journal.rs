//! A pod's exit journal: every exit status, made durable before it is
//! announced, so that `delete` after a shim died reports the real status.
//!
//! The journal is a file of lines, each a JSON record and its checksum.
//! Appends are single writes followed by fdatasync. A torn or corrupt line
//! (a crash mid-write) is skipped when read, never fatal. Records of tasks
//! that were deleted, and of exec processes, are compacted away now and
//! then: the file is rewritten atomically with what still matters.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::PodDir;

pub(crate) const FILE: &str = "exits.journal";

/// Appends between two compactions.
const COMPACT_AFTER: usize = 256;

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A process exited: a task's init (`exec_id` empty) or an exec.
    Exit(ExitRecord),
    /// Task `id` was deleted: its exit has been reported.
    Deleted { id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exec_id: String,
    pub pid: i32,
    pub status: u32,
    /// Seconds and nanoseconds since the epoch.
    pub secs: u64,
    pub nanos: u32,
}

impl ExitRecord {
    pub fn new(id: &str, exec_id: &str, pid: i32, status: u32, at: SystemTime) -> Self {
        let since = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        ExitRecord {
            id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            pid,
            status,
            secs: since.as_secs(),
            nanos: since.subsec_nanos(),
        }
    }

    /// When the process exited. A record whose time the clock cannot hold
    /// is damaged and never read back (see `parse`); were one built here,
    /// it would read as the epoch.
    pub fn at(&self) -> SystemTime {
        self.time().unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn time(&self) -> Option<SystemTime> {
        if self.nanos >= 1_000_000_000 {
            return None;
        }
        SystemTime::UNIX_EPOCH.checked_add(Duration::new(self.secs, self.nanos))
    }
}

/// The journal of one pod, for appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    appended: usize,
}

impl Journal {
    pub fn new(dir: &PodDir) -> Self {
        Journal {
            path: path(dir),
            appended: 0,
        }
    }

    /// Appends `record` durably; compacts the journal now and then.
    pub fn append(&mut self, record: &Record) -> Result<()> {
        append_to(&self.path, record)?;
        self.appended += 1;
        if self.appended >= COMPACT_AFTER {
            self.appended = 0;
            let kept = compacted(&read_from(&self.path));
            let mut data = Vec::new();
            for record in &kept {
                data.extend_from_slice(&line(record));
            }
            crate::state::write_atomic(&self.path, &data)?;
        }
        Ok(())
    }
}

fn path(dir: &PodDir) -> PathBuf {
    dir.path().join(FILE)
}

/// Appends `record` to the journal of the pod in `dir`, durably.
pub fn append(dir: &PodDir, record: &Record) -> Result<()> {
    append_to(&path(dir), record)
}

fn append_to(path: &Path, record: &Record) -> Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io("open", path))?;
    // A torn last line (a crash mid-write) is ended first, so that this
    // record starts a line of its own.
    let mut data = Vec::new();
    let len = file.metadata().map_err(Error::io("stat", path))?.len();
    if len > 0 {
        let mut last = [0u8];
        file.read_exact_at(&mut last, len - 1)
            .map_err(Error::io("read", path))?;
        if last[0] != b'\n' {
            data.push(b'\n');
        }
    }
    data.extend_from_slice(&line(record));
    // One write: concurrent appenders never interleave within a line.
    file.write_all(&data)
        .map_err(Error::io("append to", path))?;
    file.sync_data().map_err(Error::io("fsync", path))
}

/// `<json>\t<checksum>\n`.
pub(crate) fn line(record: &Record) -> Vec<u8> {
    let json = serde_json::to_string(record).expect("records always serialize");
    format!("{json}\t{:016x}\n", checksum(json.as_bytes())).into_bytes()
}

/// FNV-1a, 64 bits: enough to tell a torn or garbled line.
fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The records of the pod's journal that are whole and intact, in order.
/// A missing journal is empty.
pub fn read(dir: &PodDir) -> Vec<Record> {
    read_from(&path(dir))
}

fn read_from(path: &Path) -> Vec<Record> {
    match fs::read(path) {
        Ok(data) => records(&data, path),
        Err(_) => Vec::new(),
    }
}

/// The intact records of a journal's contents; `path` names it in the
/// warnings about damaged lines.
pub(crate) fn records(data: &[u8], path: &Path) -> Vec<Record> {
    let mut records = Vec::new();
    for (n, raw) in whole_lines(data).split(|&b| b == b'\n').enumerate() {
        if raw.is_empty() {
            continue;
        }
        match parse(raw) {
            Some(record) => records.push(record),
            None => log::warn!("{}: line {} is damaged; skipped", path.display(), n + 1),
        }
    }
    records
}

fn parse(raw: &[u8]) -> Option<Record> {
    let text = std::str::from_utf8(raw).ok()?;
    let (json, sum) = text.rsplit_once('\t')?;
    if u64::from_str_radix(sum, 16).ok()? != checksum(json.as_bytes()) {
        return None;
    }
    match serde_json::from_str(json).ok()? {
        Record::Exit(e) if e.time().is_none() => None,
        record => Some(record),
    }
}

/// `data` up to its last newline: what follows was torn by a crash.
fn whole_lines(data: &[u8]) -> &[u8] {
    match data.iter().rposition(|&b| b == b'\n') {
        Some(end) => &data[..end],
        None => &[],
    }
}

/// The exit of task `id`'s init, unless the task was deleted since.
pub fn exit_of(records: &[Record], id: &str) -> Option<ExitRecord> {
    let mut exit = None;
    for record in records {
        match record {
            Record::Exit(e) if e.id == id && e.exec_id.is_empty() => exit = Some(e.clone()),
            Record::Deleted { id: deleted } if deleted == id => exit = None,
            _ => {}
        }
    }
    exit
}

/// The tasks other than `except` whose exit is recorded and not reported
/// yet: someone will still ask for it.
pub fn unreported(records: &[Record], except: &str) -> Vec<String> {
    compacted(records)
        .into_iter()
        .filter_map(|r| match r {
            Record::Exit(e) if e.id != except => Some(e.id),
            _ => None,
        })
        .collect()
}

/// What is still worth keeping: each task's last init exit that was not
/// reported by a delete.
pub(crate) fn compacted(records: &[Record]) -> Vec<Record> {
    let mut kept: Vec<ExitRecord> = Vec::new();
    for record in records {
        match record {
            Record::Exit(e) if e.exec_id.is_empty() => {
                kept.retain(|k| k.id != e.id);
                kept.push(e.clone());
            }
            Record::Deleted { id } => kept.retain(|k| &k.id != id),
            Record::Exit(_) => {}
        }
    }
    kept.into_iter().map(Record::Exit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> (tempfile::TempDir, PodDir) {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir::new(root.path(), "pod");
        dir.create().unwrap();
        (root, dir)
    }

    fn exit(id: &str, exec_id: &str, status: u32) -> Record {
        Record::Exit(ExitRecord::new(
            id,
            exec_id,
            7,
            status,
            SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, 42),
        ))
    }

    #[test]
    fn exits_are_found_until_their_task_is_deleted() {
        let (_root, dir) = pod();
        let mut journal = Journal::new(&dir);
        journal.append(&exit("a", "", 42)).unwrap();
        journal.append(&exit("a", "probe", 1)).unwrap();
        journal.append(&exit("b", "", 137)).unwrap();
        let records = read(&dir);
        let a = exit_of(&records, "a").unwrap();
        assert_eq!(a.status, 42, "an exec's exit is not its task's");
        assert_eq!(
            a.at(),
            SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, 42)
        );
        assert_eq!(unreported(&records, "a"), ["b"]);
        append(&dir, &Record::Deleted { id: "b".into() }).unwrap();
        let records = read(&dir);
        assert_eq!(exit_of(&records, "b"), None);
        assert!(unreported(&records, "a").is_empty());
        assert_eq!(exit_of(&records, "missing"), None);
    }

    /// A whole line with a time no clock holds (the `journal` fuzz target
    /// reads such lines) is damaged: taking its time panicked.
    #[test]
    fn a_record_whose_time_overflows_is_skipped() {
        for (secs, nanos) in [(u64::MAX, 999_999_999), (0, 1_000_000_000), (1 << 63, 0)] {
            let mut record = ExitRecord::new("a", "", 7, 1, SystemTime::UNIX_EPOCH);
            record.secs = secs;
            record.nanos = nanos;
            assert_eq!(record.at(), SystemTime::UNIX_EPOCH);
            let line = line(&Record::Exit(record));
            assert!(records(&line, Path::new("j")).is_empty(), "{secs}.{nanos}");
        }
        let fine = Record::Exit(ExitRecord::new("a", "", 7, 1, SystemTime::UNIX_EPOCH));
        assert_eq!(records(&line(&fine), Path::new("j")), [fine]);
    }

    #[test]
    fn a_torn_last_record_and_a_garbled_one_are_skipped() {
        let (_root, dir) = pod();
        append(&dir, &exit("a", "", 1)).unwrap();
        let mut file = OpenOptions::new().append(true).open(path(&dir)).unwrap();
        // A line whose checksum does not match, then a torn write.
        file.write_all(b"{\"kind\":\"exit\",\"id\":\"x\"}\t0000000000000000\n")
            .unwrap();
        append(&dir, &exit("b", "", 2)).unwrap();
        let whole = line(&exit("c", "", 3));
        file.write_all(&whole[..whole.len() - 5]).unwrap();
        let records = read(&dir);
        assert_eq!(records, [exit("a", "", 1), exit("b", "", 2)]);
        // A record appended after the torn one is whole.
        append(&dir, &exit("d", "", 4)).unwrap();
        assert_eq!(
            read(&dir),
            [exit("a", "", 1), exit("b", "", 2), exit("d", "", 4)]
        );
    }

    #[test]
    fn compaction_keeps_only_unreported_exits() {
        let (_root, dir) = pod();
        let mut journal = Journal::new(&dir);
        journal.append(&exit("kept", "", 9)).unwrap();
        for i in 0..COMPACT_AFTER {
            let id = format!("t{i}");
            journal.append(&exit(&id, "probe", 0)).unwrap();
            if i % 2 == 0 {
                journal.append(&exit(&id, "", 0)).unwrap();
                journal.append(&Record::Deleted { id }).unwrap();
            }
        }
        let records = read(&dir);
        assert!(records.len() < COMPACT_AFTER, "{} records", records.len());
        assert_eq!(exit_of(&records, "kept").unwrap().status, 9);
        assert_eq!(unreported(&records, "none"), ["kept"]);
    }
}
