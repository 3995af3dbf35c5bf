//! SVG charts, hand-written: stacked time-series panels (stats, trace), histograms (trace) and
//! grouped bars (bench). Text out, nothing else;
//! no fonts or scripts, so any browser or image viewer shows them.

use std::fmt::Write;

pub struct Series {
    pub name: String,
    /// (x, y), x increasing.
    pub points: Vec<(f64, f64)>,
}

pub struct Panel {
    pub title: String,
    pub unit: String,
    pub series: Vec<Series>,
}

const WIDTH: f64 = 900.0;
const PANEL_HEIGHT: f64 = 190.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 50.0;
const GAP: f64 = 45.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One colour per name, in the order the names first appear.
struct Palette<'a> {
    names: Vec<&'a str>,
}

impl<'a> Palette<'a> {
    fn of(names: impl Iterator<Item = &'a str>) -> Self {
        let mut unique: Vec<&str> = Vec::new();
        for name in names {
            if !unique.contains(&name) {
                unique.push(name);
            }
        }
        Palette { names: unique }
    }

    fn color(&self, name: &str) -> &'static str {
        COLORS[self.names.iter().position(|n| *n == name).unwrap_or(0) % COLORS.len()]
    }
}

/// Where a time-series panel's values go: its top edge and the ranges its axes cover.
struct Frame {
    top: f64,
    x_min: f64,
    x_max: f64,
    y_max: f64,
}

impl Frame {
    fn x(&self, x: f64) -> f64 {
        let plot_w = WIDTH - LEFT - RIGHT;
        LEFT + (x - self.x_min) / (self.x_max - self.x_min).max(f64::MIN_POSITIVE) * plot_w
    }

    fn y(&self, y: f64) -> f64 {
        self.top + PANEL_HEIGHT - y / self.y_max.max(f64::MIN_POSITIVE) * PANEL_HEIGHT
    }
}

/// Panels one under another, sharing the x axis (`x_label`); one colour per series name.
pub fn time_series(title: &str, x_label: &str, panels: &[Panel]) -> String {
    let height = TOP + panels.len() as f64 * (PANEL_HEIGHT + GAP) + 10.0;
    let mut svg = open(title, height);
    let (x_min, x_max) = bounds(
        panels
            .iter()
            .flat_map(|p| &p.series)
            .flat_map(|s| s.points.iter().map(|p| p.0)),
    );
    let palette = Palette::of(
        panels
            .iter()
            .flat_map(|p| &p.series)
            .map(|s| s.name.as_str()),
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    for (i, panel) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL_HEIGHT + GAP);
        let (_, y_top) = bounds(
            panel
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1)),
        );
        let y_ticks = ticks(0.0, y_top.max(f64::MIN_POSITIVE));
        let frame = Frame {
            top,
            x_min,
            x_max,
            y_max: *y_ticks.last().unwrap_or(&1.0),
        };
        series_panel(&mut svg, panel, &frame, &y_ticks, &palette);
    }
    let x_axis_y = TOP + panels.len() as f64 * (PANEL_HEIGHT + GAP) - GAP + 32.0;
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{x_axis_y}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        escape(x_label)
    );
    for (i, name) in palette.names.iter().enumerate() {
        let y = TOP + 10.0 + i as f64 * 18.0;
        let x = LEFT + plot_w + 15.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{y}">{}</text>"#,
            y - 10.0,
            palette.color(name),
            x + 18.0,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// One time-series panel: title, grid, frame, and a line per series.
fn series_panel(
    svg: &mut String,
    panel: &Panel,
    frame: &Frame,
    y_ticks: &[f64],
    palette: &Palette,
) {
    let top = frame.top;
    let plot_w = WIDTH - LEFT - RIGHT;
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">{} ({})</text>"#,
        top - 8.0,
        escape(&panel.title),
        escape(&panel.unit)
    );
    y_grid(svg, y_ticks, |y| frame.y(y));
    for t in ticks(frame.x_min, frame.x_max) {
        if t < frame.x_min || t > frame.x_max {
            continue;
        }
        let x = frame.x(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            top + PANEL_HEIGHT,
            top + PANEL_HEIGHT + 15.0,
            label(t)
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_HEIGHT}" fill="none" stroke="#444"/>"##
    );
    for series in &panel.series {
        let points: Vec<String> = series
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", frame.x(*x), frame.y(*y)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"/>"#,
            palette.color(&series.name),
            points.join(" ")
        );
    }
}

