//! The `http-plaintext` scenario: `wrk` against `examples/http_plaintext` and nginx.
//!
//! nginx runs as one process (`master_process off`, one worker's event loop,
//! `daemon off`) from a throwaway configuration in a temp dir: `access_log
//! off`, `location / { return 200 "Hello, World!"; }` as `text/plain`,
//! keep-alive without a request cap that a 5 s run could reach, its pid, logs
//! and temp paths in the temp dir, listening on 127.0.0.1 on a free port.
//! Both servers run for the whole scenario; before the load each must answer
//! `GET /` with `200` and `Hello, World!`.
//!
//! Two cases, each `wrk -t T -c C -d Ds --latency http://ADDR/plaintext`:
//! - `plain`: one request in flight per connection;
//! - `pipelined`: wrk sends 16 requests per `wrk.format` batch (a Lua script
//!   in the temp dir), so 16 are in flight per connection.
//!
//! One op is one response; requests/s is wrk's `Requests/sec:`, and the
//! server's CPU per request is its CPU over wrk's run ÷ wrk's request count.
//! Any wrk socket error or non-2xx/3xx response fails the run.

use super::{cell, cpu_time_tree, ratio, stat, Peer, Run, TempDir};
use crate::driver::Server;
use crate::http::{check_hello, parse_wrk};
use crate::servers::{Proto, ServerCmd};
use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Our server's name in the tables.
pub const OURS: &str = "examples/http_plaintext";
/// The reference's name in the tables.
pub const THEIRS: &str = "nginx";

/// What the `http-plaintext` scenario runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// wrk connections (`-c`).
    pub connections: usize,
    /// wrk threads (`-t`).
    pub threads: usize,
    /// wrk run length (`-d`, whole seconds).
    pub duration: Duration,
    /// Requests per batch in the pipelined case.
    pub depth: usize,
    /// The wrk executable.
    pub wrk: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connections: 100,
            threads: 1,
            duration: Duration::from_secs(5),
            depth: 16,
            wrk: "wrk".into(),
        }
    }
}

/// The two cases.
pub const CASES: [&str; 2] = ["plain", "pipelined"];

/// nginx's configuration, everything under `dir`, listening on `127.0.0.1:port`.
pub fn nginx_conf(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;
master_process off;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 65s;
    server {{
        listen 127.0.0.1:{port};
        default_type text/plain;
        location / {{ return 200 \"Hello, World!\"; }}
    }}
}}
"
    )
}

/// wrk's script for the pipelined case: `depth` requests per batch.
const PIPELINE_LUA: &str = "init = function(args)
  local depth = tonumber(args[1]) or 1
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format()
  end
  req = table.concat(r)
end

request = function()
  return req
end
";

