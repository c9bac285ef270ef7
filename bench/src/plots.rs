//! SVG plots (plotters' SVG backend only: no system libraries): data-path throughput per
//! scenario and engine against its ceiling, and latency CDFs with the tail stretched out.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::results::Results;
use crate::stats::LatencySummary;

const WIDTH: u32 = 1100;

fn engine_color(index: usize) -> RGBColor {
    [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40)][index % 4]
}

/// One CDF line: scenarios share a colour, engines after the first are dashed.
struct Curve<'a> {
    label: String,
    group: String,
    dashed: bool,
    summary: &'a LatencySummary,
}

/// Writes every plot the results have data for; returns the file names written.
pub fn write_all(results: &Results, dir: &Path) -> Result<Vec<String>> {
    let mut written = Vec::new();
    if !results.data_path.is_empty() {
        throughput(results, &dir.join("throughput.svg"))?;
        written.push("throughput.svg".to_string());
    }
    let first_engine = results.meta.engines.first().cloned().unwrap_or_default();
    let curve = |name: &str, engine: &str, summary| Curve {
        label: format!("{name} [{engine}]"),
        group: name.to_string(),
        dashed: engine != first_engine,
        summary,
    };
    let mut reads: Vec<Curve> = results
        .data_path
        .iter()
        .filter(|s| s.round == 0 && s.latency.count > 0 && s.op != "write")
        .map(|s| curve(&s.name, &s.engine, &s.latency))
        .collect();
    reads.extend(
        results
            .connections
            .iter()
            .filter(|c| c.latency.count > 0)
            .map(|c| curve(&format!("connections_{}", c.connections), &c.engine, &c.latency)),
    );
    if !reads.is_empty() {
        latency_cdf(
            &reads,
            "Read latency per client call (CDF; dashed: second engine)",
            &dir.join("latency_cdf_data.svg"),
        )?;
        written.push("latency_cdf_data.svg".to_string());
    }
    let writes: Vec<Curve> = results
        .data_path
        .iter()
        .filter(|s| s.round == 0 && s.latency.count > 0 && s.op == "write")
        .map(|s| curve(&s.name, &s.engine, &s.latency))
        .collect();
    if !writes.is_empty() {
        latency_cdf(
            &writes,
            "Write latency per client write_all call (CDF; dashed: second engine)",
            &dir.join("latency_cdf_write.svg"),
        )?;
        written.push("latency_cdf_write.svg".to_string());
    }
    let metadata: Vec<Curve> = results
        .metadata
        .iter()
        .filter(|m| m.latency.count > 0)
        .map(|m| Curve { label: m.op.clone(), group: m.op.clone(), dashed: false, summary: &m.latency })
        .collect();
    if !metadata.is_empty() {
        latency_cdf(&metadata, "Namenode RPC latency (CDF)", &dir.join("latency_cdf_metadata.svg"))?;
        written.push("latency_cdf_metadata.svg".to_string());
    }
    Ok(written)
}

