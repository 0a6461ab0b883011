//! Figures 2, 3 and 5, which need app containers inside the pods.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use futures::stream::{self, StreamExt, TryStreamExt};
use k8s_cri::v1::ContainerState;

use super::figure::{Row, Target, Unit};
use super::handler::{Handler, PerHandler, PerRunner};
use super::latency::SHIM_MODE;
use super::pods::{Pods, PARALLEL};
use super::progress;
use crate::container_config::ContainerSpec;
use crate::scenario;

pub const CREATE_START: &str = "2 CreateContainer+StartContainer";
pub const FIFTY_PODS: &str = "3 50 pods with a container each";
pub const EXIT_DETECTION: &str = "5 container exit detected";
/// Goal: creating and starting a container at most 0.6 times runc's time.
pub const CREATE_START_TARGET: Target = Target::RatioToRuncAtMost { ratio: 0.6 };

/// Figure 2: CreateContainer + StartContainer of one container in a running pod,
/// `runs` times per handler after one unrecorded warm-up each, alternating.
pub async fn create_start(pods: &Pods<'_>, runs: usize) -> Result<Vec<Row>> {
    let spec = ContainerSpec::shell("bench", "exec sleep 3600");
    let mut took = PerRunner::default();
    let runners = pods.runners();
    for i in 0..=runs {
        for &r in &runners {
            let (id, _, config) = pods.run_with_config(r).await?;
            pods.expect_ready(&id).await?;
            let t = pods
                .create_start(&id, &config, &spec)
                .await
                .with_context(|| format!("create+start run {i} of {runs}, {r}"))?;
            pods.remove(&id).await?;
            if i > 0 {
                took.get_mut(r).push(t.as_secs_f64() * 1000.0);
            }
        }
        progress("create+start runs", i, runs);
    }
    let row = |id: &str, case: &str, samples| {
        Row::measured(
            id,
            CREATE_START,
            case,
            Unit::Millis,
            Some(CREATE_START_TARGET),
            samples,
        )
    };
    let mut rows = vec![row("create_start_container", "", took.podsandbox())];
    if let Some(shim) = took.shim_mode() {
        rows.push(row("create_start_container_shim_mode", SHIM_MODE, shim));
    }
    Ok(rows)
}

/// Figure 3: wall time to bring up `count` pods (50 in a full run) with one
/// container each, one pod at a time and [`PARALLEL`] at a time: RunPodSandbox,
/// CreateContainer and StartContainer of each, `runs` times per runner and
/// mode, alternating. The pods are removed after each sample, untimed.
pub async fn fifty_pods(pods: &Pods<'_>, count: usize, runs: usize) -> Result<Vec<Row>> {
    let spec = ContainerSpec::shell("bench", "exec sleep 3600");
    let mut sequential = PerRunner::default();
    let mut parallel = PerRunner::default();
    let runners = pods.runners();
    for i in 0..runs {
        for &r in &runners {
            for (at_once, samples) in [(1, &mut sequential), (PARALLEL, &mut parallel)] {
                let started = Instant::now();
                stream::iter(0..count)
                    .map(|_| async {
                        let (id, _, config) = pods.run_with_config(r).await?;
                        pods.create_start(&id, &config, &spec).await
                    })
                    .buffer_unordered(at_once)
                    .try_collect::<Vec<_>>()
                    .await
                    .with_context(|| format!("{count} pods {at_once} at a time, run {i}, {r}"))?;
                samples
                    .get_mut(r)
                    .push(started.elapsed().as_secs_f64() * 1000.0);
                pods.remove_all().await?;
            }
        }
        progress(&format!("{count}-pod runs"), i + 1, runs);
    }
    let row = |id: &str, case: String, took| {
        Row::measured(id, FIFTY_PODS, &case, Unit::Millis, None, took)
    };
    let mut rows = vec![
        row(
            "fifty_pods_sequential",
            format!("{count} pods, sequential"),
            sequential.podsandbox(),
        ),
        row(
            "fifty_pods_8_at_a_time",
            format!("{count} pods, {PARALLEL} at a time"),
            parallel.podsandbox(),
        ),
    ];
    if let (Some(one), Some(many)) = (sequential.shim_mode(), parallel.shim_mode()) {
        rows.push(row(
            "fifty_pods_sequential_shim_mode",
            format!("{count} pods, sequential, {SHIM_MODE}"),
            one,
        ));
        rows.push(row(
            "fifty_pods_8_at_a_time_shim_mode",
            format!("{count} pods, {PARALLEL} at a time, {SHIM_MODE}"),
            many,
        ));
    }
    Ok(rows)
}