/// One histogram panel per sample set (title, values), sharing the x unit: 24 bins from the
/// smallest value to the 99th percentile (larger values go to the last bin).
#[cfg_attr(not(feature = "trace"), allow(dead_code))] // for poc trace alone
pub fn histograms(title: &str, sets: &[(String, Vec<f64>)], x_label: &str) -> String {
    const BINS: usize = 24;
    let height = TOP + sets.len() as f64 * (PANEL_HEIGHT + GAP) + 10.0;
    let mut svg = open(title, height);
    let plot_w = WIDTH - LEFT - RIGHT;
    for (i, (name, values)) in sets.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL_HEIGHT + GAP);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="{}" font-weight="bold">{} (n={})</text>"#,
            top - 8.0,
            escape(name),
            values.len()
        );
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_HEIGHT}" fill="none" stroke="#444"/>"##
        );
        if sorted.is_empty() {
            continue;
        }
        let lo = sorted[0];
        let hi = sorted[((sorted.len() - 1) as f64 * 0.99) as usize].max(lo + f64::MIN_POSITIVE);
        let width = (hi - lo) / BINS as f64;
        let mut counts = [0usize; BINS];
        for v in &sorted {
            let b = (((v - lo) / width.max(f64::MIN_POSITIVE)) as usize).min(BINS - 1);
            counts[b] += 1;
        }
        let peak = *counts.iter().max().unwrap_or(&1) as f64;
        let y_ticks = ticks(0.0, peak);
        let y_max = *y_ticks.last().unwrap_or(&1.0);
        y_grid(&mut svg, &y_ticks, |t| {
            top + PANEL_HEIGHT - t / y_max * PANEL_HEIGHT
        });
        let bar_w = plot_w / BINS as f64;
        for (b, n) in counts.iter().enumerate() {
            let h = *n as f64 / y_max * PANEL_HEIGHT;
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"/>"#,
                LEFT + b as f64 * bar_w + 1.0,
                top + PANEL_HEIGHT - h,
                (bar_w - 2.0).max(1.0),
                COLORS[i % COLORS.len()]
            );
        }
        for b in (0..=BINS).step_by(4) {
            let x = LEFT + b as f64 * bar_w;
            let _ = writeln!(
                svg,
                r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
                top + PANEL_HEIGHT + 15.0,
                label(((lo + b as f64 * width) * 1000.0).round() / 1000.0)
            );
        }
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        height - 12.0,
        escape(x_label)
    );
    svg.push_str("</svg>\n");
    svg
}

/// One bar of a [`bars`] chart: a value with its spread (drawn as a whisker from `low` to `high`).
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

const BAR_H: f64 = 16.0;
const GROUP_GAP: f64 = 22.0;
const LABEL_W: f64 = 190.0;

/// Horizontal grouped bars: one group per (title, bars), one colour per bar label, a dashed line
/// at `reference` (1.0 for ratios), and each bar's value written beside it.
pub fn bars(title: &str, x_label: &str, groups: &[(String, Vec<Bar>)], reference: f64) -> String {
    let rows: usize = groups.iter().map(|(_, b)| b.len()).sum();
    let plot_h = rows as f64 * BAR_H + groups.len() as f64 * GROUP_GAP;
    let height = TOP + plot_h + 60.0;
    let mut svg = open(title, height);
    let palette = Palette::of(groups.iter().flat_map(|(_, b)| b).map(|b| b.label.as_str()));
    let (_, top_value) = bounds(
        groups
            .iter()
            .flat_map(|(_, b)| b)
            .flat_map(|b| [b.value, b.high])
            .chain([reference]),
    );
    let x_ticks = ticks(0.0, top_value.max(f64::MIN_POSITIVE));
    let x_max = *x_ticks.last().unwrap_or(&1.0);
    let plot_w = WIDTH - LABEL_W - RIGHT;
    let sx = |v: f64| LABEL_W + v.max(0.0) / x_max.max(f64::MIN_POSITIVE) * plot_w;
    for t in &x_ticks {
        let x = sx(*t);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 15.0,
            label(*t)
        );
    }
    let mut y = TOP;
    for (group, bars) in groups {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{:.1}" text-anchor="end" font-weight="bold">{}</text>"#,
            LABEL_W - 8.0,
            y + 12.0,
            escape(group)
        );
        y += GROUP_GAP / 2.0 + 4.0;
        for bar in bars {
            draw_bar(&mut svg, bar, y, &sx, palette.color(&bar.label));
            y += BAR_H;
        }
        y += GROUP_GAP / 2.0 - 4.0;
    }
    let r = sx(reference);
    let _ = writeln!(
        svg,
        r##"<line x1="{r:.1}" x2="{r:.1}" y1="{TOP}" y2="{:.1}" stroke="#000" stroke-dasharray="4 3"/>"##,
        TOP + plot_h
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LABEL_W + plot_w / 2.0,
        TOP + plot_h + 38.0,
        escape(x_label)
    );
    svg.push_str("</svg>\n");
    svg
}

