//! `berth-cri`: a crictl-like command line over [`crate::cri::Cri`], for poking at a
//! containerd by hand. Argument parsing is hand-written and small.
//!
//! ```text
//! berth-cri [--endpoint unix:///path] runp <pod-config.json> [--runtime berth]
//! berth-cri [--endpoint ...] stopp <id>...
//! berth-cri [--endpoint ...] rmp <id>...
//! berth-cri [--endpoint ...] pods
//! berth-cri [--endpoint ...] inspectp <id>
//! berth-cri [--endpoint ...] version
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use k8s_cri::v1::{PodSandbox, PodSandboxState};

use crate::containerd_config::BERTH_HANDLER;
use crate::cri::{self, Cri};
use crate::pod_config::PodConfig;

/// crictl's default endpoint, overridden by `CONTAINER_RUNTIME_ENDPOINT` or `--endpoint`.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";

pub const USAGE: &str = "\
usage: berth-cri [--endpoint unix:///path] <command> [args]

commands:
  runp <pod-config.json> [--runtime <handler>]   run a pod sandbox (default handler: berth)
  stopp <id>...                                  stop pod sandboxes
  rmp <id>...                                    remove pod sandboxes
  pods                                           list pod sandboxes
  inspectp <id>                                  show a pod sandbox's status and info (JSON)
  version                                        show the runtime's CRI version

The endpoint defaults to $CONTAINER_RUNTIME_ENDPOINT, then unix:///run/containerd/containerd.sock.";

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub endpoint: String,
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    RunPod { config: String, runtime: String },
    StopPods(Vec<String>),
    RemovePods(Vec<String>),
    Pods,
    InspectPod(String),
    Version,
    Help,
}

/// Parses the arguments after the program name. `env_endpoint` is
/// `CONTAINER_RUNTIME_ENDPOINT`, if set.
pub fn parse(args: &[String], env_endpoint: Option<String>) -> Result<Invocation> {
    let mut endpoint = env_endpoint.unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let mut runtime = BERTH_HANDLER.to_string();
    let mut words = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--endpoint" | "-r" | "--runtime-endpoint" => {
                endpoint = it.next().context("--endpoint needs a value")?.clone();
            }
            "--runtime" => runtime = it.next().context("--runtime needs a value")?.clone(),
            "-h" | "--help" => words.insert(0, "help".to_string()),
            a if a.starts_with("--endpoint=") => endpoint = a["--endpoint=".len()..].to_string(),
            a if a.starts_with("--runtime=") => runtime = a["--runtime=".len()..].to_string(),
            a if a.starts_with('-') && a.len() > 1 => bail!("unknown option {a}\n\n{USAGE}"),
            _ => words.push(arg.clone()),
        }
    }
    let Some((verb, rest)) = words.split_first() else {
        bail!("no command given\n\n{USAGE}")
    };
    let command = match (verb.as_str(), rest) {
        ("help", _) => Command::Help,
        ("runp", [config]) => Command::RunPod {
            config: config.clone(),
            runtime,
        },
        ("stopp", ids) if !ids.is_empty() => Command::StopPods(ids.to_vec()),
        ("rmp", ids) if !ids.is_empty() => Command::RemovePods(ids.to_vec()),
        ("pods", []) => Command::Pods,
        ("inspectp", [id]) => Command::InspectPod(id.clone()),
        ("version", []) => Command::Version,
        _ => bail!("bad command line: {}\n\n{USAGE}", words.join(" ")),
    };
    Ok(Invocation { endpoint, command })
}

