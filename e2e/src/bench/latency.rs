//! Figures 1 and 4: how long CRI takes to run a pod, and to stop and remove it, timed
//! around the CRI calls in our client. Each run brings one pod of each handler up and
//! down, berth then runc, so drift of the machine hits both alike.

use std::time::Duration;

use anyhow::{Context, Result};

use super::figure::{Row, Target, Unit};
use super::handler::{PerRunner, Runner};
use super::pods::Pods;
use super::progress;

pub const RUN_POD: &str = "1 RunPodSandbox";
pub const STOP_REMOVE: &str = "4 StopPodSandbox+RemovePodSandbox";
pub const RUN_POD_TARGET: Target = Target::RatioToRuncAtMost { ratio: 0.6 };
/// The goal in shim mode, where berth makes no pause container: against
/// runc's pods in podsandbox mode.
pub const RUN_POD_SHIM_TARGET: Target = Target::RatioToRuncAtMost { ratio: 0.4 };
/// The case of a row with berth in shim mode.
pub const SHIM_MODE: &str = "shim mode";

/// Quiet time after a pod is removed, so its shim's exit is not inside the next call.
const SETTLE: Duration = Duration::from_millis(200);

/// The rows of figures 1 and 4, measured together; each also in shim mode
/// where the bench runs it.
pub struct Lifecycle {
    pub run_pod: Vec<Row>,
    pub stop_remove: Vec<Row>,
}

/// Figures 1 and 4 over `runs` pods per runner, after one unrecorded warm-up pod each.
pub async fn pod_lifecycle(pods: &Pods<'_>, runs: usize) -> Result<Lifecycle> {
    let runners = pods.runners();
    for &r in &runners {
        one_pod(pods, r)
            .await
            .with_context(|| format!("warm-up pod of {r}"))?;
    }
    let mut run = PerRunner::default();
    let mut remove = PerRunner::default();
    for i in 0..runs {
        for &r in &runners {
            let (up, down) = one_pod(pods, r)
                .await
                .with_context(|| format!("latency run {} of {runs}, {r}", i + 1))?;
            run.get_mut(r).push(millis(up));
            remove.get_mut(r).push(millis(down));
        }
        progress("latency runs", i + 1, runs);
    }
    let stop_remove = |id: &str, case: &str, samples| {
        Row::measured(id, STOP_REMOVE, case, Unit::Millis, None, samples)
    };
    let mut lifecycle = Lifecycle {
        run_pod: vec![Row::measured(
            "run_pod_sandbox",
            RUN_POD,
            "",
            Unit::Millis,
            Some(RUN_POD_TARGET),
            run.podsandbox(),
        )],
        stop_remove: vec![stop_remove(
            "stop_remove_pod_sandbox",
            "",
            remove.podsandbox(),
        )],
    };
    if let (Some(up), Some(down)) = (run.shim_mode(), remove.shim_mode()) {
        lifecycle.run_pod.push(Row::measured(
            "run_pod_sandbox_shim_mode",
            RUN_POD,
            SHIM_MODE,
            Unit::Millis,
            Some(RUN_POD_SHIM_TARGET),
            up,
        ));
        lifecycle.stop_remove.push(stop_remove(
            "stop_remove_pod_sandbox_shim_mode",
            SHIM_MODE,
            down,
        ));
    }
    Ok(lifecycle)
}

/// Runs one pod, checks it is ready, stops and removes it: the two timings.
async fn one_pod(pods: &Pods<'_>, r: Runner) -> Result<(Duration, Duration)> {
    let (id, run) = pods.run(r).await?;
    pods.expect_ready(&id).await?;
    let remove = pods.remove(&id).await?;
    tokio::time::sleep(SETTLE).await;
    Ok((run, remove))
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
