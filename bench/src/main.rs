//! `bench`: the driver and load generator.
//!
//! Runs every scenario against every server (built-in table plus any
//! `--server NAME=PATH [ARGS]`), alternating servers over rounds, then
//! prints a markdown table and writes it with an SVG chart to the results
//! directory. Any verification failure or misbehaving server ends the run
//! with a non-zero exit status and a message naming what broke.
//! See the crate docs of `bench` for the method.

use bench::driver::{self, Plan};
use bench::loadgen::{Params, Scenario};
use bench::servers::{self, ServerCmd, BUILTIN};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: bench [options]

  --rounds N             rounds of A B A B alternation (default 5)
  --duration D           timed window per measurement, e.g. 2s, 500ms (default 2s, max 60s)
  --scenarios LIST       comma list of pingpong,pingpong1000,pipelined,bulk,churn,idle
                         (default all)
  --servers LIST         built-in servers to run, comma list (default: every one that is built)
  --server NAME=CMD      extra server, CMD = \"PATH [ARGS]\", run as PATH 127.0.0.1:0 ARGS,\n                         or with the address where an ARG says {addr} (repeatable)
  --connections C        connections for pingpong/pipelined (default 100)
  --size S               message bytes for pingpong/pipelined/churn (default 64)
  --depth K              messages in flight per connection when pipelined (default 16)
  --bulk-connections C   connections for bulk (default 4)
  --churn-inflight N     connections in flight during churn (default 32)
  --idle-conns N         connections held by idle (default 10000)
  --source-addrs N       spread client sockets over 127.0.0.2..=127.0.0.(1+N) (default 8)
  --no-perf              do not count syscalls with perf
  --out DIR              results directory (default bench/results)
  --smoke                tiny run of every scenario (1 round, 150 ms windows)
  --list                 print the built-in server table and exit
";

fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {s:?} (try 2s or 500ms)");
    let d = if let Some(ms) = s.strip_suffix("ms") {
        Duration::from_millis(ms.parse().map_err(|_| bad())?)
    } else if let Some(secs) = s.strip_suffix('s') {
        Duration::from_secs_f64(secs.parse().map_err(|_| bad())?)
    } else {
        Duration::from_secs_f64(s.parse().map_err(|_| bad())?)
    };
    if d > Duration::from_secs(60) {
        return Err("--duration is capped at 60s".into());
    }
    Ok(d)
}

struct Cli {
    plan: Plan,
    out: PathBuf,
    skipped: Vec<String>,
}

