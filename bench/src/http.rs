//! The `http` scenario: HTTP/1.1 keep-alive `GET /` load from `wrk`.
//!
//! Our own generator speaks only the echo protocol, so this scenario hands
//! the load to `wrk` (Debian package `wrk`; [`ensure_wrk`] installs it with
//! `apt-get install -y wrk` when it is missing): `wrk -t T -c C -d D
//! --latency http://ADDR/`, by default 1 thread, 100 connections, 5 s.
//!
//! Before the window one plain request checks the server answers `GET /`
//! with `200` and `Hello, World!` (wrk checks no bodies). The window is wrk's
//! whole run: the server's CPU is sampled by the probe right before wrk
//! starts and right after it exits, and wrk's own CPU (the generator column)
//! comes from `getrusage(RUSAGE_CHILDREN)` around it. One op is one request;
//! requests per second is wrk's `Requests/sec:` (the window is taken as
//! requests ÷ that rate, so the report's ops/window reproduces it). Any
//! socket error (connect, read, write, timeout), any non-2xx/3xx response
//! or a wrk failure fails the run.

use crate::hist::Histogram;
use crate::loadgen::{Failure, Outcome, Params, Probe, Scenario};
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What the `http` scenario reads from wrk's report.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkReport {
    /// Requests completed (`N requests in ...`).
    pub requests: u64,
    /// `Requests/sec:`.
    pub requests_per_sec: f64,
    /// Bytes read (`..., X MB read`).
    pub bytes_read: u64,
    /// p50 and p99 latency in µs (`--latency` distribution), when printed.
    pub latency_us: Option<[f64; 2]>,
    /// Socket errors: connect, read, write, timeout (all 0 when wrk prints no line).
    pub socket_errors: [u64; 4],
    /// `Non-2xx or 3xx responses:` (0 when wrk prints no line).
    pub non_2xx: u64,
}

fn time_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (v, unit) = s.split_at(split);
    let v: f64 = v.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(v * scale)
}

fn bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (v, unit) = s.split_at(split);
    let v: f64 = v.parse().ok()?;
    let k = match unit {
        "" | "B" => 0,
        "KB" => 1,
        "MB" => 2,
        "GB" => 3,
        "TB" => 4,
        _ => return None,
    };
    Some((v * 1024f64.powi(k)) as u64)
}

/// Parses wrk's text report.
pub fn parse_wrk(out: &str) -> Result<WrkReport, String> {
    let mut requests = None;
    let mut rps = None;
    let mut bytes_read = 0;
    let mut p50 = None;
    let mut p99 = None;
    let mut socket_errors = [0; 4];
    let mut non_2xx = 0;
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v
                .trim()
                .parse()
                .map_err(|_| format!("bad wrk line {line:?}"))?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for (i, part) in v.split(',').enumerate().take(4) {
                socket_errors[i] = part
                    .split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("bad wrk line {line:?}"))?;
            }
        } else if let Some(v) = line.strip_prefix("50%") {
            p50 = time_us(v);
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = time_us(v);
        } else if line.contains(" requests in ") {
            // "400000 requests in 5.00s, 50.00MB read"
            requests = line.split_whitespace().next().and_then(|n| n.parse().ok());
            if let Some(b) = line
                .split_once(", ")
                .and_then(|(_, r)| r.strip_suffix(" read"))
            {
                bytes_read = bytes(b).ok_or_else(|| format!("bad wrk line {line:?}"))?;
            }
        }
    }
    Ok(WrkReport {
        requests: requests.ok_or("no `N requests in` line in wrk's output")?,
        requests_per_sec: rps.ok_or("no `Requests/sec:` line in wrk's output")?,
        bytes_read,
        latency_us: p50.zip(p99).map(|(a, b)| [a, b]),
        socket_errors,
        non_2xx,
    })
}

impl WrkReport {
    /// Why this run fails: socket errors, non-2xx responses, no requests.
    pub fn errors(&self) -> Option<String> {
        let [c, r, w, t] = self.socket_errors;
        if c + r + w + t > 0 {
            Some(format!(
                "wrk saw socket errors: connect {c}, read {r}, write {w}, timeout {t}"
            ))
        } else if self.non_2xx > 0 {
            Some(format!("wrk saw {} non-2xx/3xx responses", self.non_2xx))
        } else if self.requests == 0 || self.requests_per_sec <= 0.0 {
            Some("wrk completed no requests".into())
        } else {
            None
        }
    }
}

