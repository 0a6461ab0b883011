//! Reading `/proc`: who is running, with which command line, environment and namespaces.
//!
//! Every reader returns `None` for a process that vanished meanwhile: the process table
//! changes under our feet and a process that is gone is never an error here.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The environment variable every berth-pause carries.
pub const SANDBOX_ID_ENV: &str = "BERTH_SANDBOX_ID";

/// A process seen in `/proc`, identified by pid and start time (so a reused pid is
/// never mistaken for the process that was recorded).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProcId {
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`, in clock ticks since boot.
    pub start_time: u64,
}

impl ProcId {
    /// The process `pid` as it is now, if it exists.
    pub fn of(pid: i32) -> Option<ProcId> {
        Some(ProcId {
            pid,
            start_time: stat(pid)?.start_time,
        })
    }

    /// True while this very process (not a later one with the same pid) runs. A zombie
    /// has exited and counts as gone: reaping orphans is init's business (this VM's
    /// init reaps only every second or so).
    pub fn is_alive(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start_time == self.start_time && s.state != 'Z')
    }
}

/// The fields of `/proc/<pid>/stat` the harness uses.
#[derive(Clone, Debug)]
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub start_time: u64,
}

/// Every pid in `/proc`, in no particular order.
pub fn all_pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// `/proc/<pid>/stat`, parsed around the parenthesised command name.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    // After ") ": field 3 (state) is index 0, field 4 (ppid) index 1, field 22 index 19.
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    Some(Stat {
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        start_time: rest.get(19)?.parse().ok()?,
    })
}

/// The NUL-separated arguments of a process (empty for kernel threads and zombies).
pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    read_nul_list(&format!("/proc/{pid}/cmdline"))
}

/// The initial environment of a process, as `KEY=value` strings.
pub fn environ(pid: i32) -> Option<Vec<String>> {
    read_nul_list(&format!("/proc/{pid}/environ"))
}

/// Processes whose environment holds exactly `key=value`.
pub fn with_env(key: &str, value: &str) -> Vec<i32> {
    let wanted = format!("{key}={value}");
    all_pids()
        .into_iter()
        .filter(|&pid| environ(pid).is_some_and(|env| env.contains(&wanted)))
        .collect()
}

/// Processes whose arguments contain `flag` immediately followed by `value`
/// (`-address /x/c.sock`), also in the `flag=value` form.
pub fn with_arg(flag: &str, value: &str) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| cmdline(pid).is_some_and(|args| has_arg(&args, flag, value)))
        .collect()
}

/// True if `args` carries `flag value` or `flag=value`.
pub fn has_arg(args: &[String], flag: &str, value: &str) -> bool {
    let joined = format!("{flag}={value}");
    args.windows(2).any(|w| w[0] == flag && w[1] == value) || args.contains(&joined)
}

/// The shim processes a containerd listening on `address` runs for `id`.
/// A shim's arguments carry `-address <containerd socket>` and `-id <id>`.
pub fn shims_of(address: &Path, id: &str) -> Vec<i32> {
    let address = address.to_string_lossy();
    with_arg("-address", &address)
        .into_iter()
        .filter(|&pid| cmdline(pid).is_some_and(|args| has_arg(&args, "-id", id)))
        .collect()
}

/// Every shim process of the containerd listening on `address`.
pub fn all_shims_of(address: &Path) -> Vec<i32> {
    with_arg("-address", &address.to_string_lossy())
}

/// Inode of a namespace of a process (`net`, `pid`, `ipc`, `uts`, `mnt`).
pub fn ns_inode(pid: i32, ns: &str) -> Option<u64> {
    fs::metadata(format!("/proc/{pid}/ns/{ns}"))
        .ok()
        .map(|m| m.ino())
}

/// Resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The cgroup paths of a process, one line per hierarchy (`id:controllers:path`).
pub fn cgroups(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()
}

/// Paths of the unix sockets a process holds open (listening or connected), from its
/// fds and `/proc/<pid>/net/unix`.
pub fn unix_socket_paths(pid: i32) -> Vec<std::path::PathBuf> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: std::collections::HashSet<String> = fds
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let path = cols.get(7)?;
            (inodes.contains(*cols.get(6)?) && path.starts_with('/')).then(|| path.into())
        })
        .collect()
}

/// A one-line description for reports: `1234 (comm) arg0 arg1 ...`.
pub fn describe(pid: i32) -> String {
    let comm = stat(pid).map(|s| s.comm).unwrap_or_default();
    let args = cmdline(pid).map(|a| a.join(" ")).unwrap_or_default();
    format!("{pid} ({comm}) {args}")
}

fn read_nul_list(path: &str) -> Option<Vec<String>> {
    let bytes = fs::read(path).ok()?;
    Some(
        bytes
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}
