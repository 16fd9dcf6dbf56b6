//! The single-threaded, verifying load generator.
//!
//! One thread, one epoll instance (edge-triggered), raw non-blocking
//! sockets: the cheapest client we could write, so the CPU left over goes to
//! the server under test. Its own CPU use is reported with every window so a
//! saturated generator is visible rather than silently capping results.
//!
//! Every connection sends the stream [`crate::pattern`] derives from
//! its own seed and checks every echoed byte at the offset it must occupy;
//! any loss, duplication, reordering, corruption, cross-connection mix-up,
//! early close or stall fails the run with a message naming the connection.
//!
//! # Scenarios
//!
//! | scenario    | one "op" is                         | in flight per connection   |
//! |-------------|-------------------------------------|----------------------------|
//! | `pingpong`  | an S-byte message echoed back       | 1 message                  |
//! | `pipelined` | an S-byte message echoed back       | K messages                 |
//! | `bulk`      | a 64 KiB write echoed back          | 4 writes (256 KiB window)  |
//! | `churn`     | connect, send S, receive S, close   | N connections overall      |
//! | `idle`      | (none) N connections held open      | 0                          |
//! | `http`      | a `GET /` answered (wrk, not us)    | 1 request                  |
//!
//! Each run is: set-up (connect, one warm-up round trip per connection, so
//! every connection is accepted and registered), the timed window, then a
//! drain that stops issuing and waits for every outstanding byte. Only ops
//! completed inside the window count; latency runs from issuing a message
//! (or, for churn, starting the connect) to its last echoed byte.

use crate::hist::Histogram;
use crate::pattern::{self, Verifier};
use crate::sys::{self, Epoll};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// The load shapes the generator can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// C connections, one S-byte message in flight each.
    PingPong,
    /// The same with 1000 connections (the issue's second ping-pong load).
    PingPong1000,
    /// C connections, K S-byte messages in flight each.
    Pipelined,
    /// C connections, continuous 64 KiB writes with the echo read back.
    Bulk,
    /// Connect, send, receive, close; N connections in flight.
    Churn,
    /// N connections held open without traffic.
    Idle,
    /// HTTP/1.1 `GET /` driven by `wrk` against an HTTP server (see [`crate::http`]);
    /// not in [`Scenario::ALL`]: it needs `wrk` and HTTP servers.
    Http,
}

impl Scenario {
    /// All scenarios, in report order.
    pub const ALL: [Scenario; 6] = [
        Scenario::PingPong,
        Scenario::PingPong1000,
        Scenario::Pipelined,
        Scenario::Bulk,
        Scenario::Churn,
        Scenario::Idle,
    ];

    /// Scenarios run only when asked for (`--scenarios http`).
    pub const OPTIONAL: [Scenario; 1] = [Scenario::Http];

    /// The protocol a server must speak to be measured by this scenario.
    pub fn proto(self) -> crate::servers::Proto {
        match self {
            Scenario::Http => crate::servers::Proto::Http,
            _ => crate::servers::Proto::Echo,
        }
    }

    /// The scenario's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::PingPong => "pingpong",
            Scenario::PingPong1000 => "pingpong1000",
            Scenario::Pipelined => "pipelined",
            Scenario::Bulk => "bulk",
            Scenario::Churn => "churn",
            Scenario::Idle => "idle",
            Scenario::Http => "http",
        }
    }

    /// Parses a command-line name.
    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL
            .into_iter()
            .chain(Scenario::OPTIONAL)
            .find(|sc| sc.name() == s)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Load shape parameters; identical for every server.
#[derive(Debug, Clone)]
pub struct Params {
    /// Length of each timed window.
    pub duration: Duration,
    /// Connections for pingpong, pipelined and bulk.
    pub connections: usize,
    /// Message size for pingpong, pipelined and churn.
    pub msg_size: usize,
    /// Messages in flight per connection when pipelined.
    pub depth: usize,
    /// Connections for bulk.
    pub bulk_connections: usize,
    /// Connections in flight during churn.
    pub churn_inflight: usize,
    /// Connections held open by idle.
    pub idle_connections: usize,
    /// Client source addresses 127.0.0.2 ..= 127.0.0.(1 + n), to spread ports.
    pub source_addrs: u8,
    /// Longest wait for set-up or drain before the run is failed as stalled.
    pub stall_timeout: Duration,
    /// Nonce mixed into every connection's seed.
    pub run_nonce: u64,
    /// `http`: wrk's connections (`-c`).
    pub http_connections: usize,
    /// `http`: wrk's threads (`-t`).
    pub http_threads: usize,
    /// `http`: wrk's run length (`-d`, whole seconds).
    pub http_duration: Duration,
    /// `http`: the wrk executable.
    pub wrk: std::path::PathBuf,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(2),
            connections: 100,
            msg_size: 64,
            depth: 16,
            bulk_connections: 4,
            churn_inflight: 32,
            idle_connections: 10_000,
            source_addrs: 8,
            stall_timeout: Duration::from_secs(10),
            run_nonce: 0x5EED,
            http_connections: 100,
            http_threads: 1,
            http_duration: Duration::from_secs(5),
            wrk: "wrk".into(),
        }
    }
}