/// Runs `berth-cri` with the arguments after the program name, printing to stdout.
pub async fn main(args: &[String]) -> Result<()> {
    let inv = parse(args, std::env::var("CONTAINER_RUNTIME_ENDPOINT").ok())?;
    if inv.command == Command::Help {
        println!("{USAGE}");
        return Ok(());
    }
    let client = Cri::connect(&inv.endpoint).await?;
    match inv.command {
        Command::Help => {}
        Command::RunPod { config, runtime } => {
            let text =
                std::fs::read_to_string(&config).with_context(|| format!("read {config}"))?;
            let pod = PodConfig::from_json(&text).with_context(|| format!("parse {config}"))?;
            let started = std::time::Instant::now();
            let id = client.run_pod_sandbox(pod.to_cri(), &runtime).await?;
            // The CRI call alone, as kubelet sees it; on stderr, so stdout stays the id.
            eprintln!(
                "RunPodSandbox took {:.3} s",
                started.elapsed().as_secs_f64()
            );
            println!("{id}");
        }
        Command::StopPods(ids) => {
            for id in ids {
                client.stop_pod_sandbox(&id).await?;
                println!("Stopped sandbox {id}");
            }
        }
        Command::RemovePods(ids) => {
            for id in ids {
                client.remove_pod_sandbox(&id).await?;
                println!("Removed sandbox {id}");
            }
        }
        Command::Pods => {
            let pods = client.list_pod_sandbox(None).await?;
            print!("{}", pods_table(&pods, now_nanos()));
        }
        Command::InspectPod(id) => {
            let value = inspect(&client, &id).await?;
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Command::Version => {
            let v = client.version().await?;
            println!("Version:  {}", v.version);
            println!("RuntimeName:  {}", v.runtime_name);
            println!("RuntimeVersion:  {}", v.runtime_version);
            println!("RuntimeApiVersion:  {}", v.runtime_api_version);
        }
    }
    Ok(())
}

/// `{"status": ..., "info": ...}` with the state spelled out, like `crictl inspectp`.
pub async fn inspect(client: &Cri, id: &str) -> Result<serde_json::Value> {
    let resp = client.pod_sandbox_status(id, true).await?;
    let mut status = serde_json::to_value(&resp.status)?;
    if let Some(state) = resp.status.as_ref().map(|s| s.state) {
        status["state"] = state_name(state).into();
    }
    let info = cri::parse_info(&resp.info).unwrap_or(serde_json::Value::Null);
    Ok(serde_json::json!({ "status": status, "info": info }))
}

/// crictl's `pods` table: POD ID, CREATED, STATE, NAME, NAMESPACE, ATTEMPT, RUNTIME.
pub fn pods_table(pods: &[PodSandbox], now_nanos: i64) -> String {
    let mut rows = vec![[
        "POD ID".to_string(),
        "CREATED".to_string(),
        "STATE".to_string(),
        "NAME".to_string(),
        "NAMESPACE".to_string(),
        "ATTEMPT".to_string(),
        "RUNTIME".to_string(),
    ]];
    let mut sorted: Vec<&PodSandbox> = pods.iter().collect();
    sorted.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    for p in sorted {
        let meta = p.metadata.clone().unwrap_or_default();
        rows.push([
            p.id.chars().take(13).collect(),
            ago(now_nanos - p.created_at),
            state_title(p.state).to_string(),
            meta.name,
            meta.namespace,
            meta.attempt.to_string(),
            p.runtime_handler.clone(),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// `SANDBOX_READY` / `SANDBOX_NOTREADY`.
pub fn state_name(state: i32) -> &'static str {
    PodSandboxState::try_from(state)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN")
}

/// CRI's name of a container state, e.g. `CONTAINER_RUNNING`.
pub fn container_state_name(state: i32) -> &'static str {
    k8s_cri::v1::ContainerState::try_from(state)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN")
}

fn state_title(state: i32) -> &'static str {
    match PodSandboxState::try_from(state) {
        Ok(PodSandboxState::SandboxReady) => "Ready",
        Ok(PodSandboxState::SandboxNotready) => "NotReady",
        Err(_) => "Unknown",
    }
}

/// "5 seconds ago", "3 minutes ago", ...
fn ago(nanos: i64) -> String {
    let secs = (nanos / 1_000_000_000).max(0);
    let (n, unit) = match secs {
        0..=59 => (secs, "second"),
        60..=3599 => (secs / 60, "minute"),
        3600..=86399 => (secs / 3600, "hour"),
        _ => (secs / 86400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::PodSandboxMetadata;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_runp_with_endpoint_and_runtime() {
        let inv = parse(
            &args("--endpoint unix:///x.sock runp pod.json --runtime runc"),
            None,
        )
        .unwrap();
        assert_eq!(inv.endpoint, "unix:///x.sock");
        assert_eq!(
            inv.command,
            Command::RunPod {
                config: "pod.json".into(),
                runtime: "runc".into()
            }
        );
    }

    #[test]
    fn endpoint_defaults_to_env_then_containerd() {
        let inv = parse(&args("pods"), Some("unix:///env.sock".into())).unwrap();
        assert_eq!(inv.endpoint, "unix:///env.sock");
        let inv = parse(&args("pods"), None).unwrap();
        assert_eq!(inv.endpoint, DEFAULT_ENDPOINT);
        let inv = parse(&args("runp p.json"), None).unwrap();
        assert_eq!(
            inv.command,
            Command::RunPod {
                config: "p.json".into(),
                runtime: "berth".into()
            }
        );
    }

    #[test]
    fn rejects_bad_command_lines() {
        assert!(parse(&args(""), None).is_err());
        assert!(parse(&args("stopp"), None).is_err());
        assert!(parse(&args("pods --bogus"), None).is_err());
        assert!(parse(&args("inspectp a b"), None).is_err());
        assert_eq!(
            parse(&args("stopp a b"), None).unwrap().command,
            Command::StopPods(args("a b"))
        );
    }

    #[test]
    fn formats_a_table() {
        let pod = PodSandbox {
            id: "0123456789abcdef".into(),
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                namespace: "default".into(),
                uid: "u".into(),
                attempt: 0,
            }),
            state: PodSandboxState::SandboxReady as i32,
            created_at: 0,
            runtime_handler: "berth".into(),
            ..Default::default()
        };
        let table = pods_table(&[pod], 125 * 1_000_000_000);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("POD ID          CREATED"));
        assert!(lines[1].starts_with("0123456789abc   2 minutes ago   Ready"));
        assert!(lines[1].ends_with("berth"));
    }
}
