//! Figure 6: what a pod costs in memory. Each round ramps one handler up to each pod
//! count in turn (1, 10, 50; pods started 8 at a time, untimed), lets the processes
//! settle, measures the [`Footprint`] and divides by the pod count, then removes
//! every pod; rounds alternate berth and runc.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use super::figure::{Row, Target, Unit};
use super::footprint::{self, Footprint};
use super::handler::{Handler, PerHandler};
use super::pods::Pods;
use super::progress;

pub const SHIM_RSS: &str = "6 shim RSS per pod";
pub const SHIM_PSS: &str = "6 shim PSS per pod";
pub const PAUSE_RSS: &str = "6 pause RSS per pod";
/// Goal: berth's shim costs at most 4 MiB per pod (the Go shim about 13 MiB).
pub const SHIM_RSS_TARGET: Target = Target::AtMost { value: 4096.0 };
/// Goal: berth-pause at most 300 KiB.
pub const PAUSE_RSS_TARGET: Target = Target::AtMost { value: 300.0 };

/// Time between the last pod of a level coming up and the measurement.
const SETTLE: Duration = Duration::from_secs(1);

/// One measurement: `handler` running `pods` pods in round `round`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Observation {
    pub round: usize,
    pub handler: Handler,
    pub pods: usize,
    #[serde(flatten)]
    pub footprint: Footprint,
}

/// Figure 6 over `rounds` ramps per handler through `counts` (ascending) pods.
/// Returns the rows and every observation, for the JSON.
pub async fn memory(
    pods: &Pods<'_>,
    counts: &[usize],
    rounds: usize,
) -> Result<(Vec<Row>, Vec<Observation>)> {
    let mut observations = Vec::new();
    for round in 0..rounds {
        for h in Handler::ALL {
            let ramp = ramp(pods, h, counts, round)
                .await
                .with_context(|| format!("memory round {} of {rounds}, {h}", round + 1))?;
            observations.extend(ramp);
            pods.remove_all().await?;
        }
        progress("memory rounds", round + 1, rounds);
    }
    Ok((rows(counts, &observations), observations))
}

/// Brings `h` up to each of `counts` pods and measures at each.
async fn ramp(
    pods: &Pods<'_>,
    h: Handler,
    counts: &[usize],
    round: usize,
) -> Result<Vec<Observation>> {
    let mut ids = Vec::new();
    let mut out = Vec::new();
    for &n in counts {
        ids.extend(pods.run_many(h, n - ids.len()).await?);
        tokio::time::sleep(SETTLE).await;
        let footprint = footprint::measure(pods.containerd(), h, &ids).await?;
        if footprint.shims != n {
            eprintln!(
                "berth-bench: note: {h} runs {} shims for {n} pods (round {})",
                footprint.shims,
                round + 1
            );
        }
        out.push(Observation {
            round,
            handler: h,
            pods: n,
            footprint,
        });
    }
    Ok(out)
}

/// The figure 6 rows: per pod count, each footprint sum divided by the pod count.
pub fn rows(counts: &[usize], observations: &[Observation]) -> Vec<Row> {
    let per_pod = |n: usize, pick: fn(&Footprint) -> u64| {
        let mut samples = PerHandler::<Vec<f64>>::default();
        for o in observations.iter().filter(|o| o.pods == n) {
            samples
                .get_mut(o.handler)
                .push(pick(&o.footprint) as f64 / n as f64);
        }
        samples
    };
    let case = |n: usize| format!("{n} pod{}", if n == 1 { "" } else { "s" });
    let mut rows = Vec::new();
    for (figure, key, target, pick) in [
        (
            SHIM_RSS,
            "shim_rss_per_pod",
            Some(SHIM_RSS_TARGET),
            (|f: &Footprint| f.shim_rss_kib) as fn(&Footprint) -> u64,
        ),
        (SHIM_PSS, "shim_pss_per_pod", None, |f| f.shim_pss_kib),
        (
            PAUSE_RSS,
            "pause_rss_per_pod",
            Some(PAUSE_RSS_TARGET),
            |f| f.pause_rss_kib,
        ),
    ] {
        for &n in counts {
            rows.push(Row::measured(
                format!("{key}_{n}"),
                figure,
                case(n),
                Unit::KiB,
                target,
                per_pod(n, pick),
            ));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(handler: Handler, pods: usize, shim_rss_kib: u64) -> Observation {
        Observation {
            round: 0,
            handler,
            pods,
            footprint: Footprint {
                shims: pods,
                shim_rss_kib,
                pause_rss_kib: 100 * pods as u64,
                ..Default::default()
            },
        }
    }

    #[test]
    fn rows_divide_sums_by_the_pod_count() {
        let observations = [
            obs(Handler::Berth, 1, 3000),
            obs(Handler::Runc, 1, 13000),
            obs(Handler::Berth, 10, 20000),
            obs(Handler::Runc, 10, 130000),
        ];
        let rows = rows(&[1, 10], &observations);
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[0].id, "shim_rss_per_pod_1");
        assert_eq!(rows[0].label(), "6 shim RSS per pod, 1 pod");
        assert_eq!(rows[1].label(), "6 shim RSS per pod, 10 pods");
        assert_eq!(rows[1].samples(Handler::Berth), Some(&[2000.0][..]));
        assert_eq!(rows[1].samples(Handler::Runc), Some(&[13000.0][..]));
        assert_eq!(rows[5].id, "pause_rss_per_pod_10");
        assert_eq!(rows[5].samples(Handler::Berth), Some(&[100.0][..]));
    }
}
