//! Running out of file descriptors: the server reports it, keeps serving what it accepted,
//! does not spin, and accepts the waiting clients as soon as fds free up.
//!
//! The server runs in a child process (this test binary re-executed with a low
//! `RLIMIT_NOFILE`), so the limit does not starve the other tests. The child prints one
//! `FDCHILD ...` line per event of interest; the parent drives clients and reads those lines.

mod common;

use common::{assert_echo, assert_nothing_to_read, connect, echo};
use epoll_server::{Bytes, ConnId, ConnInfo, Context, Handler, Server};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "EPOLL_SERVER_FD_CHILD";
const CHILD_TEST: &str = "child_echo_server_with_low_fd_limit";
const FD_LIMIT: u64 = 64;
const CLIENTS: usize = 100;
const PREFIX: &str = "FDCHILD ";

/// The child's handler: echo, and say on stdout what happened.
struct Reporting;

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{PREFIX}{line}");
    let _ = out.flush();
}

impl Handler for Reporting {
    fn on_open(&mut self, _ctx: &mut Context<'_>, conn: ConnInfo) {
        say(&format!("open {}", conn.peer.as_tcp().unwrap().port()));
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        echo(ctx, conn, data);
    }

    fn on_error(&mut self, _ctx: &mut Context<'_>, conn: Option<ConnId>, error: &io::Error) {
        say(&format!(
            "error {} os={:?} {error}",
            conn.is_some(),
            error.raw_os_error()
        ));
    }
}

/// Sets the soft `RLIMIT_NOFILE` of this (child) process.
fn set_soft_nofile(soft: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into a live local.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = soft as libc::rlim_t;
    // SAFETY: setrlimit reads one fully initialised rlimit from a live local.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// The child side: an echo server under a low fd limit, until its stdin closes. The
/// environment variable holds the accept back-off in milliseconds, or `default`.
#[test]
fn child_echo_server_with_low_fd_limit() {
    let Some(backoff) = std::env::var_os(CHILD_ENV) else {
        return; // Only runs when re-executed by the parent tests below.
    };
    set_soft_nofile(FD_LIMIT);
    let mut builder = Server::builder();
    if let Ok(ms) = backoff.to_string_lossy().parse::<u64>() {
        let backoff = Duration::from_millis(ms);
        builder = builder.accept_backoff(backoff, backoff);
    }
    let server = builder
        .bind("127.0.0.1:0")
        .unwrap()
        .build(Reporting)
        .unwrap()
        .spawn()
        .unwrap();
    say(&format!("port {}", server.local_addr().port()));
    // The parent closes our stdin when it is done (or dies): then stop.
    let _ = io::stdin().read_to_end(&mut Vec::new());
    let stats = server.handle().stats();
    say(&format!(
        "stats accept_errors={} accept_backoffs={}",
        stats.accept_errors, stats.accept_backoffs
    ));
    server.stop_and_join().unwrap();
    say("stopped");
}

/// The child's CPU time so far (user + system), from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at field 3, `state`.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf takes no pointers and has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_secs_f64(ticks as f64 / per_sec as f64)
}

/// A child server with all its fds in use, and our clients of it.
struct Exhausted {
    child: Child,
    lines: Receiver<String>,
    clients: HashMap<u16, TcpStream>,
    /// Client ports the server accepted, in order.
    accepted: Vec<u16>,
    /// Client ports waiting in the kernel's backlog, in connection order.
    waiting: Vec<u16>,
}