impl Params {
    /// A tiny configuration that still runs every code path (for tests).
    pub fn smoke() -> Self {
        Self {
            duration: Duration::from_millis(150),
            connections: 4,
            msg_size: 100,
            depth: 4,
            bulk_connections: 2,
            churn_inflight: 4,
            idle_connections: 50,
            http_connections: 10,
            http_duration: Duration::from_secs(1),
            ..Self::default()
        }
    }
}

/// Hooks the driver uses to sample the server exactly around the window.
pub trait Probe {
    /// Called before any connection is opened.
    fn before_setup(&mut self) {}
    /// Called after set-up, immediately before the window starts.
    fn window_start(&mut self) {}
    /// Called immediately after the window ends, before the drain.
    fn window_end(&mut self) {}
}

/// A probe that samples nothing.
#[derive(Debug, Default)]
pub struct NoProbe;

impl Probe for NoProbe {}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario run.
    pub scenario: Scenario,
    /// Ops completed inside the window.
    pub ops: u64,
    /// Echoed bytes verified inside the window.
    pub bytes: u64,
    /// Measured window length.
    pub window: Duration,
    /// Latency of every op completed in the window (ns).
    pub hist: Histogram,
    /// CPU time the generator itself used during the window.
    pub gen_cpu: Duration,
    /// Connections open during the window (idle: connections held).
    pub connections: usize,
    /// p50 and p99 latency (µs) as an external generator reported them
    /// (`http`: wrk), when `hist` is empty.
    pub quoted_latency_us: Option<[f64; 2]>,
}

/// A failed run: what went wrong, in words.
#[derive(Debug, Clone)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

type Res<T> = Result<T, Failure>;

fn fail<T>(msg: impl Into<String>) -> Res<T> {
    Err(Failure(msg.into()))
}

/// The source address of the `n`th client socket: 127.0.0.2 ..= 127.0.0.(1 + source_addrs)
/// in turn, or none (the kernel picks) when `source_addrs` is 0.
pub fn source_ip(params: &Params, n: usize) -> Option<Ipv4Addr> {
    (params.source_addrs > 0)
        .then(|| Ipv4Addr::new(127, 0, 0, 2 + (n % params.source_addrs as usize) as u8))
}

/// Runs `scenario` against the echo (`http`: HTTP) server at `addr`, calling `probe` around the window.
pub fn run(
    scenario: Scenario,
    addr: SocketAddrV4,
    params: &Params,
    probe: &mut dyn Probe,
) -> Res<Outcome> {
    let _ = sys::raise_nofile_limit();
    probe.before_setup();
    let out = match scenario {
        Scenario::PingPong => StreamRun::new(addr, params, params.connections, params.msg_size, 1)?
            .run(scenario, probe),
        Scenario::PingPong1000 => {
            StreamRun::new(addr, params, 1000, params.msg_size, 1)?.run(scenario, probe)
        }
        Scenario::Pipelined => StreamRun::new(
            addr,
            params,
            params.connections,
            params.msg_size,
            params.depth,
        )?
        .run(scenario, probe),
        Scenario::Bulk => {
            StreamRun::new(addr, params, params.bulk_connections, crate::BUF_SIZE, 4)?
                .run(scenario, probe)
        }
        Scenario::Idle => {
            StreamRun::new(addr, params, params.idle_connections, params.msg_size, 1)?
                .run_idle(probe)
        }
        Scenario::Churn => ChurnRun::new(addr, params)?.run(probe),
        Scenario::Http => crate::http::run(addr, params, probe),
    };
    out.map_err(|Failure(m)| Failure(format!("{scenario}: {m}")))
}

