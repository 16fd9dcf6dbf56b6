//! Runs servers as child processes and measures them around each window.
//!
//! For each scenario, for each round, for each server (so servers alternate
//! A B A B and drift in machine load hits all of them alike), the driver
//! starts a fresh server process, waits for its `listening on <addr>` line,
//! runs the scenario, and stops the server with SIGTERM (it must exit 0).
//!
//! Around the window it samples, via [`ServerProbe`]:
//! - server CPU: `utime + stime` from `/proc/PID/stat`, read just before and
//!   just after the window (clock-tick resolution, usually 10 ms);
//! - server RSS: `VmRSS` from `/proc/PID/status` before set-up and after the
//!   window (the idle scenario reports the difference per held connection);
//! - system calls: `perf stat -e raw_syscalls:sys_enter -p PID`, started
//!   before the window (it is given 250 ms to attach, while the server is
//!   idle) and stopped right after it, when `perf` works here. The count
//!   includes the few calls of that idle lead-in; counting costs the server
//!   a little CPU, the same for every server (`--no-perf` turns it off).

use crate::loadgen::{self, Outcome, Params, Probe, Scenario};
use crate::servers::ServerCmd;
use crate::sys;
use std::io::{BufRead, BufReader};
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running server process.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    /// Its process id.
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddrV4,
    name: String,
}

impl Server {
    /// Starts `cmd` on `127.0.0.1:0` (as its first argument, or wherever an
    /// argument says `{addr}`) and reads its `listening on` line.
    pub fn start(cmd: &ServerCmd) -> Result<Server, String> {
        // The address goes first, unless an argument names where: `{addr}`.
        let addr = "127.0.0.1:0";
        let mut args: Vec<String> = cmd.args.iter().map(|a| a.replace("{addr}", addr)).collect();
        if !cmd.args.iter().any(|a| a.contains("{addr}")) {
            args.insert(0, addr.to_string());
        }
        let mut child = Command::new(&cmd.program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{}: cannot start {}: {e}", cmd.name, cmd.program.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Keep draining so a chatty server never blocks on a full pipe.
            for _ in lines {}
        });
        let mut server = Server {
            pid: child.id(),
            child: Some(child),
            addr: SocketAddrV4::new([127, 0, 0, 1].into(), 0),
            name: cmd.name.clone(),
        };
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => return Err(format!("{}: exited before printing its address", cmd.name)),
            Err(_) => return Err(format!("{}: no `listening on` line within 10 s", cmd.name)),
        };
        server.addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| {
                format!(
                    "{}: first line should be `listening on <ipv4:port>`, got {line:?}",
                    cmd.name
                )
            })?;
        Ok(server)
    }

    /// Sends SIGTERM and waits (up to 5 s) for exit status 0.
    pub fn stop(mut self) -> Result<(), String> {
        let child = self.child.take().expect("server not yet stopped");
        let status = terminate(child, self.pid, &self.name)?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}: exited with {status} on SIGTERM, expected 0",
                self.name
            ))
        }
    }
}

/// Sends SIGTERM to `child` (process `pid`, called `name` in errors) and waits up to 5 s for
/// it to exit; kills it if it does not.
pub fn terminate(
    mut child: Child,
    pid: u32,
    name: &str,
) -> Result<std::process::ExitStatus, String> {
    let _ = sys::kill(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{name}: did not exit within 5 s of SIGTERM"));
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// CPU time (`utime + stime`) of process `pid` from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let ticks = field(11) + field(12);
    Ok(Duration::from_nanos(
        ticks * 1_000_000_000 / sys::clock_ticks_per_sec(),
    ))
}

/// Resident set size of process `pid` (`VmRSS`), in bytes.
pub fn rss_bytes(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| std::io::Error::other("no VmRSS line"))
}