/// One `GET /` on a fresh connection (`Connection: close`): must be 200 with
/// body `Hello, World!`.
pub fn check_hello(addr: SocketAddrV4) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("sending GET /: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| format!("reading the answer to GET /: {e}"))?;
    let resp = String::from_utf8_lossy(&resp);
    let status = resp.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("GET / answered {status:?}, expected HTTP/1.1 200"));
    }
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    if body != "Hello, World!" {
        return Err(format!("GET / body {body:?}, expected \"Hello, World!\""));
    }
    Ok(())
}

fn children_cpu() -> Duration {
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage struct.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Runs wrk against the HTTP server at `addr` (see the module docs).
pub fn run(addr: SocketAddrV4, params: &Params, probe: &mut dyn Probe) -> Result<Outcome, Failure> {
    check_hello(addr).map_err(Failure)?;
    let secs = params.http_duration.as_secs().max(1);
    let mut cmd = Command::new(&params.wrk);
    cmd.args([
        "-t",
        &params.http_threads.to_string(),
        "-c",
        &params.http_connections.to_string(),
        "-d",
        &format!("{secs}s"),
        "--latency",
        &format!("http://{addr}/"),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    // Only wrk is reaped between these two readings: the server and perf are reaped later.
    let cpu0 = children_cpu();
    probe.window_start();
    let out = cmd.output();
    let gen_cpu = children_cpu().saturating_sub(cpu0);
    probe.window_end();
    let out = out.map_err(|e| Failure(format!("cannot run {}: {e}", params.wrk.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(Failure(format!(
            "wrk exited with {}: {}{text}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let report = parse_wrk(&text).map_err(|e| Failure(format!("{e}:\n{text}")))?;
    if let Some(e) = report.errors() {
        return Err(Failure(format!("{e}:\n{text}")));
    }
    Ok(Outcome {
        scenario: Scenario::Http,
        ops: report.requests,
        bytes: report.bytes_read,
        window: Duration::from_secs_f64(report.requests as f64 / report.requests_per_sec),
        hist: Histogram::new(),
        gen_cpu,
        connections: params.http_connections,
        quoted_latency_us: report.latency_us,
    })
}

fn runs(wrk: &Path) -> bool {
    Command::new(wrk)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Makes sure `wrk` can be run: when it is missing (and not given as a
/// path), installs the Debian package with `apt-get install -y wrk` (after
/// `apt-get update` if the first attempt fails; through `sudo -n` when not
/// root). apt's output goes to stderr.
pub fn ensure_wrk(wrk: &Path) -> Result<PathBuf, String> {
    if runs(wrk) {
        return Ok(wrk.to_path_buf());
    }
    if wrk != Path::new("wrk") {
        return Err(format!("cannot run wrk at {}", wrk.display()));
    }
    eprintln!("bench: wrk not found; installing it: apt-get install -y wrk");
    let installed = crate::real::apt_install(&["wrk"]);
    if installed && runs(wrk) {
        Ok(wrk.to_path_buf())
    } else {
        Err(
            "wrk is missing and `apt-get install -y wrk` did not install it; \
             install wrk or pass --wrk PATH"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "Running 5s test @ http://127.0.0.1:40000/
  1 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  200.00us   5.00ms   90.00%
    Req/Sec    80.00k     2.00k   85.00k    70.00%
  Latency Distribution
     50%    1.20ms
     75%    1.30ms
     90%    1.40ms
     99%  850.00us
  400000 requests in 5.00s, 50.00MB read
Requests/sec:  80012.50
Transfer/sec:     10.00MB
";

    #[test]
    fn parses_a_clean_report() {
        let r = parse_wrk(OUT).unwrap();
        assert_eq!(r.requests, 400_000);
        assert_eq!(r.requests_per_sec, 80012.5);
        assert_eq!(r.bytes_read, 50 * 1024 * 1024);
        assert_eq!(r.latency_us, Some([1200.0, 850.0]));
        assert_eq!(r.errors(), None);
    }

    #[test]
    fn socket_errors_and_non_2xx_fail() {
        let with = OUT.replace(
            "Requests/sec",
            "  Socket errors: connect 0, read 3, write 0, timeout 1\nRequests/sec",
        );
        let r = parse_wrk(&with).unwrap();
        assert_eq!(r.socket_errors, [0, 3, 0, 1]);
        assert!(r.errors().unwrap().contains("read 3"));
        let with = OUT.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 7\nRequests/sec",
        );
        assert!(parse_wrk(&with)
            .unwrap()
            .errors()
            .unwrap()
            .contains("7 non-2xx"));
        assert!(parse_wrk("garbage").is_err());
    }
}
