//! The real backend: the pod's berth-pause and app containers, through
//! berth-sandbox and its helper processes, with the pod's record and exit
//! journal on disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use berth_sandbox::container::{self, NewContainer};
use berth_sandbox::helper::protocol::{ContainerRef, PodFile};
use berth_sandbox::helper::Helper;
use berth_sandbox::journal::{Journal, Record};
use berth_sandbox::process::Sig;
use berth_sandbox::spec::{self, Kind, SandboxConfig};
use berth_sandbox::state::{PodDir, PodRecord, ProcessRecord};
use nix::sys::signal::Signal;

use crate::backend::{blocking, Backend, CreateRequest, NewTask, Spawned};
use crate::error::{Error, Result};
use crate::io::{Io, Owner, Stdio};
use crate::pod_files::{self, PodFiles};
use crate::process::Tracked;

/// The pod, as the Task service's backend.
pub struct PodBackend {
    helper: Helper,
    pause_binary: PathBuf,
    dir: PodDir,
    namespace: String,
    record: Mutex<PodRecord>,
    /// The pod's app containers, by id.
    containers: Mutex<HashMap<String, ContainerInfo>>,
    journal: Arc<Mutex<Journal>>,
}

impl PodBackend {
    pub fn new(helper: Helper, pause_binary: PathBuf, dir: PodDir, namespace: &str) -> Self {
        PodBackend {
            helper,
            pause_binary,
            namespace: namespace.to_owned(),
            record: Default::default(),
            containers: Default::default(),
            journal: Arc::new(Mutex::new(Journal::new(&dir))),
            dir,
        }
    }

    fn record(&self) -> MutexGuard<'_, PodRecord> {
        // Every holder leaves the record whole: a panic elsewhere does not
        // make it unusable.
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn containers(&self) -> MutexGuard<'_, HashMap<String, ContainerInfo>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, update: impl FnOnce(&mut PodRecord)) -> Result<()> {
        let mut record = self.record();
        update(&mut record);
        Ok(self.dir.write_record(&record)?)
    }
}

/// What the backend keeps of an app container.
#[derive(Debug, Clone, Default)]
struct ContainerInfo {
    /// Its processes outlive its init (no PID namespace of its own), so they
    /// are killed when the init exits, as containerd's runc shim does.
    kill_all_on_exit: bool,
    /// Held across each helper call on the container: libcontainer rewrites
    /// its state file with no lock of its own.
    one_call: Arc<Mutex<()>>,
    /// Who owns the stdio pipes of its processes (`IoUid`, `IoGid`).
    io_owner: (u32, u32),
    /// Its cgroup is a systemd scope unit (`SystemdCgroup`).
    systemd: bool,
}

impl PodBackend {
    fn container(&self, id: &str) -> Option<ContainerInfo> {
        self.containers().get(id).cloned()
    }

