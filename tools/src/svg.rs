//! A hand-written SVG plot of a latency distribution: latency (ms, linear) against percentile on
//! HdrHistogram's log scale (x = log10(1/(1-p)), ticks at 0 %, 90 %, 99 %, 99.9 %, ...).

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::hgrm::{NS_PER_OUTPUT_UNIT, TICKS_PER_HALF_DISTANCE};

const WIDTH_PX: f64 = 800.0;
const HEIGHT_PX: f64 = 480.0;
const MARGIN_LEFT_PX: f64 = 70.0;
const MARGIN_RIGHT_PX: f64 = 20.0;
const MARGIN_TOP_PX: f64 = 40.0;
const MARGIN_BOTTOM_PX: f64 = 50.0;
/// The plot's right edge: 99.999 % (five nines).
const X_MAX_NINES: f64 = 5.0;

/// Escapes text for an SVG text node.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG document for `hist` (ns) with `title`.
pub fn render(hist: &Histogram<u64>, title: &str) -> String {
    let plot_w = WIDTH_PX - MARGIN_LEFT_PX - MARGIN_RIGHT_PX;
    let plot_h = HEIGHT_PX - MARGIN_TOP_PX - MARGIN_BOTTOM_PX;
    let mut points: Vec<(f64, f64)> = Vec::new();
    if !hist.is_empty() {
        for v in hist.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            let q = v.quantile_iterated_to().min(1.0 - 10f64.powf(-X_MAX_NINES));
            let nines = (1.0 / (1.0 - q)).log10();
            points.push((nines, v.value_iterated_to() as f64 / NS_PER_OUTPUT_UNIT));
        }
    }
    let y_max = nice_ceiling(points.iter().map(|p| p.1).fold(0.0, f64::max));
    let x = |nines: f64| MARGIN_LEFT_PX + nines / X_MAX_NINES * plot_w;
    let y = |ms: f64| MARGIN_TOP_PX + plot_h - ms / y_max * plot_h;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{HEIGHT_PX}" viewBox="0 0 {WIDTH_PX} {HEIGHT_PX}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        WIDTH_PX / 2.0,
        escape(title)
    );
    // Axes and grid.
    for i in 0..=X_MAX_NINES as u32 {
        let px = x(f64::from(i));
        let label = match i {
            0 => "0%".to_string(),
            n => format!("{}%", 100.0 - 100.0 / 10f64.powi(n as i32)),
        };
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{MARGIN_TOP_PX}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            MARGIN_TOP_PX + plot_h
        );
        let _ = writeln!(
            s,
            r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            MARGIN_TOP_PX + plot_h + 18.0
        );
    }
    for i in 0..=4 {
        let ms = y_max * f64::from(i) / 4.0;
        let py = y(ms);
        let _ = writeln!(
            s,
            r##"<line x1="{MARGIN_LEFT_PX}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/>"##,
            MARGIN_LEFT_PX + plot_w
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{ms:.3}</text>"#,
            MARGIN_LEFT_PX - 6.0,
            py + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        MARGIN_LEFT_PX + plot_w / 2.0,
        HEIGHT_PX - 10.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">latency (ms)</text>"#,
        MARGIN_TOP_PX + plot_h / 2.0,
        MARGIN_TOP_PX + plot_h / 2.0
    );
    let _ = writeln!(
        s,
        r#"<rect x="{MARGIN_LEFT_PX}" y="{MARGIN_TOP_PX}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    if !points.is_empty() {
        let path: Vec<String> = points
            .iter()
            .map(|(n, ms)| format!("{:.1},{:.1}", x(*n), y(*ms)))
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{}"/>"##,
            path.join(" ")
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A round axis maximum at or above `v` (1, 2 or 5 times a power of ten).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let exp = v.log10().floor();
    let base = 10f64.powf(exp);
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * base {
            return m * base;
        }
    }
    10.0 * base
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_histogram, record};

    #[test]
    fn plot_is_an_svg_with_one_line() {
        let mut h = new_histogram();
        for i in 1..=500u64 {
            record(&mut h, i * 10_000);
        }
        let svg = render(&h, "a <b> & c");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        assert!(svg.contains(">99.9%<"));
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(1.3), 2.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(60.0), 100.0);
    }
}
