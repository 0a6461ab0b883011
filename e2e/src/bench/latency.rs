//! Figures 1 and 4: how long CRI takes to run a pod, and to stop and remove it, timed
//! around the CRI calls in our client. Each run brings one pod of each handler up and
//! down, berth then runc, so drift of the machine hits both alike.

use std::time::Duration;

use anyhow::{Context, Result};

use super::figure::{Row, Target, Unit};
use super::handler::{Handler, PerHandler};
use super::pods::Pods;
use super::progress;

pub const RUN_POD: &str = "1 RunPodSandbox";
pub const STOP_REMOVE: &str = "4 StopPodSandbox+RemovePodSandbox";
pub const RUN_POD_TARGET: Target = Target::RatioToRuncAtMost { ratio: 0.6 };

/// Quiet time after a pod is removed, so its shim's exit is not inside the next call.
const SETTLE: Duration = Duration::from_millis(200);

/// The rows of figures 1 and 4, measured together.
pub struct Lifecycle {
    pub run_pod: Row,
    pub stop_remove: Row,
}

/// Figures 1 and 4 over `runs` pods per handler, after one unrecorded warm-up pod each.
pub async fn pod_lifecycle(pods: &Pods<'_>, runs: usize) -> Result<Lifecycle> {
    for h in Handler::ALL {
        one_pod(pods, h)
            .await
            .with_context(|| format!("warm-up pod of {h}"))?;
    }
    let mut run = PerHandler::<Vec<f64>>::default();
    let mut remove = PerHandler::<Vec<f64>>::default();
    for i in 0..runs {
        for h in Handler::ALL {
            let (r, s) = one_pod(pods, h)
                .await
                .with_context(|| format!("latency run {} of {runs}, {h}", i + 1))?;
            run.get_mut(h).push(millis(r));
            remove.get_mut(h).push(millis(s));
        }
        progress("latency runs", i + 1, runs);
    }
    Ok(Lifecycle {
        run_pod: Row::measured(
            "run_pod_sandbox",
            RUN_POD,
            "",
            Unit::Millis,
            Some(RUN_POD_TARGET),
            run,
        ),
        stop_remove: Row::measured(
            "stop_remove_pod_sandbox",
            STOP_REMOVE,
            "",
            Unit::Millis,
            None,
            remove,
        ),
    })
}

/// Runs one pod, checks it is ready, stops and removes it: the two timings.
async fn one_pod(pods: &Pods<'_>, h: Handler) -> Result<(Duration, Duration)> {
    let (id, run) = pods.run(h).await?;
    pods.expect_ready(&id).await?;
    let remove = pods.remove(&id).await?;
    tokio::time::sleep(SETTLE).await;
    Ok((run, remove))
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
