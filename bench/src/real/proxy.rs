//! The `proxy` scenario: what a message costs through `examples/proxy`.
//!
//! Three processes run for the whole scenario: `echo_callback` measured
//! directly (`direct`), and `proxy 127.0.0.1:0 UPSTREAM` in front of a second
//! `echo_callback` (`proxied`). Each case is one of the driver's byte-verifying
//! ping-pong loads ([`crate::loadgen`]: C connections × 64 B, one message in
//! flight each, a timed window), run once per round against each, alternating
//! which goes first. Around the window the CPU of each process is read from
//! `/proc`: for `proxied` the proxy's and the upstream echo's separately.
//!
//! The table gives, per message: the direct echo's CPU, the proxy's, the
//! upstream echo's, and the ratios proxy / direct and (proxy + upstream) /
//! direct, of medians over rounds.

use super::{cell, ratio, stat, Run};
use crate::driver::{cpu_time, Server};
use crate::loadgen::{self, Params, Probe, Scenario};
use crate::servers::{Proto, ServerCmd};
use std::fmt::Write as _;
use std::time::Duration;

/// The echo measured on its own.
pub const DIRECT: &str = "direct";
/// The proxy in front of another echo.
pub const PROXIED: &str = "proxied";

/// What the `proxy` scenario runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Connection counts, one case each (100 and 1000 by default).
    pub connections: Vec<usize>,
    /// Timed window per measurement.
    pub duration: Duration,
    /// Message size.
    pub msg_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connections: vec![100, 1000],
            duration: Duration::from_secs(2),
            msg_size: 64,
        }
    }
}

/// Reads the CPU time of several processes around the window.
struct CpuProbe {
    pids: Vec<u32>,
    start: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl Probe for CpuProbe {
    fn window_start(&mut self) {
        self.start = self
            .pids
            .iter()
            .map(|&p| cpu_time(p).unwrap_or_default())
            .collect();
    }

    fn window_end(&mut self) {
        self.cpu = self
            .pids
            .iter()
            .zip(&self.start)
            .map(|(&p, &s)| cpu_time(p).unwrap_or_default().saturating_sub(s))
            .collect();
    }
}

fn case(connections: usize) -> String {
    format!("pingpong {connections}")
}

/// Runs the scenario: `rounds` rounds of every case, direct and proxied.
pub fn run(
    opts: &Options,
    rounds: usize,
    mut progress: impl FnMut(&Run),
) -> Result<Vec<Run>, String> {
    let echo = ServerCmd {
        name: "echo_callback".into(),
        program: super::root_example("echo_callback")?,
        args: vec![],
        proto: Proto::Echo,
    };
    let direct = Server::start(&echo)?;
    let upstream = Server::start(&echo)?;
    let proxy_cmd = ServerCmd {
        name: "proxy".into(),
        program: super::root_example("proxy")?,
        args: vec!["{addr}".into(), upstream.addr.to_string()],
        proto: Proto::Echo,
    };
    let proxy = Server::start(&proxy_cmd)?;
    let mut runs = Vec::new();
    for round in 0..rounds {
        for &c in &opts.connections {
            let (scenario, connections) = if c == 1000 {
                (Scenario::PingPong1000, 100)
            } else {
                (Scenario::PingPong, c)
            };
            let params = Params {
                duration: opts.duration,
                connections,
                msg_size: opts.msg_size,
                run_nonce: 0x9E0C_u64 ^ ((round as u64) << 32 | c as u64),
                ..Params::default()
            };
            let both = [
                (DIRECT, direct.addr, vec![direct.pid]),
                (PROXIED, proxy.addr, vec![proxy.pid, upstream.pid]),
            ];
            let order: Vec<_> = if round % 2 == 0 {
                both.iter().collect()
            } else {
                both.iter().rev().collect()
            };
            for (name, addr, pids) in order {
                let mut probe = CpuProbe {
                    pids: pids.clone(),
                    start: Vec::new(),
                    cpu: Vec::new(),
                };
                let out = loadgen::run(scenario, *addr, &params, &mut probe)
                    .map_err(|f| format!("proxy scenario, {name}, {}: {f}", case(c)))?;
                let r = Run {
                    case: case(c),
                    server: name.to_string(),
                    round,
                    ops: out.ops,
                    rate: out.ops as f64 / out.window.as_secs_f64(),
                    cpu: probe.cpu,
                    gen_cpu: out.gen_cpu,
                };
                progress(&r);
                runs.push(r);
            }
        }
    }
    proxy.stop()?;
    upstream.stop()?;
    direct.stop()?;
    Ok(runs)
}

/// The scenario's markdown table.
pub fn markdown(runs: &[Run], opts: &Options, rounds: usize) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "### proxy\n\nOur verifying ping-pong generator, C connections × {} B, one message in flight each, \
         {:?} windows; `direct`: examples/echo_callback; `proxied`: examples/proxy in front of a second \
         echo_callback. {rounds} round(s), alternated; cells are median (min–max); CPU µs per echoed message \
         from /proc utime+stime of each process over the window.\n",
        opts.msg_size, opts.duration,
    );
    let _ = writeln!(
        md,
        "| case | msgs/s direct | msgs/s proxied | direct echo CPU µs/msg | proxy CPU µs/msg | upstream echo CPU µs/msg | proxy / direct | (proxy + upstream) / direct |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for &c in &opts.connections {
        let c = case(c);
        let direct = stat(runs, &c, DIRECT, |r| r.cpu_us_per_op(Some(0)));
        let proxy = stat(runs, &c, PROXIED, |r| r.cpu_us_per_op(Some(0)));
        let up = stat(runs, &c, PROXIED, |r| r.cpu_us_per_op(Some(1)));
        let both = stat(runs, &c, PROXIED, |r| r.cpu_us_per_op(None));
        let _ = writeln!(
            md,
            "| {c} | {} | {} | {} | {} | {} | {} | {} |",
            cell(stat(runs, &c, DIRECT, |r| r.rate)),
            cell(stat(runs, &c, PROXIED, |r| r.rate)),
            cell(direct),
            cell(proxy),
            cell(up),
            ratio(proxy, direct),
            ratio(both, direct),
        );
    }
    md
}
