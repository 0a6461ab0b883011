//! Figures 2, 3 and 5, which need app containers inside the pods. Figure 2 is
//! measured; 3 and 5 report their rows as not measured yet, with their targets, so
//! the table keeps its final shape. Measuring one means replacing its body (the
//! [`Pods`] context runs and removes the pods around it).

use anyhow::{Context, Result};

use super::figure::{Row, Target, Unit, NOT_MEASURED_YET};
use super::handler::{Handler, PerHandler};
use super::pods::Pods;
use super::progress;
use crate::container_config::ContainerSpec;

pub const CREATE_START: &str = "2 CreateContainer+StartContainer";
pub const FIFTY_PODS: &str = "3 50 pods with a container each";
pub const EXIT_DETECTION: &str = "5 container exit detected";
/// Goal: creating and starting a container at most 0.6 times runc's time.
pub const CREATE_START_TARGET: Target = Target::RatioToRuncAtMost { ratio: 0.6 };

/// Figure 2: CreateContainer + StartContainer of one container in a running pod,
/// `runs` times per handler after one unrecorded warm-up each, alternating.
pub async fn create_start(pods: &Pods<'_>, runs: usize) -> Result<Vec<Row>> {
    let spec = ContainerSpec::shell("bench", "exec sleep 3600");
    let mut took = PerHandler::<Vec<f64>>::default();
    for i in 0..=runs {
        for h in Handler::ALL {
            let (id, _, config) = pods.run_with_config(h).await?;
            pods.expect_ready(&id).await?;
            let t = pods
                .create_start(&id, &config, &spec)
                .await
                .with_context(|| format!("create+start run {i} of {runs}, {h}"))?;
            pods.remove(&id).await?;
            if i > 0 {
                took.get_mut(h).push(t.as_secs_f64() * 1000.0);
            }
        }
        progress("create+start runs", i, runs);
    }
    Ok(vec![Row::measured(
        "create_start_container",
        CREATE_START,
        "",
        Unit::Millis,
        Some(CREATE_START_TARGET),
        took,
    )])
}

/// Figure 3: wall time to bring up 50 pods with one container each, one at a time and
/// 8 at a time.
pub async fn fifty_pods(_pods: &Pods<'_>, _runs: usize) -> Result<Vec<Row>> {
    let row = |id: &str, case: &str| {
        Row::not_available(id, FIFTY_PODS, case, Unit::Millis, None, NOT_MEASURED_YET)
    };
    Ok(vec![
        row("fifty_pods_sequential", "sequential"),
        row("fifty_pods_8_at_a_time", "8 at a time"),
    ])
}

/// Figure 5: time from a container's process exiting to CRI reporting it exited.
pub async fn exit_detection(_pods: &Pods<'_>, _runs: usize) -> Result<Vec<Row>> {
    Ok(vec![Row::not_available(
        "exit_detection",
        EXIT_DETECTION,
        "",
        Unit::Millis,
        None,
        NOT_MEASURED_YET,
    )])
}
