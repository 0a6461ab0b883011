//! `berth-cri`: a crictl-like command line over [`crate::cri::Cri`], for poking at a
//! containerd by hand. Argument parsing is hand-written and small; [`USAGE`]
//! lists the commands.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use k8s_cri::v1::{Container, ContainerStats, PodSandbox, PodSandboxState};

use crate::container_config::{log_lines, ContainerSpec};
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
  create <pod-id> <container-config.json> <pod-config.json>
                                                 create a container in a pod (prints its id)
  start <id>...                                  start containers
  stop [--timeout <s>] <id>...                   stop containers: SIGTERM, SIGKILL after
                                                 the timeout (default 10 s)
  rm <id>...                                     remove containers
  ps [--pod <pod-id>]                            list containers, in every state
  inspect <id>                                   show a container's status (JSON)
  exec <id> <command> [<arg>...]                 run a command in a container and wait;
                                                 exits with its exit code
  logs <id>                                      print a container's log
  stats [<id>...]                                CPU time and memory of containers
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
    RunPod {
        config: String,
        runtime: String,
    },
    StopPods(Vec<String>),
    RemovePods(Vec<String>),
    Pods,
    InspectPod(String),
    Create {
        pod: String,
        config: String,
        pod_config: String,
    },
    Start(Vec<String>),
    Stop {
        ids: Vec<String>,
        timeout: i64,
    },
    Remove(Vec<String>),
    Containers {
        pod: Option<String>,
    },
    Inspect(String),
    Exec {
        id: String,
        command: Vec<String>,
    },
    Logs(String),
    Stats(Vec<String>),
    Version,
    Help,
}

/// StopContainer's grace period when none is given.
const DEFAULT_STOP_TIMEOUT: i64 = 10;

/// Parses the arguments after the program name. `env_endpoint` is
/// `CONTAINER_RUNTIME_ENDPOINT`, if set.
pub fn parse(args: &[String], env_endpoint: Option<String>) -> Result<Invocation> {
    let mut endpoint = env_endpoint.unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let mut runtime = BERTH_HANDLER.to_string();
    let mut timeout = DEFAULT_STOP_TIMEOUT;
    let mut pod = None;
    let mut words: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if words.len() >= 2 && words[0] == "exec" {
            // The command in the container is not berth-cri's to parse.
            words.push(arg.clone());
            continue;
        }
        match arg.as_str() {
            "--timeout" | "-t" => {
                let value = it.next().context("--timeout needs a value")?;
                timeout = value
                    .parse()
                    .with_context(|| format!("--timeout: {value:?} is not a number of seconds"))?;
            }
            "--pod" | "-p" => pod = Some(it.next().context("--pod needs a value")?.clone()),
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
        ("create", [pod, config, pod_config]) => Command::Create {
            pod: pod.clone(),
            config: config.clone(),
            pod_config: pod_config.clone(),
        },
        ("start", ids) if !ids.is_empty() => Command::Start(ids.to_vec()),
        ("stop", ids) if !ids.is_empty() => Command::Stop {
            ids: ids.to_vec(),
            timeout,
        },
        ("rm", ids) if !ids.is_empty() => Command::Remove(ids.to_vec()),
        ("ps", []) => Command::Containers { pod },
        ("inspect", [id]) => Command::Inspect(id.clone()),
        ("exec", [id, command @ ..]) if !command.is_empty() => Command::Exec {
            id: id.clone(),
            command: command.to_vec(),
        },
        ("logs", [id]) => Command::Logs(id.clone()),
        ("stats", ids) => Command::Stats(ids.to_vec()),
        ("version", []) => Command::Version,
        _ => bail!("bad command line: {}\n\n{USAGE}", words.join(" ")),
    };
    Ok(Invocation { endpoint, command })
}

/// How long `exec` lets its command run.
const EXEC_TIMEOUT_SECS: i64 = 60;

