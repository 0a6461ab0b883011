//! `berth-cri`'s tables and state names, as crictl prints them.

use std::time::{SystemTime, UNIX_EPOCH};

use k8s_cri::v1::{Container, ContainerStats, PodSandbox, PodSandboxState};

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

pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::PodSandboxMetadata;

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
