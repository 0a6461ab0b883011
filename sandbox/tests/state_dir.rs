//! Root tests of a pod's state directory on a disk that fills up, turns
//! read-only or loses the directory under a live shim: every write fails
//! with an error naming what it wrote, nothing written before is lost, and
//! writing works again once the disk does.

#![cfg(feature = "root-tests")]

mod common;

use std::path::Path;
use std::time::SystemTime;

use berth_sandbox::journal::{self, ExitRecord, Journal, Record};
use berth_sandbox::state::{PodDir, PodRecord};
use common::require_root;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// A small tmpfs of its own, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(size: &str) -> Self {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            MsFlags::empty(),
            Some(format!("size={size},mode=0700").as_str()),
        )
        .unwrap();
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn set_read_only(&self, read_only: bool) {
        let flags = MsFlags::MS_REMOUNT
            | if read_only {
                MsFlags::MS_RDONLY
            } else {
                MsFlags::empty()
            };
        mount(None::<&str>, self.path(), None::<&str>, flags, None::<&str>).unwrap();
    }

    /// Fills the disk with one file, which is returned.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = [0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = umount2(self.path(), MntFlags::MNT_DETACH);
    }
}

fn exit(id: &str, status: u32) -> Record {
    Record::Exit(ExitRecord::new(id, "", 100, status, SystemTime::now()))
}

fn record(sandbox_id: &str) -> PodRecord {
    PodRecord {
        sandbox_id: sandbox_id.into(),
        namespace: "k8s.io".into(),
        pause: None,
        cgroup: None,
    }
}

fn chain(e: &berth_sandbox::Error) -> String {
    berth_sandbox::error_chain(e)
}

#[test]
fn a_full_disk_fails_writes_and_keeps_what_was_written() {
    let disk = SmallDisk::new("256k");
    let dir = PodDir::new(disk.path(), "pod");
    dir.create().unwrap();
    dir.write_record(&record("before")).unwrap();
    let mut journal = Journal::new(&dir);
    for status in 0..3 {
        journal
            .append(&exit(&format!("c{status}"), status))
            .unwrap();
    }
    let filler = disk.fill();

    let mut failed = 0;
    // Appends go on into the journal file's last page, then fail.
    for status in 3..200 {
        if let Err(e) = journal.append(&exit(&format!("c{status}"), status)) {
            assert!(chain(&e).contains("No space left"), "{}", chain(&e));
            failed += 1;
        }
    }
    assert!(failed > 0, "the disk never filled up");
    let e = dir.write_record(&record("during")).unwrap_err();
    assert!(chain(&e).contains("No space left"), "{}", chain(&e));
    assert_eq!(dir.read_record().unwrap().unwrap().sandbox_id, "before");
    let tmp: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(tmp.is_empty(), "a half-written record is left: {tmp:?}");
    let records = journal::read(&dir);
    let kept = records.len();
    assert!(
        kept >= 3,
        "the exits journaled before the disk filled: {records:?}"
    );
    for status in 0..3 {
        assert_eq!(
            journal::exit_of(&records, &format!("c{status}"))
                .unwrap()
                .status,
            status
        );
    }

    std::fs::remove_file(filler).unwrap();
    journal.append(&exit("after", 42)).unwrap();
    dir.write_record(&record("after")).unwrap();
    let records = journal::read(&dir);
    assert_eq!(
        records.len(),
        kept + 1,
        "a torn line does not hide the next"
    );
    assert_eq!(journal::exit_of(&records, "after").unwrap().status, 42);
    assert_eq!(dir.read_record().unwrap().unwrap().sandbox_id, "after");
}

#[test]
fn a_read_only_disk_fails_writes_and_reads_what_is_there() {
    let disk = SmallDisk::new("1m");
    let dir = PodDir::new(disk.path(), "pod");
    dir.create().unwrap();
    dir.write_record(&record("before")).unwrap();
    journal::append(&dir, &exit("c", 1)).unwrap();
    disk.set_read_only(true);
    let e = journal::append(&dir, &exit("d", 2)).unwrap_err();
    assert!(chain(&e).contains("Read-only file system"), "{}", chain(&e));
    assert!(dir.write_record(&record("during")).is_err());
    assert_eq!(
        journal::exit_of(&journal::read(&dir), "c").unwrap().status,
        1
    );
    assert_eq!(dir.read_record().unwrap().unwrap().sandbox_id, "before");
    disk.set_read_only(false);
    journal::append(&dir, &exit("d", 2)).unwrap();
    assert_eq!(journal::read(&dir).len(), 2);
}

#[test]
fn a_deleted_pod_directory_fails_writes_without_recreating_it() {
    let disk = SmallDisk::new("1m");
    let dir = PodDir::new(disk.path(), "pod");
    dir.create().unwrap();
    journal::append(&dir, &exit("c", 1)).unwrap();
    std::fs::remove_dir_all(dir.path()).unwrap();
    let e = journal::append(&dir, &exit("d", 2)).unwrap_err();
    assert_eq!(
        e.kind(),
        berth_sandbox::ErrorKind::NotFound,
        "{}",
        chain(&e)
    );
    assert!(dir.write_record(&record("gone")).is_err());
    assert!(journal::read(&dir).is_empty());
    assert!(
        !dir.path().exists(),
        "a write does not bring back a removed pod"
    );
}
