//! `results.png`: one panel per figure, berth's and runc's medians as grouped bars with
//! p99 whiskers, berth/runc under each group and the target as a red line; figures
//! not measured yet get a panel saying so. Drawn with plotters' bitmap backend; text
//! goes through ab_glyph with a TrueType font read from disk (no fontconfig).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::figure::{Data, Row, Target, Unit};
use super::handler::Handler;

/// Set to a `.ttf` file to use instead of the usual places.
pub const FONT_ENV: &str = "BERTH_BENCH_FONT";
/// Where Debian's fonts-dejavu-core and fonts-liberation put a sans font.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];
const FAMILY: &str = "sans-serif";
const COLUMNS: usize = 4;
const PANEL: (u32, u32) = (400, 380);
const HEADER: u32 = 110;

const BERTH: RGBColor = RGBColor(31, 119, 180);
const RUNC: RGBColor = RGBColor(255, 127, 14);
const TARGET: RGBColor = RGBColor(214, 39, 40);
const MUTED: RGBColor = RGBColor(120, 120, 120);

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws `rows` into the PNG `path` under `title` and `subtitle`.
pub fn write_png(path: &Path, rows: &[Row], title: &str, subtitle: &str) -> Result<()> {
    load_font()?;
    let panels = panels(rows);
    let grid_rows = panels.len().div_ceil(COLUMNS).max(1);
    let size = (
        PANEL.0 * COLUMNS as u32,
        HEADER + PANEL.1 * grid_rows as u32,
    );
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(plot)?;
    let (head, body) = root.split_vertically(HEADER);
    header(&head, title, subtitle)?;
    for (area, (figure, rows)) in body.split_evenly((grid_rows, COLUMNS)).iter().zip(&panels) {
        panel(area, figure, rows).with_context(|| format!("draw the panel of {figure}"))?;
    }
    root.present()
        .map_err(plot)
        .with_context(|| format!("write {}", path.display()))
}

