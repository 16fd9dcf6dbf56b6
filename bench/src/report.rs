//! Turns samples into medians, ranges and ratios: a markdown table and an SVG chart.
//!
//! Each cell is the median over rounds with the min–max range beside it.
//! Ratios divide a server's median by the floor's (`epoll_floor`) and by
//! tokio current-thread's median for the same scenario: for throughput
//! above 1 is faster, for CPU per op above 1 is costlier. The `http`
//! scenario has its own table, with ratios against `hyper_tokio` and the
//! issue's target for `lib_hyper` (≥ 0.9× its requests/s at ≤ 1.15× its CPU
//! per request) checked in a line below it.

use crate::driver::Sample;
use crate::loadgen::Scenario;
use crate::servers::{FLOOR, HTTP_REFERENCE, REFERENCE};
use std::fmt::Write as _;
use std::path::Path;

/// Median, min and max of one metric over rounds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stat {
    /// Median.
    pub med: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

impl Stat {
    /// Summarises `v`; `None` when empty.
    pub fn of(mut v: Vec<f64>) -> Option<Stat> {
        v.retain(|x| x.is_finite());
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let med = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stat {
            med,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// All metrics of one (scenario, server) cell.
#[derive(Debug, Clone)]
pub struct Row {
    /// Server name.
    pub server: String,
    /// Ops per second.
    pub ops_per_sec: Option<Stat>,
    /// Echoed MB per second.
    pub mb_per_sec: Option<Stat>,
    /// Server CPU microseconds per op.
    pub cpu_us_per_op: Option<Stat>,
    /// Latency percentiles in microseconds.
    pub p50: Option<Stat>,
    /// p99 latency (µs).
    pub p99: Option<Stat>,
    /// p99.9 latency (µs).
    pub p999: Option<Stat>,
    /// Server syscalls per op.
    pub syscalls_per_op: Option<Stat>,
    /// Server context switches per op.
    pub ctx_switches_per_op: Option<Stat>,
    /// Generator CPU as a share of the window (%).
    pub gen_cpu_pct: Option<Stat>,
    /// Idle: RSS growth per held connection (bytes).
    pub rss_per_conn: Option<Stat>,
    /// Idle: server CPU during the hold (ms).
    pub server_cpu_ms: Option<Stat>,
    /// Idle: connections held.
    pub connections: usize,
}

fn per_op(x: f64, ops: u64) -> f64 {
    if ops == 0 {
        f64::NAN
    } else {
        x / ops as f64
    }
}

/// Aggregates samples into rows, per scenario, in server order.
pub fn rows(samples: &[Sample], scenario: Scenario, servers: &[String]) -> Vec<Row> {
    servers
        .iter()
        .filter_map(|name| {
            let s: Vec<&Sample> = samples
                .iter()
                .filter(|s| &s.server == name && s.outcome.scenario == scenario)
                .collect();
            if s.is_empty() {
                return None;
            }
            let col = |f: &dyn Fn(&Sample) -> f64| Stat::of(s.iter().map(|x| f(x)).collect());
            let q = |x: &Sample, q: f64| match (
                x.outcome.hist.quantile(q),
                x.outcome.quoted_latency_us,
            ) {
                (Some(ns), _) => ns as f64 / 1000.0,
                // http: wrk's p50 and p99.
                (None, Some([p50, _])) if q == 0.5 => p50,
                (None, Some([_, p99])) if q == 0.99 => p99,
                _ => f64::NAN,
            };
            Some(Row {
                server: name.clone(),
                ops_per_sec: col(&|x| x.outcome.ops as f64 / x.outcome.window.as_secs_f64()),
                mb_per_sec: col(&|x| x.outcome.bytes as f64 / 1e6 / x.outcome.window.as_secs_f64()),
                cpu_us_per_op: col(&|x| per_op(x.server_cpu.as_secs_f64() * 1e6, x.outcome.ops)),
                p50: col(&|x| q(x, 0.5)),
                p99: col(&|x| q(x, 0.99)),
                p999: col(&|x| q(x, 0.999)),
                syscalls_per_op: col(&|x| {
                    x.syscalls
                        .map_or(f64::NAN, |c| per_op(c as f64, x.outcome.ops))
                }),
                ctx_switches_per_op: col(&|x| {
                    x.ctx_switches
                        .map_or(f64::NAN, |c| per_op(c as f64, x.outcome.ops))
                }),
                gen_cpu_pct: col(&|x| {
                    100.0 * x.outcome.gen_cpu.as_secs_f64() / x.outcome.window.as_secs_f64()
                }),
                rss_per_conn: col(&|x| {
                    (x.rss_after as f64 - x.rss_before as f64) / x.outcome.connections.max(1) as f64
                }),
                server_cpu_ms: col(&|x| x.server_cpu.as_secs_f64() * 1e3),
                connections: s[0].outcome.connections,
            })
        })
        .collect()
}

/// A number in 3–4 significant digits, with k and M for thousands and millions.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn cell(s: Option<Stat>) -> String {
    match s {
        Some(s) => format!("{} ({}–{})", num(s.med), num(s.min), num(s.max)),
        None => "–".into(),
    }
}

fn med(s: Option<Stat>) -> String {
    s.map_or("–".into(), |s| num(s.med))
}

/// A small per-op figure (context switches) with three decimals.
fn med3(s: Option<Stat>) -> String {
    s.map_or("–".into(), |s| format!("{:.3}", s.med))
}

fn ratio(rows: &[Row], row: &Row, base: &str, f: fn(&Row) -> Option<Stat>) -> String {
    let b = rows.iter().find(|r| r.server == base).and_then(f);
    match (f(row), b) {
        (Some(x), Some(b)) if b.med > 0.0 => format!("{:.2}×", x.med / b.med),
        _ => "–".into(),
    }
}

/// The whole report as markdown: one table per scenario.
pub fn markdown(
    samples: &[Sample],
    scenarios: &[Scenario],
    servers: &[String],
    header: &str,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "{header}");
    for &sc in scenarios {
        let rows = rows(samples, sc, servers);
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(md, "\n### {sc}\n");
        if sc == Scenario::Idle {
            let _ = writeln!(
                md,
                "| server | held | RSS bytes/conn | × floor | × tokio_ct | server CPU ms in window |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
            for r in &rows {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} |",
                    r.server,
                    r.connections,
                    cell(r.rss_per_conn),
                    ratio(&rows, r, FLOOR, |r| r.rss_per_conn),
                    ratio(&rows, r, REFERENCE, |r| r.rss_per_conn),
                    cell(r.server_cpu_ms),
                );
            }
            md += &thread_section(samples, sc, servers);
            continue;
        }
        if sc == Scenario::Http {
            http_table(&mut md, &rows);
            continue;
        }
        let unit = if sc == Scenario::Churn {
            "conns/s"
        } else {
            "msgs/s"
        };
        let _ = writeln!(
            md,
            "| server | {unit} | × floor | × tokio_ct | CPU µs/op | × floor | × tokio_ct | p50 µs | p99 µs | p999 µs | syscalls/op | ctx sw/op | MB/s | gen CPU % |"
        );
        let _ = writeln!(
            md,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in &rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.server,
                cell(r.ops_per_sec),
                ratio(&rows, r, FLOOR, |r| r.ops_per_sec),
                ratio(&rows, r, REFERENCE, |r| r.ops_per_sec),
                cell(r.cpu_us_per_op),
                ratio(&rows, r, FLOOR, |r| r.cpu_us_per_op),
                ratio(&rows, r, REFERENCE, |r| r.cpu_us_per_op),
                med(r.p50),
                med(r.p99),
                med(r.p999),
                med(r.syscalls_per_op),
                med3(r.ctx_switches_per_op),
                med(r.mb_per_sec),
                med(r.gen_cpu_pct),
            );
        }
        md += &thread_section(samples, sc, servers);
    }
    md
}

