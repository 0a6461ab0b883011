//! `berth-demo` (`make demo`): start a private containerd with berth registered, run one
//! pod through CRI, show what is running (shim and pause, with pids and memory), run
//! an HTTP server and a client in it that talk over localhost, stop and remove it all,
//! check that nothing leaked, and stop containerd.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::container_config::ContainerSpec;
use crate::containerd::Containerd;
use crate::containerd_config::{BERTH_HANDLER, BERTH_SHIM_MODE_HANDLER};
use crate::pod_config::PodConfig;
use crate::pod_trace::{self, PodTrace};
use crate::version::Version;
use crate::{leaks, procs, scenario};

pub const USAGE: &str = "\
usage: berth-demo [--containerd 2.1|1.7] [--mode podsandbox|shim] [--runtime berth|berth-shim|runc] [--hold]

Starts a private containerd (default 2.1), runs one pod with the given runtime handler
(default berth), shows its shim and pause processes, runs a server and a client
container that talk over the pod's localhost, removes it all and checks for leaks.
--mode shim runs the pod with berth as containerd 2.x's pod sandbox manager
(`sandboxer = \"shim\"`, the berth-shim handler: no pause container);
podsandbox (the default) has containerd's podsandbox controller drive berth.
With --hold it runs no pod: it prints the CRI endpoint and keeps containerd up (berth
and runc registered) until Enter or ^C, for berth-cri or any CRI client.";

/// The demo's options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub version: Version,
    pub runtime: String,
    /// Keep containerd up for other clients instead of running the demo pod.
    pub hold: bool,
}

/// Parses the arguments after the program name; `None` means help was asked for.
pub fn parse(args: &[String]) -> Result<Option<Options>> {
    let mut opts = Options {
        version: Version::V2_1,
        runtime: BERTH_HANDLER.to_string(),
        hold: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--containerd" => {
                let v = it.next().context("--containerd needs a version")?;
                opts.version = Version::parse(v).with_context(|| format!("unknown version {v}"))?;
            }
            "--runtime" => opts.runtime = it.next().context("--runtime needs a handler")?.clone(),
            "--mode" => {
                opts.runtime = match it.next().map(String::as_str) {
                    Some("podsandbox") => BERTH_HANDLER,
                    Some("shim") => BERTH_SHIM_MODE_HANDLER,
                    Some(other) => bail!("--mode is podsandbox or shim, not {other:?}"),
                    None => bail!("--mode needs podsandbox or shim"),
                }
                .to_string()
            }
            "--hold" => opts.hold = true,
            "-h" | "--help" => return Ok(None),
            other => bail!("unexpected argument {other}\n\n{USAGE}"),
        }
    }
    Ok(Some(opts))
}

/// `berth-demo` with the arguments after the program name. ^C stops the demo and still
/// cleans up: dropping the demo's future drops its containerd.
pub async fn main(args: &[String]) -> Result<()> {
    let Some(opts) = parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    tokio::select! {
        result = run(&opts) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; containerd stopped and swept"),
    }
}

/// Runs the demo, printing as it goes. containerd is stopped whatever happens.
pub async fn run(opts: &Options) -> Result<()> {
    println!(
        "== berth demo: {} , runtime handler `{}`",
        opts.version, opts.runtime
    );
    if opts.runtime == BERTH_SHIM_MODE_HANDLER && opts.version == Version::V1_7 {
        bail!("containerd 1.7 has no Sandbox API: shim mode needs --containerd 2.1");
    }
    let cd = Containerd::start(opts.version).await?;
    println!(
        "containerd pid {} ready in {} (test images imported by {})",
        cd.pid().unwrap_or(0),
        secs(cd.ready_after()),
        secs(cd.images_after())
    );
    println!(
        "  instance {}  subnet {}",
        cd.instance().dir().display(),
        cd.instance().subnet()
    );
    let result = if opts.hold {
        hold(&cd).await
    } else {
        pod_lifecycle(&cd, &opts.runtime).await
    };
    if let Err(e) = &result {
        cd.mark_failed();
        println!("FAILED: {e:#}");
        println!("containerd log tail:\n{}", cd.log_tail(30));
    }
    let left = cd.stop();
    if left.is_empty() {
        println!("containerd stopped; the instance left nothing behind");
    } else {
        println!(
            "containerd stopped; swept leftovers:\n  {}",
            left.join("\n  ")
        );
    }
    result
}

/// Keeps containerd up until a line (or EOF) on stdin.
async fn hold(cd: &Containerd) -> Result<()> {
    println!("CRI endpoint: unix://{}", cd.address().display());
    let handlers = if cd.version() == Version::V1_7 {
        "berth, runc"
    } else {
        "berth, berth-shim (shim mode), runc"
    };
    println!("runtime handlers: {handlers}; press Enter to stop containerd");
    tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new()))
        .await
        .context("wait for stdin")?
        .context("read stdin")?;
    Ok(())
}