const EV_STREAM: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
const SETUP_IN_FLIGHT: usize = 256;

fn wait_ms(deadline: Instant, now: Instant) -> i32 {
    let left = deadline.saturating_duration_since(now);
    (left.as_micros().div_ceil(1000)).min(50) as i32
}

/// One long-lived connection of the stream scenarios.
struct Conn {
    fd: RawFd,
    seed: u64,
    connected: bool,
    /// Bytes written so far.
    sent: u64,
    /// Bytes issued (owed to the socket); `sent <= limit`.
    limit: u64,
    rx: Verifier,
    issued: u64,
    done: u64,
    /// Issue times (ns since the run's epoch) of messages in flight.
    starts: VecDeque<u64>,
}

/// The engine for pingpong, pipelined, bulk and idle.
struct StreamRun {
    ep: Epoll,
    addr: SocketAddrV4,
    params: Params,
    conns: Vec<Conn>,
    target: usize,
    msg: u64,
    depth: u64,
    /// Messages each connection may issue in total (raised for the window).
    cap: u64,
    epoch: Instant,
    counting: bool,
    ops: u64,
    bytes: u64,
    hist: Histogram,
    rxbuf: Vec<u8>,
    txbuf: Vec<u8>,
    events: Vec<libc::epoll_event>,
}

impl Drop for StreamRun {
    fn drop(&mut self) {
        for c in &self.conns {
            sys::close(c.fd);
        }
    }
}

impl StreamRun {
    fn new(
        addr: SocketAddrV4,
        params: &Params,
        conns: usize,
        msg: usize,
        depth: usize,
    ) -> Res<Self> {
        Ok(Self {
            ep: Epoll::new().map_err(|e| Failure(format!("epoll_create1: {e}")))?,
            addr,
            params: params.clone(),
            conns: Vec::with_capacity(conns),
            target: conns,
            msg: msg as u64,
            depth: depth as u64,
            cap: 1,
            epoch: Instant::now(),
            counting: false,
            ops: 0,
            bytes: 0,
            hist: Histogram::new(),
            rxbuf: vec![0; crate::BUF_SIZE],
            txbuf: vec![0; crate::BUF_SIZE],
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 1024],
        })
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn ctx(&self, i: usize, what: impl fmt::Display) -> Failure {
        Failure(format!(
            "connection {i} (seed {:#018x}, {} bytes sent, {} verified): {what}",
            self.conns[i].seed,
            self.conns[i].sent,
            self.conns[i].rx.received()
        ))
    }

    /// Opens connections until `target` exist, at most `SETUP_IN_FLIGHT`
    /// not yet through their warm-up round trip (keeps the listen backlog sane).
    fn open_more(&mut self) -> Res<()> {
        let warm = self.conns.iter().filter(|c| c.done >= 1).count();
        while self.conns.len() < self.target && self.conns.len() - warm < SETUP_IN_FLIGHT {
            let n = self.conns.len();
            let fd = sys::connect_nonblocking(self.addr, source_ip(&self.params, n))
                .map_err(|e| Failure(format!("connect #{n} to {}: {e}", self.addr)))?;
            let seed = pattern::seed_for(self.params.run_nonce, n as u64);
            self.conns.push(Conn {
                fd,
                seed,
                connected: false,
                sent: 0,
                limit: 0,
                rx: Verifier::new(seed),
                issued: 0,
                done: 0,
                starts: VecDeque::new(),
            });
            self.ep
                .add(fd, EV_STREAM, n as u64)
                .map_err(|e| Failure(format!("epoll add: {e}")))?;
        }
        Ok(())
    }

    fn issue(&mut self, i: usize, now: u64) {
        let c = &mut self.conns[i];
        while c.issued < self.cap && c.issued - c.done < self.depth {
            c.starts.push_back(now);
            c.issued += 1;
            c.limit += self.msg;
        }
    }

