//! The `spread` scenario: how evenly the reactors of one server share new connections.
//!
//! Runs only the library's callback echo (`lib_callback`, `examples/echo_callback`). For each
//! accept-spread mode ([`MODES`]: `SO_REUSEPORT` listeners, or one listener shared with
//! `EPOLLEXCLUSIVE`) and each reactor count R, a fresh
//! `echo_callback 127.0.0.1:0 --reactors R --accept-spread MODE --stats` is started, N
//! connections are opened at once over the bench's source addresses (127.0.0.2..), and the
//! server's once-a-second stats lines are read until one shows `accepted N`; that line's
//! ` per reactor accepted A B ...` is the round's split. Then the connections are closed and
//! the server stopped with SIGTERM (it must exit 0). The report gives each round's counts and
//! the largest deviation from an even split, `|count - N/R| / (N/R)`, median and max over
//! rounds, judged against 10 %.

use crate::driver::Server;
use crate::loadgen::{self, Params};
use crate::servers::ServerCmd;
use crate::sys;
use std::fmt::Write as _;
use std::os::fd::RawFd;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// The accept-spread modes, as `echo_callback --accept-spread` names them.
pub const MODES: [&str; 2] = ["reuseport", "shared"];

/// The largest deviation from an even split (percent) a round may show to count as even.
pub const EVEN_PCT: f64 = 10.0;

/// What the `spread` scenario runs.
#[derive(Debug, Clone)]
pub struct SpreadParams {
    /// Connections opened per round (`--spread-connections`).
    pub connections: usize,
    /// Reactor counts to run, each at least 2.
    pub reactors: Vec<usize>,
    /// Rounds per (mode, reactor count).
    pub rounds: usize,
    /// Client source addresses 127.0.0.2 ..= 127.0.0.(1 + n), as the other scenarios use.
    pub source_addrs: u8,
    /// Longest wait for every connection to show up as accepted.
    pub wait: Duration,
    /// Bind the server process to this CPU (`--pin`).
    pub server_cpu: Option<usize>,
}

impl Default for SpreadParams {
    fn default() -> Self {
        Self {
            connections: 1000,
            reactors: vec![2],
            rounds: 5,
            source_addrs: Params::default().source_addrs,
            wait: Duration::from_secs(10),
            server_cpu: None,
        }
    }
}

/// One round of one mode: how many connections each reactor accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct SpreadRound {
    /// The accept-spread mode.
    pub mode: &'static str,
    /// Reactors the server ran.
    pub reactors: usize,
    /// Round number (0-based).
    pub round: usize,
    /// Connections accepted by each reactor, in reactor order.
    pub counts: Vec<u64>,
}

impl SpreadRound {
    /// The largest `|count - total/R| / (total/R)` over the reactors, in percent.
    pub fn deviation_pct(&self) -> f64 {
        deviation_pct(&self.counts)
    }
}

/// The largest deviation of `counts` from an even split of their sum, in percent.
pub fn deviation_pct(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if counts.is_empty() || total == 0 {
        return f64::NAN;
    }
    let even = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - even).abs() / even * 100.0)
        .fold(0.0, f64::max)
}

/// What one `--stats` line of `echo_callback` says about accepting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsLine {
    /// The server's total `accepted` count.
    pub accepted: u64,
    /// Each reactor's accepted count (` per reactor accepted A B ...`; empty when the line
    /// has no such part, as with one reactor).
    pub per_reactor: Vec<u64>,
}

/// Parses a line `stats: open X accepted Y ... [ per reactor accepted A B ...]`; `None` for
/// any other line.
pub fn parse_stats_line(line: &str) -> Option<StatsLine> {
    let rest = line.trim().strip_prefix("stats:")?;
    const PER: &str = " per reactor accepted";
    let (main, per) = match rest.find(PER) {
        Some(i) => (&rest[..i], Some(&rest[i + PER.len()..])),
        None => (rest, None),
    };
    let mut words = main.split_whitespace();
    words.find(|w| *w == "accepted")?;
    let accepted = words.next()?.parse().ok()?;
    let per_reactor = match per {
        Some(p) => p
            .split_whitespace()
            .map(|w| w.parse().ok())
            .collect::<Option<Vec<u64>>>()?,
        None => Vec::new(),
    };
    Some(StatsLine {
        accepted,
        per_reactor,
    })
}