async fn pod_lifecycle(cd: &Containerd, runtime: &str) -> Result<()> {
    let parent = cd.cgroup_parent("demo");
    let config = scenario::pod_config(cd, "demo")?.cgroup_parent(&parent);

    let t = Instant::now();
    let id = scenario::run_pod(cd, &config, runtime).await?;
    println!("RunPodSandbox took {}", secs(t.elapsed()));
    let st = scenario::status(cd, &id).await?;
    println!(
        "  pod {}  {}  IP {}",
        &id[..12.min(id.len())],
        crate::cli::state_name(st.state),
        scenario::pod_ip(&st)
    );

    let trace = PodTrace::capture(cd, &id, &parent).await?;
    for shim in &trace.shims {
        show("shim", shim.pid);
    }
    let pauses = pod_trace::pause_pids(&id);
    if let Some(task) = trace.task.as_ref().filter(|t| !pauses.contains(&t.pid)) {
        show("task", task.pid);
    }
    let host_ns = procs::ns_inode(std::process::id() as i32, "net").unwrap_or(0);
    for pause in pauses {
        show("pause", pause);
        let cgroup = procs::cgroups(pause).unwrap_or_default();
        println!(
            "         netns inode {} (host {host_ns}), cgroup {}",
            procs::ns_inode(pause, "net").unwrap_or(0),
            cgroup
                .lines()
                .next()
                .and_then(|l| l.splitn(3, ':').nth(2))
                .unwrap_or("?")
        );
    }

    containers_talk(cd, &id, &config).await?;

    let t = Instant::now();
    cd.cri().stop_pod_sandbox(&id).await?;
    println!("StopPodSandbox took {}", secs(t.elapsed()));
    let t = Instant::now();
    cd.cri().remove_pod_sandbox(&id).await?;
    println!("RemovePodSandbox took {}", secs(t.elapsed()));
    leaks::check_pod_removed(cd, &trace).await?;
    println!("leak check: no process, mount, cgroup, netns or state file left");
    Ok(())
}

/// Runs an HTTP server and a client in the pod: the client fetches the
/// server's page over 127.0.0.1, which only works if they share the pod's
/// network namespace. Prints what the client got, then removes both.
async fn containers_talk(cd: &Containerd, pod: &str, config: &PodConfig) -> Result<()> {
    let server = ContainerSpec::http_server("server");
    let t = Instant::now();
    let server_id = scenario::run_container(cd, pod, config, &server).await?;
    println!("server container: create+start took {}", secs(t.elapsed()));
    let status = cd.cri().container_status(&server_id).await?;
    println!(
        "  {} (busybox httpd on 127.0.0.1:8080)",
        crate::cli::container_state_name(status.state)
    );

    let client = ContainerSpec::http_client("client");
    let t = Instant::now();
    let client_id = scenario::run_container(cd, pod, config, &client).await?;
    println!("client container: create+start took {}", secs(t.elapsed()));
    let status = scenario::wait_exited(cd, &client_id, Duration::from_secs(30)).await?;
    let lines = scenario::stdout_lines(config, &client)?;
    println!("  exited with code {}; its log:", status.exit_code);
    for line in &lines {
        println!("    | {line}");
    }
    if status.exit_code != 0 || !lines.iter().any(|l| l == "hello-from-berth") {
        bail!("the client did not get the server's page over localhost");
    }
    println!("the client read the server's page over localhost");
    scenario::remove_containers(cd, &[server_id, client_id]).await?;
    println!("containers stopped and removed; leak check clean");
    Ok(())
}

fn show(what: &str, pid: i32) {
    let rss = match procs::rss_kib(pid) {
        Some(k) if k >= 1024 => format!("{:.1} MiB", k as f64 / 1024.0),
        Some(k) => format!("{k} KiB"),
        None => "?".into(),
    };
    let args = procs::cmdline(pid).map(|a| a.join(" ")).unwrap_or_default();
    println!("  {what:<6} pid {pid:<7} RSS {rss:<9} {args}");
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Option<Options>> {
        parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_mode_picks_berths_handler() {
        let opts = parsed(&[]).unwrap().unwrap();
        assert_eq!(
            (opts.version, opts.runtime.as_str()),
            (Version::V2_1, BERTH_HANDLER)
        );
        let shim = parsed(&["--mode", "shim"]).unwrap().unwrap();
        assert_eq!(shim.runtime, BERTH_SHIM_MODE_HANDLER);
        let podsandbox = parsed(&["--mode", "podsandbox"]).unwrap().unwrap();
        assert_eq!(podsandbox.runtime, BERTH_HANDLER);
        let err = parsed(&["--mode", "vm"]).unwrap_err().to_string();
        assert!(err.contains("\"vm\""), "{err}");
        assert!(parsed(&["--mode"]).is_err());
    }
}
