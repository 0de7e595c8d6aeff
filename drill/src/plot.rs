//! The drill as a picture (SVG): output rate and consumer lag over time, one vertical marker per
//! fault with its label, and each fault's recovery span shaded.

use super::monitor::Sample;
use super::report::FaultReport;
use plotters::prelude::*;
use std::path::Path;

/// Records per second over the last ~second, from a running total sampled over time.
fn rates(samples: &[Sample], total: impl Fn(&Sample) -> i64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(samples.len());
    let mut j = 0;
    for (i, s) in samples.iter().enumerate() {
        while j < i && s.t - samples[j + 1].t >= 1.0 {
            j += 1;
        }
        let dt = s.t - samples[j].t;
        if i > 0 && dt > 0.0 {
            let d = (total(s) - total(&samples[j])).max(0) as f64;
            out.push((s.t, d / dt));
        }
    }
    out
}

const FAULT: RGBColor = RGBColor(200, 30, 30);
const RECOVERY: RGBColor = RGBColor(255, 170, 0);
const OUTPUT: RGBColor = RGBColor(30, 90, 200);
const LAG: RGBColor = RGBColor(40, 140, 60);

pub fn write(
    path: &Path,
    title: &str,
    samples: &[Sample],
    faults: &[FaultReport],
) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("plotting {}: {e}", path.display());
    let samples: Vec<Sample> = samples.iter().filter(|s| s.t >= 0.0).cloned().collect();
    let t_end = samples.last().map(|s| s.t).unwrap_or(1.0).max(1.0);
    let output = rates(&samples, |s| s.output_end);
    let lag: Vec<(f64, f64)> = samples.iter().map(|s| (s.t, s.lag() as f64)).collect();
    let top = |v: &[(f64, f64)]| v.iter().map(|p| p.1).fold(1.0, f64::max) * 1.25;

    let root = SVGBackend::new(path, (1200, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| err(&e))?;
    let (upper, lower) = root.split_vertically(340);
    for (area, series, color, y_desc, with_labels) in [
        (&upper, &output, OUTPUT, "output records/s", true),
        (&lower, &lag, LAG, "consumer lag (records)", false),
    ] {
        let y_max = top(series);
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..t_end, 0f64..y_max)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("seconds since the input started")
            .y_desc(y_desc)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(faults.iter().filter_map(|f| {
                let r = f.recovery_s?;
                Some(Rectangle::new(
                    [(f.at_s, 0.0), ((f.at_s + r).min(t_end), y_max)],
                    RECOVERY.mix(0.25).filled(),
                ))
            }))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(
                series.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(y_desc)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(faults.iter().map(|f| {
                PathElement::new(vec![(f.at_s, 0.0), (f.at_s, y_max)], FAULT.stroke_width(2))
            }))
            .map_err(|e| err(&e))?;
        if with_labels {
            // Labels in three staggered rows so neighbours do not overlap.
            chart
                .draw_series(faults.iter().enumerate().map(|(i, f)| {
                    let row = (i % 3) as f64;
                    let recovery = f
                        .recovery_s
                        .map(|r| format!(" ({r:.1}s)"))
                        .unwrap_or_default();
                    Text::new(
                        format!("{}{recovery}", f.label),
                        (f.at_s + t_end * 0.004, y_max * (0.97 - 0.07 * row)),
                        ("sans-serif", 13).into_font().color(&FAULT),
                    )
                }))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK.mix(0.3))
            .background_style(WHITE.mix(0.85))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_taken_over_about_a_second() {
        let s = |t: f64, out: i64| Sample {
            t,
            input_end: vec![],
            committed: vec![],
            output_end: out,
            workers: vec![],
        };
        let samples: Vec<Sample> = (0..9).map(|i| s(i as f64 * 0.25, i * 25)).collect();
        let r = rates(&samples, |s| s.output_end);
        assert!(r.iter().all(|(_, v)| (v - 100.0).abs() < 1e-9), "{r:?}");
    }

    #[test]
    fn a_plot_is_an_svg_with_the_fault_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.svg");
        let samples: Vec<Sample> = (0..40)
            .map(|i| Sample {
                t: i as f64 * 0.25,
                input_end: vec![i * 10],
                committed: vec![i * 9],
                output_end: i * 3,
                workers: vec![],
            })
            .collect();
        let fault = FaultReport {
            kind: "kill",
            label: "kill w1".into(),
            worker: Some(1),
            at_s: 3.0,
            recovery_s: Some(2.5),
            affected_partitions: vec![0],
            records_restored: 0,
            restore_records_per_s: None,
            restores: 0,
            restores_wiped: 0,
            restored_partitions: vec![],
            broker_back_s: None,
            resumed_after_back_s: None,
            notes: vec![],
        };
        write(&path, "test", &samples, &[fault]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..50]);
        assert!(svg.contains("kill w1 (2.5s)"));
    }
}