/// Open file descriptors of process `pid` (entries of `/proc/PID/fd`).
pub fn fd_count(pid: u32) -> std::io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Whether `perf stat -e raw_syscalls:sys_enter` works here.
pub fn perf_supported() -> bool {
    Command::new("perf")
        .args([
            "stat",
            "-x",
            ",",
            "-e",
            "raw_syscalls:sys_enter",
            "--",
            "true",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map(|o| {
            o.status.success() && {
                let err = String::from_utf8_lossy(&o.stderr);
                err.contains("raw_syscalls:sys_enter") && !err.contains("<not supported>")
            }
        })
        .unwrap_or(false)
}

/// A `perf stat` attached to one process.
#[derive(Debug)]
struct PerfStat {
    child: Child,
    out: PathBuf,
}

impl PerfStat {
    fn start(pid: u32) -> Option<PerfStat> {
        let out = std::env::temp_dir().join(format!("bench-perf-{}-{pid}.csv", std::process::id()));
        let child = Command::new("perf")
            .args([
                "stat",
                "-x",
                ",",
                "-e",
                "raw_syscalls:sys_enter",
                "-e",
                "context-switches",
                "-o",
            ])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        std::thread::sleep(Duration::from_millis(250));
        Some(PerfStat { child, out })
    }

    /// Stops counting: (system calls, context switches), each if counted.
    fn stop(mut self) -> (Option<u64>, Option<u64>) {
        let _ = sys::kill(self.child.id(), libc::SIGINT);
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let _ = std::fs::remove_file(&self.out);
        parse_perf_csv(&text)
    }
}

/// The `raw_syscalls:sys_enter` and `context-switches` counts of `perf stat -x ,` output.
pub fn parse_perf_csv(text: &str) -> (Option<u64>, Option<u64>) {
    let count = |event: &str| {
        text.lines().find_map(|l| {
            let mut f = l.split(',');
            let count = f.next()?.trim().parse::<u64>().ok()?;
            (f.nth(1)? == event).then_some(count)
        })
    };
    (count("raw_syscalls:sys_enter"), count("context-switches"))
}

#[cfg(test)]
mod perf_csv_tests {
    #[test]
    fn both_counts_are_read() {
        let text = "# started on Mon Nov 30\n\n123456,,raw_syscalls:sys_enter,2001234567,100.00,,\n789,,context-switches,2001234567,100.00,0.394,K/sec\n";
        assert_eq!(super::parse_perf_csv(text), (Some(123456), Some(789)));
        assert_eq!(
            super::parse_perf_csv("<not counted>,,context-switches,0,0,,"),
            (None, None)
        );
    }
}

/// Samples one server process around the window (see the module docs).
#[derive(Debug)]
pub struct ServerProbe {
    pid: u32,
    use_perf: bool,
    perf: Option<PerfStat>,
    cpu0: Duration,
    /// Server CPU time used inside the window.
    pub cpu: Duration,
    /// RSS before set-up.
    pub rss_before: u64,
    /// RSS right after the window.
    pub rss_after: u64,
    /// System calls counted by perf, if it ran.
    pub syscalls: Option<u64>,
    /// Context switches of the server's threads counted by perf, if it ran.
    pub ctx_switches: Option<u64>,
}

impl ServerProbe {
    /// A probe for process `pid`, counting syscalls when `use_perf`.
    pub fn new(pid: u32, use_perf: bool) -> Self {
        Self {
            pid,
            use_perf,
            perf: None,
            cpu0: Duration::ZERO,
            cpu: Duration::ZERO,
            rss_before: 0,
            rss_after: 0,
            syscalls: None,
            ctx_switches: None,
        }
    }
}

impl Probe for ServerProbe {
    fn before_setup(&mut self) {
        self.rss_before = rss_bytes(self.pid).unwrap_or(0);
    }

    fn window_start(&mut self) {
        if self.use_perf {
            self.perf = PerfStat::start(self.pid);
        }
        self.cpu0 = cpu_time(self.pid).unwrap_or_default();
    }

    fn window_end(&mut self) {
        self.cpu = cpu_time(self.pid)
            .unwrap_or_default()
            .saturating_sub(self.cpu0);
        self.rss_after = rss_bytes(self.pid).unwrap_or(0);
        (self.syscalls, self.ctx_switches) = self.perf.take().map_or((None, None), PerfStat::stop);
    }
}

/// One measurement: one server, one scenario, one round.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Server name.
    pub server: String,
    /// Round number (0-based).
    pub round: usize,
    /// What the generator measured.
    pub outcome: Outcome,
    /// Server CPU inside the window.
    pub server_cpu: Duration,
    /// Server RSS before set-up.
    pub rss_before: u64,
    /// Server RSS after the window.
    pub rss_after: u64,
    /// Server system calls inside the window (perf), if counted.
    pub syscalls: Option<u64>,
    /// Server context switches inside the window (perf), if counted.
    pub ctx_switches: Option<u64>,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Servers, in report order.
    pub servers: Vec<ServerCmd>,
    /// Scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// Rounds of A B A B alternation.
    pub rounds: usize,
    /// Load parameters (identical for every server).
    pub params: Params,
    /// Count syscalls with perf.
    pub perf: bool,
}

/// Measures `cmd` once on `scenario`.
pub fn measure(
    cmd: &ServerCmd,
    scenario: Scenario,
    params: &Params,
    perf: bool,
    round: usize,
) -> Result<Sample, String> {
    let server = Server::start(cmd)?;
    let mut probe = ServerProbe::new(server.pid, perf);
    let outcome = loadgen::run(scenario, server.addr, params, &mut probe)
        .map_err(|f| format!("{} (round {}): {f}", cmd.name, round + 1))?;
    server.stop()?;
    Ok(Sample {
        server: cmd.name.clone(),
        round,
        outcome,
        server_cpu: probe.cpu,
        rss_before: probe.rss_before,
        rss_after: probe.rss_after,
        syscalls: probe.syscalls,
        ctx_switches: probe.ctx_switches,
    })
}

/// Runs the whole plan, reporting progress through `progress`; stops at the first failure.
pub fn run(plan: &Plan, mut progress: impl FnMut(&Sample)) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for &scenario in &plan.scenarios {
        for round in 0..plan.rounds {
            // Echo scenarios run the echo servers, `http` the HTTP servers.
            for cmd in plan.servers.iter().filter(|c| c.proto == scenario.proto()) {
                let mut params = plan.params.clone();
                params.run_nonce = params
                    .run_nonce
                    .wrapping_add((round as u64) << 32 | samples.len() as u64);
                let s = measure(cmd, scenario, &params, plan.perf, round)?;
                progress(&s);
                samples.push(s);
            }
        }
    }
    Ok(samples)
}
