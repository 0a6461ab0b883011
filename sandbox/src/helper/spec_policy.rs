//! The spec the OCI engine runs: containerd's, checked and adjusted where
//! libcontainer would read it otherwise than runc does, or would let it
//! reach outside the container. Runs in the helper.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceType, Spec};

use crate::cgroup::devices;
use crate::error::{Error, Result};
use crate::helper::protocol::{ContainerSpec, PodFile};

/// The spec libcontainer runs: containerd's, with the root made absolute,
/// mounts confined to the rootfs, the root's propagation in libcontainer's
/// words, a device list that denies what it does
/// not allow, `unified` keys checked and an oom_score_adj the shim may not
/// set raised to what it may.
pub(super) fn effective_spec(spec: &ContainerSpec) -> Result<Spec> {
    let mut oci = crate::spec::load(&spec.bundle)?;
    if let Some(mut root) = oci.root().clone() {
        if root.path().is_relative() {
            root.set_path(spec.bundle.join(root.path()));
            oci.set_root(Some(root));
        }
    }
    add_pod_files(&mut oci, &spec.pod_files);
    confine_to_rootfs(&mut oci)?;
    engine_rootfs_propagation(&mut oci)?;
    refuse_user_namespace(&oci)?;
    deny_devices_by_default(&mut oci);
    // libcontainer writes each key to the path it makes of it, unchecked.
    let unified = oci.linux().as_ref().and_then(|l| l.resources().as_ref());
    if let Some(unified) = unified.and_then(|r| r.unified().as_ref()) {
        crate::cgroup::resources::check_unified(unified, "linux.resources.unified")?;
    }
    if let Some(mut process) = oci.process().clone() {
        settable_oom_score(&spec.id, &mut process)?;
        oci.set_process(Some(process));
    }
    Ok(oci)
}

/// Binds each of the pod's shared files where the spec mounts nothing,
/// read-only on a read-only root, as CRI binds its own: the mount goes
/// through the same confinement to the rootfs as the spec's.
fn add_pod_files(oci: &mut Spec, files: &[PodFile]) {
    if files.is_empty() {
        return;
    }
    let mut mounts = oci.mounts().clone().unwrap_or_default();
    let read_only = oci
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    for file in files {
        let taken = mounts
            .iter()
            .any(|m| normalized(m.destination()) == normalized(&file.destination));
        if taken {
            continue;
        }
        let mut options = vec!["rbind".to_owned(), "rprivate".to_owned()];
        options.push(if read_only { "ro" } else { "rw" }.to_owned());
        let mut mount = oci_spec::runtime::Mount::default();
        mount
            .set_destination(file.destination.clone())
            .set_typ(Some("bind".to_owned()))
            .set_source(Some(file.source.clone()))
            .set_options(Some(options));
        mounts.push(mount);
    }
    oci.set_mounts(Some(mounts));
}