/// The script of figure 5's container: it reads the wall clock (busybox's
/// `adjtimex` has microseconds, or nanoseconds under STA_NANO; its `date` has no `%N`), prints it, and exits.
const EXIT_NOW: &str = "sleep 0.2; t=$(adjtimex); echo \"$t\"; exit 0";

/// How often figure 5 asks CRI whether the container has exited.
const EXIT_POLL: Duration = Duration::from_millis(1);

/// The wall-clock time `adjtimex` printed: its `time.tv_sec` and
/// `time.tv_usec` lines.
fn adjtimex_time(lines: &[String]) -> Option<SystemTime> {
    let field = |name: &str| {
        lines.iter().find_map(|l| {
            l.trim()
                .strip_prefix(name)
                .and_then(|v| v.trim_start_matches(':').trim().parse::<u64>().ok())
        })
    };
    let (sec, fraction) = (field("time.tv_sec")?, field("time.tv_usec")?);
    // With STA_NANO in the clock's status (set by whoever last asked for
    // it, e.g. a time daemon), the kernel reports nanoseconds there.
    const STA_NANO: u64 = 0x2000;
    let status = lines.iter().find_map(|l| {
        let v = l
            .trim()
            .strip_prefix("status:")?
            .split_whitespace()
            .next()?;
        v.parse::<u64>().ok()
    });
    let fraction = if status.is_some_and(|s| s & STA_NANO != 0) {
        Duration::from_nanos(fraction)
    } else {
        Duration::from_micros(fraction)
    };
    Some(UNIX_EPOCH + Duration::from_secs(sec) + fraction)
}

/// Figure 5: from a container's exit, timestamped inside it just before, to
/// ContainerStatus first reporting it EXITED (polled every millisecond), `runs`
/// times per handler, alternating, each container in a fresh pod.
pub async fn exit_detection(pods: &Pods<'_>, runs: usize) -> Result<Vec<Row>> {
    let spec = ContainerSpec::shell("exiter", EXIT_NOW);
    let cri = pods.containerd().cri();
    let mut took = PerHandler::<Vec<f64>>::default();
    for i in 0..=runs {
        for h in Handler::ALL {
            let (pod, _, config) = pods.run_with_config(h).await?;
            pods.expect_ready(&pod).await?;
            let container = cri
                .create_container(&pod, spec.to_cri(), config.to_cri())
                .await?;
            cri.start_container(&container).await?;
            let deadline = Instant::now() + Duration::from_secs(30);
            let seen = loop {
                let status = cri.container_status(&container).await?;
                if status.state == ContainerState::ContainerExited as i32 {
                    break SystemTime::now();
                }
                if Instant::now() > deadline {
                    bail!("{h}: container {container} still not exited after 30 s");
                }
                tokio::time::sleep(EXIT_POLL).await;
            };
            let lines = scenario::stdout_lines(&config, &spec)?;
            let exited = adjtimex_time(&lines)
                .with_context(|| format!("{h}: no adjtimex time in the log: {lines:?}"))?;
            let delay = seen.duration_since(exited).with_context(|| {
                format!("{h}: CRI reported the exit before the container's clock read")
            })?;
            ensure!(
                delay < Duration::from_secs(30),
                "{h}: exit seen after {delay:?}"
            );
            pods.remove(&pod).await?;
            if i > 0 {
                took.get_mut(h).push(delay.as_secs_f64() * 1000.0);
            }
        }
        progress("exit-detection runs", i, runs);
    }
    Ok(vec![Row::measured(
        "exit_detection",
        EXIT_DETECTION,
        "",
        Unit::Millis,
        None,
        took,
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_adjtimex_s_clock() {
        let out = "    mode:         0\n    time.tv_sec:  1795427250\n    time.tv_usec: 139934\n    return value: 5";
        let lines: Vec<String> = out.lines().map(String::from).collect();
        assert_eq!(
            adjtimex_time(&lines),
            Some(UNIX_EPOCH + Duration::from_micros(1_795_427_250_139_934))
        );
        assert_eq!(adjtimex_time(&lines[..2]), None);
        // STA_NANO (0x2000) set: the same field holds nanoseconds.
        let nano = "    status:       8256 (UNSYNC)\n    time.tv_sec:  1795427250\n    time.tv_usec: 846121186";
        let lines: Vec<String> = nano.lines().map(String::from).collect();
        assert_eq!(
            adjtimex_time(&lines),
            Some(UNIX_EPOCH + Duration::from_nanos(1_795_427_250_846_121_186))
        );
    }
}
