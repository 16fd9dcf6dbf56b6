//! Scenarios against the real servers our examples stand in for.
//!
//! | scenario         | ours                                | theirs                        | load                    |
//! |------------------|-------------------------------------|-------------------------------|-------------------------|
//! | `redis`          | `examples/redis`                    | `redis-server` (7.x)          | `redis-benchmark`       |
//! | `http-plaintext` | `examples/http_plaintext`           | nginx, one process            | `wrk`, plain and pipelined |
//! | `proxy`          | `examples/proxy` → `echo_callback`  | `echo_callback` directly      | our ping-pong generator |
//!
//! Unlike the driver's scenarios, each one here starts its servers once and
//! keeps them for the whole scenario, then measures every case (a test at a
//! pipeline depth, say) once per round for each server, alternating which
//! server goes first from round to round. Around each measurement it reads
//! the server's CPU time (`utime + stime` of the process and its direct
//! children, from `/proc`), so every cell has requests per second and server
//! CPU per request; the tables give medians over rounds and the ratio
//! ours / theirs of the medians.
//!
//! The tools and peer servers are Debian packages; [`ensure_tool`] installs a
//! missing one with `apt-get install -y`. Every process started here is owned
//! by a guard that kills it when dropped, so an error leaves nothing running.
//! Everything listens on 127.0.0.1 only.

pub mod cli;
pub mod plaintext;
pub mod proxy;
pub mod redis;

use crate::report::Stat;
use std::io::Read;
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The scenarios of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `redis-benchmark` against `examples/redis` and `redis-server`.
    Redis,
    /// `wrk` against `examples/http_plaintext` and nginx.
    HttpPlaintext,
    /// Ping-pong through `examples/proxy` against the echo directly.
    Proxy,
}

impl Which {
    /// Every scenario, in run order.
    pub const ALL: [Which; 3] = [Which::Redis, Which::HttpPlaintext, Which::Proxy];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Which::Redis => "redis",
            Which::HttpPlaintext => "http-plaintext",
            Which::Proxy => "proxy",
        }
    }

    /// Parses a command-line name.
    pub fn parse(s: &str) -> Option<Which> {
        Which::ALL.into_iter().find(|w| w.name() == s)
    }
}

/// One measurement of one server on one case.
#[derive(Debug, Clone)]
pub struct Run {
    /// The case, e.g. `set P16` or `pipelined`.
    pub case: String,
    /// The server measured.
    pub server: String,
    /// Round (0-based).
    pub round: usize,
    /// Requests (messages) completed.
    pub ops: u64,
    /// Requests per second as the load tool reported it.
    pub rate: f64,
    /// CPU of each measured process over the measurement (most servers are one).
    pub cpu: Vec<Duration>,
    /// The load tool's own CPU.
    pub gen_cpu: Duration,
}

impl Run {
    /// CPU µs per op of process `i` (`None` for all processes together).
    pub fn cpu_us_per_op(&self, i: Option<usize>) -> f64 {
        let cpu = match i {
            Some(i) => self.cpu.get(i).copied().unwrap_or_default(),
            None => self.cpu.iter().sum(),
        };
        if self.ops == 0 {
            f64::NAN
        } else {
            cpu.as_secs_f64() * 1e6 / self.ops as f64
        }
    }

    /// One progress line for stderr.
    pub fn line(&self) -> String {
        let cpu: Vec<String> = self.cpu.iter().map(|c| format!("{c:.0?}")).collect();
        format!(
            "  round {} {:18} {:16} {:>9} ops {:>12} /s, server cpu {}, gen cpu {:.0?}",
            self.round + 1,
            self.case,
            self.server,
            self.ops,
            crate::report::num(self.rate),
            cpu.join(" + "),
            self.gen_cpu,
        )
    }
}

/// Median (and range) of `f` over the runs of `server` on `case`.
pub fn stat(runs: &[Run], case: &str, server: &str, f: impl Fn(&Run) -> f64) -> Option<Stat> {
    Stat::of(
        runs.iter()
            .filter(|r| r.case == case && r.server == server)
            .map(f)
            .collect(),
    )
}

/// `a / b` of two medians, as `0.93×`.
pub fn ratio(a: Option<Stat>, b: Option<Stat>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.med > 0.0 => format!("{:.2}×", a.med / b.med),
        _ => "–".into(),
    }
}