/// One bar at `y` (its top), its whisker, and its label with its value; `sx` places a value.
fn draw_bar(svg: &mut String, bar: &Bar, y: f64, sx: &impl Fn(f64) -> f64, color: &str) {
    let (x0, x1) = (sx(0.0), sx(bar.value));
    let _ = writeln!(
        svg,
        r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"/>"#,
        y + 1.0,
        (x1 - x0).max(0.5),
        BAR_H - 3.0,
    );
    let mid = y + BAR_H / 2.0;
    let (lo, hi) = (sx(bar.low), sx(bar.high));
    let _ = writeln!(
        svg,
        r##"<path d="M{lo:.1} {mid:.1}H{hi:.1}M{lo:.1} {:.1}V{:.1}M{hi:.1} {:.1}V{:.1}" stroke="#222" fill="none"/>"##,
        mid - 4.0,
        mid + 4.0,
        mid - 4.0,
        mid + 4.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}">{} {}</text>"#,
        hi.max(x1) + 6.0,
        mid + 4.0,
        escape(&bar.label),
        label(bar.value)
    );
}

/// The document's opening: size, white background, title.
fn open(title: &str, height: f64) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="24" font-size="16" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    svg
}

/// A panel's horizontal grid lines with their labels; `y` places a value.
fn y_grid(svg: &mut String, ticks: &[f64], y: impl Fn(f64) -> f64) {
    for t in ticks {
        let at = y(*t);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{at:.1}" y2="{at:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            at + 4.0,
            label(*t)
        );
    }
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo, lo + 1.0)
    } else {
        (lo, hi)
    }
}

/// Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten, about five of them.
pub fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).floor() * step;
    let mut out = Vec::new();
    let mut t = first;
    while t < hi + step * 0.999 && out.len() < 50 {
        out.push(t);
        t += step;
    }
    out
}

fn label(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_has_a_panel_per_set_and_bars_that_count_every_value() {
        let svg = histograms(
            "h",
            &[
                ("a".into(), (0..100).map(f64::from).collect()),
                ("b".into(), vec![]),
            ],
            "us",
        );
        assert_eq!(svg.matches("font-weight=\"bold\"").count(), 2);
        assert!(svg.contains(">a (n=100)<") && svg.contains(">b (n=0)<"));
        assert_eq!(svg.matches("<rect x=").count(), 24 + 2);
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 100.0), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(ticks(0.0, 7.0), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        let t = ticks(0.0, 0.33);
        assert!(
            t.first() == Some(&0.0) && *t.last().unwrap() >= 0.33,
            "{t:?}"
        );
    }

    #[test]
    fn a_chart_has_a_line_per_series_and_a_legend_entry_per_name() {
        let panel = |title: &str| Panel {
            title: title.into(),
            unit: "%".into(),
            series: ["web", "db<1>"]
                .iter()
                .map(|n| Series {
                    name: n.to_string(),
                    points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)],
                })
                .collect(),
        };
        let svg = time_series("t", "seconds", &[panel("CPU"), panel("Memory")]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("db&lt;1&gt;") && !svg.contains("db<1>"));
        assert_eq!(svg.matches(r#"width="12""#).count(), 2);
    }
}
