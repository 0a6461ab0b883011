//! `results.json`: every raw sample, each figure's summary and verdict, the memory
//! observations behind figure 6, and the machine, so a run can be compared or
//! re-plotted later without re-running it.

use serde::Serialize;

use super::figure::{Data, Row, Target, Unit, Verdict};
use super::handler::Handler;
use super::machine::Machine;
use super::memory::Observation;
use super::options::Options;
use super::stats::Summary;

/// Bumped when the JSON's shape changes.
pub const SCHEMA: u32 = 2;

/// The whole document.
#[derive(Debug, Serialize)]
pub struct Results<'a> {
    pub schema: u32,
    pub mode: &'static str,
    /// `cgroupfs` or `systemd`, for both handlers.
    pub cgroup_driver: &'static str,
    pub runs: usize,
    pub memory_rounds: usize,
    pub pod_counts: &'a [usize],
    pub machine: &'a Machine,
    /// Wall time of the whole bench, containerd start to stop.
    pub wall_time_s: f64,
    pub figures: Vec<Figure<'a>>,
    pub memory_observations: &'a [Observation],
}

/// One row of the table.
#[derive(Debug, Serialize)]
pub struct Figure<'a> {
    pub id: &'a str,
    pub figure: &'a str,
    pub case: &'a str,
    pub unit: Unit,
    /// `measured` or `n/a`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub target: Option<TargetResult>,
    pub berth: Option<Samples<'a>>,
    pub runc: Option<Samples<'a>>,
    /// berth's median over runc's.
    pub ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct TargetResult {
    #[serde(flatten)]
    pub target: Target,
    pub text: String,
    pub verdict: Verdict,
}

/// One handler's samples of one figure, in the order taken.
#[derive(Debug, Serialize)]
pub struct Samples<'a> {
    pub summary: Summary,
    pub samples: &'a [f64],
}

impl<'a> Results<'a> {
    pub fn new(
        opts: &'a Options,
        machine: &'a Machine,
        wall_time_s: f64,
        rows: &'a [Row],
        memory_observations: &'a [Observation],
    ) -> Results<'a> {
        Results {
            schema: SCHEMA,
            mode: opts.mode(),
            cgroup_driver: opts.driver.name(),
            runs: opts.runs,
            memory_rounds: opts.memory_rounds,
            pod_counts: &opts.pod_counts,
            machine,
            wall_time_s,
            figures: rows.iter().map(Figure::of).collect(),
            memory_observations,
        }
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }
}

impl<'a> Figure<'a> {
    fn of(row: &'a Row) -> Figure<'a> {
        let samples = |h: Handler| {
            let samples = row.samples(h)?;
            Some(Samples {
                summary: Summary::of(samples)?,
                samples,
            })
        };
        let target = row.target.zip(row.verdict()).map(|(t, v)| TargetResult {
            target: t,
            text: t.describe(row.unit),
            verdict: v,
        });
        let (status, reason) = match row.data {
            Data::Measured(_) => ("measured", None),
            Data::NotAvailable(reason) => ("n/a", Some(reason)),
        };
        Figure {
            id: &row.id,
            figure: row.figure,
            case: &row.case,
            unit: row.unit,
            status,
            reason,
            target,
            berth: samples(Handler::Berth),
            runc: samples(Handler::Runc),
            ratio: row.ratio(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::figure::NOT_MEASURED_YET;
    use crate::bench::footprint::Footprint;
    use crate::bench::handler::PerHandler;

    fn machine() -> Machine {
        Machine {
            cpu_model: "AMD EPYC".into(),
            cores: 2,
            kernel: "6.1.0".into(),
            containerd_version: "containerd v2.1.9".into(),
            containerd_package: Some("2.1.9+ds1-5".into()),
            runc_version: None,
            berth_commit: Some("abc1234".into()),
            date: "2026-11-23T03:00:00Z".into(),
        }
    }

    #[test]
    fn json_holds_samples_summaries_targets_and_machine() {
        let opts = crate::bench::options::parse(&[]).unwrap().unwrap();
        let machine = machine();
        let target = Some(Target::RatioToRuncAtMost { ratio: 0.6 });
        let rows = vec![
            Row::measured(
                "run_pod_sandbox",
                "1 RunPodSandbox",
                "",
                Unit::Millis,
                target,
                PerHandler {
                    berth: vec![40.0, 60.0],
                    runc: vec![100.0, 100.0],
                },
            ),
            Row::not_available(
                "exit_detection",
                "5 exit",
                "",
                Unit::Millis,
                None,
                NOT_MEASURED_YET,
            ),
        ];
        let observations = [Observation {
            round: 0,
            handler: Handler::Berth,
            pods: 1,
            footprint: Footprint {
                shims: 1,
                shim_rss_kib: 2048,
                ..Default::default()
            },
        }];
        let json = Results::new(&opts, &machine, 12.5, &rows, &observations)
            .to_json()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();

        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["mode"], "full");
        assert_eq!(v["cgroup_driver"], "cgroupfs");
        assert_eq!(v["runs"], 30);
        assert_eq!(v["pod_counts"], serde_json::json!([1, 10, 50]));
        assert_eq!(v["machine"]["cpu_model"], "AMD EPYC");
        assert_eq!(v["machine"]["cores"], 2);
        assert_eq!(v["machine"]["date"], "2026-11-23T03:00:00Z");
        assert_eq!(v["wall_time_s"], 12.5);

        let run = &v["figures"][0];
        assert_eq!(run["id"], "run_pod_sandbox");
        assert_eq!(run["unit"], "ms");
        assert_eq!(run["status"], "measured");
        assert_eq!(run["berth"]["samples"], serde_json::json!([40.0, 60.0]));
        assert_eq!(run["berth"]["summary"]["median"], 50.0);
        assert_eq!(run["berth"]["summary"]["p99"], 60.0);
        assert_eq!(run["runc"]["summary"]["n"], 2);
        assert_eq!(run["ratio"], 0.5);
        assert_eq!(run["target"]["kind"], "ratio_to_runc_at_most");
        assert_eq!(run["target"]["ratio"], 0.6);
        assert_eq!(run["target"]["text"], "<= 0.6x runc");
        assert_eq!(run["target"]["verdict"], "met");

        let na = &v["figures"][1];
        assert_eq!(na["status"], "n/a");
        assert_eq!(na["reason"], "not measured yet");
        assert!(na["berth"].is_null() && na["ratio"].is_null() && na["target"].is_null());

        let o = &v["memory_observations"][0];
        assert_eq!(o["handler"], "berth");
        assert_eq!(o["pods"], 1);
        assert_eq!(o["shim_rss_kib"], 2048);
    }
}
