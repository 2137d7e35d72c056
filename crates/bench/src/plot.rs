//! Line charts as SVG, for the curves a suite measures (`scale`: cost
//! against community size). Written by hand: a few panels of polylines on
//! logarithmic size axes are a page of code, where a plotting crate would
//! need a font stack to lay out its labels.

use std::fmt::Write as _;

/// One line of a panel: a name and its (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One chart: a title, the y axis' unit, and its lines. x is logarithmic.
pub struct Panel {
    pub title: String,
    pub unit: String,
    pub series: Vec<Series>,
}

const PANEL_WIDTH: f64 = 460.0;
const PANEL_HEIGHT: f64 = 280.0;
const MARGIN_LEFT: f64 = 64.0;
const MARGIN_RIGHT: f64 = 16.0;
const MARGIN_TOP: f64 = 36.0;
const MARGIN_BOTTOM: f64 = 72.0;
/// Room for the title and subtitle.
const HEADER: f64 = 52.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// The panels side by side, `columns` to a row, under a title and a
/// subtitle, as an SVG document.
pub fn svg(title: &str, subtitle: &str, x_label: &str, panels: &[Panel], columns: usize) -> String {
    let columns = columns.max(1);
    let rows = panels.len().div_ceil(columns).max(1);
    let width = PANEL_WIDTH * columns as f64;
    let height = PANEL_HEIGHT * rows as f64 + HEADER;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        out,
        r##"<rect width="100%" height="100%" fill="white"/><text x="{x}" y="22" text-anchor="middle" font-size="16">{}</text><text x="{x}" y="42" text-anchor="middle" fill="#555">{}</text>"##,
        escape(title),
        escape(subtitle),
        x = width / 2.0,
    );
    for (index, panel) in panels.iter().enumerate() {
        let left = PANEL_WIDTH * (index % columns) as f64;
        let top = HEADER + PANEL_HEIGHT * (index / columns) as f64;
        draw_panel(&mut out, panel, x_label, left, top);
    }
    out.push_str("</svg>\n");
    out
}

fn draw_panel(out: &mut String, panel: &Panel, x_label: &str, left: f64, top: f64) {
    let points = panel.series.iter().flat_map(|series| series.points.iter());
    let (mut x_min, mut x_max, mut y_max) = (f64::MAX, f64::MIN, 0.0_f64);
    for &(x, y) in points {
        if x > 0.0 {
            x_min = x_min.min(x);
            x_max = x_max.max(x);
        }
        y_max = y_max.max(y);
    }
    if x_min > x_max {
        return;
    }
    if x_min == x_max {
        x_min /= 10.0;
        x_max *= 10.0;
    }
    let y_max = nice_ceiling(y_max);
    let (plot_left, plot_top) = (left + MARGIN_LEFT, top + MARGIN_TOP);
    let plot_width = PANEL_WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_height = PANEL_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let x_at = |x: f64| {
        plot_left + (x.log10() - x_min.log10()) / (x_max.log10() - x_min.log10()) * plot_width
    };
    let y_at = |y: f64| plot_top + plot_height - y / y_max * plot_height;

    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">{}</text>"#,
        left + PANEL_WIDTH / 2.0,
        top + 20.0,
        escape(&panel.title)
    );
    let _ = write!(
        out,
        r##"<rect x="{plot_left}" y="{plot_top}" width="{plot_width}" height="{plot_height}" fill="none" stroke="#999"/>"##
    );
    for step in 0..=4 {
        let value = y_max * f64::from(step) / 4.0;
        let y = y_at(value);
        let _ = write!(
            out,
            r##"<line x1="{plot_left}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            plot_left + plot_width,
            plot_left - 6.0,
            y + 4.0,
            number(value)
        );
    }
    let mut decade = 10f64.powf(x_min.log10().floor());
    while decade <= x_max * 1.0001 {
        if decade >= x_min * 0.9999 {
            let x = x_at(decade);
            let _ = write!(
                out,
                r##"<line x1="{x}" y1="{plot_top}" x2="{x}" y2="{}" stroke="#eee"/><text x="{x}" y="{}" text-anchor="middle">{}</text>"##,
                plot_top + plot_height,
                plot_top + plot_height + 16.0,
                number(decade)
            );
        }
        decade *= 10.0;
    }
    let _ = write!(
        out,
        r##"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="{plot_left}" y="{}" fill="#555">{}</text>"##,
        plot_left + plot_width / 2.0,
        plot_top + plot_height + 32.0,
        escape(x_label),
        plot_top - 6.0,
        escape(&panel.unit)
    );
    for (index, series) in panel.series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let path: Vec<String> = series
            .points
            .iter()
            .filter(|(x, _)| *x > 0.0)
            .map(|&(x, y)| format!("{:.1},{:.1}", x_at(x), y_at(y)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for point in &path {
            let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(out, r#"<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>"#);
        }
        let legend_x = plot_left + 150.0 * (index % 3) as f64;
        let legend_y = plot_top + plot_height + 50.0 + 14.0 * (index / 3) as f64;
        let _ = write!(
            out,
            r#"<rect x="{legend_x}" y="{}" width="10" height="10" fill="{colour}"/><text x="{}" y="{legend_y}">{}</text>"#,
            legend_y - 9.0,
            legend_x + 14.0,
            escape(&series.name)
        );
    }
}

/// The next 1, 2 or 5 times a power of ten at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * power)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * power)
}

/// 1,000,000 as `1M`, 2.5 as `2.5`.
fn number(value: f64) -> String {
    let (scaled, suffix) = if value >= 1e6 {
        (value / 1e6, "M")
    } else if value >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let text = format!("{scaled:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{suffix}")
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
    fn ceilings_and_numbers_read_as_people_write_them() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(77.6), 100.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(number(1_000_000.0), "1M");
        assert_eq!(number(100_000.0), "100k");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(0.0), "0");
    }

    #[test]
    fn a_chart_draws_each_series_and_escapes_its_text() {
        let chart = svg(
            "cost <by> size",
            "one machine",
            "accounts",
            &[Panel {
                title: "memory".to_owned(),
                unit: "MiB".to_owned(),
                series: vec![
                    Series {
                        name: "at rest".to_owned(),
                        points: vec![(10_000.0, 72.0), (100_000.0, 86.0)],
                    },
                    Series {
                        name: "warm & busy".to_owned(),
                        points: vec![(10_000.0, 268.0), (100_000.0, 394.0)],
                    },
                ],
            }],
            2,
        );
        assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"));
        assert_eq!(chart.matches("<polyline").count(), 2);
        assert_eq!(chart.matches("<circle").count(), 4);
        assert!(chart.contains("cost &lt;by&gt; size") && chart.contains("warm &amp; busy"));
        assert!(chart.contains(">100k<"), "the x axis marks its decades");
    }
}
