//! The `redis` scenario: `redis-benchmark` against `examples/redis` and `redis-server`.
//!
//! Both servers run for the whole scenario on 127.0.0.1: `redis-server` on a
//! free port with a throwaway configuration (`--save "" --appendonly no
//! --io-threads 1`, its directory a temp dir), our example on a port of its
//! choosing. Before any load, one batch of commands (PING, SET, GET, INCR,
//! LPUSH, LPOP, MSET, DEL) must be answered byte for byte alike by both.
//!
//! Each measurement is one `redis-benchmark -h 127.0.0.1 -p PORT -t TEST -c
//! 50 -n N -P P --csv` against one server; its requests/s is the CSV's
//! `rps`, and the server's CPU per request is its CPU time over the run
//! (read from `/proc` just before and after `redis-benchmark`) divided by N.
//! N is chosen per test and depth by a short calibration run against
//! `redis-server` so that a run takes about `--redis-seconds` (1.5 s), unless
//! `--redis-requests` fixes it.

use super::{cell, cpu_time_tree, ratio, stat, Peer, Run, TempDir};
use crate::driver::Server;
use crate::servers::{Proto, ServerCmd};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Our server's name in the tables.
pub const OURS: &str = "examples/redis";
/// The reference's name in the tables.
pub const THEIRS: &str = "redis-server";

/// `redis-benchmark -t` tests run by default.
pub const TESTS: [&str; 8] = [
    "ping_inline",
    "ping_mbulk",
    "set",
    "get",
    "incr",
    "lpush",
    "lpop",
    "mset",
];

/// What the `redis` scenario runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `redis-benchmark -t` tests, one run each.
    pub tests: Vec<String>,
    /// Pipeline depths (`-P`).
    pub pipelines: Vec<usize>,
    /// Clients (`-c`).
    pub clients: usize,
    /// Requests per run (`-n`); calibrated when `None`.
    pub requests: Option<u64>,
    /// Target length of one run when calibrating.
    pub seconds: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tests: TESTS.iter().map(|t| t.to_string()).collect(),
            pipelines: vec![1, 16],
            clients: 50,
            requests: None,
            seconds: 1.5,
        }
    }
}

/// One `(test, depth)` cell's name: `set P16`.
pub fn case(test: &str, pipeline: usize) -> String {
    format!("{test} P{pipeline}")
}

/// Parses `redis-benchmark --csv` output: `(test, requests/s)` per row.
///
/// ```text
/// "test","rps","avg_latency_ms",...
/// "SET","91491.30","0.286",...
/// ```
pub fn parse_csv(out: &str) -> Result<Vec<(String, f64)>, String> {
    let mut rows = Vec::new();
    for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut fields = line.split("\",\"").map(|f| f.trim_matches('"'));
        let (Some(name), Some(rps)) = (fields.next(), fields.next()) else {
            return Err(format!("bad redis-benchmark CSV line {line:?}"));
        };
        if name == "test" {
            continue;
        }
        let rps = rps
            .parse::<f64>()
            .map_err(|_| format!("bad rps in redis-benchmark CSV line {line:?}"))?;
        rows.push((name.to_string(), rps));
    }
    if rows.is_empty() {
        return Err(format!("no result rows in redis-benchmark output {out:?}"));
    }
    Ok(rows)
}

struct Bench {
    program: PathBuf,
    clients: usize,
}