    fn flush(&mut self, i: usize) -> Res<()> {
        loop {
            let c = &self.conns[i];
            if !c.connected || c.sent >= c.limit {
                return Ok(());
            }
            let n = ((c.limit - c.sent) as usize).min(self.txbuf.len());
            pattern::fill(c.seed, c.sent, &mut self.txbuf[..n]);
            match sys::send(c.fd, &self.txbuf[..n]) {
                Ok(k) => self.conns[i].sent += k as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.ctx(i, format_args!("send: {e}"))),
            }
        }
    }

    fn on_read(&mut self, i: usize) -> Res<()> {
        loop {
            let fd = self.conns[i].fd;
            match sys::read(fd, &mut self.rxbuf) {
                Ok(0) => return Err(self.ctx(i, "server closed the connection")),
                Ok(n) => {
                    let c = &mut self.conns[i];
                    if let Err(e) = c.rx.feed(&self.rxbuf[..n], c.sent) {
                        return Err(self.ctx(i, e));
                    }
                    if self.counting {
                        self.bytes += n as u64;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.ctx(i, format_args!("read: {e}"))),
            }
        }
        let now = self.now_ns();
        let c = &mut self.conns[i];
        while c.rx.received() >= (c.done + 1) * self.msg {
            c.done += 1;
            let start = c
                .starts
                .pop_front()
                .expect("a completed message was issued");
            if self.counting {
                self.hist.record(now.saturating_sub(start));
                self.ops += 1;
            }
        }
        self.issue(i, now);
        self.flush(i)
    }

    fn on_event(&mut self, i: usize, ev: u32) -> Res<()> {
        if !self.conns[i].connected {
            if let Some(e) = sys::take_socket_error(self.conns[i].fd)
                .map_err(|e| self.ctx(i, format_args!("getsockopt: {e}")))?
            {
                return Err(self.ctx(i, format_args!("connect: {e}")));
            }
            if ev & libc::EPOLLOUT as u32 == 0 {
                return Ok(());
            }
            self.conns[i].connected = true;
            let now = self.now_ns();
            self.issue(i, now);
        }
        if ev & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
            self.on_read(i)?;
        }
        if ev & libc::EPOLLOUT as u32 != 0 {
            self.flush(i)?;
        }
        Ok(())
    }

    /// Runs the loop until `deadline`, or until `done` holds (checked each turn).
    fn turn_until(&mut self, deadline: Instant, done: impl Fn(&Self) -> bool) -> Res<bool> {
        loop {
            if done(self) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let n = self
                .ep
                .wait(&mut self.events, wait_ms(deadline, now))
                .map_err(|e| Failure(format!("epoll_wait: {e}")))?;
            for k in 0..n {
                let ev = self.events[k];
                self.on_event(ev.u64 as usize, ev.events)?;
            }
        }
    }

    fn all_done(&self, msgs: u64) -> bool {
        self.conns.len() == self.target
            && self
                .conns
                .iter()
                .all(|c| c.done >= msgs && c.done == c.issued && c.rx.received() == c.sent)
    }

    /// Set-up: every connection connected and through one warm-up round trip.
    fn setup(&mut self) -> Res<()> {
        let deadline = Instant::now() + self.params.stall_timeout;
        self.cap = 1;
        while !self.all_done(1) {
            self.open_more()?;
            if Instant::now() >= deadline {
                let warm = self.conns.iter().filter(|c| c.done >= 1).count();
                return fail(format!(
                    "set-up stalled: {warm} of {} connections completed their warm-up echo",
                    self.target
                ));
            }
            let step = (Instant::now() + Duration::from_millis(20)).min(deadline);
            self.turn_until(step, |s| s.all_done(1))?;
        }
        Ok(())
    }

    /// Stops issuing (after topping every connection up to `msgs` messages)
    /// and waits until every issued byte is echoed and verified.
    fn drain(&mut self, msgs: u64) -> Res<()> {
        let deadline = Instant::now() + self.params.stall_timeout;
        let now = self.now_ns();
        for i in 0..self.conns.len() {
            self.cap = self.conns[i].issued.max(msgs);
            self.issue(i, now);
            self.flush(i)?;
        }
        self.cap = 0; // the read path issues nothing more
        if !self.turn_until(deadline, |s| s.all_done(msgs))? {
            let owed: u64 = self
                .conns
                .iter()
                .map(|c| c.sent.max(c.limit) - c.rx.received())
                .sum();
            return fail(format!(
                "drain stalled: {owed} echoed bytes still missing after {:?}",
                self.params.stall_timeout
            ));
        }
        for (i, c) in self.conns.iter().enumerate() {
            if let Err(e) = c.rx.finish(c.sent) {
                return Err(self.ctx(i, e));
            }
        }
        Ok(())
    }

    fn window(&mut self, probe: &mut dyn Probe) -> Res<(Duration, Duration)> {
        probe.window_start();
        let cpu0 = sys::self_cpu_time();
        let t0 = Instant::now();
        self.counting = true;
        // Start every pipeline only now: the probe may have slept (perf
        // attach) and messages stamped before that would show its delay.
        let now = self.now_ns();
        for i in 0..self.conns.len() {
            self.issue(i, now);
            self.flush(i)?;
        }
        self.turn_until(t0 + self.params.duration, |_| false)?;
        let window = t0.elapsed();
        self.counting = false;
        let gen_cpu = sys::self_cpu_time().saturating_sub(cpu0);
        probe.window_end();
        Ok((window, gen_cpu))
    }

    fn outcome(&self, scenario: Scenario, window: Duration, gen_cpu: Duration) -> Outcome {
        Outcome {
            scenario,
            ops: self.ops,
            bytes: self.bytes,
            window,
            hist: self.hist.clone(),
            gen_cpu,
            connections: self.conns.len(),
            quoted_latency_us: None,
        }
    }

    fn run(mut self, scenario: Scenario, probe: &mut dyn Probe) -> Res<Outcome> {
        self.setup()?;
        self.cap = u64::MAX;
        let (window, gen_cpu) = self.window(probe)?;
        self.drain(1)?;
        Ok(self.outcome(scenario, window, gen_cpu))
    }

    /// Idle: hold every connection through the window, then prove each
    /// still echoes with one more round trip.
    fn run_idle(mut self, probe: &mut dyn Probe) -> Res<Outcome> {
        self.setup()?;
        let (window, gen_cpu) = self.window(probe)?;
        self.drain(2)?;
        Ok(self.outcome(Scenario::Idle, window, gen_cpu))
    }
}

