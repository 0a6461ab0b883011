//! `berth-cri`'s command line: what each command takes, parsed by hand.

use anyhow::{bail, Context, Result};

use crate::containerd_config::BERTH_HANDLER;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