/// Open client sockets, closed when dropped.
struct Clients(Vec<RawFd>);

impl Drop for Clients {
    fn drop(&mut self) {
        for &fd in &self.0 {
            sys::close(fd);
        }
    }
}

/// The command for one mode: `cmd` (lib_callback) with `--reactors R --accept-spread MODE
/// --stats` after its own arguments.
pub fn command(cmd: &ServerCmd, mode: &str, reactors: usize) -> ServerCmd {
    let mut c = cmd.clone();
    c.args.extend(
        [
            "--reactors",
            &reactors.to_string(),
            "--accept-spread",
            mode,
            "--stats",
        ]
        .map(str::to_string),
    );
    c
}

/// One round of one mode (see the module docs).
pub fn measure(
    cmd: &ServerCmd,
    mode: &'static str,
    reactors: usize,
    params: &SpreadParams,
    round: usize,
) -> Result<SpreadRound, String> {
    let what = format!(
        "{} (--accept-spread {mode}, {reactors} reactors, round {})",
        cmd.name,
        round + 1
    );
    let (server, lines) = Server::start_watched(&command(cmd, mode, reactors), params.server_cpu)?;
    let n = params.connections;
    let gen = Params {
        source_addrs: params.source_addrs,
        ..Params::default()
    };
    let mut clients = Clients(Vec::with_capacity(n));
    for i in 0..n {
        let fd = sys::connect_nonblocking(server.addr, loadgen::source_ip(&gen, i))
            .map_err(|e| format!("{what}: connect {} of {n}: {e}", i + 1))?;
        clients.0.push(fd);
    }
    let deadline = Instant::now() + params.wait;
    let mut last = None;
    let counts = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match lines.recv_timeout(left) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "{what}: {n} connections not all accepted within {:?}; last stats line: {}",
                    params.wait,
                    last.as_deref().unwrap_or("(none)")
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(format!(
                "{what}: the server closed its stdout (exited?) before accepting {n} connections"
            ))
            }
        };
        let Some(stats) = parse_stats_line(&line) else {
            continue;
        };
        last = Some(line);
        let accepted = stats.accepted as usize;
        if accepted > n {
            return Err(format!(
                "{what}: accepted {accepted} connections, only {n} were opened"
            ));
        }
        // Each reactor's count is read apart from the total: wait for a line where they agree.
        if accepted == n && stats.per_reactor.iter().sum::<u64>() == stats.accepted {
            if stats.per_reactor.len() != reactors {
                return Err(format!(
                    "{what}: stats line has {} per-reactor counts, expected {reactors}: {}",
                    stats.per_reactor.len(),
                    last.unwrap_or_default()
                ));
            }
            break stats.per_reactor;
        }
    };
    drop(clients);
    server.stop()?;
    Ok(SpreadRound {
        mode,
        reactors,
        round,
        counts,
    })
}

