//! `bench`: the driver and load generator.
//!
//! Runs every scenario against every server (built-in table plus any
//! `--server NAME=PATH [ARGS]`), alternating servers over rounds, then
//! prints a markdown table and writes it with an SVG chart to the results
//! directory. Any verification failure or misbehaving server ends the run
//! with a non-zero exit status and a message naming what broke.
//! With `--soak`, runs the soak scenario instead (one server, a steady
//! mix of clients for minutes; see `bench::soak`).
//! See the crate docs of `bench` for the method.

use bench::driver::{self, Plan};
use bench::loadgen::{Params, Scenario};
use bench::servers::{self, Proto, ServerCmd, BUILTIN};
use bench::soak::{self, Mix, SoakParams, Timeouts};
use bench::spread::SpreadParams;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: bench [options]

  --rounds N             rounds of A B A B alternation (default 5)
  --duration D           timed window per measurement, e.g. 2s, 500ms (default 2s, max 60s)
  --scenarios LIST       comma list of pingpong,pingpong1000,pipelined,bulk,churn,idle,http
                         (default all but http; http needs wrk, installed with apt-get when
                         missing, and runs only the HTTP servers hyper_tokio and lib_hyper),
                         or spread (not in the default list: runs only lib_callback, see below)
  --servers LIST         built-in servers to run, comma list (default: every one that is built)
  --server NAME=CMD      extra server, CMD = \"PATH [ARGS]\", run as PATH 127.0.0.1:0 ARGS,\n                         or with the address where an ARG says {addr} (repeatable)
  --connections C        connections for pingpong/pipelined (default 100)
  --size S               message bytes for pingpong/pipelined/churn (default 64)
  --depth K              messages in flight per connection when pipelined (default 16)
  --bulk-connections C   connections for bulk (default 4)
  --churn-inflight N     connections in flight during churn (default 32)
  --idle-conns N         connections held by idle (default 10000)
  --source-addrs N       spread client sockets over 127.0.0.2..=127.0.0.(1+N) (default 8)
  --reactors LIST        reactor threads for our servers (lib_callback, lib_tokio, lib_smol;
                         passed as --reactors N; not passed by default: 1); a list like 1,2 runs
                         each of them once per value, named lib_callback_r1, _r2... (peers once)
  --pin                  generator on the first allowed CPU (0), each server process with all
                         its threads on the second (1); needs at least 2 CPUs
  --spread-connections N spread: connections per round (default 1000); the scenario starts
                         echo_callback --reactors R --accept-spread reuseport|shared --stats,
                         R = each --reactors value of at least 2 (2 if none), and reports how
                         evenly the reactors accepted them, --rounds times per mode
  --http-connections C   http: wrk connections (default 100)
  --http-threads T       http: wrk threads (default 1)
  --http-duration D      http: wrk run per measurement, whole seconds (default 5s)
  --http-server NAME=CMD extra HTTP server for the http scenario, like --server (repeatable)
  --wrk PATH             wrk executable (default: wrk on PATH, installed when missing)
  --no-perf              do not count syscalls with perf
  --out DIR              results directory (default bench/results)
  --smoke                tiny run of every scenario (1 round, 150 ms windows)
  --list                 print the built-in server table and exit

soak: one server under a steady mix of clients for minutes (see the bench README)

  --soak                 run the soak instead of the benchmark
  --soak-duration D      length of the load, e.g. 10m, 30s (default 10m)
  --soak-interval D      sampling interval (default 10s)
  --soak-server NAME     built-in server or --server NAME (default lib_callback;
                         echo_callback and echo are aliases of lib_callback and lib_tokio)
  --soak-no-timeouts     no --idle-timeout/--first-byte-timeout/--write-stall-timeout
                         for the server, and no slowloris clients
  --soak-idle-timeout D  server idle timeout (default 1s)
  --soak-first-byte-timeout D   (default 1s)
  --soak-write-stall-timeout D  (default 2s)
  --soak-slack D         how late a slowloris close may come after its timeout (default 2s)
  --soak-light           the light client mix (for debug builds; what CI runs)
  --soak-name NAME       write OUT/NAME.md and OUT/NAME.svg (default soak-<unix time>)
  (--out, --server and --source-addrs apply too)