/// The sample of `server` on `scenario` from its median round: the middle one by throughput
/// (by server CPU when throughputs tie, as in idle), the lower middle for an even count.
pub fn median_round<'a>(
    samples: &'a [Sample],
    scenario: Scenario,
    server: &str,
) -> Option<&'a Sample> {
    let mut s: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.server == server && s.outcome.scenario == scenario)
        .collect();
    let rate = |x: &Sample| x.outcome.ops as f64 / x.outcome.window.as_secs_f64().max(1e-9);
    s.sort_by(|a, b| {
        rate(a)
            .total_cmp(&rate(b))
            .then(a.server_cpu.cmp(&b.server_cpu))
    });
    s.get(s.len().saturating_sub(1) / 2).copied()
}

/// Below a scenario's table: each server's threads and the CPU each used in the window of
/// the median round, one line per server (empty when no sample has thread figures).
pub fn thread_section(samples: &[Sample], scenario: Scenario, servers: &[String]) -> String {
    let mut lines = String::new();
    for name in servers {
        let Some(s) = median_round(samples, scenario, name) else {
            continue;
        };
        if s.threads.is_empty() {
            continue;
        }
        let threads: Vec<String> = s
            .threads
            .iter()
            .map(|(t, cpu)| format!("{t} {:.0}", cpu.as_secs_f64() * 1e3))
            .collect();
        let _ = writeln!(lines, "- {name}: {}", threads.join(", "));
    }
    if lines.is_empty() {
        return lines;
    }
    format!("\nPer-thread CPU (ms in window, median round):\n\n{lines}")
}