/// Runs `berth-cri` with the arguments after the program name, printing to
/// stdout. Returns the exit code: `exec`'s command's, 0 otherwise.
pub async fn main(args: &[String]) -> Result<i32> {
    let inv = parse(args, std::env::var("CONTAINER_RUNTIME_ENDPOINT").ok())?;
    if inv.command == Command::Help {
        println!("{USAGE}");
        return Ok(0);
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
        Command::Create {
            pod,
            config,
            pod_config,
        } => {
            let read =
                |path: &str| std::fs::read_to_string(path).with_context(|| format!("read {path}"));
            let spec = ContainerSpec::from_json(&read(&config)?)
                .with_context(|| format!("parse {config}"))?;
            let pod_config = PodConfig::from_json(&read(&pod_config)?)
                .with_context(|| format!("parse {pod_config}"))?;
            let id = client
                .create_container(&pod, spec.to_cri(), pod_config.to_cri())
                .await?;
            println!("{id}");
        }
        Command::Start(ids) => {
            for id in ids {
                client.start_container(&id).await?;
                println!("{id}");
            }
        }
        Command::Stop { ids, timeout } => {
            for id in ids {
                client.stop_container(&id, timeout).await?;
                println!("{id}");
            }
        }
        Command::Remove(ids) => {
            for id in ids {
                client.remove_container(&id).await?;
                println!("{id}");
            }
        }
        Command::Containers { pod } => {
            let containers = client.list_containers(pod.as_deref()).await?;
            print!("{}", containers_table(&containers, now_nanos()));
        }
        Command::Inspect(id) => {
            let status = client.container_status(&id).await?;
            let mut value = serde_json::to_value(&status)?;
            value["state"] = container_state_name(status.state).into();
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Command::Exec { id, command } => {
            let command: Vec<&str> = command.iter().map(String::as_str).collect();
            let resp = client.exec_sync(&id, &command, EXEC_TIMEOUT_SECS).await?;
            use std::io::Write;
            std::io::stdout().write_all(&resp.stdout)?;
            std::io::stderr().write_all(&resp.stderr)?;
            return Ok(resp.exit_code);
        }
        Command::Logs(id) => {
            let status = client.container_status(&id).await?;
            if status.log_path.is_empty() {
                bail!("container {id} has no log file");
            }
            let log = std::fs::read_to_string(&status.log_path)
                .with_context(|| format!("read {}", status.log_path))?;
            for (stream, text) in log_lines(&log) {
                if stream == "stderr" {
                    eprintln!("{text}");
                } else {
                    println!("{text}");
                }
            }
        }
        Command::Stats(ids) => {
            let ids = if ids.is_empty() {
                let running = client.list_containers(None).await?.into_iter();
                running
                    .filter(|c| c.state == k8s_cri::v1::ContainerState::ContainerRunning as i32)
                    .map(|c| c.id)
                    .collect()
            } else {
                ids
            };
            let mut stats = Vec::new();
            for id in ids {
                stats.push(client.container_stats(&id).await?);
            }
            print!("{}", stats_table(&stats));
        }
        Command::Version => {
            let v = client.version().await?;
            println!("Version:  {}", v.version);
            println!("RuntimeName:  {}", v.runtime_name);
            println!("RuntimeVersion:  {}", v.runtime_version);
            println!("RuntimeApiVersion:  {}", v.runtime_api_version);
        }
    }
    Ok(0)
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
    table(&rows)
}

/// crictl's `ps -a` table: CONTAINER, IMAGE, CREATED, STATE, NAME, ATTEMPT,
/// POD ID.
pub fn containers_table(containers: &[Container], now_nanos: i64) -> String {
    let mut rows = vec![[
        "CONTAINER".to_string(),
        "IMAGE".to_string(),
        "CREATED".to_string(),
        "STATE".to_string(),
        "NAME".to_string(),
        "ATTEMPT".to_string(),
        "POD ID".to_string(),
    ]];
    let mut sorted: Vec<&Container> = containers.iter().collect();
    sorted.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    for c in sorted {
        let meta = c.metadata.clone().unwrap_or_default();
        rows.push([
            c.id.chars().take(13).collect(),
            c.image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            ago(now_nanos - c.created_at),
            container_state_title(c.state).to_string(),
            meta.name,
            meta.attempt.to_string(),
            c.pod_sandbox_id.chars().take(13).collect(),
        ]);
    }
    table(&rows)
}

/// CONTAINER, NAME, CPU (total time), MEM (working set).
pub fn stats_table(stats: &[ContainerStats]) -> String {
    let mut rows = vec![[
        "CONTAINER".to_string(),
        "NAME".to_string(),
        "CPU".to_string(),
        "MEM".to_string(),
    ]];
    for s in stats {
        let attrs = s.attributes.clone().unwrap_or_default();
        let name = attrs.metadata.map(|m| m.name).unwrap_or_default();
        let cpu_ns = s
            .cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds.as_ref())
            .map_or(0, |v| v.value);
        let mem = s
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .map_or(0, |v| v.value);
        rows.push([
            attrs.id.chars().take(13).collect(),
            name,
            format!("{:.3}s", cpu_ns as f64 / 1e9),
            format!("{:.1}MiB", mem as f64 / (1024.0 * 1024.0)),
        ]);
    }
    table(&rows)
}

