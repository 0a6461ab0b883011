//! The bench's table, side by side per handler, as aligned text for stdout and as
//! Markdown for the README.

use super::figure::{Data, Row};
use super::handler::Handler;

/// The columns, in order.
pub const COLUMNS: [&str; 7] = [
    "figure",
    "berth median",
    "berth p99",
    "runc median",
    "runc p99",
    "berth/runc",
    "target",
];

/// Columns 1..=5 hold numbers and are right-aligned.
fn right_aligned(column: usize) -> bool {
    (1..=5).contains(&column)
}

/// The cells of one row, one string per column.
pub fn cells(row: &Row) -> [String; 7] {
    let target = match (row.target, row.verdict()) {
        (Some(t), Some(v)) => format!("{}: {}", t.describe(row.unit), v.as_str()),
        _ => "-".to_string(),
    };
    let dash = || "-".to_string();
    match &row.data {
        Data::NotAvailable(reason) => [
            row.label(),
            format!("n/a ({reason})"),
            dash(),
            dash(),
            dash(),
            dash(),
            target,
        ],
        Data::Measured(_) => {
            let value = |h: Handler, p99: bool| match row.summary(h) {
                Some(s) => row.unit.format(if p99 { s.p99 } else { s.median }),
                None => "no samples".to_string(),
            };
            [
                row.label(),
                value(Handler::Berth, false),
                value(Handler::Berth, true),
                value(Handler::Runc, false),
                value(Handler::Runc, true),
                row.ratio().map_or_else(dash, |r| format!("{r:.2}x")),
                target,
            ]
        }
    }
}

/// The table as aligned text: a header, a rule, one line per row.
pub fn text(rows: &[Row]) -> String {
    let header = COLUMNS.map(String::from);
    let body: Vec<[String; 7]> = rows.iter().map(cells).collect();
    let mut widths = header.each_ref().map(|c| c.chars().count());
    for line in &body {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |line: &[String; 7]| {
        let padded: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let pad = " ".repeat(widths[i] - cell.chars().count());
                if right_aligned(i) {
                    format!("{pad}{cell}")
                } else {
                    format!("{cell}{pad}")
                }
            })
            .collect();
        padded.join(" | ").trim_end().to_string()
    };
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    let mut out = vec![render(&header), rule.join("-+-")];
    out.extend(body.iter().map(render));
    out.join("\n") + "\n"
}

/// The table in Markdown, under `caption` (one line: date and machine).
pub fn markdown(rows: &[Row], caption: &str) -> String {
    let line = |cells: &[String]| format!("| {} |", cells.join(" | "));
    let align: Vec<String> = (0..COLUMNS.len())
        .map(|i| if right_aligned(i) { "---:" } else { "---" }.to_string())
        .collect();
    let mut out = vec![
        caption.to_string(),
        String::new(),
        line(&COLUMNS.map(String::from)),
        line(&align),
    ];
    out.extend(rows.iter().map(|r| line(&cells(r))));
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::figure::{Target, Unit, NOT_MEASURED_YET};
    use crate::bench::handler::PerHandler;

    fn rows() -> Vec<Row> {
        let samples = PerHandler {
            berth: vec![40.0, 50.0, 60.0],
            runc: vec![100.0, 110.0, 120.0],
        };
        let target = Some(Target::RatioToRuncAtMost { ratio: 0.6 });
        vec![
            Row::measured("run", "1 RunPodSandbox", "", Unit::Millis, target, samples),
            Row::not_available(
                "cs",
                "2 CreateContainer+StartContainer",
                "",
                Unit::Millis,
                target,
                NOT_MEASURED_YET,
            ),
        ]
    }

    #[test]
    fn cells_of_measured_and_unmeasured_rows() {
        let rows = rows();
        assert_eq!(
            cells(&rows[0]),
            [
                "1 RunPodSandbox",
                "50.0 ms",
                "60.0 ms",
                "110.0 ms",
                "120.0 ms",
                "0.45x",
                "<= 0.6x runc: met"
            ]
        );
        let na = cells(&rows[1]);
        assert_eq!(na[1], "n/a (not measured yet)");
        assert_eq!(na[5], "-");
        assert_eq!(na[6], "<= 0.6x runc: n/a");
    }

    #[test]
    fn text_columns_line_up() {
        let out = text(&rows());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("figure "));
        assert!(lines[1].chars().all(|c| c == '-' || c == '+'));
        // Every separator sits at the same column on every line.
        let at = |l: &str, sep: char| -> Vec<usize> {
            l.char_indices()
                .filter(|&(_, c)| c == sep)
                .map(|(i, _)| i)
                .collect()
        };
        let columns = at(lines[0], '|');
        assert_eq!(columns.len(), 6);
        assert_eq!(at(lines[1], '+'), columns);
        assert_eq!(at(lines[2], '|'), columns);
        assert_eq!(at(lines[3], '|'), columns);
        // Numbers are right-aligned under their header.
        assert!(lines[2].contains(" 50.0 ms | "));
    }

    #[test]
    fn markdown_has_caption_header_and_alignment() {
        let out = markdown(&rows(), "Measured on a test machine");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "Measured on a test machine");
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[2],
            "| figure | berth median | berth p99 | runc median | runc p99 | berth/runc | target |"
        );
        assert_eq!(lines[3], "| --- | ---: | ---: | ---: | ---: | ---: | --- |");
        assert!(lines[4].starts_with("| 1 RunPodSandbox | 50.0 ms |"));
        assert_eq!(lines.len(), 6);
    }
}
