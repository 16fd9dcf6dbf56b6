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
        Ok(Self::spawn(cmd, None, false)?.0)
    }

    /// [`Server::start`], with the process (every thread it will start) bound to CPU `cpu`
    /// when given: the affinity is set in the child before it runs `cmd`, as
    /// `taskset -c CPU PROGRAM ARGS` does.
    pub fn start_on(cmd: &ServerCmd, cpu: Option<usize>) -> Result<Server, String> {
        Ok(Self::spawn(cmd, cpu, false)?.0)
    }

    /// [`Server::start_on`], also handing back every stdout line after `listening on`
    /// (a server run with `--stats`, say). Lines are kept until read: read them.
    pub fn start_watched(
        cmd: &ServerCmd,
        cpu: Option<usize>,
    ) -> Result<(Server, mpsc::Receiver<String>), String> {
        Self::spawn(cmd, cpu, true)
    }

    fn spawn(
        cmd: &ServerCmd,
        cpu: Option<usize>,
        watch: bool,
    ) -> Result<(Server, mpsc::Receiver<String>), String> {
        // The address goes first, unless an argument names where: `{addr}`.
        let addr = "127.0.0.1:0";
        let mut args: Vec<String> = cmd.args.iter().map(|a| a.replace("{addr}", addr)).collect();
        if !cmd.args.iter().any(|a| a.contains("{addr}")) {
            args.insert(0, addr.to_string());
        }
        let mut command = Command::new(&cmd.program);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(cpu) = cpu {
            use std::os::unix::process::CommandExt;
            let set = sys::cpu_set(&[cpu]);
            // SAFETY: the closure only makes one system call (sched_setaffinity, which is
            // async-signal-safe) on a set built before the fork; it allocates nothing.
            unsafe {
                command.pre_exec(move || sys::set_affinity(0, &set));
            }
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("{}: cannot start {}: {e}", cmd.name, cmd.program.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Keep draining so a chatty server never blocks on a full pipe.
            for line in lines {
                if let (true, Ok(line)) = (watch, line) {
                    let _ = lines_tx.send(line);
                }
            }
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
        Ok((server, lines_rx))
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

/// The command name (`comm`) and CPU time (`utime + stime`, in clock ticks) of one
/// `/proc/PID/stat` or `/proc/PID/task/TID/stat` line.
pub fn parse_stat(stat: &str) -> (String, u64) {
    // The command name may contain spaces and parentheses: it runs from the first '(' to
    // the last ')', and the fields resume after that.
    let open = stat.find('(').map_or(0, |i| i + 1);
    let close = stat.rfind(')');
    let comm = close
        .filter(|&c| c >= open)
        .map_or("", |c| &stat[open..c])
        .to_string();
    let rest = stat.get(close.map_or(0, |i| i + 2)..).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    (comm, field(11) + field(12))
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_nanos(ticks * 1_000_000_000 / sys::clock_ticks_per_sec())
}

/// CPU time (`utime + stime`) of process `pid` from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(ticks_to_duration(parse_stat(&stat).1))
}

/// One thread of a process and the CPU time it has used so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadCpu {
    /// Thread id.
    pub tid: u32,
    /// Thread name (`comm`: at most 15 bytes, the program's name unless the thread was named).
    pub name: String,
    /// `utime + stime`.
    pub cpu: Duration,
}

/// Every thread of process `pid` (`/proc/PID/task/*/stat`), in thread id order; threads that
/// exit while the directory is read are left out.
pub fn thread_cpu(pid: u32) -> std::io::Result<Vec<ThreadCpu>> {
    let mut threads = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(entry) = entry else { continue };
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (name, ticks) = parse_stat(&stat);
        threads.push(ThreadCpu {
            tid,
            name,
            cpu: ticks_to_duration(ticks),
        });
    }
    threads.sort_by_key(|t| t.tid);
    Ok(threads)
}

