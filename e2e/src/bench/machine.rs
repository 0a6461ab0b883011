//! What the numbers were measured on: CPU, cores, kernel, the containerd and runc
//! versions, berth's commit, and when.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::containerd::Containerd;
use crate::paths;
use crate::paths::RUNC_BINARY;

/// The machine and software a bench ran on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    /// CRI's `runtime_version` of the bench's containerd.
    pub containerd_version: String,
    /// The Debian package version unpacked in `.deps` (`VERSION`), if recorded.
    pub containerd_package: Option<String>,
    pub runc_version: Option<String>,
    /// `git rev-parse --short HEAD` of the workspace, `-dirty` if it has changes.
    pub berth_commit: Option<String>,
    /// Start of the bench, UTC, RFC 3339 (`2026-11-23T04:10:00Z`).
    pub date: String,
}

impl Machine {
    /// Looks at this machine and at `cd`'s versions.
    pub async fn describe(cd: &Containerd, started: SystemTime) -> anyhow::Result<Machine> {
        let version = cd.cri().version().await?;
        let package = cd.version().bin_dir().join("../../VERSION");
        Ok(Machine {
            cpu_model: cpu_model(&read("/proc/cpuinfo").unwrap_or_default())
                .unwrap_or_else(|| "unknown CPU".into()),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: read("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
            containerd_version: format!("{} {}", version.runtime_name, version.runtime_version),
            containerd_package: read(&package.to_string_lossy()),
            runc_version: first_line_of(RUNC_BINARY, &["--version"]),
            berth_commit: commit(),
            date: rfc3339(started),
        })
    }

    /// `AMD EPYC, 2 cores, Linux 6.1.0, containerd 2.1.9+ds1-5`: the Debian package
    /// version when known (containerd's own says `+unknown` for distribution builds).
    pub fn one_line(&self) -> String {
        let containerd = match &self.containerd_package {
            Some(package) => format!("containerd {package}"),
            None => self.containerd_version.clone(),
        };
        format!(
            "{}, {} cores, Linux {}, {containerd}",
            self.cpu_model, self.cores, self.kernel
        )
    }
}

fn read(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// The first `model name` of `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn first_line_of(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    out.status
        .success()
        .then(|| text.lines().next().unwrap_or("").trim().to_string())
}

fn commit() -> Option<String> {
    let dir = paths::workspace();
    let git = |args: &[&str]| Command::new("git").arg("-C").arg(&dir).args(args).output();
    let head = git(&["rev-parse", "--short", "HEAD"]).ok()?;
    if !head.status.success() {
        return None;
    }
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_ok_and(|o| !o.stdout.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

/// `t` as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_dates_in_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723);
        assert_eq!(rfc3339(leap), "2000-02-29T01:02:03Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_795_402_800);
        assert_eq!(rfc3339(later), "2026-11-23T03:00:00Z");
    }

    #[test]
    fn reads_the_cpu_model() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(info).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model(""), None);
    }
}
