//! One test instance's private corner of the machine: a slot number, held with `flock`
//! for the instance's lifetime, from which its directory, sockets, bridge, subnet and
//! cgroup parent are derived; and the sweep that removes everything an instance (or a
//! crashed earlier run in the same slot) left behind.

use std::fs::{self, File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{cgroups, paths, procs};

/// Where containerd's Go shims put their sockets, whatever the instance.
const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

/// Slots map to subnets `10.88.<slot>.0/24`.
const SLOTS: std::ops::RangeInclusive<u16> = 1..=250;

/// A slot held by this process, with the paths derived from it.
#[derive(Debug)]
pub struct Instance {
    slot: u16,
    dir: PathBuf,
    /// Holds the slot: the kernel drops the `flock` when this process dies.
    _lock: File,
}

impl Instance {
    /// Sweeps every slot a dead process left behind, then takes the first free slot
    /// and creates the instance's directories.
    pub fn acquire() -> Result<Instance> {
        sweep_abandoned();
        let len = SLOTS.end() - SLOTS.start() + 1;
        let offset = (std::process::id() % u32::from(len)) as u16;
        for i in 0..len {
            let slot = SLOTS.start() + (offset + i) % len;
            if let Some(instance) = Instance::try_lock(slot)? {
                for stale in instance.sweep() {
                    eprintln!("berth-e2e: slot {slot}: swept stale {stale}");
                }
                instance.create_dirs()?;
                return Ok(instance);
            }
        }
        bail!(
            "all {len} e2e instance slots under {} are taken",
            locks_dir().display()
        )
    }

    /// The slot if no live process holds it.
    fn try_lock(slot: u16) -> Result<Option<Instance>> {
        let locks = locks_dir();
        fs::create_dir_all(&locks).with_context(|| format!("mkdir {}", locks.display()))?;
        let path = locks.join(format!("{slot}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Ok(None);
        }
        let dir = paths::instances_root().join(slot.to_string());
        Ok(Some(Instance {
            slot,
            dir,
            _lock: file,
        }))
    }

    fn create_dirs(&self) -> Result<()> {
        for d in [
            self.dir.clone(),
            self.root(),
            self.state(),
            self.cni_conf_dir(),
            self.cni_data_dir(),
            self.runc_root(),
            self.opt_dir(),
            self.pod_logs_dir(),
            self.berth_state_root(),
        ] {
            fs::create_dir_all(&d).with_context(|| format!("mkdir {}", d.display()))?;
        }
        Ok(())
    }

    /// The slot number, 1..=250.
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// `/run/berth-e2e/<slot>`: everything of this instance lives below it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("containerd.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// containerd's gRPC socket (CRI and the containerd API).
    pub fn grpc_socket(&self) -> PathBuf {
        self.dir.join("c.sock")
    }

    pub fn ttrpc_socket(&self) -> PathBuf {
        self.dir.join("t.sock")
    }

    pub fn nri_socket(&self) -> PathBuf {
        self.dir.join("nri.sock")
    }

    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni")
    }

    /// host-local IPAM's `dataDir`.
    pub fn cni_data_dir(&self) -> PathBuf {
        self.dir.join("cni-data")
    }

    /// runc's `--root` for this instance's runc runtime.
    pub fn runc_root(&self) -> PathBuf {
        self.dir.join("runc")
    }

    /// containerd's `opt` plugin directory (default `/opt/containerd`).
    pub fn opt_dir(&self) -> PathBuf {
        self.dir.join("opt")
    }

    /// Parent of the pods' log directories.
    pub fn pod_logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// `BERTH_STATE_ROOT` for this instance's shims (short: it holds sockets).
    pub fn berth_state_root(&self) -> PathBuf {
        self.dir.join("berth")
    }

    /// Where CRI pins pod network namespaces (`netns_mounts_under_state_dir = true`).
    pub fn netns_dir(&self) -> PathBuf {
        self.state().join("io.containerd.grpc.v1.cri/netns")
    }

    pub fn network_name(&self) -> String {
        format!("berth-e2e-{}", self.slot)
    }

    /// The CNI bridge device (at most 15 bytes).
    pub fn bridge(&self) -> String {
        format!("berthe2e{}", self.slot)
    }

    /// The pods' subnet, `10.88.<slot>.0/24`.
    pub fn subnet(&self) -> String {
        format!("10.88.{}.0/24", self.slot)
    }

    /// True if `ip` (dotted quad) lies in [`Instance::subnet`] and is not the gateway.
    pub fn owns_pod_ip(&self, ip: &str) -> bool {
        let prefix = format!("10.88.{}.", self.slot);
        ip.strip_prefix(&prefix)
            .and_then(|host| host.parse::<u8>().ok())
            .is_some_and(|host| (2..=254).contains(&host))
    }

    /// The cgroup (cgroupfs path) under which this instance's pods may be placed.
    pub fn cgroup_root(&self) -> String {
        format!("/berth-e2e-{}", self.slot)
    }

    /// The `ShimCgroup` of the handler that sets one: under
    /// [`Instance::cgroup_root`], made by the test that uses it.
    pub fn shim_cgroup(&self) -> String {
        format!("{}/shims", self.cgroup_root())
    }

    /// The `StateRoot` of the handler whose runtime options set one.
    pub fn options_state_root(&self) -> PathBuf {
        self.dir().join("berth-options-state")
    }

    /// Kills every process that belongs to this instance, deletes runc containers left in
    /// its runc root, unmounts what is mounted below its directory, and removes its
    /// bridge, cgroups and directory. Returns a line for each thing that had been left
    /// over or could not be removed. Best effort: never fails.
    pub fn sweep(&self) -> Vec<String> {
        let mut report = Vec::new();
        // A process in a frozen cgroup dies only once thawed.
        report.extend(cgroups::thaw_tree(&self.cgroup_root()));
        report.extend(self.kill_processes());
        report.extend(self.delete_runc_containers());
        report.extend(self.unmount_all());
        if Path::new("/sys/class/net").join(self.bridge()).exists() {
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge()])
                .status();
        }
        report.extend(cgroups::remove_tree(&self.cgroup_root()));
        if self.dir.exists() {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                report.push(format!("rm -rf {}: {e}", self.dir.display()));
            }
        }
        report
    }

    /// The processes of this instance: containerd and anything that names the instance
    /// directory in its arguments (shims: `-address <dir>/c.sock`), inherited this
    /// instance's `BERTH_STATE_ROOT`, or is in one of its cgroups.
    pub fn processes(&self) -> Vec<i32> {
        let prefix = format!("{}/", self.dir.display());
        let state_root = format!("BERTH_STATE_ROOT={}", self.berth_state_root().display());
        // Containers whose shim is gone are known by their cgroup.
        let in_cgroup = format!(":{}/", self.cgroup_root());
        let me = std::process::id() as i32;
        procs::all_pids()
            .into_iter()
            .filter(|&pid| pid != me)
            .filter(|&pid| {
                procs::cmdline(pid).is_some_and(|a| a.iter().any(|s| s.contains(&prefix)))
                    || procs::environ(pid).is_some_and(|e| e.contains(&state_root))
                    || procs::cgroups(pid).is_some_and(|c| c.contains(&in_cgroup))
            })
            .collect()
    }

    /// Sandbox and container ids this instance knows of: the `-id` of its shims and
    /// the bundles in containerd's task state.
    pub fn known_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .processes()
            .into_iter()
            .filter_map(procs::cmdline)
            .filter_map(|args| {
                let at = args.iter().position(|a| a == "-id")?;
                args.get(at + 1).cloned()
            })
            .collect();
        let tasks = self.state().join("io.containerd.runtime.v2.task");
        for ns in subdirs(&tasks) {
            ids.extend(
                subdirs(&ns)
                    .iter()
                    .filter_map(|b| Some(b.file_name()?.to_str()?.to_string())),
            );
        }
        ids.sort();
        ids.dedup();
        ids
    }

    fn kill_processes(&self) -> Vec<String> {
        let mut pids = self.processes();
        // A berth-pause need not inherit BERTH_STATE_ROOT; it does carry its sandbox id.
        for id in self.known_ids() {
            pids.extend(procs::with_env(procs::SANDBOX_ID_ENV, &id));
        }
        pids.sort_unstable();
        pids.dedup();
        let report = pids
            .iter()
            .map(|&p| format!("process {}", procs::describe(p)))
            .collect();
        // A killed runc shim leaves its socket in containerd's global /run/containerd/s.
        let sockets: Vec<PathBuf> = pids
            .iter()
            .flat_map(|&p| procs::unix_socket_paths(p))
            .filter(|s| s.starts_with(SHIM_SOCKET_DIR))
            .collect();
        let ids: Vec<_> = pids.iter().filter_map(|&p| procs::ProcId::of(p)).collect();
        for id in &ids {
            // SAFETY: kill(2) with a pid we just read from /proc; no memory is involved.
            unsafe { libc::kill(id.pid, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while ids.iter().any(|id| id.is_alive()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for socket in sockets {
            let _ = fs::remove_file(socket);
        }
        report
    }

    /// runc's root holds `<namespace>/<container id>/state.json`.
    fn delete_runc_containers(&self) -> Vec<String> {
        let mut report = Vec::new();
        for ns_root in subdirs(&self.runc_root()) {
            for container in subdirs(&ns_root) {
                let id = container
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                report.push(format!("runc container {}", container.display()));
                let _ = Command::new(paths::RUNC_BINARY)
                    .arg("--root")
                    .arg(&ns_root)
                    .args(["delete", "--force", &id])
                    .output();
            }
        }
        report
    }

    fn unmount_all(&self) -> Vec<String> {
        let mut report = Vec::new();
        let mut points = mounts_under(&self.dir);
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for point in points {
            report.push(format!("mount {}", point.display()));
            let Ok(c) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            // SAFETY: umount2 with a valid NUL-terminated path that outlives the call.
            let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                report.push(format!("umount {}: {e}", point.display()));
            }
        }
        report
    }
}

fn locks_dir() -> PathBuf {
    paths::instances_root().join(".locks")
}

/// Sweeps the directory of every slot whose holder died without cleaning up (a test
/// killed by a timeout, a demo interrupted with ^C): its containerd, shims and pods
/// would otherwise live on.
fn sweep_abandoned() {
    let Ok(entries) = fs::read_dir(paths::instances_root()) else {
        return;
    };
    let slots = entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u16>().ok());
    for slot in slots.filter(|s| SLOTS.contains(s)) {
        if let Ok(Some(instance)) = Instance::try_lock(slot) {
            for stale in instance.sweep() {
                eprintln!("berth-e2e: abandoned slot {slot}: swept {stale}");
            }
        }
    }
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// Mount points in this mount namespace at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mount_points()
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Every mount point of this process's mount namespace, unescaped.
pub fn mount_points() -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) if bytes[i] == b'\\' => {
                out.push(
                    d.iter()
                        .fold(0u8, |acc, b| acc.wrapping_mul(8) + (b - b'0')),
                );
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/end\"), r"/end\");
    }
}