/// A mount destination as an absolute path of the container without `.`,
/// `..` or a trailing slash: `etc/hosts`, `/etc/./hosts/` and
/// `/etc/../etc/hosts` are `/etc/hosts`.
fn normalized(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// `linux.rootfsPropagation` in the words libcontainer knows. runc takes
/// the recursive forms CRI sends (`rshared` for a bidirectional mount,
/// `rslave` for a host-to-container one) and libcontainer refuses them,
/// though it makes the root recursive whatever it is told; anything else
/// is refused here, naming what is accepted.
fn engine_rootfs_propagation(oci: &mut Spec) -> Result<()> {
    let Some(mut linux) = oci.linux().clone() else {
        return Ok(());
    };
    let Some(asked) = linux.rootfs_propagation().clone() else {
        return Ok(());
    };
    let engine = match asked.as_str() {
        "" => None,
        "shared" | "rshared" => Some("shared"),
        "slave" | "rslave" => Some("slave"),
        "private" | "rprivate" => Some("private"),
        "unbindable" | "runbindable" => Some("unbindable"),
        other => {
            return Err(Error::invalid(
                "linux.rootfsPropagation",
                format!("{other:?} is not one of [r]shared, [r]slave, [r]private, [r]unbindable"),
            ))
        }
    };
    linux.set_rootfs_propagation(engine.map(String::from));
    oci.set_linux(Some(linux));
    Ok(())
}

/// A user namespace is refused, as the features document says: berth has
/// not made them work end to end (libcontainer would also switch to its
/// systemd cgroup driver for one, whatever the runtime options say).
fn refuse_user_namespace(oci: &Spec) -> Result<()> {
    let namespaces = oci.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    match namespaces
        .into_iter()
        .flatten()
        .position(|ns| ns.typ() == oci_spec::runtime::LinuxNamespaceType::User)
    {
        Some(i) => Err(Error::Unsupported {
            field: format!("linux.namespaces[{i}]"),
            reason: "user namespaces are not supported yet".into(),
        }),
        None => Ok(()),
    }
}

/// Device rules start from "deny all", as runc reads any list: unless the
/// first rule is about every device, one that denies them all goes first,
/// so that a container may use only what its rules allow and the devices
/// every container may ([`crate::cgroup::devices::with_defaults`], which
/// libcontainer adds on v1 and the filter on v2). Without it, v1's
/// controller, open to every device, would only have the allows added.
fn deny_devices_by_default(oci: &mut Spec) {
    let mut linux = oci.linux().clone().unwrap_or_default();
    let mut resources = linux.resources().clone().unwrap_or_default();
    let mut rules = resources.devices().clone().unwrap_or_default();
    let all = |r: &oci_spec::runtime::LinuxDeviceCgroup| {
        matches!(r.typ(), None | Some(LinuxDeviceType::A))
    };
    if rules.first().is_some_and(all) {
        return;
    }
    let deny_all = devices::rule(false, LinuxDeviceType::A, None, None, "rwm");
    rules.insert(0, deny_all);
    resources.set_devices(Some(rules));
    linux.set_resources(Some(resources));
    oci.set_linux(Some(linux));
}

/// Raises the process's oom_score_adj to what the helper may set, if it
/// asks for less, with a warning.
pub(super) fn settable_oom_score(id: &str, process: &mut oci_spec::runtime::Process) -> Result<()> {
    if let Some(wanted) = process.oom_score_adj() {
        let clamped = clamp_oom_score_adj(wanted, own_oom_score_adj()?, may_lower_oom()?);
        if clamped != wanted {
            log::warn!(
                "container {id}: oom_score_adj {wanted} raised to {clamped}: this host does not let berth lower it"
            );
            process.set_oom_score_adj(Some(clamped));
        }
    }
    Ok(())
}

/// Every path libcontainer takes from the image is resolved inside the
/// rootfs before it runs: it follows links the image holds as the host
/// sees them. A rootfs whose `/dev`, `/proc` or `/sys` is a link is
/// refused; each mount destination becomes the path it resolves to inside
/// the rootfs (what runc mounts on), so no link leads a mount out of it,
/// and none may land inside procfs but where runc lets it.
fn confine_to_rootfs(oci: &mut Spec) -> Result<()> {
    let Some(root) = oci.root().as_ref().map(|r| r.path().clone()) else {
        return Ok(());
    };
    crate::inroot::check_special_dirs(&root)?;
    let Some(mut mounts) = oci.mounts().clone() else {
        return Ok(());
    };
    for mount in &mut mounts {
        let resolved = crate::inroot::resolve(&root, mount.destination())?;
        crate::inroot::check_proc_mount(&resolved, mount.typ().as_deref())?;
        if resolved != *mount.destination() {
            log::info!(
                "mount destination {} is {} inside the rootfs",
                mount.destination().display(),
                resolved.display()
            );
            mount.set_destination(resolved);
        }
    }
    oci.set_mounts(Some(mounts));
    Ok(())
}

/// The created container's mounts, before its process runs: nothing may
/// have landed inside /proc but what the spec masks or makes read-only
/// there (see [`crate::inroot::check_proc_mount_points`]).
pub(super) fn check_mount_table(pid: i32, oci: &Spec) -> Result<()> {
    let path = format!("/proc/{pid}/mountinfo");
    let table = fs::read_to_string(&path).map_err(Error::io("read", &path))?;
    let linux = oci.linux().as_ref();
    let declared: Vec<PathBuf> = linux
        .and_then(|l| l.masked_paths().clone())
        .into_iter()
        .chain(linux.and_then(|l| l.readonly_paths().clone()))
        .flatten()
        .map(PathBuf::from)
        .collect();
    crate::inroot::check_proc_mount_points(&table, &declared)
}

/// Without CAP_SYS_RESOURCE a process may not go below its own score.
fn clamp_oom_score_adj(wanted: i32, own: i32, may_lower: bool) -> i32 {
    if may_lower {
        wanted
    } else {
        wanted.max(own)
    }
}

fn own_oom_score_adj() -> Result<i32> {
    let path = "/proc/self/oom_score_adj";
    let text = fs::read_to_string(path).map_err(Error::io("read", path))?;
    text.trim()
        .parse()
        .map_err(|_| Error::invalid(path, format!("not a number: {text:?}")))
}

/// Whether this process holds CAP_SYS_RESOURCE, which lowering needs.
fn may_lower_oom() -> Result<bool> {
    const CAP_SYS_RESOURCE: u32 = 24;
    let path = "/proc/self/status";
    let status = fs::read_to_string(path).map_err(Error::io("read", path))?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| Error::invalid(path, "no CapEff line"))?;
    Ok(effective & (1 << CAP_SYS_RESOURCE) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_propagation_takes_runc_s_words() {
        let with = |p: Option<&str>| {
            let mut oci = Spec::default();
            let mut linux = oci.linux().clone().unwrap();
            linux.set_rootfs_propagation(p.map(String::from));
            oci.set_linux(Some(linux));
            oci
        };
        for (asked, engine) in [
            (None, None),
            (Some(""), None),
            (Some("rshared"), Some("shared")),
            (Some("shared"), Some("shared")),
            (Some("rslave"), Some("slave")),
            (Some("slave"), Some("slave")),
            (Some("rprivate"), Some("private")),
            (Some("private"), Some("private")),
            (Some("runbindable"), Some("unbindable")),
        ] {
            let mut oci = with(asked);
            engine_rootfs_propagation(&mut oci).unwrap();
            let got = oci.linux().as_ref().unwrap().rootfs_propagation().clone();
            assert_eq!(got.as_deref(), engine, "{asked:?}");
        }
        let err = engine_rootfs_propagation(&mut with(Some("rsharedd"))).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("linux.rootfsPropagation") && text.contains("\"rsharedd\""),
            "{text}"
        );
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    }

    #[test]
    fn pod_files_are_bound_where_the_spec_mounts_nothing() {
        let file = |name: &str| PodFile {
            destination: PathBuf::from("/etc").join(name),
            source: PathBuf::from("/pod/etc").join(name),
        };
        let mut oci = Spec::default();
        let mut own = oci_spec::runtime::Mount::default();
        own.set_destination(PathBuf::from("/etc/./hosts/"))
            .set_source(Some(PathBuf::from("/volume/hosts")));
        let mut mounts = oci.mounts().clone().unwrap();
        mounts.push(own);
        oci.set_mounts(Some(mounts));
        let mut root = oci.root().clone().unwrap();
        root.set_readonly(Some(true));
        oci.set_root(Some(root));
        add_pod_files(&mut oci, &[file("hosts"), file("resolv.conf")]);
        let mounts = oci.mounts().as_ref().unwrap();
        let at = |dest: &str| -> Vec<&oci_spec::runtime::Mount> {
            mounts
                .iter()
                .filter(|m| normalized(m.destination()) == Path::new(dest))
                .collect()
        };
        // The spec's own /etc/hosts stays the only one there.
        assert_eq!(at("/etc/hosts").len(), 1);
        assert_eq!(
            at("/etc/hosts")[0].source().as_deref(),
            Some(Path::new("/volume/hosts"))
        );
        let [resolv] = at("/etc/resolv.conf")[..] else {
            panic!("one /etc/resolv.conf mount: {mounts:?}")
        };
        assert_eq!(
            resolv.source().as_deref(),
            Some(Path::new("/pod/etc/resolv.conf"))
        );
        assert_eq!(resolv.typ().as_deref(), Some("bind"));
        let options = resolv.options().clone().unwrap();
        assert!(options.contains(&"rbind".to_owned()) && options.contains(&"ro".to_owned()));
        // A writable root gets writable files; `..` and a relative path
        // name the same destination.
        assert_eq!(
            normalized(Path::new("etc/../etc/hosts")),
            Path::new("/etc/hosts")
        );
        let mut writable = Spec::default();
        let mut root = writable.root().clone().unwrap();
        root.set_readonly(Some(false));
        writable.set_root(Some(root));
        add_pod_files(&mut writable, &[file("hostname")]);
        let mounts = writable.mounts().as_ref().unwrap();
        let hostname = mounts.last().unwrap();
        assert_eq!(hostname.destination(), Path::new("/etc/hostname"));
        assert!(hostname
            .options()
            .as_ref()
            .unwrap()
            .contains(&"rw".to_owned()));
    }

    #[test]
    fn an_empty_device_list_denies_all_but_the_defaults() {
        let mut oci = Spec::default();
        if let Some(linux) = oci.linux().clone() {
            let mut linux = linux;
            linux.set_resources(None);
            oci.set_linux(Some(linux));
        }
        deny_devices_by_default(&mut oci);
        let rules = oci.linux().as_ref().unwrap().resources().as_ref().unwrap();
        let rules = rules.devices().as_ref().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].to_string(), "a *:* rwm");
        assert!(!rules[0].allow());

        // A list without an all-devices rule first gets one.
        let tun = devices::rule(true, LinuxDeviceType::C, Some(10), Some(200), "rwm");
        let mut resources = oci_spec::runtime::LinuxResources::default();
        resources.set_devices(Some(vec![tun.clone()]));
        let mut linux = oci.linux().clone().unwrap();
        linux.set_resources(Some(resources));
        oci.set_linux(Some(linux));
        deny_devices_by_default(&mut oci);
        let rules = oci.linux().as_ref().unwrap().resources().as_ref().unwrap();
        let rules = rules.devices().as_ref().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].to_string(), "a *:* rwm");
        assert_eq!(rules[1], tun);

        // A list that starts with an all-devices rule is left as it is.
        let allow_all = devices::rule(true, LinuxDeviceType::A, None, None, "rwm");
        let mut resources = oci_spec::runtime::LinuxResources::default();
        resources.set_devices(Some(vec![allow_all.clone()]));
        let mut linux = oci.linux().clone().unwrap();
        linux.set_resources(Some(resources));
        oci.set_linux(Some(linux));
        deny_devices_by_default(&mut oci);
        let rules = oci.linux().as_ref().unwrap().resources().as_ref().unwrap();
        assert_eq!(rules.devices().as_ref().unwrap(), &vec![allow_all]);
    }

    #[test]
    fn oom_score_adj_is_raised_only_when_it_may_not_be_lowered() {
        assert_eq!(clamp_oom_score_adj(-997, 0, false), 0);
        assert_eq!(clamp_oom_score_adj(-997, 0, true), -997);
        assert_eq!(clamp_oom_score_adj(1000, 0, false), 1000);
        assert_eq!(clamp_oom_score_adj(-500, -999, false), -500);
    }
}