/// Horizontal bars: one group per scenario, one bar per engine (median over rounds), and
/// the scenario's ceiling as a black mark.
fn throughput(results: &Results, path: &Path) -> Result<()> {
    let mut scenarios: Vec<String> = Vec::new();
    let mut engines: Vec<String> = Vec::new();
    let mut rates: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    let mut ceilings: BTreeMap<String, (String, f64)> = BTreeMap::new();
    for s in &results.data_path {
        if !scenarios.contains(&s.name) {
            scenarios.push(s.name.clone());
        }
        if !engines.contains(&s.engine) {
            engines.push(s.engine.clone());
        }
        rates.entry((s.name.clone(), s.engine.clone())).or_default().push(s.bytes_per_sec / 1e9);
        if s.ceiling_bytes_per_sec > 0.0 {
            ceilings.insert(s.name.clone(), (s.ceiling.clone(), s.ceiling_bytes_per_sec / 1e9));
        }
    }
    let medians: BTreeMap<(String, String), f64> =
        rates.into_iter().map(|(k, mut v)| (k, crate::stats::median(&mut v))).collect();
    let top = medians.values().chain(ceilings.values().map(|c| &c.1)).fold(0.1f64, |a, b| a.max(*b)) * 1.15;
    let height = 120 + 48 * scenarios.len() as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (label_area, plot_area) = root.split_horizontally(250);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(
            "Data-path throughput per scenario (GB/s); black mark = the machine's ceiling",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(40)
        .build_cartesian_2d(0f64..top, 0f64..scenarios.len() as f64)?;
    chart.configure_mesh().disable_y_mesh().y_labels(0).x_desc("GB/s").draw()?;
    let band = 0.8 / engines.len().max(1) as f64;
    for (e, engine) in engines.iter().enumerate() {
        let color = engine_color(e);
        let bars: Vec<Rectangle<(f64, f64)>> = scenarios
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let value = *medians.get(&(name.clone(), engine.clone()))?;
                let y0 = scenarios.len() as f64 - i as f64 - 0.9 + e as f64 * band;
                Some(Rectangle::new([(0.0, y0), (value, y0 + band * 0.9)], color.filled()))
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(engine.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    let marks: Vec<PathElement<(f64, f64)>> = scenarios
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let (_, ceiling) = ceilings.get(name)?;
            let y0 = scenarios.len() as f64 - i as f64 - 0.95;
            Some(PathElement::new(vec![(*ceiling, y0), (*ceiling, y0 + 0.9)], BLACK.stroke_width(3)))
        })
        .collect();
    chart.draw_series(marks)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    // Scenario names to the left of their bar groups, with the ceiling they are held to.
    for (i, name) in scenarios.iter().enumerate() {
        let y = scenarios.len() as f64 - i as f64 - 0.5;
        let (_, py) = chart.backend_coord(&(0.0, y));
        let style = ("sans-serif", 13).into_font().color(&BLACK).pos(Pos::new(HPos::Right, VPos::Center));
        label_area.draw(&Text::new(name.clone(), (240, py - 7), style.clone()))?;
        if let Some((ceiling, _)) = ceilings.get(name) {
            let small = ("sans-serif", 11)
                .into_font()
                .color(&RGBColor(90, 90, 90))
                .pos(Pos::new(HPos::Right, VPos::Center));
            label_area.draw(&Text::new(format!("vs {ceiling}"), (240, py + 8), small))?;
        }
    }
    root.present().context("write throughput.svg")?;
    Ok(())
}

/// Latency CDFs on a log latency axis; the y axis counts nines (90%, 99%, 99.9%...) so
/// the tail gets as much room as the median.
fn latency_cdf(curves: &[Curve], title: &str, path: &Path) -> Result<()> {
    let nines = |q: f64| -(1.0 - q).max(1e-4).log10();
    let points = || curves.iter().flat_map(|c| c.summary.cdf.iter().map(|p| p.0));
    let lo = points().fold(f64::MAX, f64::min).max(0.001);
    let hi = points().fold(0.0, f64::max).max(lo * 10.0);
    let height = 560 + 16 * curves.len() as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((lo * 0.8..hi * 1.25).log_scale(), 0f64..4.05)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("percentile")
        .y_labels(5)
        .y_label_formatter(&|n| match n.round() as i32 {
            0 => "0".into(),
            1 => "90".into(),
            2 => "99".into(),
            3 => "99.9".into(),
            4 => "99.99".into(),
            _ => String::new(),
        })
        .draw()?;
    let mut groups: Vec<&str> = Vec::new();
    for curve in curves {
        if !groups.contains(&curve.group.as_str()) {
            groups.push(&curve.group);
        }
        let index = groups.iter().position(|g| *g == curve.group).expect("just added");
        let color = Palette99::pick(index).to_rgba();
        let line: Vec<(f64, f64)> = curve.summary.cdf.iter().map(|(ms, q)| (ms.max(lo), nines(*q))).collect();
        let style = color.stroke_width(2);
        let drawn = if curve.dashed {
            chart.draw_series(DashedLineSeries::new(line, 6, 4, style))?
        } else {
            chart.draw_series(LineSeries::new(line, style))?
        };
        let dashed = curve.dashed;
        drawn.label(curve.label.clone()).legend(move |(x, y)| {
            let end = if dashed { x + 7 } else { x + 16 };
            PathElement::new(vec![(x, y), (end, y)], color.stroke_width(2))
        });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present().with_context(|| format!("write {}", path.display()))?;
    Ok(())
}
