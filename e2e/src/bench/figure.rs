//! One row of the bench's table: a figure (and a case of it, e.g. "10 pods"), its unit,
//! the samples of each handler or why there are none, and the goal printed beside it.
//! Goals are reported as met or missed, never asserted.

use serde::Serialize;

use super::handler::{Handler, PerHandler};
use super::stats::Summary;

/// The unit of a row's samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Unit {
    /// Milliseconds of wall time.
    #[serde(rename = "ms")]
    Millis,
    /// Kibibytes of memory.
    #[serde(rename = "KiB")]
    KiB,
}

impl Unit {
    /// `12.3 ms`, `250 KiB`, `12.4 MiB`.
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::Millis if value < 10.0 => format!("{value:.2} ms"),
            Unit::Millis => format!("{value:.1} ms"),
            Unit::KiB if value >= 1024.0 => format!("{:.1} MiB", value / 1024.0),
            Unit::KiB => format!("{value:.0} KiB"),
        }
    }
}

/// A goal for berth's median.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// At most `ratio` times runc's median.
    RatioToRuncAtMost { ratio: f64 },
    /// At most `value`, in the row's unit.
    AtMost { value: f64 },
}

impl Target {
    /// `<= 0.6x runc`, `<= 4.0 MiB`.
    pub fn describe(&self, unit: Unit) -> String {
        match *self {
            Target::RatioToRuncAtMost { ratio } => format!("<= {ratio}x runc"),
            Target::AtMost { value } => format!("<= {}", unit.format(value)),
        }
    }
}

/// Whether berth met a row's target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Met,
    Missed,
    /// The figure was not measured.
    NotMeasured,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "missed",
            Verdict::NotMeasured => "n/a",
        }
    }
}

/// A row's numbers, or why there are none.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// Samples of each handler, in the order they were taken.
    Measured(PerHandler<Vec<f64>>),
    /// Not measured; the reason is printed as `n/a (<reason>)`.
    NotAvailable(&'static str),
}

/// Why a figure (3 and 5 so far) has no numbers.
pub const NOT_MEASURED_YET: &str = "not measured yet";

/// One row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Stable key for the JSON, e.g. `shim_rss_per_pod_10`.
    pub id: String,
    /// The figure, e.g. `1 RunPodSandbox`; rows of one figure share it (one chart panel).
    pub figure: &'static str,
    /// The case within the figure, e.g. `10 pods` (empty if the figure has one row).
    pub case: String,
    pub unit: Unit,
    pub target: Option<Target>,
    pub data: Data,
}

impl Row {
    /// A measured row.
    pub fn measured(
        id: impl Into<String>,
        figure: &'static str,
        case: impl Into<String>,
        unit: Unit,
        target: Option<Target>,
        samples: PerHandler<Vec<f64>>,
    ) -> Row {
        Row::new(id, figure, case, unit, target, Data::Measured(samples))
    }

    /// A row of a figure that cannot be measured yet.
    pub fn not_available(
        id: impl Into<String>,
        figure: &'static str,
        case: impl Into<String>,
        unit: Unit,
        target: Option<Target>,
        reason: &'static str,
    ) -> Row {
        Row::new(id, figure, case, unit, target, Data::NotAvailable(reason))
    }

    fn new(
        id: impl Into<String>,
        figure: &'static str,
        case: impl Into<String>,
        unit: Unit,
        target: Option<Target>,
        data: Data,
    ) -> Row {
        Row {
            id: id.into(),
            figure,
            case: case.into(),
            unit,
            target,
            data,
        }
    }

    /// `1 RunPodSandbox` or `6 shim RSS per pod, 10 pods`.
    pub fn label(&self) -> String {
        if self.case.is_empty() {
            self.figure.to_string()
        } else {
            format!("{}, {}", self.figure, self.case)
        }
    }

    /// The samples of `h`, if measured.
    pub fn samples(&self, h: Handler) -> Option<&[f64]> {
        match &self.data {
            Data::Measured(s) => Some(s.get(h)),
            Data::NotAvailable(_) => None,
        }
    }

    pub fn summary(&self, h: Handler) -> Option<Summary> {
        Summary::of(self.samples(h)?)
    }

    /// berth's median over runc's.
    pub fn ratio(&self) -> Option<f64> {
        let berth = self.summary(Handler::Berth)?.median;
        let runc = self.summary(Handler::Runc)?.median;
        (runc > 0.0).then(|| berth / runc)
    }

    /// Whether berth met the target; `None` if the row has none.
    pub fn verdict(&self) -> Option<Verdict> {
        let target = self.target?;
        let Some(berth) = self.summary(Handler::Berth) else {
            return Some(Verdict::NotMeasured);
        };
        let met = match target {
            Target::RatioToRuncAtMost { ratio } => match self.ratio() {
                Some(r) => r <= ratio,
                None => return Some(Verdict::NotMeasured),
            },
            Target::AtMost { value } => berth.median <= value,
        };
        Some(if met { Verdict::Met } else { Verdict::Missed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: Target, berth: Vec<f64>, runc: Vec<f64>) -> Row {
        let samples = PerHandler { berth, runc };
        Row::measured("x", "1 X", "", Unit::Millis, Some(target), samples)
    }

    #[test]
    fn formats_units() {
        assert_eq!(Unit::Millis.format(4.567), "4.57 ms");
        assert_eq!(Unit::Millis.format(123.456), "123.5 ms");
        assert_eq!(Unit::KiB.format(250.4), "250 KiB");
        assert_eq!(Unit::KiB.format(13.0 * 1024.0), "13.0 MiB");
    }

    #[test]
    fn judges_ratio_targets_on_medians() {
        let target = Target::RatioToRuncAtMost { ratio: 0.6 };
        let met = row(target, vec![50.0, 60.0, 500.0], vec![100.0, 100.0, 100.0]);
        assert_eq!(met.ratio(), Some(0.6));
        assert_eq!(met.verdict(), Some(Verdict::Met));
        let missed = row(target, vec![70.0], vec![100.0]);
        assert_eq!(missed.verdict(), Some(Verdict::Missed));
    }

    #[test]
    fn judges_absolute_targets_on_berths_median() {
        let target = Target::AtMost { value: 300.0 };
        assert_eq!(
            row(target, vec![200.0], vec![1.0]).verdict(),
            Some(Verdict::Met)
        );
        assert_eq!(
            row(target, vec![301.0], vec![1.0]).verdict(),
            Some(Verdict::Missed)
        );
        assert_eq!(target.describe(Unit::KiB), "<= 300 KiB");
        let rss = Target::AtMost { value: 4096.0 };
        assert_eq!(rss.describe(Unit::KiB), "<= 4.0 MiB");
    }

    #[test]
    fn unmeasured_rows_have_no_numbers() {
        let target = Some(Target::RatioToRuncAtMost { ratio: 0.6 });
        let row = Row::not_available("c", "2 C", "", Unit::Millis, target, NOT_MEASURED_YET);
        assert_eq!(row.summary(Handler::Berth), None);
        assert_eq!(row.ratio(), None);
        assert_eq!(row.verdict(), Some(Verdict::NotMeasured));
    }
}