/// Rows grouped by figure, in table order.
fn panels(rows: &[Row]) -> Vec<(&'static str, Vec<&Row>)> {
    let mut out: Vec<(&'static str, Vec<&Row>)> = Vec::new();
    for row in rows {
        match out.last_mut() {
            Some((figure, group)) if *figure == row.figure => group.push(row),
            _ => out.push((row.figure, vec![row])),
        }
    }
    out
}

fn header(area: &Area, title: &str, subtitle: &str) -> Result<()> {
    area.draw(&Text::new(title, (20, 14), (FAMILY, 28)))
        .map_err(plot)?;
    area.draw(&Text::new(
        subtitle,
        (20, 50),
        (FAMILY, 16).into_font().color(&MUTED),
    ))
    .map_err(plot)?;
    let y = 80;
    let mut x = 20;
    for (color, label) in [(BERTH, "berth median"), (RUNC, "runc median")] {
        area.draw(&Rectangle::new([(x, y), (x + 18, y + 16)], color.filled()))
            .map_err(plot)?;
        area.draw(&Text::new(label, (x + 26, y), (FAMILY, 16)))
            .map_err(plot)?;
        x += 170;
    }
    area.draw(&PathElement::new(
        vec![(x + 9, y), (x + 9, y + 16)],
        BLACK.stroke_width(2),
    ))
    .map_err(plot)?;
    area.draw(&Text::new("p99", (x + 24, y), (FAMILY, 16)))
        .map_err(plot)?;
    x += 90;
    area.draw(&PathElement::new(
        vec![(x, y + 8), (x + 22, y + 8)],
        TARGET.stroke_width(3),
    ))
    .map_err(plot)?;
    area.draw(&Text::new(
        "target for berth (not asserted)",
        (x + 30, y),
        (FAMILY, 16),
    ))
    .map_err(plot)?;
    Ok(())
}

fn panel(area: &Area, figure: &str, rows: &[&Row]) -> Result<()> {
    let measured: Vec<&Row> = rows
        .iter()
        .copied()
        .filter(|r| matches!(r.data, Data::Measured(_)))
        .collect();
    if measured.is_empty() {
        return unavailable(area, figure, rows);
    }
    let unit = measured[0].unit;
    let peak = measured.iter().map(|r| peak(r)).fold(0.0, f64::max);
    let (divisor, unit_label) = display_unit(unit, peak);
    let y_max = (peak / divisor * 1.2).max(f64::MIN_POSITIVE);
    let cases = measured.len();

    let mut chart = ChartBuilder::on(area)
        .margin(14)
        .caption(figure, (FAMILY, 19))
        .x_label_area_size(40)
        .y_label_area_size(66)
        .build_cartesian_2d(0.0..cases as f64, 0.0..y_max)
        .map_err(plot)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(2)
        .x_label_formatter(&|_| String::new())
        .y_labels(6)
        .y_label_formatter(&|v| short(*v))
        .y_desc(unit_label)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .draw()
        .map_err(plot)?;

    for (i, row) in measured.iter().enumerate() {
        let x = i as f64;
        for (h, left, color) in [(Handler::Berth, 0.12, BERTH), (Handler::Runc, 0.52, RUNC)] {
            let s = row
                .summary(h)
                .with_context(|| format!("{}: no samples of {h}", row.label()))?;
            let (median, p99) = (s.median / divisor, s.p99 / divisor);
            let (x0, x1) = (x + left, x + left + 0.36);
            let mid = (x0 + x1) / 2.0;
            chart
                .draw_series([Rectangle::new([(x0, 0.0), (x1, median)], color.filled())])
                .map_err(plot)?;
            let whisker = [
                PathElement::new(vec![(mid, median), (mid, p99)], BLACK.stroke_width(2)),
                PathElement::new(
                    vec![(mid - 0.05, p99), (mid + 0.05, p99)],
                    BLACK.stroke_width(2),
                ),
            ];
            chart.draw_series(whisker).map_err(plot)?;
            let label = Text::new(
                short(median),
                (0, -4),
                TextStyle::from((FAMILY, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom)),
            );
            chart
                .draw_series([EmptyElement::at((mid, p99.max(median))) + label])
                .map_err(plot)?;
        }
        if let Some(line) = target_line(row, x, divisor) {
            chart.draw_series([line]).map_err(plot)?;
        }
        let ratio = row.ratio().map(|r| format!("{r:.2}x")).unwrap_or_default();
        // The case on one line and the ratio under it: four cases share a
        // panel's width.
        let lines = if row.case.is_empty() {
            vec![format!("berth/runc {ratio}")]
        } else {
            vec![short_case(&row.case), ratio]
        };
        for (n, line) in lines.into_iter().enumerate() {
            let text = Text::new(
                line,
                (0, 6 + 15 * n as i32),
                TextStyle::from((FAMILY, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top)),
            );
            chart
                .draw_series([EmptyElement::at((x + 0.5, 0.0)) + text])
                .map_err(plot)?;
        }
    }
    Ok(())
}

/// A case as short as its panel needs: `50 pods, 8 at a time, shim mode`
/// is `8 at a time, shim` (the panel's title says how many pods).
fn short_case(case: &str) -> String {
    let mut parts: Vec<&str> = case.split(", ").collect();
    if parts.len() > 1 && parts[0].ends_with(" pods") {
        parts.remove(0);
    }
    parts.join(", ").replace("shim mode", "shim")
}

/// The red line of a row's target: across the group for an absolute goal, over
/// berth's bar at ratio times runc's median for a relative one.
fn target_line(row: &Row, x: f64, divisor: f64) -> Option<PathElement<(f64, f64)>> {
    let (from, to, y) = match row.target? {
        Target::AtMost { value } => (x + 0.04, x + 0.96, value / divisor),
        Target::RatioToRuncAtMost { ratio } => {
            let runc = row.summary(Handler::Runc)?.median;
            (x + 0.08, x + 0.52, ratio * runc / divisor)
        }
    };
    Some(PathElement::new(
        vec![(from, y), (to, y)],
        TARGET.stroke_width(3),
    ))
}

/// The highest value a row puts on its panel: a p99, a median or a target.
fn peak(row: &Row) -> f64 {
    let mut top: f64 = 0.0;
    for h in Handler::ALL {
        if let Some(s) = row.summary(h) {
            top = top.max(s.p99).max(s.median);
        }
    }
    if let Some(Target::AtMost { value }) = row.target {
        top = top.max(value);
    }
    top
}

/// The divisor and axis label for values of `unit` that reach `peak`.
fn display_unit(unit: Unit, peak: f64) -> (f64, &'static str) {
    match unit {
        Unit::Millis => (1.0, "ms"),
        Unit::KiB if peak >= 2048.0 => (1024.0, "MiB"),
        Unit::KiB => (1.0, "KiB"),
    }
}

/// A bar's value, short enough to sit on the bar.
fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn unavailable(area: &Area, figure: &str, rows: &[&Row]) -> Result<()> {
    let reason = rows
        .iter()
        .find_map(|r| match r.data {
            Data::NotAvailable(reason) => Some(reason),
            Data::Measured(_) => None,
        })
        .unwrap_or("not measured");
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let centered = |size| {
        TextStyle::from((FAMILY, size).into_font()).pos(Pos::new(HPos::Center, VPos::Center))
    };
    area.draw(&Rectangle::new(
        [(14, 14), (w - 14, h - 14)],
        MUTED.stroke_width(1),
    ))
    .map_err(plot)?;
    area.draw(&Text::new(figure.to_string(), (w / 2, 40), centered(19)))
        .map_err(plot)?;
    area.draw(&Text::new(
        format!("n/a ({reason})"),
        (w / 2, h / 2),
        centered(17).color(&MUTED),
    ))
    .map_err(plot)?;
    Ok(())
}

/// Registers the first sans font found as plotters' `sans-serif`, once per process.
fn load_font() -> Result<()> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| register_font().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn register_font() -> Result<()> {
    let from_env = std::env::var(FONT_ENV).ok().filter(|p| !p.is_empty());
    let candidates: Vec<String> = from_env
        .into_iter()
        .chain(FONTS.iter().map(|p| p.to_string()))
        .collect();
    let Some((path, bytes)) = candidates
        .iter()
        .find_map(|p| Some((p, std::fs::read(p).ok()?)))
    else {
        bail!(
            "no font for the chart: tried {} (install fonts-dejavu-core, or set {FONT_ENV})",
            candidates.join(", ")
        );
    };
    // plotters keeps fonts for the life of the process: leak the one copy.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{path} is not a font plotters can read"))
}

fn plot(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("chart: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::figure::NOT_MEASURED_YET;
    use crate::bench::handler::PerHandler;

    fn rows() -> Vec<Row> {
        let samples = |b: f64, r: f64| PerHandler {
            berth: vec![b, b * 1.1],
            runc: vec![r, r * 1.2],
        };
        let rss = Some(Target::AtMost { value: 4096.0 });
        vec![
            Row::measured(
                "run",
                "1 RunPodSandbox",
                "",
                Unit::Millis,
                Some(Target::RatioToRuncAtMost { ratio: 0.6 }),
                samples(150.0, 200.0),
            ),
            Row::not_available("cs", "2 Create", "", Unit::Millis, None, NOT_MEASURED_YET),
            Row::measured(
                "m1",
                "6 shim RSS",
                "1 pod",
                Unit::KiB,
                rss,
                samples(8000.0, 18000.0),
            ),
            Row::measured(
                "m3",
                "6 shim RSS",
                "3 pods",
                Unit::KiB,
                rss,
                samples(3000.0, 17000.0),
            ),
        ]
    }

    #[test]
    fn groups_rows_into_panels_by_figure() {
        let rows = rows();
        let panels = panels(&rows);
        let names: Vec<&str> = panels.iter().map(|(f, _)| *f).collect();
        assert_eq!(names, ["1 RunPodSandbox", "2 Create", "6 shim RSS"]);
        assert_eq!(panels[2].1.len(), 2);
    }

    #[test]
    fn cases_shorten_to_fit_a_panel() {
        assert_eq!(
            short_case("50 pods, 8 at a time, shim mode"),
            "8 at a time, shim"
        );
        assert_eq!(short_case("50 pods, sequential"), "sequential");
        assert_eq!(short_case("shim mode"), "shim");
        assert_eq!(short_case("10 pods"), "10 pods");
    }

    #[test]
    fn memory_panels_switch_to_mib() {
        assert_eq!(display_unit(Unit::KiB, 300.0), (1.0, "KiB"));
        assert_eq!(display_unit(Unit::KiB, 18000.0), (1024.0, "MiB"));
        assert_eq!(display_unit(Unit::Millis, 18000.0), (1.0, "ms"));
    }

    #[test]
    fn draws_a_png() {
        let dir = std::env::temp_dir().join(format!("berth-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.png");
        write_png(&path, &rows(), "title", "subtitle").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
