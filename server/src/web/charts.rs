//! Time-series charts as inline SVG (plotters' SVG backend): battery health,
//! temperature, disk wear. The SVG carries only numbers and dates formatted here, never
//! text a device sent, so the page can embed it unescaped.
//!
//! Pure: points in, SVG text out.

use chrono::{DateTime, Utc};
use plotters::prelude::*;

/// An SVG line chart of `points` (time, value) with a y range padded around the data
/// and clamped to `bounds`; `None` without points.
pub fn line_chart(
    label: &str,
    points: &[(DateTime<Utc>, f64)],
    bounds: (f64, f64),
) -> Option<String> {
    let first = points.first()?.0;
    let last = points.last()?.0;
    let (from, to) = if first == last {
        (
            first - chrono::Duration::hours(1),
            last + chrono::Duration::hours(1),
        )
    } else {
        (first, last)
    };
    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.1).max(1.0);
    let (ymin, ymax) = ((lo - pad).max(bounds.0), (hi + pad).min(bounds.1));
    let span_hours = (to - from).num_hours();
    let y_decimals = if ymax_span(lo, hi) < 10.0 { 1 } else { 0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 260)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d(from..to, ymin..ymax)
            .ok()?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|d: &DateTime<Utc>| {
                let d = crate::procurement::france_local_time(*d);
                if span_hours >= 72 {
                    d.format("%d/%m").to_string()
                } else if span_hours >= 12 {
                    d.format("%d/%m %Hh").to_string()
                } else {
                    d.format("%H:%M").to_string()
                }
            })
            .y_label_formatter(&|v: &f64| format!("{v:.prec$}", prec = y_decimals))
            .label_style(("sans-serif", 12).into_font().color(&RGBColor(40, 40, 40)))
            .draw()
            .ok()?;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                ShapeStyle::from(&RGBColor(0, 85, 164)).stroke_width(2),
            ))
            .ok()?;
        root.present().ok()?;
    }
    // Screen readers get the chart's name; the numbers are in the tables beside it.
    Some(svg.replacen(
        "<svg ",
        &format!(
            "<svg role=\"img\" aria-label=\"{}\" ",
            label
                .replace('&', "&amp;")
                .replace('"', "&quot;")
                .replace('<', "&lt;")
        ),
        1,
    ))
}

fn ymax_span(lo: f64, hi: f64) -> f64 {
    hi - lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_render_svg_with_a_line_and_labels() {
        let t0 = DateTime::from_timestamp(1_760_000_000, 0).unwrap();
        let pts: Vec<_> = (0..48)
            .map(|h| (t0 + chrono::Duration::hours(h), 90.0 - h as f64 * 0.1))
            .collect();
        let svg = line_chart("Santé <batterie>", &pts, (0.0, 100.0)).unwrap();
        assert!(
            svg.starts_with("<svg role=\"img\" aria-label=\"Santé &lt;batterie>\""),
            "{}",
            &svg[..120]
        );
        assert!(
            svg.contains("<polyline") || svg.contains("<path"),
            "a line is drawn"
        );
        assert!(
            svg.contains("\n90.0\n</text>"),
            "y labels are drawn, with a decimal on a narrow range"
        );
        // 08:00 UTC on 10 October is 10:00 in France (summer time).
        assert!(
            svg.contains("10/10 10h"),
            "x labels are day/month hour, French time"
        );
        assert!(line_chart("x", &[], (0.0, 100.0)).is_none());
        assert!(line_chart("x", &pts[..1], (0.0, 100.0)).is_some());
    }
}
