//! `berth-bench`'s command line.

use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};

use crate::paths;
use crate::version::Version;

pub const USAGE: &str = "\
usage: berth-bench [--runs N] [--memory-rounds N] [--smoke] [--pods-only] [--systemd]
                   [--containerd 2.1|1.7] [--out DIR]

Starts one private containerd (default 2.1) with runtime handlers berth and runc and
runs the same pod workload against both, alternating berth and runc:
  latency  N runs (default 30) of RunPodSandbox, CreateContainer+StartContainer,
           50 pods with a container each (one and 8 at a time),
           StopPodSandbox+RemovePodSandbox, and a container's exit until CRI sees it;
           on containerd 2.x the first four also with berth in shim mode (handler
           berth-shim, sandboxer = \"shim\"), alternating with the other two, each
           beside the same runc samples
  memory   N rounds (default: the runs) bringing 1, 10 and 50 pods up: shim RSS and PSS
           per pod, pause RSS per pod
--smoke is 3 runs, 3 rounds, 1 and 3 pods, and 5 instead of 50 (for CI). --pods-only measures
RunPodSandbox, CreateContainer+StartContainer and StopPodSandbox+RemovePodSandbox alone (for
the VM lane). --systemd compares the two with the systemd cgroup driver (handlers berth-systemd
and runc-systemd, each pod under a slice of its own, as kubelet's systemd driver puts it; the
host must run systemd). Prints the table (median and
p99 per handler, berth/runc, targets) and writes results.json, table.md and
results.png into DIR (default target/bench).";

/// How the pods' cgroups are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// cgroupfs paths under the instance's cgroup root.
    Cgroupfs,
    /// `SystemdCgroup = true`: scope units under a slice per pod.
    Systemd,
}

impl Driver {
    /// As the results and the table's caption name it.
    pub fn name(self) -> &'static str {
        match self {
            Driver::Cgroupfs => "cgroupfs",
            Driver::Systemd => "systemd",
        }
    }
}

/// What a bench run measures and where it writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Samples of each latency figure per handler.
    pub runs: usize,
    /// Memory ramps per handler.
    pub memory_rounds: usize,
    /// Pod counts the memory figure is measured at, ascending.
    pub pod_counts: Vec<usize>,
    /// Pods (with a container each) figure 3 brings up per sample.
    pub batch_pods: usize,
    pub smoke: bool,
    /// Only the single pod's lifecycle and its container's create+start.
    pub pods_only: bool,
    /// The cgroup driver both handlers use.
    pub driver: Driver,
    pub version: Version,
    pub out_dir: PathBuf,
}

impl Options {
    fn full() -> Options {
        Options {
            runs: 30,
            memory_rounds: 30,
            pod_counts: vec![1, 10, 50],
            batch_pods: 50,
            smoke: false,
            pods_only: false,
            driver: Driver::Cgroupfs,
            version: Version::V2_1,
            out_dir: paths::workspace().join("target/bench"),
        }
    }

    /// `smoke` or `full`, for the JSON.
    pub fn mode(&self) -> &'static str {
        if self.smoke {
            "smoke"
        } else {
            "full"
        }
    }
}

/// Parses the arguments after the program name; `None` means help was asked for.
pub fn parse(args: &[String]) -> Result<Option<Options>> {
    let mut opts = Options::full();
    let mut runs = None;
    let mut rounds = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |what: &str| it.next().with_context(|| format!("{arg} needs {what}"));
        match arg.as_str() {
            "--runs" => runs = Some(count(value("a number")?)?),
            "--memory-rounds" => rounds = Some(count(value("a number")?)?),
            "--smoke" => opts.smoke = true,
            "--pods-only" => opts.pods_only = true,
            "--systemd" => opts.driver = Driver::Systemd,
            "--containerd" => {
                let v = value("a version")?;
                opts.version = Version::parse(v).with_context(|| format!("unknown version {v}"))?;
            }
            "--out" => opts.out_dir = PathBuf::from(value("a directory")?),
            "-h" | "--help" => return Ok(None),
            other => bail!("unexpected argument {other}\n\n{USAGE}"),
        }
    }
    if opts.smoke {
        opts.runs = 3;
        opts.memory_rounds = 3;
        opts.pod_counts = vec![1, 3];
        opts.batch_pods = 5;
    }
    if let Some(n) = runs {
        opts.runs = n;
        opts.memory_rounds = n;
    }
    if let Some(n) = rounds {
        opts.memory_rounds = n;
    }
    Ok(Some(opts))
}

fn count(s: &str) -> Result<usize> {
    let n: usize = s.parse().with_context(|| format!("{s:?} is not a count"))?;
    ensure!(n > 0, "a count must be at least 1");
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(s: &str) -> Result<Option<Options>> {
        let args: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse(&args)
    }

    #[test]
    fn defaults_to_thirty_runs_and_three_pod_counts() {
        let o = parse_args("").unwrap().unwrap();
        assert_eq!((o.runs, o.memory_rounds), (30, 30));
        assert_eq!(o.pod_counts, [1, 10, 50]);
        assert_eq!(o.version, Version::V2_1);
        assert!(o.out_dir.ends_with("target/bench"));
        assert_eq!(o.mode(), "full");
    }

    #[test]
    fn smoke_is_small_and_runs_override() {
        let o = parse_args("--smoke").unwrap().unwrap();
        assert_eq!((o.runs, o.memory_rounds), (3, 3));
        assert!(!o.pods_only);
        assert!(parse_args("--pods-only").unwrap().unwrap().pods_only);
        assert_eq!(o.driver, Driver::Cgroupfs);
        let systemd = parse_args("--pods-only --systemd").unwrap().unwrap();
        assert_eq!(
            (systemd.driver, systemd.driver.name(), systemd.pods_only),
            (Driver::Systemd, "systemd", true)
        );
        assert_eq!((o.pod_counts.as_slice(), o.batch_pods), (&[1, 3][..], 5));
        let o = parse_args("--runs 5 --smoke").unwrap().unwrap();
        assert_eq!((o.runs, o.memory_rounds, o.mode()), (5, 5, "smoke"));
        let o = parse_args("--runs 40 --memory-rounds 4 --out /tmp/b")
            .unwrap()
            .unwrap();
        assert_eq!((o.runs, o.memory_rounds), (40, 4));
        assert_eq!(o.out_dir, PathBuf::from("/tmp/b"));
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(parse_args("--runs").is_err());
        assert!(parse_args("--runs 0").is_err());
        assert!(parse_args("--runs x").is_err());
        assert!(parse_args("--fast").is_err());
        assert!(parse_args("--help").unwrap().is_none());
    }
}