/// The target for `lib_hyper` against `hyper_tokio`: at least this share of its requests/s…
pub const HTTP_TARGET_RPS: f64 = 0.9;
/// …at no more than this multiple of its CPU per request.
pub const HTTP_TARGET_CPU: f64 = 1.15;

fn http_table(md: &mut String, rows: &[Row]) {
    let r0 = HTTP_REFERENCE;
    let _ = writeln!(
        md,
        "| server | requests/s | × {r0} | CPU µs/req | × {r0} | p50 µs | p99 µs | syscalls/req | ctx sw/req | MB/s read | wrk CPU % |"
    );
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.server,
            cell(r.ops_per_sec),
            ratio(rows, r, r0, |r| r.ops_per_sec),
            cell(r.cpu_us_per_op),
            ratio(rows, r, r0, |r| r.cpu_us_per_op),
            med(r.p50),
            med(r.p99),
            med(r.syscalls_per_op),
            med3(r.ctx_switches_per_op),
            med(r.mb_per_sec),
            med(r.gen_cpu_pct),
        );
    }
    let base = rows.iter().find(|r| r.server == r0);
    let lib = rows.iter().find(|r| r.server == "lib_hyper");
    if let (Some(b), Some(l)) = (base, lib) {
        let (Some(lr), Some(br), Some(lc), Some(bc)) = (
            l.ops_per_sec,
            b.ops_per_sec,
            l.cpu_us_per_op,
            b.cpu_us_per_op,
        ) else {
            return;
        };
        let rps = lr.med / br.med;
        let cpu = lc.med / bc.med;
        let met = rps >= HTTP_TARGET_RPS && cpu <= HTTP_TARGET_CPU;
        let _ = writeln!(
            md,
            "\nTarget (lib_hyper ≥ {HTTP_TARGET_RPS}× {r0}'s requests/s at ≤ {HTTP_TARGET_CPU}× its CPU per request): \
             {rps:.2}× requests/s, {cpu:.2}× CPU/req: **{}**.",
            if met { "met" } else { "not met" }
        );
    }
}

/// One bar panel of the chart.
struct Panel {
    title: String,
    bars: Vec<(String, Stat)>,
}

/// Writes an SVG with, per scenario, throughput and server CPU per op
/// (idle: RSS per held connection), one bar per server with a min–max whisker.
pub fn svg(
    path: &Path,
    samples: &[Sample],
    scenarios: &[Scenario],
    servers: &[String],
) -> Result<(), String> {
    use plotters::prelude::*;

    let mut panels = Vec::new();
    for &sc in scenarios {
        let rows = rows(samples, sc, servers);
        let mut add = |title: String, f: fn(&Row) -> Option<Stat>| {
            let bars: Vec<(String, Stat)> = rows
                .iter()
                .filter_map(|r| f(r).map(|s| (r.server.clone(), s)))
                .collect();
            if !bars.is_empty() {
                panels.push(Panel { title, bars });
            }
        };
        if sc == Scenario::Idle {
            add(format!("{sc}: RSS bytes per held connection"), |r| {
                r.rss_per_conn
            });
        } else {
            let unit = match sc {
                Scenario::Churn => "conns/s",
                Scenario::Http => "requests/s",
                _ => "msgs/s",
            };
            add(format!("{sc}: {unit} (higher is better)"), |r| {
                r.ops_per_sec
            });
            add(format!("{sc}: server CPU µs/op (lower is better)"), |r| {
                r.cpu_us_per_op
            });
        }
    }
    if panels.is_empty() {
        return Ok(());
    }
    let cols = 2usize;
    let nrows = panels.len().div_ceil(cols);
    let root = SVGBackend::new(path, (1100, 300 * nrows as u32)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("writing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let areas = root.split_evenly((nrows, cols));
    for (area, panel) in areas.iter().zip(&panels) {
        let n = panel.bars.len();
        let ymax = panel
            .bars
            .iter()
            .map(|(_, s)| s.max)
            .fold(0.0, f64::max)
            .max(1e-9)
            * 1.15;
        let names: Vec<String> = panel.bars.iter().map(|(n, _)| n.clone()).collect();
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            // An integer range is inclusive in plotters: 0..n-1 makes n slots.
            .build_cartesian_2d((0..(n as i32 - 1).max(1)).into_segmented(), 0f64..ymax)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_label_formatter(&|y| num(*y))
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(panel.bars.iter().enumerate().map(|(i, (_, s))| {
                let i = i as i32;
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), s.med),
                    ],
                    Palette99::pick(i as usize).filled(),
                );
                bar.set_margin(0, 0, 12, 12);
                bar
            }))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(panel.bars.iter().enumerate().map(|(i, (_, s))| {
                let x = SegmentValue::CenterOf(i as i32);
                PathElement::new(vec![(x.clone(), s.min), (x, s.max)], BLACK.stroke_width(2))
            }))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
