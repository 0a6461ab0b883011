//! App containers, from the caller's side: what the helper is asked to do to
//! them, their rootfs mounts and their records in the pod's directory.
//!
//! Every libcontainer call runs in a helper process (see [`crate::helper`]).

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
#[cfg(test)]
use crate::helper::protocol::Request;
use crate::helper::protocol::{ContainerRef, ContainerSpec, ExecSpec, StdioPaths};
use crate::helper::Helper;
use crate::state::{remove_dir, PodDir, ProcessRecord};

use crate::spec::check_id;

/// Runs an extra process in container `id` of the pod through a helper.
/// `process` is the OCI process as JSON, as containerd sends it.
pub fn exec_in_pod(
    helper: &Helper,
    dir: &PodDir,
    id: &str,
    exec_id: &str,
    process: &[u8],
    stdio: StdioPaths,
) -> Result<ProcessRecord> {
    let parsed = crate::spec::parse_process(process)?;
    check_id("exec id", exec_id)?;
    if parsed.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::invalid("exec spec.args", "must name a program"));
    }
    let work_dir = dir.container_dir(id);
    if !work_dir.exists() {
        return Err(Error::not_found(format!("container {id}")));
    }
    let record: Option<ContainerRecord> = crate::state::read_json(&work_dir.join(RECORD))?;
    let path = work_dir.join(format!("exec-{exec_id}.json"));
    crate::state::write_json(&path, &parsed)?;
    let result = helper.exec_container(ExecSpec {
        container: reference(dir, id),
        process: path.clone(),
        stdio,
        no_new_keyring: record.is_some_and(|r| r.no_new_keyring),
    });
    let _ = fs::remove_file(&path);
    result
}

/// What berth records of a container in its directory, so that whoever
/// removes it (Delete, or `delete` after a shim died) finds its rootfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// containerd's bundle.
    pub bundle: PathBuf,
    /// Whether berth mounted the bundle's rootfs (and must unmount it).
    pub rootfs_mounted: bool,
    /// Made without a session keyring of its own: its execs join none.
    #[serde(default)]
    pub no_new_keyring: bool,
}

const RECORD: &str = "container.json";

/// A container to create in a pod, in the shim's terms.
#[derive(Debug, Clone)]
pub struct NewContainer {
    pub id: String,
    pub bundle: PathBuf,
    /// containerd's rootfs mounts, mounted on `<bundle>/rootfs`.
    pub rootfs: Vec<crate::mount::Mount>,
    pub stdio: StdioPaths,
    /// Keep the shim's session keyring (`NoNewKeyring`).
    pub no_new_keyring: bool,
    /// Who makes its cgroup (`SystemdCgroup`).
    pub cgroup_driver: crate::spec::CgroupDriver,
    /// The pod's shared files to bind where the spec mounts nothing.
    pub pod_files: Vec<crate::helper::protocol::PodFile>,
}

/// The container `id` of the pod in `dir`.
pub fn reference(dir: &PodDir, id: &str) -> ContainerRef {
    ContainerRef {
        id: id.to_owned(),
        engine_root: dir.engine_root(),
    }
}

/// Mounts the container's rootfs and creates it through a helper. On
/// failure nothing of it is left.
pub fn create_in_pod(helper: &Helper, dir: &PodDir, req: &NewContainer) -> Result<ProcessRecord> {
    check_id("id", &req.id)?;
    let work_dir = dir.container_dir(&req.id);
    fs::create_dir_all(&work_dir).map_err(Error::io("create", &work_dir))?;
    let record = ContainerRecord {
        bundle: req.bundle.clone(),
        rootfs_mounted: !req.rootfs.is_empty(),
        no_new_keyring: req.no_new_keyring,
    };
    // Written first: a shim that dies from here on leaves enough to undo.
    crate::state::write_json(&work_dir.join(RECORD), &record)?;
    let created = (|| {
        if record.rootfs_mounted {
            crate::mount::mount_all(&req.rootfs, &req.bundle.join("rootfs"))?;
        }
        let spec = ContainerSpec {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            engine_root: dir.engine_root(),
            work_dir: work_dir.clone(),
            stdio: req.stdio.clone(),
            no_new_keyring: req.no_new_keyring,
            cgroup_driver: req.cgroup_driver,
            pod_files: req.pod_files.clone(),
        };
        helper.create_container(spec)
    })();
    if created.is_err() {
        if let Err(e) = remove_from_pod(helper, dir, &req.id) {
            log::warn!("container {}: clean up a failed create: {e}", req.id);
        }
    }
    created
}

