//! HdrHistogram's percentile distribution text (the `.hgrm` format of Java's
//! `outputPercentileDistribution`, read by HdrHistogram's plotFiles.html and hdr-plot):
//! a `Value Percentile TotalCount 1/(1-Percentile)` table at 5 ticks per half distance, then the
//! `#[Mean ...]`, `#[Max ...]` and `#[Buckets ...]` footer. Values are written in milliseconds.

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Percentile ticks per half distance, as HdrHistogram's default output.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;
/// Histogram units (ns) per output unit (ms).
pub const NS_PER_OUTPUT_UNIT: f64 = 1_000_000.0;

/// The `.hgrm` text of `hist` (values recorded in ns, written in ms).
pub fn render(hist: &Histogram<u64>) -> String {
    let digits = usize::from(hist.sigfig());
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total: u64 = 0;
    if !hist.is_empty() {
        for v in hist.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / NS_PER_OUTPUT_UNIT;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.digits$} {q:2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:>12.digits$} {q:2.12} {total:>10}");
            }
        }
    }
    let mean = hist.mean() / NS_PER_OUTPUT_UNIT;
    let stdev = hist.stdev() / NS_PER_OUTPUT_UNIT;
    let max = hist.max() as f64 / NS_PER_OUTPUT_UNIT;
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.digits$}, Total count    = {:>12}]",
        hist.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        hist.buckets(),
        sub_bucket_count(hist.sigfig())
    );
    out
}

/// HdrHistogram's sub-bucket count: 2^ceil(log2(2·10^sigfig)).
fn sub_bucket_count(sigfig: u8) -> u64 {
    let largest = 2 * 10u64.pow(u32::from(sigfig));
    largest.next_power_of_two()
}

/// Parses the table rows back as (value, percentile, total count) — for tests and for checking a
/// file before plotting. Lines that are not rows (header, blank, `#` footer) are skipped.
pub fn parse_rows(text: &str) -> Vec<(f64, f64, u64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let value = f.next()?.parse().ok()?;
            let pct = f.next()?.parse().ok()?;
            let count = f.next()?.parse().ok()?;
            Some((value, pct, count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_histogram, record};

    #[test]
    fn layout_matches_hdrhistogram() {
        let mut h = new_histogram();
        for i in 1..=1000u64 {
            record(&mut h, i * 1000);
        }
        let text = render(&h);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("       Value     Percentile TotalCount 1/(1-Percentile)")
        );
        assert_eq!(lines.next(), Some(""));
        let first = lines.next().unwrap_or_default();
        assert!(first.ends_with("1.00"), "{first}");
        assert!(first.contains(" 0.000000000000 "), "{first}");
        let rows = parse_rows(&text);
        assert_eq!(rows.last().map(|r| r.2), Some(1000));
        assert_eq!(rows.last().map(|r| r.1), Some(1.0));
        assert!(rows
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert!(text.contains("#[Mean    =        0.50"), "{text}");
        assert!(text.contains("Total count    =         1000]"), "{text}");
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
    }

    #[test]
    fn empty_histogram_has_header_and_footer() {
        let text = render(&new_histogram());
        assert!(text.starts_with("       Value"));
        assert!(text.contains("Total count    =            0]"));
    }
}
