//! The SVG chart: requests/s and p99 latency against concurrency, one line per server.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::scenarios::ServerResult;

/// (connections, requests/s, p99 ms) of a server, the fixed runs and the sweep
/// merged, sorted by connections (a fixed run wins over a sweep step of the same count).
fn points(s: &ServerResult) -> Vec<(f64, f64, f64)> {
    let mut pts: Vec<(f64, f64, f64)> = Vec::new();
    for l in s.health.iter().chain(&s.sweep) {
        let c = l.connections as f64;
        if !pts.iter().any(|p| p.0 == c) {
            pts.push((c, l.rps, l.p99_ms.max(0.01)));
        }
    }
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts
}

/// A server's label and its points.
type Series<'a> = (&'a str, Vec<(f64, f64, f64)>);

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws the chart to `path`.
///
/// # Errors
/// When plotters cannot draw or write the file.
pub fn draw(path: &Path, servers: &[ServerResult], title: &str) -> anyhow::Result<()> {
    let series: Vec<Series<'_>> = servers
        .iter()
        .map(|s| (s.label.as_str(), points(s)))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (mut cmin, mut cmax, mut rmax, mut pmin, mut pmax) =
        (f64::MAX, 1.0f64, 1.0f64, f64::MAX, 1.0f64);
    for &(c, r, p) in all {
        cmin = cmin.min(c);
        cmax = cmax.max(c);
        rmax = rmax.max(r);
        pmin = pmin.min(p);
        pmax = pmax.max(p);
    }
    if series.is_empty() {
        (cmin, pmin) = (1.0, 0.01);
    }
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(600);

    let mut rps = ChartBuilder::on(&left)
        .caption("GET /health requests/s", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((cmin * 0.9..cmax * 1.1).log_scale(), 0.0..rmax * 1.1)
        .map_err(|e| err(&e))?;
    rps.configure_mesh()
        .x_desc("concurrent connections")
        .y_desc("requests/s")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .draw()
        .map_err(|e| err(&e))?;

    let mut p99 = ChartBuilder::on(&right)
        .caption("p99 latency (ms, log scale)", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (cmin * 0.9..cmax * 1.1).log_scale(),
            (pmin * 0.8..pmax * 1.5).log_scale(),
        )
        .map_err(|e| err(&e))?;
    p99.configure_mesh()
        .x_desc("concurrent connections")
        .y_desc("p99 ms")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| err(&e))?;

    for (i, (label, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        rps.draw_series(LineSeries::new(
            pts.iter().map(|&(c, r, _)| (c, r)),
            color.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label(*label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        rps.draw_series(
            pts.iter()
                .map(|&(c, r, _)| Circle::new((c, r), 3, color.filled())),
        )
        .map_err(|e| err(&e))?;
        p99.draw_series(LineSeries::new(
            pts.iter().map(|&(c, _, p)| (c, p)),
            color.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label(*label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        p99.draw_series(
            pts.iter()
                .map(|&(c, _, p)| Circle::new((c, p), 3, color.filled())),
        )
        .map_err(|e| err(&e))?;
    }
    rps.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| err(&e))?;
    p99.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