/// Left-aligned columns, three spaces apart, as crictl prints them.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in rows {
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

fn container_state_title(state: i32) -> &'static str {
    use k8s_cri::v1::ContainerState as S;
    match S::try_from(state) {
        Ok(S::ContainerCreated) => "Created",
        Ok(S::ContainerRunning) => "Running",
        Ok(S::ContainerExited) => "Exited",
        Ok(S::ContainerUnknown) | Err(_) => "Unknown",
    }
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
    fn parses_container_commands() {
        let cmd = |s: &str| parse(&args(s), None).unwrap().command;
        assert_eq!(
            cmd("create p1 c.json p.json"),
            Command::Create {
                pod: "p1".into(),
                config: "c.json".into(),
                pod_config: "p.json".into()
            }
        );
        assert_eq!(
            cmd("stop --timeout 3 a b"),
            Command::Stop {
                ids: args("a b"),
                timeout: 3
            }
        );
        assert_eq!(
            cmd("stop a"),
            Command::Stop {
                ids: args("a"),
                timeout: DEFAULT_STOP_TIMEOUT
            }
        );
        assert_eq!(
            cmd("ps --pod p1"),
            Command::Containers {
                pod: Some("p1".into())
            }
        );
        assert_eq!(cmd("stats"), Command::Stats(vec![]));
        // The command's own options are its own.
        assert_eq!(
            cmd("exec c1 sh -c --timeout"),
            Command::Exec {
                id: "c1".into(),
                command: args("sh -c --timeout")
            }
        );
        assert!(parse(&args("exec c1"), None).is_err());
        assert!(parse(&args("create p1 c.json"), None).is_err());
        assert!(parse(&args("stop --timeout soon a"), None).is_err());
    }

    #[test]
    fn formats_a_containers_table() {
        let c = Container {
            id: "fedcba9876543210".into(),
            pod_sandbox_id: "0123456789abcdef".into(),
            metadata: Some(k8s_cri::v1::ContainerMetadata {
                name: "web".into(),
                attempt: 1,
            }),
            image: Some(k8s_cri::v1::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            state: k8s_cri::v1::ContainerState::ContainerExited as i32,
            created_at: 0,
            ..Default::default()
        };
        let table = containers_table(&[c], 5 * 1_000_000_000);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("CONTAINER       IMAGE     CREATED"));
        assert!(lines[1].starts_with("fedcba9876543   busybox   5 seconds ago   Exited   web"));
        assert!(lines[1].ends_with("0123456789abc"));
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