fn wrk_once(
    opts: &Options,
    addr: SocketAddrV4,
    script: Option<&Path>,
) -> Result<(u64, f64, Duration), String> {
    let secs = opts.duration.as_secs().max(1);
    let mut cmd = Command::new(&opts.wrk);
    cmd.args(["-t", &opts.threads.to_string()])
        .args(["-c", &opts.connections.to_string()])
        .args(["-d", &format!("{secs}s"), "--latency"]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    cmd.arg(format!("http://{addr}/plaintext"));
    if script.is_some() {
        cmd.args(["--", &opts.depth.to_string()]);
    }
    let cpu0 = super::children_cpu();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", opts.wrk.display()))?;
    let gen_cpu = super::children_cpu().saturating_sub(cpu0);
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk exited with {}: {}{text}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let report = parse_wrk(&text).map_err(|e| format!("{e}:\n{text}"))?;
    if let Some(e) = report.errors() {
        return Err(format!("{e}:\n{text}"));
    }
    Ok((report.requests, report.requests_per_sec, gen_cpu))
}

/// Runs the scenario: `rounds` rounds of both cases on both servers.
pub fn run(
    opts: &Options,
    rounds: usize,
    mut progress: impl FnMut(&Run),
) -> Result<Vec<Run>, String> {
    let nginx = super::ensure_tool("nginx", "nginx-light")?;
    let ours_cmd = ServerCmd {
        name: OURS.into(),
        program: super::root_example("http_plaintext")?,
        args: vec![],
        proto: Proto::Http,
    };
    let dir = TempDir::new("nginx").map_err(|e| format!("temp dir: {e}"))?;
    let port = super::free_port().map_err(|e| format!("free port: {e}"))?;
    let conf = dir.path().join("nginx.conf");
    let script = dir.path().join("pipeline.lua");
    std::fs::write(&conf, nginx_conf(dir.path(), port))
        .and_then(|()| std::fs::write(&script, PIPELINE_LUA))
        .map_err(|e| format!("writing into {}: {e}", dir.path().display()))?;
    let mut cmd = Command::new(nginx);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.path().join("error.log"));
    let theirs = Peer::start(
        THEIRS,
        cmd,
        SocketAddrV4::new([127, 0, 0, 1].into(), port),
        dir.path().join("nginx.out"),
    )?;
    let ours = Server::start(&ours_cmd)?;
    check_hello(theirs.addr).map_err(|e| format!("{THEIRS}: {e}"))?;
    check_hello(ours.addr).map_err(|e| format!("{OURS}: {e}"))?;
    let servers = [
        (OURS, ours.pid, ours.addr),
        (THEIRS, theirs.pid, theirs.addr),
    ];
    let mut runs = Vec::new();
    for round in 0..rounds {
        for case in CASES {
            let order: Vec<_> = if round % 2 == 0 {
                servers.iter().collect()
            } else {
                servers.iter().rev().collect()
            };
            for &(name, pid, addr) in order {
                let cpu0 = cpu_time_tree(pid);
                let s = (case == "pipelined").then_some(script.as_path());
                let (ops, rate, gen_cpu) =
                    wrk_once(opts, addr, s).map_err(|e| format!("{name} {case}: {e}"))?;
                let cpu = cpu_time_tree(pid).saturating_sub(cpu0);
                let r = Run {
                    case: case.into(),
                    server: name.into(),
                    round,
                    ops,
                    rate,
                    cpu: vec![cpu],
                    gen_cpu,
                };
                progress(&r);
                runs.push(r);
            }
        }
    }
    ours.stop()?;
    theirs.stop()?;
    Ok(runs)
}

/// The scenario's markdown table.
pub fn markdown(runs: &[Run], opts: &Options, rounds: usize) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "### http-plaintext\n\n`wrk -t {} -c {} -d {}s --latency http://ADDR/plaintext` (pipelined: plus \
         `-s pipeline.lua -- {}`, {} requests per batch); {} as one process, access log off; \
         {rounds} round(s), servers alternated; cells are median (min–max), ratios ours ({OURS}) / nginx \
         of the medians. CPU µs/req: the server's utime+stime over wrk's run ÷ wrk's requests.\n",
        opts.threads,
        opts.connections,
        opts.duration.as_secs().max(1),
        opts.depth,
        opts.depth,
        nginx_version(),
    );
    let _ = writeln!(
        md,
        "| case | req/s ours | req/s nginx | × | CPU µs/req ours | CPU µs/req nginx | × | wrk CPU % ours / nginx |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for case in CASES {
        let rate = |s| stat(runs, case, s, |r| r.rate);
        let cpu = |s| stat(runs, case, s, |r| r.cpu_us_per_op(None));
        let gen = |s| {
            stat(runs, case, s, |r| {
                100.0 * r.gen_cpu.as_secs_f64() * r.rate / r.ops.max(1) as f64
            })
            .map_or("–".into(), |s| format!("{:.0}", s.med))
        };
        let _ = writeln!(
            md,
            "| {case} | {} | {} | {} | {} | {} | {} | {} / {} |",
            cell(rate(OURS)),
            cell(rate(THEIRS)),
            ratio(rate(OURS), rate(THEIRS)),
            cell(cpu(OURS)),
            cell(cpu(THEIRS)),
            ratio(cpu(OURS), cpu(THEIRS)),
            gen(OURS),
            gen(THEIRS),
        );
    }
    md
}

fn nginx_version() -> String {
    super::which("nginx")
        .and_then(|p| Command::new(p).arg("-v").output().ok())
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .and_then(|v| v.strip_prefix("nginx version: ").map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_conf_keeps_everything_in_the_temp_dir_on_loopback() {
        let c = nginx_conf(Path::new("/tmp/x"), 4242);
        assert!(c.contains("listen 127.0.0.1:4242;"));
        assert!(c.contains("master_process off;"));
        assert!(c.contains("access_log off;"));
        assert!(c.contains("pid /tmp/x/nginx.pid;"));
        for line in c
            .lines()
            .filter(|l| l.contains("_path") || l.contains("_log"))
        {
            assert!(line.contains("/tmp/x/") || line.contains(" off;"), "{line}");
        }
    }
}