/// A median with its min–max range.
pub fn cell(s: Option<Stat>) -> String {
    match s {
        Some(s) => format!(
            "{} ({}–{})",
            crate::report::num(s.med),
            crate::report::num(s.min),
            crate::report::num(s.max)
        ),
        None => "–".into(),
    }
}

/// A free TCP port on 127.0.0.1 (bound, read and released: another process
/// could take it before the server binds it, which then fails to start).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// CPU time of `pid` and of its direct children (a master process's workers).
pub fn cpu_time_tree(pid: u32) -> Duration {
    let mut total = crate::driver::cpu_time(pid).unwrap_or_default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return total;
    };
    for e in dir.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Field 4 (ppid) is the second after the command name's closing ')'.
        let ppid = stat[stat.rfind(')').map_or(0, |i| i + 1)..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            total += crate::driver::cpu_time(child).unwrap_or_default();
        }
    }
    total
}

/// CPU time of this process's reaped children (the load tools, once waited for).
pub fn children_cpu() -> Duration {
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage struct.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A directory under the system temp dir, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `bench-<what>-<pid>-<nanos>`.
    pub fn new(what: &str) -> std::io::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("bench-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A peer server we did not write (redis-server, nginx): started with its
/// output in a log file, ready once its port accepts, stopped with SIGTERM,
/// killed if dropped while still running.
#[derive(Debug)]
pub struct Peer {
    name: String,
    child: Option<Child>,
    /// Its process id.
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddrV4,
    log: PathBuf,
}

impl Peer {
    /// Runs `cmd` (stdout and stderr to `log`) and waits up to 10 s for `addr` to accept.
    pub fn start(
        name: &str,
        mut cmd: Command,
        addr: SocketAddrV4,
        log: PathBuf,
    ) -> Result<Peer, String> {
        let out = std::fs::File::create(&log)
            .map_err(|e| format!("{name}: cannot create {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{name}: log file: {e}"))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{name}: cannot start {:?}: {e}", cmd.get_program()))?;
        let mut peer = Peer {
            name: name.to_string(),
            pid: child.id(),
            child: Some(child),
            addr,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(addr).is_ok() {
                return Ok(peer);
            }
            let exited = peer
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten();
            if let Some(status) = exited {
                return Err(format!(
                    "{name}: exited with {status} before listening on {addr}:\n{}",
                    peer.log_tail()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{name}: not listening on {addr} within 10 s:\n{}",
                    peer.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Sends SIGTERM and waits up to 5 s for it to exit (then kills it).
    pub fn stop(mut self) -> Result<(), String> {
        let child = self.child.take().expect("peer not yet stopped");
        crate::driver::terminate(child, self.pid, &self.name).map(drop)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `apt-get install -y PACKAGES` (after `apt-get update` if the first try
/// fails; through `sudo -n` when not root), apt's output on stderr.
pub fn apt_install(packages: &[&str]) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let apt = |args: &[&str]| -> bool {
        let mut c = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        let to_stderr = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_or_else(|_| Stdio::null(), Stdio::from);
        c.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(to_stderr)
            .status()
            .is_ok_and(|s| s.success())
    };
    let install: Vec<&str> = ["install", "-y"]
        .into_iter()
        .chain(packages.iter().copied())
        .collect();
    apt(&install) || (apt(&["update"]) && apt(&install))
}

/// Finds `program` on `PATH` (or in `/usr/sbin`, `/sbin`, where nginx lives).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Makes sure `program` can be found, installing Debian `package` when it
/// cannot (and saying so on stderr).
pub fn ensure_tool(program: &str, package: &str) -> Result<PathBuf, String> {
    if let Some(p) = which(program) {
        return Ok(p);
    }
    eprintln!("bench: {program} not found; installing it: apt-get install -y {package}");
    if apt_install(&[package]) {
        if let Some(p) = which(program) {
            return Ok(p);
        }
    }
    Err(format!(
        "{program} is missing and `apt-get install -y {package}` did not install it"
    ))
}

/// The path of a root-crate release example, or how to build it.
pub fn root_example(name: &str) -> Result<PathBuf, String> {
    let p = crate::servers::root_examples_dir().join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found (run `cargo build --release --example {name}` at the workspace root)",
            p.display()
        ))
    }
}