/// One short-lived churn connection.
struct ChurnConn {
    fd: RawFd,
    seed: u64,
    started: u64,
    connected: bool,
    sent: u64,
    rx: Verifier,
}

/// The engine for churn: N slots, each cycling connect, send, receive, close.
struct ChurnRun {
    ep: Epoll,
    addr: SocketAddrV4,
    params: Params,
    slots: Vec<Option<ChurnConn>>,
    next_conn: u64,
    opening: bool,
    counting: bool,
    epoch: Instant,
    /// Window start, ns since `epoch`.
    window_start: u64,
    ops: u64,
    bytes: u64,
    hist: Histogram,
    rxbuf: Vec<u8>,
    txbuf: Vec<u8>,
    events: Vec<libc::epoll_event>,
}

impl Drop for ChurnRun {
    fn drop(&mut self) {
        for c in self.slots.iter().flatten() {
            sys::close(c.fd);
        }
    }
}

impl ChurnRun {
    fn new(addr: SocketAddrV4, params: &Params) -> Res<Self> {
        Ok(Self {
            ep: Epoll::new().map_err(|e| Failure(format!("epoll_create1: {e}")))?,
            addr,
            params: params.clone(),
            slots: (0..params.churn_inflight.max(1)).map(|_| None).collect(),
            next_conn: 0,
            opening: true,
            counting: false,
            epoch: Instant::now(),
            window_start: u64::MAX,
            ops: 0,
            bytes: 0,
            hist: Histogram::new(),
            rxbuf: vec![0; crate::BUF_SIZE],
            txbuf: vec![0; crate::BUF_SIZE],
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 1024],
        })
    }

    fn ctx(&self, slot: usize, what: impl fmt::Display) -> Failure {
        match &self.slots[slot] {
            Some(c) => Failure(format!(
                "churn connection (seed {:#018x}, {} bytes sent, {} verified): {what}",
                c.seed,
                c.sent,
                c.rx.received()
            )),
            None => Failure(format!("churn slot {slot}: {what}")),
        }
    }

    fn refill(&mut self) -> Res<()> {
        if !self.opening {
            return Ok(());
        }
        for slot in 0..self.slots.len() {
            if self.slots[slot].is_some() {
                continue;
            }
            let n = self.next_conn;
            self.next_conn += 1;
            let fd = sys::connect_nonblocking(self.addr, source_ip(&self.params, n as usize))
                .map_err(|e| {
                    Failure(format!(
                        "connect #{n} to {} (source ports exhausted? raise --source-addrs): {e}",
                        self.addr
                    ))
                })?;
            let seed = pattern::seed_for(self.params.run_nonce ^ (0xC4u64 << 56), n);
            self.slots[slot] = Some(ChurnConn {
                fd,
                seed,
                started: self.epoch.elapsed().as_nanos() as u64,
                connected: false,
                sent: 0,
                rx: Verifier::new(seed),
            });
            self.ep
                .add(fd, EV_STREAM, slot as u64)
                .map_err(|e| Failure(format!("epoll add: {e}")))?;
        }
        Ok(())
    }

    fn flush(&mut self, slot: usize) -> Res<()> {
        let msg = self.params.msg_size as u64;
        loop {
            let c = self.slots[slot].as_ref().expect("live slot");
            if c.sent >= msg {
                return Ok(());
            }
            let n = ((msg - c.sent) as usize).min(self.txbuf.len());
            pattern::fill(c.seed, c.sent, &mut self.txbuf[..n]);
            match sys::send(c.fd, &self.txbuf[..n]) {
                Ok(k) => self.slots[slot].as_mut().expect("live slot").sent += k as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.ctx(slot, format_args!("send: {e}"))),
            }
        }
    }

    fn on_event(&mut self, slot: usize, ev: u32) -> Res<()> {
        let msg = self.params.msg_size as u64;
        let Some(c) = self.slots[slot].as_mut() else {
            return Ok(());
        };
        if !c.connected {
            let fd = c.fd;
            if let Some(e) = sys::take_socket_error(fd)
                .map_err(|e| self.ctx(slot, format_args!("getsockopt: {e}")))?
            {
                return Err(self.ctx(slot, format_args!("connect: {e}")));
            }
            if ev & libc::EPOLLOUT as u32 == 0 {
                return Ok(());
            }
            self.slots[slot].as_mut().expect("live slot").connected = true;
        }
        if ev & libc::EPOLLOUT as u32 != 0 {
            self.flush(slot)?;
        }
        if ev & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 == 0 {
            return Ok(());
        }
        loop {
            let c = self.slots[slot].as_mut().expect("live slot");
            match sys::read(c.fd, &mut self.rxbuf) {
                Ok(0) => return Err(self.ctx(slot, "server closed the connection early")),
                Ok(n) => {
                    if let Err(e) = c.rx.feed(&self.rxbuf[..n], c.sent) {
                        return Err(self.ctx(slot, e));
                    }
                    if self.counting {
                        self.bytes += n as u64;
                    }
                    if c.rx.received() == msg {
                        let c = self.slots[slot].take().expect("live slot");
                        // close() also removes the fd from the epoll set.
                        sys::close(c.fd);
                        if self.counting {
                            self.ops += 1;
                            // Connections opened before the window waited
                            // out the probe's set-up: no latency for them.
                            if c.started >= self.window_start {
                                let now = self.epoch.elapsed().as_nanos() as u64;
                                self.hist.record(now - c.started);
                            }
                        }
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.ctx(slot, format_args!("read: {e}"))),
            }
        }
    }

    fn turn_until(&mut self, deadline: Instant, stop_when_empty: bool) -> Res<bool> {
        loop {
            self.refill()?;
            if stop_when_empty && self.slots.iter().all(Option::is_none) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let n = self
                .ep
                .wait(&mut self.events, wait_ms(deadline, now))
                .map_err(|e| Failure(format!("epoll_wait: {e}")))?;
            for k in 0..n {
                let ev = self.events[k];
                self.on_event(ev.u64 as usize, ev.events)?;
            }
        }
    }

    fn run(mut self, probe: &mut dyn Probe) -> Res<Outcome> {
        // Warm-up: one full cycle per slot, uncounted.
        self.turn_until(Instant::now() + Duration::from_millis(50), false)?;
        probe.window_start();
        let cpu0 = sys::self_cpu_time();
        let t0 = Instant::now();
        self.window_start = self.epoch.elapsed().as_nanos() as u64;
        self.counting = true;
        self.turn_until(t0 + self.params.duration, false)?;
        let window = t0.elapsed();
        self.counting = false;
        let gen_cpu = sys::self_cpu_time().saturating_sub(cpu0);
        probe.window_end();
        self.opening = false;
        let deadline = Instant::now() + self.params.stall_timeout;
        if !self.turn_until(deadline, true)? {
            let left = self.slots.iter().flatten().count();
            return fail(format!(
                "drain stalled: {left} connections never got their echo"
            ));
        }
        Ok(Outcome {
            scenario: Scenario::Churn,
            ops: self.ops,
            bytes: self.bytes,
            window,
            hist: self.hist.clone(),
            gen_cpu,
            connections: self.slots.len(),
            quoted_latency_us: None,
        })
    }
}