impl Bench {
    /// One `redis-benchmark` run: its requests/s and its own CPU.
    fn run(
        &self,
        port: u16,
        test: &str,
        n: u64,
        pipeline: usize,
    ) -> Result<(f64, Duration), String> {
        let cpu0 = super::children_cpu();
        let out = Command::new(&self.program)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", test])
            .args(["-c", &self.clients.to_string(), "-n", &n.to_string()])
            .args(["-P", &pipeline.to_string(), "--csv"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        let gen_cpu = super::children_cpu().saturating_sub(cpu0);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || stderr.contains("Error") || stdout.contains("Error") {
            return Err(format!(
                "redis-benchmark -t {test} -P {pipeline} on port {port} failed ({}):\n{stderr}{stdout}",
                out.status
            ));
        }
        let rows = parse_csv(&stdout)?;
        match rows.as_slice() {
            [(_, rps)] if *rps > 0.0 => Ok((*rps, gen_cpu)),
            _ => Err(format!(
                "redis-benchmark -t {test}: expected one result row, got {rows:?}"
            )),
        }
    }
}

/// The commands both servers must answer alike before the load.
const CHECK: &[u8] = b"PING\r\n\
*3\r\n$3\r\nSET\r\n$13\r\nbench:check:s\r\n$5\r\nvalue\r\n\
*2\r\n$3\r\nGET\r\n$13\r\nbench:check:s\r\n\
*2\r\n$4\r\nINCR\r\n$13\r\nbench:check:c\r\n\
*3\r\n$5\r\nLPUSH\r\n$13\r\nbench:check:l\r\n$1\r\na\r\n\
*2\r\n$4\r\nLPOP\r\n$13\r\nbench:check:l\r\n\
*5\r\n$4\r\nMSET\r\n$13\r\nbench:check:a\r\n$1\r\n1\r\n$13\r\nbench:check:b\r\n$1\r\n2\r\n\
*5\r\n$3\r\nDEL\r\n$13\r\nbench:check:s\r\n$13\r\nbench:check:c\r\n$13\r\nbench:check:a\r\n$13\r\nbench:check:b\r\n";

/// The replies to [`CHECK`] (Redis 7).
const CHECK_REPLY: &[u8] = b"+PONG\r\n+OK\r\n$5\r\nvalue\r\n:1\r\n:1\r\n$1\r\na\r\n+OK\r\n:4\r\n";

fn check(addr: SocketAddrV4) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(CHECK).map_err(|e| format!("write: {e}"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < CHECK_REPLY.len() {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                return Err(format!(
                    "read: {e} after {:?}",
                    String::from_utf8_lossy(&got)
                ))
            }
        }
    }
    if got != CHECK_REPLY {
        return Err(format!(
            "replies {:?}, expected {:?}",
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(CHECK_REPLY)
        ));
    }
    Ok(())
}

/// Runs the scenario: `rounds` rounds of every test at every depth on both servers.
pub fn run(
    opts: &Options,
    rounds: usize,
    mut progress: impl FnMut(&Run),
) -> Result<Vec<Run>, String> {
    let server_bin = super::ensure_tool("redis-server", "redis-server")?;
    let bench = Bench {
        program: super::ensure_tool("redis-benchmark", "redis-tools")?,
        clients: opts.clients,
    };
    let ours_cmd = ServerCmd {
        name: OURS.into(),
        program: super::root_example("redis")?,
        args: vec![],
        proto: Proto::Echo,
    };
    let dir = TempDir::new("redis").map_err(|e| format!("temp dir: {e}"))?;
    let port = super::free_port().map_err(|e| format!("free port: {e}"))?;
    let mut cmd = Command::new(&server_bin);
    cmd.args(["--save", "", "--appendonly", "no", "--io-threads", "1"])
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--daemonize", "no", "--logfile", ""])
        .arg("--dir")
        .arg(dir.path());
    let theirs = Peer::start(
        THEIRS,
        cmd,
        SocketAddrV4::new([127, 0, 0, 1].into(), port),
        dir.path().join("redis-server.log"),
    )?;
    let ours = Server::start(&ours_cmd)?;
    check(theirs.addr).map_err(|e| format!("{THEIRS}: {e}"))?;
    check(ours.addr).map_err(|e| format!("{OURS}: {e}"))?;

    let servers = [
        (OURS, ours.pid, ours.addr.port()),
        (THEIRS, theirs.pid, port),
    ];
    let mut requests = std::collections::HashMap::new();
    for &p in &opts.pipelines {
        for t in &opts.tests {
            let n = match opts.requests {
                Some(n) => n,
                None => {
                    // A short run against redis-server sets N for the target length.
                    let probe = 20_000 * p as u64;
                    let (rps, _) = bench.run(port, t, probe, p)?;
                    let n = (rps * opts.seconds) as u64;
                    (n.max(10_000) / 1000) * 1000
                }
            };
            eprintln!("bench: redis: {} -n {n}", case(t, p));
            requests.insert(case(t, p), n);
        }
    }

    let mut runs = Vec::new();
    for round in 0..rounds {
        for &p in &opts.pipelines {
            for t in &opts.tests {
                let c = case(t, p);
                let n = requests[&c];
                // Alternate which server goes first, round by round.
                let order: Vec<_> = if round % 2 == 0 {
                    servers.iter().collect()
                } else {
                    servers.iter().rev().collect()
                };
                for &(name, pid, port) in order {
                    let cpu0 = cpu_time_tree(pid);
                    let (rps, gen_cpu) = bench
                        .run(port, t, n, p)
                        .map_err(|e| format!("{name}: {e}"))?;
                    let cpu = cpu_time_tree(pid).saturating_sub(cpu0);
                    let r = Run {
                        case: c.clone(),
                        server: name.to_string(),
                        round,
                        ops: n,
                        rate: rps,
                        cpu: vec![cpu],
                        gen_cpu,
                    };
                    progress(&r);
                    runs.push(r);
                }
            }
        }
    }
    check(theirs.addr).map_err(|e| format!("{THEIRS} after the load: {e}"))?;
    check(ours.addr).map_err(|e| format!("{OURS} after the load: {e}"))?;
    ours.stop()?;
    theirs.stop()?;
    Ok(runs)
}

/// The scenario's markdown table.
pub fn markdown(runs: &[Run], opts: &Options, rounds: usize) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "### redis\n\n`redis-benchmark -h 127.0.0.1 -p PORT -t TEST -c {} -n N -P P --csv`, one run per test, \
         depth and server per round; {rounds} round(s), servers alternated; cells are median (min–max) over rounds, \
         ratios are ours ({OURS}) / theirs ({THEIRS}) of the medians. CPU µs/req: the server's utime+stime over the \
         run ÷ N. N per case: {}.\n",
        opts.clients,
        requests_note(runs),
    );
    let _ = writeln!(
        md,
        "| test | P | req/s ours | req/s redis-server | × | CPU µs/req ours | CPU µs/req redis-server | × |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for &p in &opts.pipelines {
        for t in &opts.tests {
            let c = case(t, p);
            let rate = |s| stat(runs, &c, s, |r| r.rate);
            let cpu = |s| stat(runs, &c, s, |r| r.cpu_us_per_op(None));
            let _ = writeln!(
                md,
                "| {t} | {p} | {} | {} | {} | {} | {} | {} |",
                cell(rate(OURS)),
                cell(rate(THEIRS)),
                ratio(rate(OURS), rate(THEIRS)),
                cell(cpu(OURS)),
                cell(cpu(THEIRS)),
                ratio(cpu(OURS), cpu(THEIRS)),
            );
        }
    }
    md
}

fn requests_note(runs: &[Run]) -> String {
    let mut seen: Vec<(String, u64)> = Vec::new();
    for r in runs {
        if !seen.iter().any(|(c, _)| *c == r.case) {
            seen.push((r.case.clone(), r.ops));
        }
    }
    seen.iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_csv() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"PING_INLINE\",\"90744.10\",\"0.289\",\"0.088\",\"0.279\",\"0.367\",\"0.695\",\"3.815\"\n\
                   \"MSET (10 keys)\",\"91491.30\",\"0.286\",\"0.104\",\"0.279\",\"0.343\",\"0.615\",\"4.303\"\n";
        let rows = parse_csv(out).unwrap();
        assert_eq!(
            rows,
            vec![
                ("PING_INLINE".to_string(), 90744.10),
                ("MSET (10 keys)".to_string(), 91491.30)
            ]
        );
    }

    #[test]
    fn rejects_csv_without_rows_or_with_a_bad_rate() {
        assert!(parse_csv("\"test\",\"rps\"\n").is_err());
        assert!(parse_csv("").is_err());
        assert!(parse_csv("\"SET\",\"fast\",\"0.2\"\n").is_err());
        assert!(parse_csv("garbage").is_err());
    }
}