fn parse_args(args: Vec<String>) -> Result<Option<Cli>, String> {
    let smoke = args.iter().any(|a| a == "--smoke");
    let mut params = if smoke {
        Params::smoke()
    } else {
        Params::default()
    };
    let mut rounds = if smoke { 1 } else { 5 };
    let mut scenarios = Scenario::ALL.to_vec();
    let mut wanted: Option<Vec<String>> = None;
    let mut extra = Vec::new();
    let mut perf = true;
    let mut out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results"));
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|_| format!("bad number {v:?}"));
        match a.as_str() {
            "--smoke" => {}
            "--help" | "-h" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "--list" => {
                for b in BUILTIN {
                    let state = b
                        .resolve()
                        .map_or_else(|e| format!("missing: {e}"), |_| "ok".into());
                    println!("{:14} {:70} [{state}]", b.name, b.about);
                }
                return Ok(None);
            }
            "--rounds" => rounds = num(val()?)?.max(1),
            "--duration" => params.duration = parse_duration(&val()?)?,
            "--scenarios" => {
                scenarios = val()?
                    .split(',')
                    .map(|s| {
                        Scenario::parse(s.trim()).ok_or_else(|| format!("unknown scenario {s:?}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--servers" => wanted = Some(val()?.split(',').map(|s| s.trim().to_string()).collect()),
            "--server" => extra.push(ServerCmd::parse(&val()?)?),
            "--connections" => params.connections = num(val()?)?.max(1),
            "--size" => params.msg_size = num(val()?)?.max(1),
            "--depth" => params.depth = num(val()?)?.max(1),
            "--bulk-connections" => params.bulk_connections = num(val()?)?.max(1),
            "--churn-inflight" => params.churn_inflight = num(val()?)?.max(1),
            "--idle-conns" => params.idle_connections = num(val()?)?.max(1),
            "--source-addrs" => params.source_addrs = num(val()?)?.min(250) as u8,
            "--no-perf" => perf = false,
            "--out" => out = PathBuf::from(val()?),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let mut servers = Vec::new();
    let mut skipped = Vec::new();
    match &wanted {
        Some(names) => {
            for n in names {
                if let Some(b) = servers::builtin(n) {
                    servers.push(b.resolve()?);
                } else if !extra.iter().any(|e| &e.name == n) {
                    return Err(format!("unknown server {n:?} (see --list)"));
                }
            }
        }
        None => {
            for b in BUILTIN {
                match b.resolve() {
                    Ok(cmd) => servers.push(cmd),
                    Err(e) => skipped.push(format!("{}: {e}", b.name)),
                }
            }
        }
    }
    servers.extend(extra);
    if servers.is_empty() {
        return Err("no servers to run".into());
    }
    Ok(Some(Cli {
        plan: Plan {
            servers,
            scenarios,
            rounds,
            params,
            perf,
        },
        out,
        skipped,
    }))
}

fn header(plan: &Plan, perf_note: &str) -> String {
    let p = &plan.params;
    format!(
        "## epoll-server benchmark\n\n\
         {} round(s) × {:?} window per server and scenario, servers alternated; cells are median (min–max). \
         Ratios are medians over epoll_floor's / tokio_ct's. \
         pingpong: {} conns × {} B, 1 in flight; pipelined: {} conns × {} B, {} in flight; \
         bulk: {} conns × 64 KiB writes, 4 in flight; churn: {} in flight × {} B; idle: {} conns. \
         CPU from /proc/PID/stat ({} ms ticks); syscalls: {perf_note}. Machine: {} cores, generator single-threaded on the same machine.",
        plan.rounds,
        p.duration,
        p.connections,
        p.msg_size,
        p.connections,
        p.msg_size,
        p.depth,
        p.bulk_connections,
        p.churn_inflight,
        p.msg_size,
        p.idle_connections,
        1000 / bench::sys::clock_ticks_per_sec(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    )
}

fn main() -> ExitCode {
    let _ = bench::sys::raise_nofile_limit();
    let cli = match parse_args(std::env::args().skip(1).collect()) {
        Ok(Some(cli)) => cli,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    let mut plan = cli.plan;
    for s in &cli.skipped {
        eprintln!("bench: skipping {s}");
    }
    let perf_note = if plan.perf && driver::perf_supported() {
        "perf stat raw_syscalls:sys_enter over the window"
    } else {
        if plan.perf {
            eprintln!(
                "bench: perf raw_syscalls:sys_enter not usable here; syscalls/op not measured"
            );
        }
        plan.perf = false;
        "not measured"
    };
    let samples = match driver::run(&plan, |s| {
        eprintln!(
            "  {:10} round {} {:14} {:>10} ops in {:.2?}, server cpu {:.0?}, gen cpu {:.0?}",
            s.outcome.scenario.name(),
            s.round + 1,
            s.server,
            s.outcome.ops,
            s.outcome.window,
            s.server_cpu,
            s.outcome.gen_cpu,
        )
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench: FAILED: {e}");
            return ExitCode::FAILURE;
        }
    };
    let names: Vec<String> = plan.servers.iter().map(|s| s.name.clone()).collect();
    let md = bench::report::markdown(&samples, &plan.scenarios, &names, &header(&plan, perf_note));
    println!("{md}");
    if let Err(e) = std::fs::create_dir_all(&cli.out) {
        eprintln!("bench: cannot create {}: {e}", cli.out.display());
        return ExitCode::FAILURE;
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let md_path = cli.out.join(format!("results-{stamp}.md"));
    let svg_path = cli.out.join(format!("chart-{stamp}.svg"));
    if let Err(e) = std::fs::write(&md_path, &md) {
        eprintln!("bench: writing {}: {e}", md_path.display());
        return ExitCode::FAILURE;
    }
    if let Err(e) = bench::report::svg(&svg_path, &samples, &plan.scenarios, &names) {
        eprintln!("bench: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "bench: wrote {} and {}",
        md_path.display(),
        svg_path.display()
    );
    eprintln!("bench: all {} runs verified every byte: OK", samples.len());
    ExitCode::SUCCESS
}