impl Drop for Exhausted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Exhausted {
    /// Starts the child server with `backoff`, connects more clients than it has fds, and
    /// waits until it reports the accept error.
    fn start(backoff: &str) -> Exhausted {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, backoff)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("re-execute the test binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The harness may print "test name ... " on the same line first.
                if let Some(at) = line.find(PREFIX) {
                    if tx.send(line[at + PREFIX.len()..].to_string()).is_err() {
                        return;
                    }
                }
            }
        });
        let mut this = Exhausted {
            child,
            lines,
            clients: HashMap::new(),
            accepted: Vec::new(),
            waiting: Vec::new(),
        };
        let port: u16 = this
            .line("the port")
            .strip_prefix("port ")
            .expect("the child's first line is its port")
            .parse()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));

        // More clients than the child has fds: the kernel completes every handshake, the
        // server can accept only some.
        let mut order = Vec::new();
        for _ in 0..CLIENTS {
            let c = connect(addr);
            let port = c.local_addr().unwrap().port();
            order.push(port);
            this.clients.insert(port, c);
        }
        // Opens until the server reports the accept error; none can follow until a close.
        let error = loop {
            let line = this.line("opens, then the accept error");
            if let Some(port) = line.strip_prefix("open ") {
                this.accepted.push(port.parse::<u16>().unwrap());
            } else if let Some(err) = line.strip_prefix("error ") {
                break err.to_string();
            } else {
                panic!("unexpected child line {line:?}");
            }
        };
        assert!(
            error.starts_with("false os=Some(24)") || error.contains("Too many open files"),
            "on_error should report EMFILE for the server, got {error:?}"
        );
        assert!(
            !this.accepted.is_empty() && this.accepted.len() < CLIENTS,
            "accepted {} of {CLIENTS} with {FD_LIMIT} fds",
            this.accepted.len()
        );
        for port in &this.accepted {
            assert!(order.contains(port), "an accepted peer is one of ours");
        }
        this.waiting = order
            .into_iter()
            .filter(|p| !this.accepted.contains(p))
            .collect();
        this
    }

    #[track_caller]
    fn line(&self, what: &str) -> String {
        self.lines
            .recv_timeout(common::TIMEOUT)
            .unwrap_or_else(|_| panic!("child: no line while waiting for {what}"))
    }

    /// Closes `n` accepted clients; returns the ports of the `n` waiting clients the server
    /// then accepts, failing if that takes longer than `within`.
    #[track_caller]
    fn free(&mut self, n: usize, within: Duration) -> Vec<u16> {
        for port in self.accepted.drain(..n) {
            drop(self.clients.remove(&port));
        }
        let deadline = Instant::now() + within;
        let mut newly = Vec::new();
        while newly.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                panic!(
                    "only {} of {n} waiting clients were accepted within {within:?} after \
                     {n} connections closed",
                    newly.len()
                );
            };
            if let Some(port) = line.strip_prefix("open ") {
                let port: u16 = port.parse().unwrap();
                assert!(
                    self.waiting.contains(&port),
                    "reopened a client that was served already"
                );
                newly.push(port);
            } else if !line.starts_with("error ") {
                panic!("unexpected child line {line:?}");
            }
        }
        newly
    }

    /// Closes every client and the child's stdin; the child's server then stops gracefully.
    fn stop(mut self) {
        self.clients.clear();
        drop(self.child.stdin.take());
        let mut stopped = false;
        let mut counted = None;
        while let Ok(line) = self.lines.recv_timeout(common::TIMEOUT) {
            if let Some(stats) = line.strip_prefix("stats ") {
                // `Stats` counted the exhaustion: failed accepts, each followed by a back-off.
                let n: Vec<u64> = stats
                    .split(' ')
                    .map(|kv| kv.split('=').nth(1).unwrap().parse().unwrap())
                    .collect();
                counted = Some((n[0], n[1]));
            }
            if line == "stopped" {
                stopped = true;
                break;
            }
        }
        assert!(stopped, "the child's server did not stop");
        let (errors, backoffs) = counted.expect("the child reported its stats");
        assert!(
            backoffs >= 1 && errors >= backoffs,
            "stats after fd exhaustion: {errors} accept errors, {backoffs} back-offs"
        );
    }
}

#[test]
fn accepting_survives_fd_exhaustion_without_spinning() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    // The crate's default back-off (10 ms doubling to 1 s).
    let mut ex = Exhausted::start("default");

    // What was accepted is served.
    for port in &ex.accepted {
        let c = ex.clients.get_mut(port).unwrap();
        assert_echo(c, format!("hello from {port}").as_bytes());
    }
    // A waiting client is not served (its bytes wait in the kernel).
    let probe = ex.waiting[0];
    let c = ex.clients.get_mut(&probe).unwrap();
    c.write_all(b"probe").unwrap();
    assert_nothing_to_read(c, Duration::from_millis(200));

    // While exhausted and idle, the server must not spin.
    let pid = ex.child.id();
    let before = cpu_time(pid);
    let window = Instant::now();
    thread::sleep(Duration::from_secs(1));
    let used = cpu_time(pid) - before;
    let wall = window.elapsed();
    eprintln!(
        "accepted {} of {CLIENTS}; exhausted server used {used:?} of CPU in {wall:?}",
        ex.accepted.len()
    );
    assert!(
        used.as_secs_f64() < 0.3 * wall.as_secs_f64(),
        "the exhausted server used {used:?} of CPU in {wall:?}"
    );

    // Free some fds: that many waiting clients get accepted and served.
    let newly = ex.free(10, common::TIMEOUT);
    for port in &newly {
        let c = ex.clients.get_mut(port).unwrap();
        if *port == probe {
            // Its earlier bytes are delivered now that it is accepted.
            let mut early = [0u8; 5];
            c.read_exact(&mut early).unwrap();
            assert_eq!(&early, b"probe");
        }
        assert_echo(c, format!("late hello from {port}").as_bytes());
    }
    ex.stop();
}

#[test]
fn closing_a_connection_cuts_the_accept_backoff_short() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    // A back-off far longer than the test: only a close can make the server accept again.
    let mut ex = Exhausted::start("60000");
    // One close, and nothing else happening afterwards that could wake the server up.
    let mut newly = ex.free(1, Duration::from_secs(2));
    newly.extend(ex.free(5, Duration::from_secs(2)));
    for port in &newly {
        let c = ex.clients.get_mut(port).unwrap();
        assert_echo(c, b"accepted without waiting out the back-off");
    }
    ex.stop();
}
