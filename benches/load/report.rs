//! The report: the runs side by side, as an SVG plot (dashboard latency against offered
//! visitors) and a Markdown table.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::Kind;
use crate::hold::HoldResult;
use crate::sim::{LevelResult, P99_GOAL_MS, RunResult};

/// The level a run is quoted at: the largest held, else its first.
fn quoted(r: &RunResult) -> Option<&LevelResult> {
    r.levels
        .iter()
        .filter(|l| l.held)
        .max_by_key(|l| l.visitors)
        .or(r.levels.first())
}

/// Writes `load.svg` and `table.md` into `out_dir` and prints the table.
pub fn report(out_dir: &Path, files: &[PathBuf], holds: &[PathBuf]) -> Result<(), String> {
    let mut held = Vec::new();
    for f in holds {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let h: HoldResult =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        held.push(h);
    }
    let mut runs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let r: RunResult =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        runs.push(r);
    }
    std::fs::create_dir_all(out_dir).map_err(|e| e.to_string())?;
    let mut table = table(&runs);
    if !held.is_empty() {
        table.push('\n');
        table.push_str(&hold_table(&held));
    }
    std::fs::write(out_dir.join("table.md"), &table).map_err(|e| e.to_string())?;
    print!("{table}");
    plot(&out_dir.join("load.svg"), &runs).map_err(|e| format!("plot: {e}"))?;
    Ok(())
}

/// Bytes per live visitor at level `l`: the RSS growth from the run's first level to `l` over
/// the visitors added (what one more visitor costs, without the process's fixed memory), and
/// the plain RSS growth over the start divided by the visitors live.
fn marginal_bytes(r: &RunResult, l: &LevelResult) -> String {
    match r.levels.first() {
        Some(f) if l.live_end > f.live_end => format!(
            "{:.0} B ({} → {} live; {:.0} B over the start)",
            (l.server_rss as f64 - f.server_rss as f64) / (l.live_end - f.live_end) as f64,
            f.live_end,
            l.live_end,
            l.bytes_per_visitor
        ),
        _ => format!(
            "{:.0} B over the start ({} live)",
            l.bytes_per_visitor, l.live_end
        ),
    }
}

fn table(runs: &[RunResult]) -> String {
    let bare = runs
        .iter()
        .find(|r| r.kind == Kind::Bare)
        .and_then(|r| r.ingest.as_ref())
        .map(|i| i.rps);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| server | most visitors held (dashboard p99 ≤ {P99_GOAL_MS} ms) | dashboard p50 / p99 there | heartbeat ingest | vs bare axum | bytes per live visitor | removal lag p99 | server CPU there |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|");
    for r in runs {
        let held = r.levels.iter().filter(|l| l.held).map(|l| l.visitors).max();
        let q = quoted(r);
        let dash = |l: &LevelResult| {
            if r.kind == Kind::Bare {
                "–".to_owned()
            } else {
                format!("{:.1} / {:.1} ms", l.dash_p50_ms, l.dash_p99_ms)
            }
        };
        let ingest = r.ingest.as_ref().map(|i| i.rps);
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            match (r.kind, held) {
                (Kind::Bare, _) => "– (no dashboards)".to_owned(),
                (_, Some(v)) => format!("{v}"),
                (_, None) => format!("< {}", r.levels.first().map_or(0, |l| l.visitors)),
            },
            q.map_or("–".to_owned(), dash),
            ingest.map_or("–".to_owned(), |v| format!("{v:.0} req/s")),
            match (ingest, bare) {
                (Some(a), Some(b)) => format!("{:.0} %", 100.0 * a / b),
                _ => "–".to_owned(),
            },
            q.filter(|_| r.kind != Kind::Bare)
                .map_or("–".to_owned(), |l| marginal_bytes(r, l)),
            q.filter(|_| r.kind != Kind::Bare)
                .map_or("–".to_owned(), |l| format!("{:.1} ms", l.removal_p99_ms)),
            q.filter(|_| r.kind != Kind::Bare)
                .map_or("–".to_owned(), |l| format!("{:.0} %", l.server_cpu_pct)),
        );
    }
    let _ = writeln!(t);
    for r in runs {
        let _ = writeln!(
            t,
            "{}: load average {} at the start, {} at the end; timings compressed {}× (heartbeat {} ms, expiry {} ms, linger {} ms, mean stay {} ms), {} dashboards.",
            r.name,
            r.loadavg[0],
            r.loadavg[1],
            r.compress,
            r.heartbeat_ms,
            r.grace_ms,
            r.linger_ms,
            r.mean_stay_ms,
            r.dashboards
        );
    }
    t
}