/// Sets new limits on the scope unit of a container of the systemd driver
/// (the shim writes them to the cgroup's files itself).
pub fn update_unit(
    helper: &Helper,
    dir: &PodDir,
    id: &str,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<()> {
    helper.update_container_unit(&reference(dir, id), resources)
}

/// Removes a container of the pod: its processes, cgroup, engine state,
/// rootfs mount and directory. Removing one that is gone is not an error.
pub fn remove_from_pod(helper: &Helper, dir: &PodDir, id: &str) -> Result<()> {
    let work_dir = dir.container_dir(id);
    let record: Option<ContainerRecord> = crate::state::read_json(&work_dir.join(RECORD))?;
    helper.delete_container(&reference(dir, id))?;
    if let Some(record) = record.filter(|r| r.rootfs_mounted) {
        crate::mount::unmount_all(&record.bundle.join("rootfs"))?;
    }
    remove_dir(&work_dir)
}

/// Removes every container still recorded in the pod, trying each; the
/// first failure is reported.
pub fn remove_all_in_pod(helper: &Helper, dir: &PodDir) -> Result<()> {
    let mut first = None;
    for id in dir.container_ids() {
        if let Err(e) = remove_from_pod(helper, dir, &id) {
            log::warn!("container {id}: {e}");
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::helper::fake::FakeHelper;

    /// A pod directory and a bundle in `root`, and a fake helper.
    fn pod(root: &std::path::Path) -> (PodDir, FakeHelper, NewContainer) {
        let dir = PodDir::new(&root.join("state"), "pod");
        dir.create().unwrap();
        let bundle = root.join("bundle");
        fs::create_dir_all(bundle.join("rootfs")).unwrap();
        let fake = FakeHelper::new(&root.join("fake"));
        let new = NewContainer {
            id: "c1".into(),
            bundle,
            rootfs: Vec::new(),
            stdio: StdioPaths::default(),
            no_new_keyring: false,
            cgroup_driver: Default::default(),
            pod_files: Vec::new(),
        };
        (dir, fake, new)
    }

    #[test]
    fn no_new_keyring_reaches_the_helper_for_the_container_and_its_execs() {
        for no_new_keyring in [false, true] {
            let root = tempfile::tempdir().unwrap();
            let (dir, fake, mut new) = pod(root.path());
            new.no_new_keyring = no_new_keyring;
            fake.create("create_container", 42, 7);
            create_in_pod(&fake.helper(), &dir, &new).unwrap();
            fake.create("exec_container", 43, 8);
            let process = br#"{"user": {"uid": 0, "gid": 0}, "cwd": "/", "args": ["true"]}"#;
            exec_in_pod(
                &fake.helper(),
                &dir,
                "c1",
                "e1",
                process,
                StdioPaths::default(),
            )
            .unwrap();
            let requests = fake.requests();
            let (Request::CreateContainer(create), Request::ExecContainer(exec)) =
                (&requests[0], &requests[1])
            else {
                panic!("a create and an exec: {requests:?}");
            };
            assert_eq!(create.no_new_keyring, no_new_keyring);
            assert_eq!(exec.no_new_keyring, no_new_keyring);
        }
    }

    #[test]
    fn a_created_container_is_recorded_and_removed_again() {
        let root = tempfile::tempdir().unwrap();
        let (dir, fake, new) = pod(root.path());
        fake.create("create_container", 42, 7);
        let init = create_in_pod(&fake.helper(), &dir, &new).unwrap();
        assert_eq!((init.pid, init.start_time), (42, 7));
        assert_eq!(dir.container_ids(), ["c1"]);
        let record: ContainerRecord =
            crate::state::read_json(&dir.container_dir("c1").join(RECORD))
                .unwrap()
                .unwrap();
        assert!(!record.rootfs_mounted, "no rootfs mounts were asked for");
        remove_from_pod(&fake.helper(), &dir, "c1").unwrap();
        assert!(dir.container_ids().is_empty());
        assert_eq!(fake.kinds(), ["create_container", "delete_container"]);
        remove_from_pod(&fake.helper(), &dir, "c1").expect("removing it twice is fine");
    }

    #[test]
    fn a_refused_create_is_rolled_back_and_keeps_its_class() {
        let root = tempfile::tempdir().unwrap();
        let (dir, fake, new) = pod(root.path());
        fake.refuse(
            "create_container",
            ErrorKind::InvalidArgument,
            "invalid spec.process.args",
        );
        let err = create_in_pod(&fake.helper(), &dir, &new).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert_eq!(err.to_string(), "invalid spec.process.args");
        // What the engine may have left was deleted, and berth's directory
        // with it.
        assert_eq!(fake.kinds(), ["create_container", "delete_container"]);
        assert!(matches!(&fake.requests()[1], Request::DeleteContainer(c) if c.id == "c1"));
        assert!(!dir.container_dir("c1").exists());
    }

    #[test]
    fn a_rollback_that_fails_leaves_the_record_for_delete() {
        let root = tempfile::tempdir().unwrap();
        let (dir, fake, new) = pod(root.path());
        fake.refuse("create_container", ErrorKind::Internal, "clone3 failed");
        fake.refuse("delete_container", ErrorKind::Internal, "busy");
        let err = create_in_pod(&fake.helper(), &dir, &new).unwrap_err();
        assert_eq!(err.to_string(), "clone3 failed", "the create's own error");
        assert!(
            dir.container_dir("c1").join(RECORD).exists(),
            "kept, so that a later delete can finish the job"
        );
    }

    #[test]
    fn a_rootfs_that_does_not_mount_never_reaches_the_helper() {
        let root = tempfile::tempdir().unwrap();
        let (dir, fake, mut new) = pod(root.path());
        new.rootfs = vec![crate::mount::Mount {
            kind: "berth-no-such-filesystem".into(),
            source: "none".into(),
            options: Vec::new(),
        }];
        assert!(create_in_pod(&fake.helper(), &dir, &new).is_err());
        assert_eq!(
            fake.kinds(),
            ["delete_container"],
            "no create was asked for"
        );
        assert!(!dir.container_dir("c1").exists());
    }

    #[test]
    fn every_container_is_tried_and_the_first_failure_reported() {
        let root = tempfile::tempdir().unwrap();
        let (dir, fake, mut new) = pod(root.path());
        fake.create("create_container", 42, 7);
        for id in ["a", "b"] {
            new.id = id.into();
            create_in_pod(&fake.helper(), &dir, &new).unwrap();
        }
        fake.refuse("delete_container", ErrorKind::Internal, "busy");
        let err = remove_all_in_pod(&fake.helper(), &dir).unwrap_err();
        assert_eq!(err.to_string(), "busy");
        let deletes = fake
            .kinds()
            .iter()
            .filter(|k| *k == "delete_container")
            .count();
        assert_eq!(deletes, 2, "both were tried");
        assert_eq!(dir.container_ids().len(), 2, "both kept for a retry");
    }

    #[test]
    fn an_exec_s_process_file_goes_whatever_the_helper_says() {
        let root = tempfile::tempdir().unwrap();
        let (dir, fake, new) = pod(root.path());
        fake.create("create_container", 42, 7);
        create_in_pod(&fake.helper(), &dir, &new).unwrap();
        let process = br#"{"user": {"uid": 0, "gid": 0}, "cwd": "/", "args": ["true"]}"#;
        fake.refuse("exec_container", ErrorKind::NotFound, "no init");
        let err = exec_in_pod(
            &fake.helper(),
            &dir,
            "c1",
            "e1",
            process,
            StdioPaths::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let Request::ExecContainer(spec) = &fake.requests()[1] else {
            panic!("an exec request: {:?}", fake.requests());
        };
        assert!(!spec.process.exists(), "its process file is removed");
        for bad in [
            &br#"{"user": {"uid": 0, "gid": 0}, "cwd": "/", "args": []}"#[..],
            br#"{"cwd": 3}"#,
        ] {
            let err = exec_in_pod(&fake.helper(), &dir, "c1", "e2", bad, StdioPaths::default())
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        }
        let err = exec_in_pod(
            &fake.helper(),
            &dir,
            "c1",
            "../x",
            process,
            StdioPaths::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert_eq!(fake.requests().len(), 2, "refused before any helper ran");
    }
}
