//! Figures 2, 3 and 5, which need app containers inside the pods. berth runs pod
//! sandboxes only so far: each figure is a function that reports its rows as not
//! available, with its target, so the table keeps its final shape. Measuring one means
//! replacing its body (the [`Pods`] context runs and removes the pods around it).

use anyhow::Result;

use super::figure::{Row, Target, Unit, NEEDS_CONTAINERS};
use super::pods::Pods;

pub const CREATE_START: &str = "2 CreateContainer+StartContainer";
pub const FIFTY_PODS: &str = "3 50 pods with a container each";
pub const EXIT_DETECTION: &str = "5 container exit detected";
/// Goal: creating and starting a container at most 0.6 times runc's time.
pub const CREATE_START_TARGET: Target = Target::RatioToRuncAtMost { ratio: 0.6 };

/// Figure 2: CreateContainer + StartContainer of one container in a running pod.
pub async fn create_start(_pods: &Pods<'_>, _runs: usize) -> Result<Vec<Row>> {
    Ok(vec![Row::not_available(
        "create_start_container",
        CREATE_START,
        "",
        Unit::Millis,
        Some(CREATE_START_TARGET),
        NEEDS_CONTAINERS,
    )])
}

/// Figure 3: wall time to bring up 50 pods with one container each, one at a time and
/// 8 at a time.
pub async fn fifty_pods(_pods: &Pods<'_>, _runs: usize) -> Result<Vec<Row>> {
    let row = |id: &str, case: &str| {
        Row::not_available(id, FIFTY_PODS, case, Unit::Millis, None, NEEDS_CONTAINERS)
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
        NEEDS_CONTAINERS,
    )])
}