fn plot(path: &Path, runs: &[RunResult]) -> Result<(), Box<dyn std::error::Error>> {
    let with_dash: Vec<&RunResult> = runs.iter().filter(|r| r.kind != Kind::Bare).collect();
    let x_max = with_dash
        .iter()
        .flat_map(|r| r.levels.iter().map(|l| l.visitors))
        .max()
        .unwrap_or(1000) as f64
        * 1.5;
    let x_min = with_dash
        .iter()
        .flat_map(|r| r.levels.iter().map(|l| l.visitors))
        .min()
        .unwrap_or(100) as f64
        / 1.5;
    let y_max = with_dash
        .iter()
        .flat_map(|r| r.levels.iter().map(|l| l.dash_p99_ms))
        .fold(100.0f64, f64::max)
        * 2.0;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Transition → dashboard latency against offered load (open loop)",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((x_min..x_max).log_scale(), (0.1f64..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("mean concurrent visitors (offered)")
        .y_desc("dashboard latency, ms")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v}"))
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            [(x_min, P99_GOAL_MS), (x_max, P99_GOAL_MS)],
            BLACK.mix(0.4).stroke_width(1),
        ))?
        .label(format!("{P99_GOAL_MS} ms"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.4)));
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
    ];
    for (r, color) in with_dash.iter().zip(colors.iter().cycle()) {
        let color = *color;
        let p99: Vec<(f64, f64)> = r
            .levels
            .iter()
            .map(|l| (l.visitors as f64, l.dash_p99_ms.max(0.1)))
            .collect();
        let p50: Vec<(f64, f64)> = r
            .levels
            .iter()
            .map(|l| (l.visitors as f64, l.dash_p50_ms.max(0.1)))
            .collect();
        chart
            .draw_series(LineSeries::new(p99.clone(), color.stroke_width(2)))?
            .label(format!("{} p99", r.name))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(p99.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        chart
            .draw_series(LineSeries::new(p50.clone(), color.mix(0.5).stroke_width(1)))?
            .label(format!("{} p50", r.name))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.mix(0.5)));
        chart.draw_series(
            p50.iter()
                .map(|&p| Circle::new(p, 2, color.mix(0.5).filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}

/// The `load hold` results: bytes per live visitor with many visitors live at once.
fn hold_table(held: &[HoldResult]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| server | live visitors held | RSS before → half live → all live | bytes per live visitor | one more live visitor (second half) | 1M live visitors would take | page views / heartbeats answered per second |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|");
    for h in held {
        let _ = writeln!(
            t,
            "| {} | {} of {}{} | {:.1} → {} → {:.1} MB | {:.0} B | {} | {:.2} GiB | {:.0} / {:.0} |",
            h.name,
            h.held,
            h.visitors,
            if h.errors > 0 {
                format!(" ({} errors)", h.errors)
            } else {
                String::new()
            },
            h.rss_before as f64 / 1e6,
            if h.rss_half > 0 {
                format!("{:.1}", h.rss_half as f64 / 1e6)
            } else {
                "–".to_owned()
            },
            h.rss_held as f64 / 1e6,
            h.bytes_per_visitor,
            if h.rss_half > 0 {
                format!("{:.0} B", h.marginal_bytes_per_visitor)
            } else {
                "–".to_owned()
            },
            // The second half's growth carried on to a million (older results: the average).
            if h.rss_half > 0 {
                (h.rss_half as f64 + h.marginal_bytes_per_visitor * (1e6 - h.held_half as f64))
                    / (1u64 << 30) as f64
            } else {
                h.bytes_per_visitor * 1e6 / (1u64 << 30) as f64
            },
            h.create_rps,
            h.heartbeat_rps,
        );
    }
    let _ = writeln!(t);
    for h in held.iter().filter(|h| h.sockets > 0) {
        let _ = writeln!(
            t,
            "{}: with {} visitor sockets open (`/ws/visitor`, the tracker's one per tab), {:.0} B more per socket.",
            h.name, h.sockets, h.bytes_per_socket
        );
    }
    for h in held {
        let _ = writeln!(
            t,
            "{} (held): load average {} at the start, {} at the end.",
            h.name, h.loadavg[0], h.loadavg[1]
        );
    }
    t
}