    /// Runs `call` (helper work on container `id`) off the async threads,
    /// one call per container at a time.
    async fn on_container<T: Send + 'static>(
        self: &Arc<Self>,
        id: &str,
        call: impl FnOnce(&PodBackend, &ContainerRef) -> berth_sandbox::Result<T> + Send + 'static,
    ) -> Result<T> {
        let info = self
            .container(id)
            .ok_or_else(|| Error::NotFound(format!("container {id}")))?;
        let this = Arc::clone(self);
        let reference = container::reference(&self.dir, id);
        blocking(move || {
            let _one_at_a_time = info.one_call.lock().unwrap_or_else(|p| p.into_inner());
            Ok(call(&this, &reference)?)
        })
        .await
    }

    fn is_container(&self, id: &str) -> bool {
        self.container(id).is_some()
    }

    /// The pod's shared files (shim mode), in the pod's directory, which
    /// goes with the pod: readable by a container's user of any uid.
    fn write_pod_files(&self, files: &PodFiles) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir.path().join(pod_files::DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Internal(format!("create {}: {e}", dir.display())))?;
        for (name, content) in files.files() {
            let path = dir.join(name);
            std::fs::write(&path, content)
                .and_then(|()| {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                })
                .map_err(|e| Error::Internal(format!("write {}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// The pod's shared files that exist (the Sandbox API wrote them), as
    /// the helper binds them into a container: destination and source.
    fn pod_file_mounts(&self) -> Vec<PodFile> {
        let dir = self.dir.path().join(pod_files::DIR);
        pod_files::NAMES
            .iter()
            .map(|name| PodFile {
                destination: Path::new("/etc").join(name),
                source: dir.join(name),
            })
            .filter(|f| f.source.is_file())
            .collect()
    }

    /// Starts the pod's berth-pause for the sandbox task.
    fn create_sandbox(
        &self,
        req: &CreateRequest,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<ProcessRecord> {
        let config = SandboxConfig::from_spec_with(spec, req.options.cgroup_driver())?;
        // Recorded before pause exists, so a shim that dies mid-way still
        // leaves `delete` the cgroup to remove.
        self.save(|r| {
            r.sandbox_id = req.id.clone();
            r.namespace = self.namespace.clone();
            r.cgroup = config.cgroup.clone();
            r.pause = None;
        })?;
        let started = berth_sandbox::pod::start_pause(
            &self.helper,
            &self.dir,
            &req.id,
            &config,
            self.pause_binary.clone(),
        );
        let pause = match started {
            Ok(pause) => pause,
            Err(e) => {
                // start_pause removed the cgroup it may have made.
                let _ = self.save(|r| r.cgroup = None);
                return Err(e.into());
            }
        };
        if let Err(e) = self.save(|r| r.pause = Some(pause)) {
            // Untracked, pause would outlive the shim: undo it.
            let _ = berth_sandbox::process::signal(pause, Signal::SIGKILL);
            if let Some(path) = &config.cgroup {
                let _ = berth_sandbox::cgroup::remove_when_empty(path);
            }
            return Err(e);
        }
        log::info!(container = req.id.as_str(); "berth-pause started as pid {}", pause.pid);
        Ok(pause)
    }
}

impl PodBackend {
    /// Creates an app container of the pod (or a pod of one).
    async fn create_container(
        self: &Arc<Self>,
        req: CreateRequest,
        info: ContainerInfo,
    ) -> Result<NewTask> {
        let owner = Owner {
            id: &req.id,
            exec_id: "",
            namespace: &self.namespace,
            uid: info.io_owner.0,
            gid: info.io_owner.1,
        };
        let prepared = Io::prepare(&req.stdio, self.dir.path(), owner).await?;
        let new = NewContainer {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            stdio: prepared.paths.clone(),
            no_new_keyring: req.options.no_new_keyring,
            cgroup_driver: req.options.cgroup_driver(),
            pod_files: Vec::new(),
        };
        let this = Arc::clone(self);
        let process = blocking(move || {
            let new = NewContainer {
                pod_files: this.pod_file_mounts(),
                ..new
            };
            if this.record().sandbox_id.is_empty() {
                // A container without a pod is a pod of one.
                this.save(|r| {
                    r.sandbox_id = new.id.clone();
                    r.namespace = this.namespace.clone();
                })?;
            }
            this.containers().insert(new.id.clone(), info);
            let created = container::create_in_pod(&this.helper, &this.dir, &new);
            if created.is_err() {
                this.containers().remove(&new.id);
            }
            Ok(created?)
        })
        .await?;
        log::info!(container = req.id.as_str(); "created, init pid {}", process.pid);
        let init = Spawned {
            process,
            io: prepared.release(),
        };
        Ok(NewTask::in_own_cgroup(&req.id, init))
    }
}

#[async_trait]
impl Backend for Arc<PodBackend> {
    async fn create(&self, mut req: CreateRequest) -> Result<NewTask> {
        let (spec, files) = match req.sandbox.take() {
            Some(sandbox) => (sandbox.spec, Some(sandbox.files)),
            None => {
                let bundle = req.bundle.clone();
                let spec = blocking(move || Ok(spec::load(&bundle)?)).await?;
                (spec, None)
            }
        };
        match spec::kind(&spec)? {
            Kind::Sandbox => {
                let this = Arc::clone(self);
                let id = req.id.clone();
                let process = blocking(move || {
                    if let Some(files) = &files {
                        // Never into a pod some other create made (a
                        // retried create of this sandbox may write again).
                        let serving = this.record().sandbox_id.clone();
                        if !serving.is_empty() && serving != req.id {
                            return Err(Error::FailedPrecondition(format!(
                                "this shim serves pod {serving} already"
                            )));
                        }
                        this.write_pod_files(files)?;
                    }
                    this.create_sandbox(&req, &spec)
                })
                .await?;
                let init = Spawned {
                    process,
                    io: Io::none(),
                };
                Ok(if self.record().cgroup.is_some() {
                    NewTask::in_own_cgroup(&id, init)
                } else {
                    // pause is in the shim's own cgroup: not the pod's to report.
                    NewTask::without_cgroup(init)
                })
            }
            Kind::Container { .. } | Kind::Standalone => {
                let info = ContainerInfo {
                    kill_all_on_exit: !spec::has_own_pid_namespace(&spec),
                    io_owner: (req.options.io_uid, req.options.io_gid),
                    systemd: req.options.systemd_cgroup,
                    ..Default::default()
                };
                self.create_container(req, info).await
            }
        }
    }

    async fn exec(&self, id: &str, exec_id: &str, spec: Vec<u8>, stdio: Stdio) -> Result<Spawned> {
        if !self.is_container(id) {
            return Err(Error::FailedPrecondition(format!(
                "task {id} is the pod sandbox: berth-pause runs no exec processes"
            )));
        }
        let io_owner = self.container(id).map_or((0, 0), |c| c.io_owner);
        let owner = Owner {
            id,
            exec_id,
            namespace: &self.namespace,
            uid: io_owner.0,
            gid: io_owner.1,
        };
        let prepared = Io::prepare(&stdio, self.dir.path(), owner).await?;
        let (exec_id, paths) = (exec_id.to_owned(), prepared.paths.clone());
        let process = self
            .on_container(id, move |this, c| {
                container::exec_in_pod(&this.helper, &this.dir, &c.id, &exec_id, &spec, paths)
            })
            .await?;
        Ok(Spawned {
            process,
            io: prepared.release(),
        })
    }

    async fn start(&self, id: &str) -> Result<()> {
        if !self.is_container(id) {
            // berth-pause runs from Create on.
            return Ok(());
        }
        self.on_container(id, |this, c| this.helper.start_container(c))
            .await?;
        log::info!(container = id; "started");
        Ok(())
    }

    async fn kill(&self, id: &str, process: &Tracked, signal: Sig, all: bool) -> Result<bool> {
        if all && self.is_container(id) {
            self.on_container(id, move |this, c| {
                this.helper.kill_container(c, signal.number())
            })
            .await?;
            return Ok(true);
        }
        // Killing pause ends the pod: with its own PID namespace the kernel
        // kills every process in it, so `all` needs nothing more.
        process
            .signal(signal)
            .map_err(|e| Error::Internal(format!("signal pid {}: {e}", process.pid)))
    }

    async fn exited(&self, id: &str) -> Result<()> {
        if !self.container(id).is_some_and(|c| c.kill_all_on_exit) {
            return Ok(());
        }
        self.on_container(id, |this, c| this.helper.kill_container(c, libc::SIGKILL))
            .await?;
        log::info!(container = id; "killed what its init left in the shared PID namespace");
        Ok(())
    }

    async fn update_unit(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        if !self.container(id).is_some_and(|c| c.systemd) {
            return Ok(());
        }
        let resources = resources.clone();
        self.on_container(id, move |this, c| {
            this.helper.update_container_unit(c, &resources)
        })
        .await
    }

    async fn journal(&self, record: Record) -> Result<()> {
        let journal = Arc::clone(&self.journal);
        blocking(move || {
            let mut journal = journal.lock().unwrap_or_else(|p| p.into_inner());
            Ok(journal.append(&record)?)
        })
        .await
    }

    fn is_sandbox(&self, id: &str) -> bool {
        !self.is_container(id) && self.record().sandbox_id == id
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let this = Arc::clone(self);
        let id = id.to_owned();
        if self.is_container(&id) {
            self.on_container(&id, |this, c| {
                container::remove_from_pod(&this.helper, &this.dir, &c.id)
            })
            .await?;
            self.containers().remove(&id);
            log::info!(container = id.as_str(); "removed");
            return Ok(());
        }
        blocking(move || {
            let cgroup = this.record().cgroup.clone();
            if let Some(path) = cgroup {
                berth_sandbox::cgroup::remove_when_empty(&path)?;
            }
            this.save(|r| {
                r.pause = None;
                r.cgroup = None;
            })?;
            log::info!(container = id.as_str(); "sandbox removed");
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use berth_sandbox::error::ErrorKind;
    use berth_sandbox::helper::fake::FakeHelper;

    use super::*;

    /// A pod whose helper is a fake, all in `root`.
    fn backend(root: &Path) -> (Arc<PodBackend>, FakeHelper) {
        let fake = FakeHelper::new(&root.join("fake"));
        let dir = PodDir::new(&root.join("state"), "pod");
        dir.create().unwrap();
        let backend = PodBackend::new(fake.helper(), "/bin/berth-pause".into(), dir, "k8s.io");
        (Arc::new(backend), fake)
    }

    /// A bundle in `root/<id>` whose spec carries `annotations`.
    fn bundle(root: &Path, id: &str, annotations: serde_json::Value) -> CreateRequest {
        let bundle = root.join(id);
        std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
        let spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "annotations": annotations,
            "linux": {
                "cgroupsPath": format!("/berth-unit-{}/{id}", std::process::id()),
                "namespaces": [{"type": "ipc"}, {"type": "uts"}]
            }
        });
        std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
        CreateRequest {
            id: id.into(),
            bundle,
            rootfs: Vec::new(),
            stdio: Stdio::default(),
            options: Default::default(),
            sandbox: None,
        }
    }

    fn sandbox(root: &Path) -> CreateRequest {
        bundle(
            root,
            "pod",
            serde_json::json!({spec::CONTAINER_TYPE: "sandbox", spec::SANDBOX_ID: "pod"}),
        )
    }

    #[tokio::test]
    async fn a_pause_that_does_not_start_leaves_a_record_without_cgroup() {
        let root = tempfile::tempdir().unwrap();
        let (backend, fake) = backend(root.path());
        fake.refuse(
            "spawn_pause",
            ErrorKind::InvalidArgument,
            "invalid linux.sysctl[x]",
        );
        let err = backend.create(sandbox(root.path())).await.unwrap_err();
        assert_eq!(err.to_string(), "invalid linux.sysctl[x]");
        let record = backend.dir.read_record().unwrap().unwrap();
        assert_eq!(record.sandbox_id, "pod");
        assert_eq!((record.cgroup, record.pause), (None, None));
        assert!(backend.is_sandbox("pod"));
    }

    #[tokio::test]
    async fn a_pause_that_cannot_be_recorded_is_killed() {
        let root = tempfile::tempdir().unwrap();
        let (backend, fake) = backend(root.path());
        let mut pause = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = pause.id() as i32;
        let start_time = berth_sandbox::process::start_time(pid).unwrap();
        fake.create("spawn_pause", pid, start_time);
        // While pause starts, its record becomes unwritable.
        let record = backend.dir.path().join("pod.json");
        fake.on(
            "spawn_pause",
            &format!("rm -f '{0}' && mkdir -p '{0}/taken'", record.display()),
        );
        assert!(backend.create(sandbox(root.path())).await.is_err());
        let status = pause.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "an untracked pause would outlive the shim"
        );
    }

    #[tokio::test]
    async fn a_sandbox_lives_in_the_record_until_removed() {
        let root = tempfile::tempdir().unwrap();
        let (backend, fake) = backend(root.path());
        let pid = std::process::id() as i32;
        let start_time = berth_sandbox::process::start_time(pid).unwrap();
        fake.create("spawn_pause", pid, start_time);
        let task = backend.create(sandbox(root.path())).await.unwrap();
        assert_eq!(task.init.process.pid, pid);
        let record = backend.dir.read_record().unwrap().unwrap();
        assert_eq!(record.pause.map(|p| p.pid), Some(pid));
        assert!(record.cgroup.is_some());
        backend.remove("pod").await.unwrap();
        let record = backend.dir.read_record().unwrap().unwrap();
        assert_eq!((record.cgroup, record.pause), (None, None));
    }

    /// The Sandbox API's pod files: written readable into the pod's `etc/`,
    /// handed to the helper with each container's create; none for a pod
    /// of the Task API; never written into a pod already served.
    #[tokio::test]
    async fn the_pod_files_reach_each_container_create() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let (backend, fake) = backend(root.path());
        let pid = std::process::id() as i32;
        fake.create(
            "spawn_pause",
            pid,
            berth_sandbox::process::start_time(pid).unwrap(),
        );
        fake.create("create_container", pid, 1);
        let container = bundle(
            root.path(),
            "c1",
            serde_json::json!({spec::CONTAINER_TYPE: "container", spec::SANDBOX_ID: "pod"}),
        );
        let files = PodFiles {
            hostname: b"web-0\n".to_vec(),
            hosts: b"127.0.0.1 localhost\n".to_vec(),
            resolv_conf: b"nameserver 192.0.2.53\n".to_vec(),
        };
        let mut req = sandbox(root.path());
        req.sandbox = Some(crate::backend::SandboxRequest {
            spec: spec::load(&req.bundle).unwrap(),
            files: files.clone(),
        });
        // A pod of one of the Task API first: no files for its container,
        // and none written into it by a CreateSandbox that reaches it.
        let plain_dir = PodDir::new(&root.path().join("plain"), "pod");
        plain_dir.create().unwrap();
        let plain = Arc::new(PodBackend::new(
            fake.helper(),
            "/bin/berth-pause".into(),
            plain_dir,
            "k8s.io",
        ));
        plain
            .create(bundle(root.path(), "solo", serde_json::json!({})))
            .await
            .unwrap();
        let again = plain.create(req.clone()).await.unwrap_err();
        assert!(matches!(again, Error::FailedPrecondition(_)), "{again:?}");
        assert!(!plain.dir.path().join(pod_files::DIR).exists());

        backend.create(req).await.unwrap();
        let dir = backend.dir.path().join(pod_files::DIR);
        for (name, content) in files.files() {
            let path = dir.join(name);
            assert_eq!(std::fs::read(&path).unwrap(), content);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644, "{name}");
        }
        backend.create(container).await.unwrap();
        let creates: Vec<_> = fake
            .requests()
            .into_iter()
            .filter_map(|r| match r {
                berth_sandbox::helper::protocol::Request::CreateContainer(c) => Some(c),
                _ => None,
            })
            .collect();
        let [plain_create, pod_create] = &creates[..] else {
            panic!("two creates: {creates:?}")
        };
        assert!(plain_create.pod_files.is_empty());
        let bound: Vec<_> = pod_create
            .pod_files
            .iter()
            .map(|f| (f.destination.clone(), f.source.clone()))
            .collect();
        assert_eq!(
            bound,
            pod_files::NAMES
                .iter()
                .map(|n| (Path::new("/etc").join(n), dir.join(n)))
                .collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_container_that_is_not_created_is_forgotten() {
        let root = tempfile::tempdir().unwrap();
        let (backend, fake) = backend(root.path());
        let container = bundle(
            root.path(),
            "c1",
            serde_json::json!({spec::CONTAINER_TYPE: "container", spec::SANDBOX_ID: "pod"}),
        );
        fake.refuse(
            "create_container",
            ErrorKind::InvalidArgument,
            "invalid spec.process",
        );
        let err = backend.create(container.clone()).await.unwrap_err();
        assert_eq!(err.to_string(), "invalid spec.process");
        assert_eq!(fake.kinds(), ["create_container", "delete_container"]);
        assert!(!backend.dir.container_dir("c1").exists());
        // Forgotten: nothing more is asked of the helper for it.
        assert!(!backend.is_container("c1"));
        assert!(matches!(
            backend
                .exec("c1", "e1", b"{}".to_vec(), Stdio::default())
                .await,
            Err(Error::FailedPrecondition(_))
        ));
        assert_eq!(fake.kinds().len(), 2);
        // The same id can be created again.
        fake.create("create_container", std::process::id() as i32, 1);
        backend.create(container).await.unwrap();
        assert!(backend.is_container("c1"));
    }
}