";

/// A duration: `500ms`, `2s`, `1.5` (seconds), `10m`, `1h`.
fn parse_any_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {s:?} (try 2s, 500ms or 10m)");
    let secs = |v: &str, scale: f64| -> Result<Duration, String> {
        let x: f64 = v.parse().map_err(|_| bad())?;
        Duration::try_from_secs_f64(x * scale).map_err(|_| bad())
    };
    if let Some(ms) = s.strip_suffix("ms") {
        Ok(Duration::from_millis(ms.parse().map_err(|_| bad())?))
    } else if let Some(v) = s.strip_suffix('s') {
        secs(v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        secs(v, 60.0)
    } else if let Some(v) = s.strip_suffix('h') {
        secs(v, 3600.0)
    } else {
        secs(s, 1.0)
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = parse_any_duration(s)?;
    if d > Duration::from_secs(60) {
        return Err("--duration is capped at 60s".into());
    }
    Ok(d)
}

struct Cli {
    plan: Plan,
    out: PathBuf,
    skipped: Vec<String>,
    /// `--reactors`, when given.
    reactors: Option<Vec<usize>>,
    /// `--pin`: (generator CPU, server CPU).
    pin: Option<(usize, usize)>,
    /// The `spread` scenario, when asked for: lib_callback and what to run.
    spread: Option<(ServerCmd, SpreadParams)>,
}

/// `--reactors`: one count or a comma list, each at least 1, repeats dropped.
fn parse_reactors(v: &str) -> Result<Vec<usize>, String> {
    let mut out: Vec<usize> = Vec::new();
    for w in v.split(',') {
        let n = w
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                format!("--reactors wants counts of at least 1, like 2 or 1,2,4; got {v:?}")
            })?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
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
    let mut reactors: Option<Vec<usize>> = None;
    let mut pin = false;
    let mut spread = false;
    let mut spread_params = SpreadParams::default();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|_| format!("bad number {v:?}"));
        match a.as_str() {
            "--smoke" => {}
            "--help" | "-h" => {
                print!("{USAGE}\n{}", bench::real::cli::USAGE);
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
                let list = val()?;
                spread = list.split(',').any(|s| s.trim() == "spread");
                scenarios = list
                    .split(',')
                    .filter(|s| s.trim() != "spread")
                    .map(|s| {
                        Scenario::parse(s.trim()).ok_or_else(|| format!("unknown scenario {s:?}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--reactors" => reactors = Some(parse_reactors(&val()?)?),
            "--pin" => pin = true,
            "--spread-connections" => spread_params.connections = num(val()?)?.max(1),
            "--servers" => wanted = Some(val()?.split(',').map(|s| s.trim().to_string()).collect()),
            "--server" => extra.push(ServerCmd::parse(&val()?)?),
            "--http-server" => extra.push(ServerCmd {
                proto: Proto::Http,
                ..ServerCmd::parse(&val()?)?
            }),
            "--http-connections" => params.http_connections = num(val()?)?.max(1),
            "--http-threads" => params.http_threads = num(val()?)?.max(1),
            "--http-duration" => params.http_duration = parse_duration(&val()?)?,
            "--wrk" => params.wrk = PathBuf::from(val()?),
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
    // Our servers once per `--reactors` value; every other server once, as it is.
    let expand = |b: &servers::Builtin, cmd: ServerCmd| match &reactors {
        Some(r) if b.takes_reactors() => servers::with_reactors(&cmd, r),
        _ => vec![cmd],
    };
    let mut servers = Vec::new();
    let mut skipped = Vec::new();
    match &wanted {
        // `--scenarios spread` alone runs lib_callback only, whatever --servers says.
        _ if scenarios.is_empty() => extra.clear(),
        Some(names) => {
            for n in names {
                if let Some(b) = servers::builtin(n) {
                    servers.extend(expand(b, b.resolve()?));
                } else if !extra.iter().any(|e| &e.name == n) {
                    return Err(format!("unknown server {n:?} (see --list)"));
                }
            }
        }
        None => {
            // Only the servers some chosen scenario runs (echo or HTTP).
            for b in BUILTIN
                .iter()
                .filter(|b| scenarios.iter().any(|s| s.proto() == b.proto))
            {
                match b.resolve() {
                    Ok(cmd) => servers.extend(expand(b, cmd)),
                    Err(e) => skipped.push(format!("{}: {e}", b.name)),
                }
            }
        }
    }
    servers.extend(extra);
    if servers.is_empty() && !scenarios.is_empty() {
        return Err("no servers to run".into());
    }
    let pin = if pin {
        let cpus =
            bench::sys::allowed_cpus().map_err(|e| format!("--pin: sched_getaffinity: {e}"))?;
        if cpus.len() < 2 {
            return Err(format!(
                "--pin needs at least 2 CPUs (one for the generator, one for the server); \
                 this machine lets the bench use {} ({cpus:?})",
                cpus.len()
            ));
        }
        Some((cpus[0], cpus[1]))
    } else {
        None
    };
    let spread = if spread {
        let cmd = servers::builtin("lib_callback")
            .expect("lib_callback is built in")
            .resolve()
            .map_err(|e| format!("the spread scenario runs lib_callback: {e}"))?;
        let mut r: Vec<usize> = reactors
            .iter()
            .flatten()
            .copied()
            .filter(|&n| n >= 2)
            .collect();
        if r.is_empty() {
            r.push(2);
        }
        spread_params.reactors = r;
        spread_params.rounds = rounds;
        spread_params.source_addrs = params.source_addrs;
        spread_params.server_cpu = pin.map(|(_, server)| server);
        Some((cmd, spread_params))
    } else {
        None
    };
    for sc in &scenarios {
        if !servers.iter().any(|s| s.proto == sc.proto()) {
            return Err(match sc.proto() {
                Proto::Http => format!(
                    "scenario {sc} needs an HTTP server (hyper_tokio, lib_hyper or --http-server)"
                ),
                Proto::Echo => format!("scenario {sc} needs an echo server"),
            });
        }
    }
    Ok(Some(Cli {
        plan: Plan {
            servers,
            scenarios,
            rounds,
            params,
            perf,
            server_cpu: pin.map(|(_, server)| server),
        },
        out,
        skipped,
        reactors,
        pin,
        spread,
    }))
}

struct SoakCli {
    server: ServerCmd,
    params: SoakParams,
    out: PathBuf,
    name: Option<String>,
}

fn parse_soak_args(args: Vec<String>) -> Result<SoakCli, String> {
    let mut params = SoakParams::default();
    let mut timeouts = Timeouts::default();
    let mut with_timeouts = true;
    let mut server = "lib_callback".to_string();
    let mut extra: Vec<ServerCmd> = Vec::new();
    let mut out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results"));
    let mut name = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--soak" => {}
            "--soak-duration" => params.duration = parse_any_duration(&val()?)?,
            "--soak-interval" => params.interval = parse_any_duration(&val()?)?,
            "--soak-server" => server = val()?,
            "--soak-no-timeouts" => with_timeouts = false,
            "--soak-idle-timeout" => timeouts.idle = parse_any_duration(&val()?)?,
            "--soak-first-byte-timeout" => timeouts.first_byte = parse_any_duration(&val()?)?,
            "--soak-write-stall-timeout" => timeouts.write_stall = parse_any_duration(&val()?)?,
            "--soak-slack" => params.slack = parse_any_duration(&val()?)?,
            "--soak-light" => params.mix = Mix::light(),
            "--soak-name" => name = Some(val()?),
            "--server" => extra.push(ServerCmd::parse(&val()?)?),
            "--out" => out = PathBuf::from(val()?),
            "--source-addrs" => {
                let v = val()?;
                params.source_addrs = v
                    .parse::<usize>()
                    .map_err(|_| format!("bad number {v:?}"))?
                    .min(250) as u8
            }
            other => {
                return Err(format!(
                    "unknown or non-soak argument {other:?} with --soak\n{USAGE}"
                ))
            }
        }
    }
    params.timeouts = with_timeouts.then_some(timeouts);
    let builtin = match server.as_str() {
        "echo_callback" => "lib_callback",
        "echo" => "lib_tokio",
        other => other,
    };
    let server = if let Some(cmd) = extra.into_iter().find(|e| e.name == server) {
        cmd
    } else if let Some(b) = servers::builtin(builtin) {
        b.resolve()
            .map_err(|e| format!("server did not start: {}: {e}", b.name))?
    } else {
        return Err(format!("unknown server {server:?} (see --list)"));
    };
    params.validate()?;
    Ok(SoakCli {
        server,
        params,
        out,
        name,
    })
}

fn run_soak(args: Vec<String>) -> ExitCode {
    let cli = match parse_soak_args(args) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("bench: soak: {e}");
            return ExitCode::from(2);
        }
    };
    let p = &cli.params;
    eprintln!(
        "bench: soak: {} for {:?}, samples every {:?}, {}",
        cli.server.name,
        p.duration,
        p.interval,
        match p.timeouts {
            Some(t) => format!(
                "server timeouts idle {:?}, first byte {:?}, write stall {:?}",
                t.idle, t.first_byte, t.write_stall
            ),
            None => "no server timeouts, no slowloris clients".into(),
        }
    );
    eprintln!(
        "bench: soak: clients: {}",
        p.mix.describe(p.timeouts.is_some())
    );
    let report = match soak::run(&cli.server, p, |s| eprintln!("{}", s.line())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: soak: FAILED: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = cli.name.unwrap_or_else(|| format!("soak-{now}"));
    let md_path = cli.out.join(format!("{name}.md"));
    let svg_name = format!("{name}.svg");
    let svg_path = cli.out.join(&svg_name);
    let command = std::iter::once("bench".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let md = report.markdown(&command, &soak::utc_stamp(now), Some(&svg_name));
    println!("{md}");
    let written = std::fs::create_dir_all(&cli.out)
        .map_err(|e| format!("cannot create {}: {e}", cli.out.display()))
        .and_then(|()| {
            std::fs::write(&md_path, &md).map_err(|e| format!("writing {}: {e}", md_path.display()))
        })
        .and_then(|()| report.svg(&svg_path));
    if let Err(e) = written {
        eprintln!("bench: soak: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "bench: soak: wrote {} and {}",
        md_path.display(),
        svg_path.display()
    );
    for c in &report.checks {
        eprintln!(
            "bench: soak: {} {}: {}",
            if c.pass { "pass" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    if report.passed() {
        eprintln!("bench: soak: PASSED");
        ExitCode::SUCCESS
    } else {
        eprintln!("bench: soak: FAILED");
        ExitCode::FAILURE
    }
}

fn header(
    plan: &Plan,
    perf_note: &str,
    cores: usize,
    reactors: Option<&[usize]>,
    pin: Option<(usize, usize)>,
) -> String {
    let p = &plan.params;
    let mut h = format!(
        "## epoll-server benchmark\n\n\
         {} round(s), servers alternated, a fresh server process per measurement; cells are median (min–max). \
         CPU from /proc/PID/stat ({} ms ticks); syscalls: {perf_note}. Machine: {} cores, generator on the same machine.",
        plan.rounds,
        1000 / bench::sys::clock_ticks_per_sec(),
        cores,
    );
    if plan.scenarios.iter().any(|s| *s != Scenario::Http) {
        h += &format!(
            " Echo scenarios: {:?} window, our single-threaded verifying generator; \
             ratios are medians over epoll_floor's / tokio_ct's. \
             pingpong: {} conns × {} B, 1 in flight; pipelined: {} conns × {} B, {} in flight; \
             bulk: {} conns × 64 KiB writes, 4 in flight; churn: {} in flight × {} B; idle: {} conns.",
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
        );
    }
    match reactors {
        Some([n]) => {
            h += &format!(
            " Reactors: our servers (lib_callback, lib_tokio, lib_smol) run with `--reactors {n}`."
        )
        }
        Some(list) => {
            let values: Vec<String> = list.iter().map(|n| n.to_string()).collect();
            let names: Vec<String> = list.iter().map(|n| format!("_r{n}")).collect();
            h += &format!(
                " Reactors: each of our servers (lib_callback, lib_tokio, lib_smol) runs once per \
                 reactor count {} (`--reactors N`, names ending {}); the other servers run once.",
                values.join(", "),
                names.join(", "),
            );
        }
        None => {}
    }
    if let Some((gen, server)) = pin {
        h += &format!(
            " Pinned: the generator on CPU {gen}, each server process (all its threads) on CPU {server} \
             (sched_setaffinity, as taskset does)."
        );
    }
    if plan.scenarios.contains(&Scenario::Http) {
        h += &format!(
            " http: `wrk -t {} -c {} -d {}s --latency`, keep-alive GET /, per measurement; \
             ratios against {}; the generator column is wrk's CPU.",
            p.http_threads,
            p.http_connections,
            p.http_duration.as_secs().max(1),
            servers::HTTP_REFERENCE,
        );
    }
    h
}

fn main() -> ExitCode {
    let _ = bench::sys::raise_nofile_limit();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--soak") {
        return run_soak(args);
    }
    if bench::real::cli::wanted(&args) {
        return bench::real::cli::main(args);
    }
    let cli = match parse_args(args) {
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
    // Counted before --pin narrows what this process may use.
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    if let Some((gen, server)) = cli.pin {
        // The generator runs on this thread; processes spawned from it (wrk, perf) inherit
        // the CPU too, servers are moved to theirs as they start.
        if let Err(e) = bench::sys::set_affinity(0, &bench::sys::cpu_set(&[gen])) {
            eprintln!("bench: --pin: cannot bind the generator to CPU {gen}: {e}");
            return ExitCode::FAILURE;
        }
        eprintln!("bench: pinned: generator on CPU {gen}, servers on CPU {server}");
    }
    if plan.scenarios.contains(&Scenario::Http) {
        match bench::http::ensure_wrk(&plan.params.wrk) {
            Ok(wrk) => plan.params.wrk = wrk,
            Err(e) => {
                eprintln!("bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let perf_note = if plan.perf && driver::perf_supported() {
        "perf stat raw_syscalls:sys_enter and context-switches over the window"
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
    let spread = match &cli.spread {
        Some((cmd, sp)) => {
            let rounds = bench::spread::run(cmd, sp, |r| {
                eprintln!(
                    "  {:10} round {} {:14} {:>9} × {} reactors: accepted {} (deviation {:.1} %)",
                    "spread",
                    r.round + 1,
                    cmd.name,
                    r.mode,
                    r.reactors,
                    r.counts
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                    r.deviation_pct(),
                )
            });
            match rounds {
                Ok(r) => Some((r, sp)),
                Err(e) => {
                    eprintln!("bench: FAILED: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    let names: Vec<String> = plan.servers.iter().map(|s| s.name.clone()).collect();
    let mut md = bench::report::markdown(
        &samples,
        &plan.scenarios,
        &names,
        &header(&plan, perf_note, cores, cli.reactors.as_deref(), cli.pin),
    );
    if let Some((rounds, sp)) = &spread {
        md += &bench::spread::markdown(rounds, sp);
    }
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
    if svg_path.exists() {
        eprintln!(
            "bench: wrote {} and {}",
            md_path.display(),
            svg_path.display()
        );
    } else {
        eprintln!("bench: wrote {} (no chart)", md_path.display());
    }
    let http = samples
        .iter()
        .filter(|s| s.outcome.scenario == Scenario::Http)
        .count();
    if http > 0 {
        eprintln!("bench: {http} http runs: right answer to GET /, no wrk errors: OK");
    }
    if samples.len() > http {
        eprintln!(
            "bench: all {} runs verified every byte: OK",
            samples.len() - http
        );
    }
    if let Some((rounds, sp)) = &spread {
        eprintln!(
            "bench: spread: {} runs, all {} connections accepted each time: OK",
            rounds.len(),
            sp.connections
        );
    }
    ExitCode::SUCCESS
}
