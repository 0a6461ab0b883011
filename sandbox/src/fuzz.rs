//! Entry points of the fuzz targets (the `fuzz` feature; the targets are
//! in `e2e/fuzz`). Each takes the fuzzer's bytes, feeds them to one reader
//! of untrusted input, and asserts what must hold whatever the input: no
//! panic, and nothing taken that leads out of where it belongs.

use std::path::{Component, Path};
use std::sync::OnceLock;

use crate::cgroup::TaskCgroup;
use crate::helper::protocol::{Request, Response};
use crate::journal::{self, Record};
use crate::spec::{self, Kind, Network, SandboxConfig};

/// An OCI spec as containerd hands it over in the bundle, and what berth
/// derives from it: the task's kind, and a sandbox's pause configuration.
pub fn oci_spec(data: &[u8]) {
    let Ok(spec) = spec::parse(data) else {
        return;
    };
    let _ = spec::group_of(&spec);
    let _ = spec::has_own_pid_namespace(&spec);
    if let Ok(Kind::Container { sandbox_id }) = spec::kind(&spec) {
        assert!(!sandbox_id.is_empty());
    }
    let Ok(config) = SandboxConfig::from_spec(&spec) else {
        return;
    };
    if let Some(cgroup) = &config.cgroup {
        assert!(no_parent(cgroup), "cgroup {cgroup:?} leaves the root");
    }
    for (path, _) in &config.sysctls {
        assert!(
            !path.starts_with('/') && no_parent(path),
            "sysctl {path:?} leaves /proc/sys"
        );
    }
    if let Network::Join(path) = &config.network {
        assert!(!path.as_os_str().is_empty());
    }
    // What the shim sends the helper reads back the same.
    let wire = serde_json::to_vec(&config).unwrap();
    let back: SandboxConfig = serde_json::from_slice(&wire).unwrap();
    assert_eq!(back, config);
}

/// A `linux.cgroupsPath`, and a `/proc/<pid>/cgroup` file.
pub fn cgroup_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(path) = spec::cgroupfs_path(text) {
        assert!(no_parent(&path), "cgroup {path:?} leaves the root");
    }
    for unified in [false, true] {
        if let Some(cgroup) = TaskCgroup::parse(text, unified) {
            let _ = cgroup.name();
            let _ = cgroup.v1_dir("memory");
            let _ = cgroup.unified();
        }
    }
    let _ = crate::cgroup::resources::parse(data);
}

/// A rootfs mount's options, one per NUL-separated piece.
pub fn mount_options(data: &[u8]) {
    let options: Vec<String> = data
        .split(|&b| b == 0)
        .map(|o| String::from_utf8_lossy(o).into_owned())
        .collect();
    let parsed = crate::mount::parse(&options);
    // The data is the options that are not flags, in order, whatever is
    // around them: one option's parse does not depend on the others.
    let data: Vec<&str> = options
        .iter()
        .filter(|o| !crate::mount::parse(std::slice::from_ref(o)).data.is_empty())
        .map(String::as_str)
        .collect();
    assert_eq!(parsed.data, data.join(","));
    // The last of `ro` and `rw` decides.
    if let Some(last) = options.iter().rev().find(|o| *o == "ro" || *o == "rw") {
        let read_only = parsed.flags.contains(nix::mount::MsFlags::MS_RDONLY);
        assert_eq!(read_only, last == "ro");
    }
}

/// A pod's exit journal as a crash may leave it, and the replay that
/// `delete` and a restarted shim do from it.
pub fn journal(data: &[u8]) {
    let records = journal::records(data, Path::new("journal"));
    for record in &records {
        // Every record read back is one that could have been written, and
        // is written back the same.
        let line = journal::line(record);
        let again = journal::records(&line, Path::new("journal"));
        assert_eq!(again.as_slice(), std::slice::from_ref(record));
        if let Record::Exit(exit) = record {
            let _ = exit.at();
        }
    }
    let kept = journal::compacted(&records);
    for record in &records {
        let id = match record {
            Record::Exit(e) => &e.id,
            Record::Deleted { id } => id,
        };
        // Compaction keeps what replay would answer.
        assert_eq!(journal::exit_of(&kept, id), journal::exit_of(&records, id));
        let _ = journal::unreported(&records, id);
    }
}

/// The helper's request (what the helper reads) and answer (what the shim
/// reads), as JSON.
pub fn helper_wire(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<Request>(data) {
        round_trips(&request);
    }
    if let Ok(response) = serde_json::from_slice::<Response>(data) {
        round_trips(&response);
        let _ = response.into_done();
    }
    if let Ok(response) = serde_json::from_slice::<Response>(data) {
        let _ = response.into_process();
    }
}

/// A mount destination or other path an image's links may redirect,
/// resolved inside a small rootfs whose links lead out every way an image
/// can make them.
pub fn in_root(data: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let root = fake_rootfs();
    let path = Path::new(std::ffi::OsStr::from_bytes(data));
    if !path.is_absolute() || data.contains(&0) {
        return;
    }
    let Ok(resolved) = crate::inroot::resolve(root, path) else {
        return;
    };
    assert!(resolved.is_absolute() && no_parent_path(&resolved));
    // No existing component of the answer is a link: what is mounted on it
    // lands where it was resolved to, inside the rootfs.
    let mut at = root.to_path_buf();
    for part in resolved.components().skip(1) {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) => assert!(!meta.file_type().is_symlink(), "{} is a link", at.display()),
            Err(_) => break,
        }
    }
}

/// A rootfs of links out: absolute, relative, through `..`, chained and
/// looping.
fn fake_rootfs() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in ["etc", "dev", "run/secrets", "usr/lib"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("etc/hosts"), "").unwrap();
        symlink("/", r.join("rootlink")).unwrap();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../../../../../../tmp", r.join("up")).unwrap();
        symlink("../../..", r.join("etc/up")).unwrap();
        symlink("up/etc", r.join("chain")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        symlink("/proc/self/root", r.join("run/secrets/proc")).unwrap();
        symlink("lib", r.join("usr/lib64")).unwrap();
        dir
    })
    .path()
}

fn no_parent(path: &str) -> bool {
    path.split('/').all(|c| c != "..")
}

fn no_parent_path(path: &Path) -> bool {
    path.components().all(|c| c != Component::ParentDir)
}

/// Reads `value` back from its JSON and compares the two as JSON values
/// (map order aside).
fn round_trips<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) {
    let first = serde_json::to_value(value).unwrap();
    let back: T = serde_json::from_value(first.clone()).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), first);
}
