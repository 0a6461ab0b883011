//! `berth-cri`: a crictl-like command line over [`crate::cri::Cri`], for poking at a
//! containerd by hand. Argument parsing is hand-written and small ([`args`]);
//! [`USAGE`] lists the commands; [`table`] prints what crictl prints.

pub mod args;
pub mod table;

use anyhow::{bail, Context, Result};

pub use args::{parse, Command, Invocation, DEFAULT_ENDPOINT, USAGE};
pub use table::{container_state_name, state_name};

use crate::container_config::{log_lines, ContainerSpec};
use crate::cri::{self, Cri};
use crate::pod_config::PodConfig;
use table::{containers_table, now_nanos, pods_table, stats_table};

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