/// CPU each thread alive at `end` used since `start` (a thread new since `start` counts from
/// zero; one gone by `end` is left out), in thread id order, labelled by name; a name that
/// repeats gets `#2`, `#3`... on its later threads.
pub fn thread_cpu_window(start: &[ThreadCpu], end: &[ThreadCpu]) -> Vec<(String, Duration)> {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    end.iter()
        .map(|t| {
            let before = start
                .iter()
                .find(|s| s.tid == t.tid)
                .map_or(Duration::ZERO, |s| s.cpu);
            let n = match seen.iter_mut().find(|(name, _)| *name == t.name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen.push((&t.name, 1));
                    1
                }
            };
            let label = if n == 1 {
                t.name.clone()
            } else {
                format!("{}#{n}", t.name)
            };
            (label, t.cpu.saturating_sub(before))
        })
        .collect()
}

#[cfg(test)]
mod stat_tests {
    use super::*;

    #[test]
    fn comm_and_ticks_are_read_even_with_odd_names() {
        let line = "4242 (epoll-server-1) S 1 4242 4242 0 -1 4194368 100 0 0 0 812 35 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_stat(line), ("epoll-server-1".to_string(), 847));
        let odd = "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 0 0";
        assert_eq!(parse_stat(odd), ("a) b (c)".to_string(), 11));
    }

    #[test]
    fn window_counts_survivors_and_labels_repeated_names() {
        let ms = Duration::from_millis;
        let t = |tid, name: &str, cpu| ThreadCpu {
            tid,
            name: name.into(),
            cpu: ms(cpu),
        };
        let start = [t(10, "echo", 100), t(11, "echo", 5), t(12, "gone", 50)];
        let end = [t(10, "echo", 900), t(11, "echo", 5), t(13, "new", 30)];
        assert_eq!(
            thread_cpu_window(&start, &end),
            [
                ("echo".to_string(), ms(800)),
                ("echo#2".to_string(), ms(0)),
                ("new".to_string(), ms(30)),
            ]
        );
        assert!(!thread_cpu(std::process::id()).unwrap().is_empty());
    }
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
    threads0: Vec<ThreadCpu>,
    /// Server CPU time used inside the window.
    pub cpu: Duration,
    /// CPU time each server thread used inside the window (see [`thread_cpu_window`]).
    pub threads: Vec<(String, Duration)>,
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
            threads0: Vec::new(),
            cpu: Duration::ZERO,
            threads: Vec::new(),
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
        self.threads0 = thread_cpu(self.pid).unwrap_or_default();
        self.cpu0 = cpu_time(self.pid).unwrap_or_default();
    }

    fn window_end(&mut self) {
        self.cpu = cpu_time(self.pid)
            .unwrap_or_default()
            .saturating_sub(self.cpu0);
        self.threads = thread_cpu_window(&self.threads0, &thread_cpu(self.pid).unwrap_or_default());
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
    /// CPU of each server thread inside the window, in thread id order (see
    /// [`thread_cpu_window`]).
    pub threads: Vec<(String, Duration)>,
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
    /// Bind each server process to this CPU (`--pin`; the generator is bound by the caller).
    pub server_cpu: Option<usize>,
}

/// Measures `cmd` once on `scenario`.
pub fn measure(
    cmd: &ServerCmd,
    scenario: Scenario,
    params: &Params,
    perf: bool,
    round: usize,
) -> Result<Sample, String> {
    measure_on(cmd, scenario, params, perf, round, None)
}

/// [`measure`], with the server bound to CPU `server_cpu` when given.
pub fn measure_on(
    cmd: &ServerCmd,
    scenario: Scenario,
    params: &Params,
    perf: bool,
    round: usize,
    server_cpu: Option<usize>,
) -> Result<Sample, String> {
    let server = Server::start_on(cmd, server_cpu)?;
    let mut probe = ServerProbe::new(server.pid, perf);
    let outcome = loadgen::run(scenario, server.addr, params, &mut probe)
        .map_err(|f| format!("{} (round {}): {f}", cmd.name, round + 1))?;
    server.stop()?;
    Ok(Sample {
        server: cmd.name.clone(),
        round,
        outcome,
        server_cpu: probe.cpu,
        threads: probe.threads,
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
                let s = measure_on(cmd, scenario, &params, plan.perf, round, plan.server_cpu)?;
                progress(&s);
                samples.push(s);
            }
        }
    }
    Ok(samples)
}