/// Runs every round of every reactor count and mode (modes alternate within a round),
/// reporting each through `progress`; stops at the first failure.
pub fn run(
    cmd: &ServerCmd,
    params: &SpreadParams,
    mut progress: impl FnMut(&SpreadRound),
) -> Result<Vec<SpreadRound>, String> {
    let mut out = Vec::new();
    for round in 0..params.rounds {
        for &r in &params.reactors {
            for mode in MODES {
                let s = measure(cmd, mode, r, params, round)?;
                progress(&s);
                out.push(s);
            }
        }
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The `### spread` section: one row per (mode, reactor count).
pub fn markdown(rounds: &[SpreadRound], params: &SpreadParams) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "\n### spread\n");
    let _ = writeln!(
        md,
        "`echo_callback --reactors R --accept-spread MODE --stats`, a fresh process per round: \
         {} connections opened at once over {} source address(es), each reactor's `accepted` \
         read from the first stats line counting all of them. Deviation: the largest \
         |count − N/R| / (N/R) of a round; even means within {EVEN_PCT} %.\n",
        params.connections, params.source_addrs,
    );
    let _ = writeln!(
        md,
        "| accept spread | reactors | accepted per reactor, round by round | deviation median | deviation max | within {EVEN_PCT} % |"
    );
    let _ = writeln!(md, "|---|---:|---|---:|---:|---|");
    for &r in &params.reactors {
        for mode in MODES {
            let mine: Vec<&SpreadRound> = rounds
                .iter()
                .filter(|s| s.mode == mode && s.reactors == r)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let splits: Vec<String> = mine
                .iter()
                .map(|s| {
                    s.counts
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            let devs: Vec<f64> = mine.iter().map(|s| s.deviation_pct()).collect();
            let max = devs.iter().copied().fold(f64::NAN, f64::max);
            let med = median(devs);
            let verdict = if max <= EVEN_PCT {
                "yes, every round"
            } else if med <= EVEN_PCT {
                "median only"
            } else {
                "no"
            };
            let _ = writeln!(
                md,
                "| {mode} | {r} | {} | {med:.1} % | {max:.1} % | {verdict} |",
                splits.join(" · "),
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_lines_parse_with_and_without_per_reactor_counts() {
        let two =
            "stats: open 1000 accepted 1000 closed 0 (peer 0 reset 0 local 0 error 0 timed out 0) \
                   read 0 B written 0 B queued 0 B paused 0 accept errors 0 back-offs 0 turns 41 \
                   events 1002 event buffer 8192 per reactor accepted 517 483";
        assert_eq!(
            parse_stats_line(two),
            Some(StatsLine {
                accepted: 1000,
                per_reactor: vec![517, 483],
            })
        );
        let one = "stats: open 0 accepted 3 closed 3 (peer 3 reset 0 local 0 error 0 timed out 0) \
                   read 0 B written 0 B queued 0 B paused 0 accept errors 0 back-offs 0 turns 1 \
                   events 0 event buffer 4096";
        assert_eq!(
            parse_stats_line(one),
            Some(StatsLine {
                accepted: 3,
                per_reactor: vec![],
            })
        );
        assert_eq!(parse_stats_line("listening on 127.0.0.1:1"), None);
        assert_eq!(parse_stats_line("stats: open 1"), None);
        assert_eq!(
            parse_stats_line("stats: open 1 accepted 2 per reactor accepted 1 x"),
            None
        );
    }

    #[test]
    fn deviation_is_the_worst_reactor_against_an_even_split() {
        assert_eq!(deviation_pct(&[500, 500]), 0.0);
        assert!((deviation_pct(&[550, 450]) - 10.0).abs() < 1e-9);
        assert!((deviation_pct(&[1000, 0]) - 100.0).abs() < 1e-9);
        assert!((deviation_pct(&[300, 250, 250, 200]) - 20.0).abs() < 1e-9);
        assert!(deviation_pct(&[]).is_nan());
    }

    #[test]
    fn report_judges_median_and_max() {
        let r = |mode, round, counts: &[u64]| SpreadRound {
            mode,
            reactors: 2,
            round,
            counts: counts.to_vec(),
        };
        let rounds = [
            r("reuseport", 0, &[510, 490]),
            r("shared", 0, &[700, 300]),
            r("reuseport", 1, &[480, 520]),
            r("shared", 1, &[520, 480]),
            r("reuseport", 2, &[500, 500]),
            r("shared", 2, &[530, 470]),
        ];
        let md = markdown(&rounds, &SpreadParams::default());
        assert!(
            md.contains("| reuseport | 2 | 510 490 · 480 520 · 500 500 | 2.0 % | 4.0 % | yes, every round |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| shared | 2 | 700 300 · 520 480 · 530 470 | 6.0 % | 40.0 % | median only |"
            ),
            "{md}"
        );
    }
}
