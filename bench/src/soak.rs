//! The soak scenario: one server process under a steady mix of clients for
//! a long time, sampled every few seconds, judged at the end.
//!
//! One server process is started (with `--idle-timeout`,
//! `--first-byte-timeout` and `--write-stall-timeout` unless the soak runs
//! without timeouts) and the single-threaded generator keeps this mix
//! running against it, all at once, for the whole duration:
//!
//! | client kind           | what it does                                                        |
//! |-----------------------|---------------------------------------------------------------------|
//! | `pingpong`            | long-lived; one message of 1..=N bytes in flight, a short pause between |
//! | `churn`               | connect, send 1..=N bytes, read the echo, close; again after a pause |
//! | `bulk`                | long-lived; 64 KiB writes, a few in flight, paced                   |
//! | `slow-reader`         | long-lived; sends as fast as TCP lets it, reads the echo slowly but steadily |
//! | `reset`               | connect, send, (sometimes read some echo), close with `SO_LINGER` 0 |
//! | `slowloris-silent`    | connect, send nothing: the first-byte timeout must close it         |
//! | `slowloris-dribble`   | connect, send one byte every 2 s: the idle timeout must close it    |
//! | `slowloris-nonreader` | small buffers, send until blocked, never read: the idle or write-stall timeout must close it |
//!
//! Every echoed byte is checked against the connection's seeded stream
//! ([`crate::pattern`]), as the benchmark's generator does. Long-lived
//! clients never stay silent for more than a fraction of the idle timeout.
//! Slowloris clients must see the server close them (end of file or
//! reset) within their timeout plus a slack, measured from their connect
//! (silent) or their last byte sent (dribble, non-reader); each close is
//! counted with its latency, and one not closed in time is a failure.
//!
//! Every sampling interval the server's RSS (`VmRSS`), open file
//! descriptors (`/proc/PID/fd`) and CPU time (`utime + stime`) are read
//! and printed. At the end the load stops (long-lived clients wait for
//! every echoed byte, then close), the fd count must return to the
//! baseline measured before the load, and the verdict needs: no failure of
//! any kind, fds back to the baseline, RSS growth under 5 % between the
//! sample nearest 20 % of the run (minute 2 of 10) and the last sample
//! under load, every client kind making progress, slowloris clients closed
//! by the server, and a clean exit 0 on SIGTERM.

use crate::driver::{self, Server};
use crate::pattern::{self, Verifier};
use crate::servers::ServerCmd;
use crate::sys::{self, Epoll};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// The server timeouts the soak asks for and holds the server to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `--idle-timeout`: no inbound data for this long closes a connection.
    pub idle: Duration,
    /// `--first-byte-timeout`: no first byte this long after accept closes it.
    pub first_byte: Duration,
    /// `--write-stall-timeout`: queued output making no progress this long closes it.
    pub write_stall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(1),
            first_byte: Duration::from_secs(1),
            write_stall: Duration::from_secs(2),
        }
    }
}

/// A duration as the seconds argument the servers take (`1`, `0.5`).
fn secs_arg(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}", d.as_secs_f64())
    }
}

impl Timeouts {
    /// The server arguments that set these timeouts.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--idle-timeout".into(),
            secs_arg(self.idle),
            "--first-byte-timeout".into(),
            secs_arg(self.first_byte),
            "--write-stall-timeout".into(),
            secs_arg(self.write_stall),
        ]
    }
}

/// How many clients of each kind run at once, and how fast.
#[derive(Debug, Clone)]
pub struct Mix {
    /// Long-lived ping-pong connections.
    pub pingpong: usize,
    /// Largest ping-pong message (sizes are uniform in 1..=this).
    pub pingpong_max: usize,
    /// Pause between a ping-pong echo and the next message.
    pub pingpong_gap: Duration,
    /// Churn connections in flight.
    pub churn: usize,
    /// Largest churn message.
    pub churn_max: usize,
    /// Pause before a churn slot connects again.
    pub churn_gap: Duration,
    /// Long-lived bulk connections.
    pub bulk: usize,
    /// 64 KiB writes in flight per bulk connection.
    pub bulk_depth: usize,
    /// Pause between a bulk write's echo and the next write.
    pub bulk_gap: Duration,
    /// Long-lived slow readers.
    pub slow: usize,
    /// Bytes a slow reader reads per tick.
    pub slow_chunk: usize,
    /// A slow reader's read interval.
    pub slow_tick: Duration,
    /// Reset connections in flight.
    pub resets: usize,
    /// Pause before a reset slot connects again.
    pub reset_gap: Duration,
    /// Silent slowloris connections held (only with timeouts).
    pub silent: usize,
    /// Dribbling slowloris connections held (only with timeouts).
    pub dribble: usize,
    /// Interval between a dribbler's bytes.
    pub dribble_every: Duration,
    /// Non-reading slowloris connections held (only with timeouts).
    pub nonreader: usize,
}

impl Mix {
    /// The release-build mix: a steady, moderate load (the server well under one core here).
    pub fn full() -> Self {
        Self {
            pingpong: 50,
            pingpong_max: 1024,
            pingpong_gap: Duration::from_millis(2),
            churn: 8,
            churn_max: 4096,
            churn_gap: Duration::from_millis(5),
            bulk: 2,
            bulk_depth: 2,
            bulk_gap: Duration::from_millis(10),
            slow: 4,
            slow_chunk: 16 * 1024,
            slow_tick: Duration::from_millis(20),
            resets: 4,
            reset_gap: Duration::from_millis(20),
            silent: 4,
            dribble: 4,
            dribble_every: Duration::from_secs(2),
            nonreader: 2,
        }
    }

    /// A light mix for debug builds on shared cores (the CI test).
    pub fn light() -> Self {
        Self {
            pingpong: 8,
            pingpong_max: 1024,
            pingpong_gap: Duration::from_millis(10),
            churn: 2,
            churn_max: 4096,
            churn_gap: Duration::from_millis(20),
            bulk: 1,
            bulk_depth: 1,
            bulk_gap: Duration::from_millis(50),
            slow: 2,
            slow_chunk: 16 * 1024,
            slow_tick: Duration::from_millis(20),
            resets: 2,
            reset_gap: Duration::from_millis(50),
            silent: 2,
            dribble: 2,
            dribble_every: Duration::from_secs(2),
            nonreader: 1,
        }
    }

    fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::PingPong => self.pingpong,
            Kind::Churn => self.churn,
            Kind::Bulk => self.bulk,
            Kind::Slow => self.slow,
            Kind::Reset => self.resets,
            Kind::Silent => self.silent,
            Kind::Dribble => self.dribble,
            Kind::NonReader => self.nonreader,
        }
    }

    /// One line describing the mix (`slowloris`: whether its slowloris clients run).
    pub fn describe(&self, slowloris: bool) -> String {
        let loris = if slowloris {
            format!(
                "slowloris: {} silent, {} dribbling (1 B per {:?}), {} non-reading",
                self.silent, self.dribble, self.dribble_every, self.nonreader
            )
        } else {
            "no slowloris clients".into()
        };
        format!(
            "{} ping-pong (1..={} B, {:?} pause), {} churn (1..={} B, {:?} pause), \
             {} bulk (64 KiB × {} in flight, {:?} pause), {} slow readers ({} KiB per {:?}), \
             {} resets ({:?} pause), {loris}",
            self.pingpong,
            self.pingpong_max,
            self.pingpong_gap,
            self.churn,
            self.churn_max,
            self.churn_gap,
            self.bulk,
            self.bulk_depth,
            self.bulk_gap,
            self.slow,
            self.slow_chunk / 1024,
            self.slow_tick,
            self.resets,
            self.reset_gap,
        )
    }
}

/// Everything a soak run needs besides the server.
#[derive(Debug, Clone)]
pub struct SoakParams {
    /// Length of the load.
    pub duration: Duration,
    /// Sampling interval.
    pub interval: Duration,
    /// Server timeouts, or `None` to run without them (and without slowloris clients).
    pub timeouts: Option<Timeouts>,
    /// How late after its timeout a slowloris close may come.
    pub slack: Duration,
    /// The clients.
    pub mix: Mix,
    /// Client source addresses 127.0.0.2 ..= 127.0.0.(1 + n), to spread ports.
    pub source_addrs: u8,
    /// Nonce mixed into every connection's seed.
    pub nonce: u64,
    /// Longest wait, after the load, for every outstanding echo.
    pub drain_timeout: Duration,
    /// Longest wait, after every client closed, for the server's fds to return to the baseline.
    pub settle_timeout: Duration,
    /// Largest allowed RSS growth between the reference sample and the last one, in percent.
    pub max_rss_growth_pct: f64,
}

impl Default for SoakParams {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(600),
            interval: Duration::from_secs(10),
            timeouts: Some(Timeouts::default()),
            slack: Duration::from_secs(2),
            mix: Mix::full(),
            source_addrs: 8,
            nonce: 0x50A4,
            drain_timeout: Duration::from_secs(30),
            settle_timeout: Duration::from_secs(10),
            max_rss_growth_pct: 5.0,
        }
    }
}

impl SoakParams {
    /// Checks that long-lived clients stay busy enough for the idle timeout.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() || self.duration < self.interval {
            return Err(format!(
                "the soak duration ({:?}) must be at least one sampling interval ({:?})",
                self.duration, self.interval
            ));
        }
        if let Some(t) = self.timeouts {
            let half = t.idle / 2;
            for (name, gap) in [
                ("ping-pong pause", self.mix.pingpong_gap),
                ("bulk pause", self.mix.bulk_gap),
                ("slow-reader tick", self.mix.slow_tick),
            ] {
                if gap >= half {
                    return Err(format!(
                        "{name} {gap:?} is not under half the idle timeout ({:?}): \
                         long-lived clients would look idle",
                        t.idle
                    ));
                }
            }
        }
        Ok(())
    }

    fn count(&self, kind: Kind) -> usize {
        if kind.is_slowloris() && self.timeouts.is_none() {
            0
        } else {
            self.mix.count(kind)
        }
    }
}

/// The kinds of client in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Long-lived, one message in flight.
    PingPong,
    /// Connect, echo, close.
    Churn,
    /// Long-lived, 64 KiB writes.
    Bulk,
    /// Long-lived, reads slowly.
    Slow,
    /// Sends, then closes with a reset.
    Reset,
    /// Slowloris that sends nothing.
    Silent,
    /// Slowloris that sends one byte now and then.
    Dribble,
    /// Slowloris that sends until blocked and never reads.
    NonReader,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 8] = [
        Kind::PingPong,
        Kind::Churn,
        Kind::Bulk,
        Kind::Slow,
        Kind::Reset,
        Kind::Silent,
        Kind::Dribble,
        Kind::NonReader,
    ];

    /// The kind's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::PingPong => "pingpong",
            Kind::Churn => "churn",
            Kind::Bulk => "bulk",
            Kind::Slow => "slow-reader",
            Kind::Reset => "reset",
            Kind::Silent => "slowloris-silent",
            Kind::Dribble => "slowloris-dribble",
            Kind::NonReader => "slowloris-nonreader",
        }
    }

    /// Whether the server's timeouts must close this kind.
    pub fn is_slowloris(self) -> bool {
        matches!(self, Kind::Silent | Kind::Dribble | Kind::NonReader)
    }

    fn idx(self) -> usize {
        self as usize
    }

    /// What one op of this kind is, for reports.
    pub fn op(self) -> &'static str {
        match self {
            Kind::PingPong => "messages echoed",
            Kind::Churn => "connections echoed and closed",
            Kind::Bulk => "64 KiB writes echoed",
            Kind::Slow => "(bytes only)",
            Kind::Reset => "connections reset",
            Kind::Silent | Kind::Dribble | Kind::NonReader => "closed by the server",
        }
    }
}

/// Cumulative counts for one client kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindStats {
    /// Connections opened.
    pub opened: u64,
    /// Ops completed (see [`Kind::op`]).
    pub ops: u64,
    /// Echoed bytes verified.
    pub bytes: u64,
}

/// The classes of failure the soak counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// An echoed byte was wrong, extra or missing.
    Verify,
    /// The server closed or reset a connection it should have kept.
    Closed,
    /// A connect, send or read failed otherwise.
    Io,
    /// A slowloris connection was not closed within its timeout plus the slack.
    Timeout,
    /// Echoes still missing when the drain after the load gave up.
    Drain,
}

impl FailKind {
    /// Every class, in report order.
    pub const ALL: [FailKind; 5] = [
        FailKind::Verify,
        FailKind::Closed,
        FailKind::Io,
        FailKind::Timeout,
        FailKind::Drain,
    ];

    /// The class's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            FailKind::Verify => "verify",
            FailKind::Closed => "unexpected close",
            FailKind::Io => "i/o",
            FailKind::Timeout => "slowloris not closed in time",
            FailKind::Drain => "drain",
        }
    }
}

/// Failure counts and the first few messages.
#[derive(Debug, Clone, Default)]
pub struct Failures {
    /// Count per [`FailKind`] (indexed in [`FailKind::ALL`] order).
    pub counts: [u64; 5],
    /// The first [`Failures::KEPT`] messages.
    pub messages: Vec<String>,
}

impl Failures {
    /// How many messages are kept (and printed as they happen).
    pub const KEPT: usize = 20;

    fn add(&mut self, kind: FailKind, msg: String) {
        self.counts[kind as usize] += 1;
        if self.messages.len() < Self::KEPT {
            eprintln!("soak: FAILURE ({}): {msg}", kind.name());
            self.messages.push(format!("{}: {msg}", kind.name()));
        }
    }

    /// Failures of every kind.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Failures of one kind.
    pub fn of(&self, kind: FailKind) -> u64 {
        self.counts[kind as usize]
    }
}

/// One sample of the server (and of the load since the previous sample).
#[derive(Debug, Clone)]
pub struct Sample {
    /// `baseline` (before the load), `load`, or `after` (fds settled after the load).
    pub phase: &'static str,
    /// Time since the load started (the baseline is at 0).
    pub t: Duration,
    /// Server `VmRSS`, bytes.
    pub rss: u64,
    /// Server open fds.
    pub fds: usize,
    /// Server CPU time so far.
    pub cpu: Duration,
    /// Server CPU over the interval, % of one core.
    pub cpu_pct: f64,
    /// Generator CPU over the interval, % of one core.
    pub gen_cpu_pct: f64,
    /// Ops per kind completed in the interval.
    pub ops: [u64; 8],
    /// Echoed bytes per kind verified in the interval.
    pub bytes: [u64; 8],
    /// Client connections open at the sample.
    pub client_conns: usize,
    /// Failures so far.
    pub failures: u64,
    /// The interval this sample closes (since the previous sample).
    pub span: Duration,
}

impl Sample {
    /// One progress line.
    pub fn line(&self) -> String {
        let secs = self.interval_secs();
        let rate = |k: Kind| self.ops[k.idx()] as f64 / secs;
        let mbs = |k: Kind| self.bytes[k.idx()] as f64 / secs / 1e6;
        let loris: u64 = Kind::ALL
            .iter()
            .filter(|k| k.is_slowloris())
            .map(|k| self.ops[k.idx()])
            .sum();
        format!(
            "{:>8} {:>6} rss {:>7.2} MiB  fds {:>5}  cpu {:>5.1}% (total {:>7.1}s)  gen {:>5.1}%  \
             conns {:>4}  pingpong {:>7.0}/s  churn {:>6.0}/s  bulk {:>6.1} MB/s  slow {:>5.1} MB/s  \
             resets {:>5.0}/s  slowloris closed {:>4}  failures {}",
            self.phase,
            fmt_t(self.t),
            self.rss as f64 / MIB,
            self.fds,
            self.cpu_pct,
            self.cpu.as_secs_f64(),
            self.gen_cpu_pct,
            self.client_conns,
            rate(Kind::PingPong),
            rate(Kind::Churn),
            mbs(Kind::Bulk),
            mbs(Kind::Slow),
            rate(Kind::Reset),
            loris,
            self.failures,
        )
    }

    fn interval_secs(&self) -> f64 {
        self.span.as_secs_f64().max(1e-9)
    }
}

const MIB: f64 = 1024.0 * 1024.0;

fn fmt_t(t: Duration) -> String {
    let s = t.as_secs_f64().round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// Close latencies of one slowloris kind.
#[derive(Debug, Clone)]
pub struct LorisSummary {
    /// The kind.
    pub kind: Kind,
    /// The timeout it must hit.
    pub timeout: Duration,
    /// Closes observed.
    pub closes: u64,
    /// Shortest latency.
    pub min: Duration,
    /// Median latency.
    pub median: Duration,
    /// Longest latency.
    pub max: Duration,
}

/// One pass/fail line of the verdict.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Whether it passed.
    pub pass: bool,
    /// Numbers behind it.
    pub detail: String,
}

/// Everything a soak run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The server's name.
    pub server: String,
    /// The server's command line.
    pub server_cmdline: String,
    /// What ran.
    pub params: SoakParams,
    /// Samples: baseline, every interval of the load, after.
    pub samples: Vec<Sample>,
    /// Per kind totals.
    pub totals: [KindStats; 8],
    /// Failures.
    pub failures: Failures,
    /// Slowloris close latencies.
    pub loris: Vec<LorisSummary>,
    /// Server fds before the load.
    pub baseline_fds: usize,
    /// Highest fd count sampled.
    pub peak_fds: usize,
    /// Server fds after the load, once settled (or at the settle deadline).
    pub final_fds: usize,
    /// How long the fds took to settle, if they did.
    pub settled_in: Option<Duration>,
    /// Index into `samples` of the RSS reference sample.
    pub rss_ref: usize,
    /// Index into `samples` of the last sample under load.
    pub rss_last: usize,
    /// RSS growth between them, percent.
    pub rss_growth_pct: f64,
    /// How the server stopped.
    pub server_exit: Result<(), String>,
    /// The verdict.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }
}

// ---------------------------------------------------------------------------
// The engine: one epoll loop driving every client.

const EV: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
const EV_CLOSED: u32 = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
const EV_READ: u32 = libc::EPOLLIN as u32 | EV_CLOSED;
/// Generation number marking a reopen timer (an empty slot to refill).
const REOPEN: u32 = u32::MAX;
/// Pause before a slot whose connection failed is opened again.
const FAIL_BACKOFF: Duration = Duration::from_millis(100);
const BULK_MSG: u64 = crate::BUF_SIZE as u64;
/// What a "big" reset client sends before resetting.
const BIG_RESET: u64 = 256 * 1024;
/// Effectively unbounded: slow readers and non-readers send whatever TCP takes.
const UNBOUNDED: u64 = u64::MAX / 4;
/// Socket buffer size asked for by non-reading slowloris clients.
const NONREADER_BUF: i32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResetMode {
    /// Reset as soon as everything is sent.
    AfterSend,
    /// Reset after reading part of the echo.
    AfterEcho,
    /// Send 256 KiB (as much as fits) and reset without reading.
    Big,
}

#[derive(Debug)]
struct Conn {
    kind: Kind,
    fd: RawFd,
    gen: u32,
    n: u64,
    seed: u64,
    connected: bool,
    /// Connect start, then connect completion.
    since: Instant,
    /// Last time bytes were sent.
    last_sent: Instant,
    sent: u64,
    /// Bytes owed to the socket; `sent <= limit`.
    limit: u64,
    rx: Verifier,
    /// End offsets of messages in flight (ping-pong, bulk).
    ends: VecDeque<u64>,
    /// Next paced action (issue, slow read, dribble byte).
    next_at: Option<Instant>,
    /// A slowloris connection must be closed by the server before this.
    deadline: Option<Instant>,
    /// The timer currently armed for this connection.
    wake: Option<Instant>,
    reset: ResetMode,
    /// AfterEcho: echo bytes to read before resetting.
    reset_read: u64,
    /// The load stopped: send nothing more, read everything.
    draining: bool,
}

struct Engine {
    ep: Epoll,
    addr: SocketAddrV4,
    p: SoakParams,
    slots: Vec<Option<Conn>>,
    kinds: Vec<Kind>,
    gens: Vec<u32>,
    reopen_at: Vec<Option<Instant>>,
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    rng: u64,
    next_conn: u64,
    stopping: bool,
    stats: [KindStats; 8],
    fails: Failures,
    loris_lat: Vec<Vec<Duration>>,
    rxbuf: Vec<u8>,
    txbuf: Vec<u8>,
    events: Vec<libc::epoll_event>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        for c in self.slots.iter().flatten() {
            sys::close(c.fd);
        }
    }
}

fn token(slot: usize, gen: u32) -> u64 {
    (gen as u64) << 32 | slot as u64
}

impl Engine {
    fn new(addr: SocketAddrV4, p: &SoakParams) -> io::Result<Self> {
        let mut kinds = Vec::new();
        for kind in Kind::ALL {
            kinds.extend(std::iter::repeat_n(kind, p.count(kind)));
        }
        let n = kinds.len();
        Ok(Self {
            ep: Epoll::new()?,
            addr,
            p: p.clone(),
            slots: (0..n).map(|_| None).collect(),
            kinds,
            gens: vec![0; n],
            reopen_at: vec![None; n],
            timers: BinaryHeap::new(),
            rng: p.nonce ^ 0x9E37_79B9_7F4A_7C15,
            next_conn: 0,
            stopping: false,
            stats: [KindStats::default(); 8],
            fails: Failures::default(),
            loris_lat: vec![Vec::new(); 8],
            rxbuf: vec![0; crate::BUF_SIZE],
            txbuf: vec![0; crate::BUF_SIZE],
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 1024],
        })
    }

    fn rand(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `1..=max`.
    fn size(&mut self, max: usize) -> u64 {
        1 + self.rand() % max.max(1) as u64
    }

    fn conn(&mut self, slot: usize) -> &mut Conn {
        self.slots[slot].as_mut().expect("live slot")
    }

    fn live(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    fn describe(&self, slot: usize, what: impl std::fmt::Display) -> String {
        match &self.slots[slot] {
            Some(c) => format!(
                "{} connection #{} (seed {:#018x}, {} bytes sent, {} verified, open {:.1?}): {what}",
                c.kind.name(),
                c.n,
                c.seed,
                c.sent,
                c.rx.received(),
                c.since.elapsed(),
            ),
            None => format!("slot {slot}: {what}"),
        }
    }

    fn fail(&mut self, slot: usize, kind: FailKind, what: impl std::fmt::Display) {
        let msg = self.describe(slot, what);
        self.fails.add(kind, msg);
    }

    fn open_all(&mut self) {
        for slot in 0..self.slots.len() {
            self.open(slot);
        }
    }

    fn schedule_reopen(&mut self, slot: usize, after: Duration) {
        if self.stopping {
            return;
        }
        let at = Instant::now() + after;
        self.reopen_at[slot] = Some(at);
        self.timers.push(Reverse((at, slot as u32, REOPEN)));
    }

    fn open(&mut self, slot: usize) {
        debug_assert!(self.slots[slot].is_none());
        self.reopen_at[slot] = None;
        let kind = self.kinds[slot];
        let n = self.next_conn;
        self.next_conn += 1;
        let source = (self.p.source_addrs > 0)
            .then(|| Ipv4Addr::new(127, 0, 0, 2 + (n % self.p.source_addrs as u64) as u8));
        let small_buffers = kind == Kind::NonReader;
        let fd = match sys::connect_nonblocking_with(self.addr, source, |fd| {
            if small_buffers {
                sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, NONREADER_BUF)?;
                sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, NONREADER_BUF)?;
            }
            Ok(())
        }) {
            Ok(fd) => fd,
            Err(e) => {
                self.fails.add(
                    FailKind::Io,
                    format!("{} connect #{n} to {}: {e}", kind.name(), self.addr),
                );
                self.schedule_reopen(slot, FAIL_BACKOFF);
                return;
            }
        };
        self.gens[slot] = self.gens[slot].wrapping_add(1) % REOPEN;
        let gen = self.gens[slot];
        if let Err(e) = self.ep.add(fd, EV, token(slot, gen)) {
            sys::close(fd);
            self.fails
                .add(FailKind::Io, format!("{} epoll add: {e}", kind.name()));
            self.schedule_reopen(slot, FAIL_BACKOFF);
            return;
        }
        let seed = pattern::seed_for(self.p.nonce ^ ((kind.idx() as u64 + 1) << 56), n);
        let reset = match self.rand() % 3 {
            0 => ResetMode::AfterSend,
            1 => ResetMode::AfterEcho,
            _ => ResetMode::Big,
        };
        let now = Instant::now();
        self.stats[kind.idx()].opened += 1;
        self.slots[slot] = Some(Conn {
            kind,
            fd,
            gen,
            n,
            seed,
            connected: false,
            since: now,
            last_sent: now,
            sent: 0,
            limit: 0,
            rx: Verifier::new(seed),
            ends: VecDeque::new(),
            next_at: None,
            deadline: None,
            wake: None,
            reset,
            reset_read: 0,
            draining: false,
        });
    }

    /// Arms the connection's timer for the earlier of its paced action and its deadline.
    fn rearm(&mut self, slot: usize) {
        let c = self.conn(slot);
        let want = match (c.next_at, c.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if want != c.wake {
            c.wake = want;
            if let Some(at) = want {
                let gen = c.gen;
                self.timers.push(Reverse((at, slot as u32, gen)));
            }
        }
    }

    /// Closes the client side and frees the slot; reopens it after `reopen` unless stopping.
    fn drop_conn(&mut self, slot: usize, reopen: Option<Duration>) {
        if let Some(c) = self.slots[slot].take() {
            sys::close(c.fd); // also leaves the epoll set
        }
        if let Some(after) = reopen {
            self.schedule_reopen(slot, after);
        }
    }

    fn fail_and_drop(&mut self, slot: usize, kind: FailKind, what: impl std::fmt::Display) {
        self.fail(slot, kind, what);
        let gap = self.gap(self.kinds[slot]).max(FAIL_BACKOFF);
        self.drop_conn(slot, Some(gap));
    }

    fn gap(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Churn => self.p.mix.churn_gap,
            Kind::Reset => self.p.mix.reset_gap,
            _ => Duration::ZERO,
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, slot, gen))) = self.timers.peek() {
            if at > now {
                return;
            }
            self.timers.pop();
            let slot = slot as usize;
            if gen == REOPEN {
                if !self.stopping && self.slots[slot].is_none() && self.reopen_at[slot] == Some(at)
                {
                    self.open(slot);
                }
                continue;
            }
            let Some(c) = self.slots[slot].as_mut() else {
                continue;
            };
            if c.gen != gen || c.wake != Some(at) {
                continue; // stale
            }
            c.wake = None;
            self.on_wake(slot, now);
        }
    }

    fn on_wake(&mut self, slot: usize, now: Instant) {
        let c = self.conn(slot);
        let kind = c.kind;
        let (deadline, next_at) = (c.deadline, c.next_at);
        if deadline.is_some_and(|d| now >= d) {
            let (timeout, from) = self.loris_timeout(slot);
            let flag = match kind {
                Kind::Silent => "--first-byte-timeout",
                Kind::Dribble => "--idle-timeout",
                _ => "--idle-timeout/--write-stall-timeout",
            };
            let msg = format!(
                "still open {:.1?} after its {from} (timeout {timeout:?} + slack {:?}; does the server apply {flag}?)",
                now.saturating_duration_since(self.loris_start(slot)),
                self.p.slack
            );
            self.fail_and_drop(slot, FailKind::Timeout, msg);
            return;
        }
        if next_at.is_some_and(|t| now >= t) {
            self.conn(slot).next_at = None;
            match kind {
                Kind::PingPong | Kind::Bulk if !self.stopping => {
                    self.issue(slot);
                    if !self.flush(slot) {
                        return;
                    }
                }
                Kind::Slow => {
                    let tick = self.p.mix.slow_tick;
                    let chunk = self.p.mix.slow_chunk;
                    if !self.read_ready(slot, chunk) {
                        return;
                    }
                    let c = self.conn(slot);
                    if !c.draining {
                        c.next_at = Some(now + tick);
                    }
                }
                Kind::Dribble => {
                    self.conn(slot).limit += 1;
                    if !self.flush(slot) {
                        return;
                    }
                    let every = self.p.mix.dribble_every;
                    self.conn(slot).next_at = Some(now + every);
                }
                _ => {}
            }
        }
        self.rearm(slot);
    }

    /// The timeout a slowloris connection must hit, and what it runs from.
    fn loris_timeout(&self, slot: usize) -> (Duration, &'static str) {
        let t = self.p.timeouts.unwrap_or_default();
        match self.kinds[slot] {
            Kind::Silent => (t.first_byte, "connect"),
            Kind::Dribble => (t.idle, "last byte sent"),
            _ => (t.idle.max(t.write_stall), "last byte sent"),
        }
    }

    fn loris_start(&self, slot: usize) -> Instant {
        let c = self.slots[slot].as_ref().expect("live slot");
        match c.kind {
            Kind::Silent => c.since,
            _ => c.last_sent,
        }
    }

    fn set_deadline(&mut self, slot: usize) {
        let (timeout, _) = self.loris_timeout(slot);
        let at = self.loris_start(slot) + timeout + self.p.slack;
        self.conn(slot).deadline = Some(at);
    }

    /// Issues the next message(s) of a ping-pong or bulk connection.
    fn issue(&mut self, slot: usize) {
        let kind = self.kinds[slot];
        let (depth, size) = match kind {
            Kind::PingPong => (1, None),
            _ => (self.p.mix.bulk_depth.max(1), Some(BULK_MSG)),
        };
        while self.conn(slot).ends.len() < depth {
            let size = size.unwrap_or_else(|| self.size(self.p.mix.pingpong_max));
            let c = self.conn(slot);
            c.limit += size;
            let end = c.limit;
            c.ends.push_back(end);
        }
    }

    /// Writes what the connection owes; false if it was dropped.
    fn flush(&mut self, slot: usize) -> bool {
        let before = self.conn(slot).sent;
        loop {
            let c = self.slots[slot].as_ref().expect("live slot");
            if !c.connected || c.sent >= c.limit {
                break;
            }
            let n = ((c.limit - c.sent) as usize).min(self.txbuf.len());
            let (fd, seed, sent) = (c.fd, c.seed, c.sent);
            pattern::fill(seed, sent, &mut self.txbuf[..n]);
            match sys::send(fd, &self.txbuf[..n]) {
                Ok(k) => self.conn(slot).sent += k as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET)) =>
                {
                    self.closed_by_server(slot, &format!("send: {e}"));
                    return false;
                }
                Err(e) => {
                    self.fail_and_drop(slot, FailKind::Io, format_args!("send: {e}"));
                    return false;
                }
            }
        }
        let c = self.conn(slot);
        if c.sent > before {
            c.last_sent = Instant::now();
            if matches!(c.kind, Kind::Dribble | Kind::NonReader) {
                self.set_deadline(slot);
                self.rearm(slot);
            }
        }
        // Reset clients that do not wait for an echo reset once sent (or blocked).
        let c = self.conn(slot);
        if c.kind == Kind::Reset && c.connected && c.reset != ResetMode::AfterEcho {
            self.reset(slot);
            return false;
        }
        true
    }

    fn reset(&mut self, slot: usize) {
        let fd = self.conn(slot).fd;
        if let Err(e) = sys::set_linger_zero(fd) {
            self.fail_and_drop(slot, FailKind::Io, format_args!("SO_LINGER: {e}"));
            return;
        }
        self.stats[Kind::Reset.idx()].ops += 1;
        let gap = self.p.mix.reset_gap;
        self.drop_conn(slot, Some(gap));
    }

    /// Reads up to `budget` bytes, verifying them; false if the connection was dropped.
    fn read_ready(&mut self, slot: usize, budget: usize) -> bool {
        let mut left = budget;
        while left > 0 {
            let fd = self.conn(slot).fd;
            let want = left.min(self.rxbuf.len());
            match sys::read(fd, &mut self.rxbuf[..want]) {
                Ok(0) => {
                    self.closed_by_server(slot, "end of file");
                    return false;
                }
                Ok(n) => {
                    left -= n;
                    let c = self.slots[slot].as_mut().expect("live slot");
                    if let Err(e) = c.rx.feed(&self.rxbuf[..n], c.sent) {
                        self.fail_and_drop(slot, FailKind::Verify, e);
                        return false;
                    }
                    self.stats[c.kind.idx()].bytes += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => {
                    self.closed_by_server(slot, "reset");
                    return false;
                }
                Err(e) => {
                    self.fail_and_drop(slot, FailKind::Io, format_args!("read: {e}"));
                    return false;
                }
            }
        }
        self.after_read(slot)
    }

    /// Completes whatever the verified echo finished; false if the connection was dropped.
    fn after_read(&mut self, slot: usize) -> bool {
        let kind = self.kinds[slot];
        let now = Instant::now();
        match kind {
            Kind::PingPong | Kind::Bulk => {
                let c = self.conn(slot);
                let mut done = 0;
                while c.ends.front().is_some_and(|&e| c.rx.received() >= e) {
                    c.ends.pop_front();
                    done += 1;
                }
                self.stats[kind.idx()].ops += done;
                if self.stopping {
                    return self.finish_if_drained(slot);
                }
                if done > 0 {
                    let gap = match kind {
                        Kind::PingPong => self.p.mix.pingpong_gap,
                        _ => self.p.mix.bulk_gap,
                    };
                    if gap.is_zero() {
                        self.issue(slot);
                        return self.flush(slot);
                    }
                    let c = self.conn(slot);
                    if c.next_at.is_none() {
                        c.next_at = Some(now + gap);
                        self.rearm(slot);
                    }
                }
            }
            Kind::Churn => {
                let c = self.conn(slot);
                if c.limit > 0 && c.rx.received() == c.limit {
                    self.stats[kind.idx()].ops += 1;
                    let gap = self.p.mix.churn_gap;
                    self.drop_conn(slot, Some(gap));
                    return false;
                }
            }
            Kind::Reset => {
                let c = self.conn(slot);
                if c.reset == ResetMode::AfterEcho && c.rx.received() >= c.reset_read {
                    self.reset(slot);
                    return false;
                }
            }
            Kind::Slow => {
                if self.conn(slot).draining {
                    return self.finish_if_drained(slot);
                }
            }
            Kind::Silent | Kind::Dribble | Kind::NonReader => {}
        }
        true
    }

    /// After the load: closes a connection whose every byte came back.
    fn finish_if_drained(&mut self, slot: usize) -> bool {
        let c = self.conn(slot);
        if c.sent == c.limit && c.rx.received() == c.sent {
            self.drop_conn(slot, None);
            return false;
        }
        true
    }

    /// The server ended the connection (`how`: end of file, reset, failed send).
    fn closed_by_server(&mut self, slot: usize, how: &str) {
        let c = self.conn(slot);
        let kind = c.kind;
        if kind.is_slowloris() {
            let now = Instant::now();
            let latency = now.saturating_duration_since(self.loris_start(slot));
            let c = self.conn(slot);
            if kind == Kind::Dribble && c.rx.received() != c.sent {
                let (sent, got) = (c.sent, c.rx.received());
                self.fail_and_drop(
                    slot,
                    FailKind::Verify,
                    format_args!(
                        "closed by the server ({how}) with {} of {sent} dribbled bytes echoed",
                        got
                    ),
                );
                return;
            }
            self.stats[kind.idx()].ops += 1;
            self.loris_lat[kind.idx()].push(latency);
            self.drop_conn(slot, Some(Duration::ZERO));
            return;
        }
        let drained = c.sent == c.limit && c.rx.received() == c.sent && c.ends.is_empty();
        if self.stopping && drained && matches!(kind, Kind::PingPong | Kind::Bulk | Kind::Slow) {
            self.drop_conn(slot, None);
            return;
        }
        self.fail_and_drop(
            slot,
            FailKind::Closed,
            format_args!("server closed the connection ({how})"),
        );
    }

    fn on_connected(&mut self, slot: usize) -> bool {
        let now = Instant::now();
        let kind = self.kinds[slot];
        let (tick, every) = (self.p.mix.slow_tick, self.p.mix.dribble_every);
        let c = self.conn(slot);
        c.connected = true;
        c.since = now;
        c.last_sent = now;
        match kind {
            Kind::PingPong | Kind::Bulk => self.issue(slot),
            Kind::Churn => {
                let size = self.size(self.p.mix.churn_max);
                self.conn(slot).limit = size;
            }
            Kind::Reset => {
                let size = self.size(64 * 1024);
                let read = self.size(size as usize);
                let c = self.conn(slot);
                match c.reset {
                    ResetMode::Big => c.limit = BIG_RESET,
                    ResetMode::AfterEcho => {
                        c.limit = size;
                        c.reset_read = read;
                    }
                    ResetMode::AfterSend => c.limit = size,
                }
            }
            Kind::Slow | Kind::NonReader => {
                c.limit = UNBOUNDED;
                if kind == Kind::Slow {
                    c.next_at = Some(now + tick);
                }
            }
            Kind::Dribble => {
                c.limit = 1;
                c.next_at = Some(now + every);
            }
            Kind::Silent => {}
        }
        if kind.is_slowloris() {
            self.set_deadline(slot);
        }
        self.rearm(slot);
        self.flush(slot)
    }

    fn on_event(&mut self, slot: usize, gen: u32, ev: u32) {
        let Some(c) = self.slots.get(slot).and_then(Option::as_ref) else {
            return;
        };
        if c.gen != gen {
            return; // an event for a connection already closed
        }
        let kind = c.kind;
        if !c.connected {
            let fd = c.fd;
            match sys::take_socket_error(fd) {
                Ok(None) => {}
                Ok(Some(e)) => {
                    return self.fail_and_drop(slot, FailKind::Io, format_args!("connect: {e}"))
                }
                Err(e) => {
                    return self.fail_and_drop(slot, FailKind::Io, format_args!("getsockopt: {e}"))
                }
            }
            if ev & libc::EPOLLOUT as u32 == 0 {
                return;
            }
            if !self.on_connected(slot) {
                return;
            }
        }
        if kind == Kind::NonReader {
            // Never reads: only a hang-up or error says the server closed it.
            if ev & EV_CLOSED != 0 {
                self.closed_by_server(slot, "hang-up");
                return;
            }
        } else if ev & EV_READ != 0 {
            // Slow readers read on their tick, unless draining or hung up.
            let fast = kind != Kind::Slow || self.conn(slot).draining || ev & EV_CLOSED != 0;
            if fast && !self.read_ready(slot, usize::MAX) {
                return;
            }
        }
        if ev & libc::EPOLLOUT as u32 != 0 {
            self.flush(slot);
        }
    }

    fn turn_until(&mut self, until: Instant) -> io::Result<()> {
        loop {
            let now = Instant::now();
            self.fire_timers(now);
            if now >= until {
                return Ok(());
            }
            let mut next = until;
            if let Some(&Reverse((at, _, _))) = self.timers.peek() {
                next = next.min(at);
            }
            let ms = next
                .saturating_duration_since(now)
                .as_micros()
                .div_ceil(1000)
                .min(100) as i32;
            let n = self.ep.wait(&mut self.events, ms)?;
            for k in 0..n {
                let ev = self.events[k];
                let (slot, gen) = ((ev.u64 & 0xFFFF_FFFF) as usize, (ev.u64 >> 32) as u32);
                self.on_event(slot, gen, ev.events);
            }
        }
    }

    /// Stops the load: nothing new is opened or issued; long-lived clients
    /// wait for their echo, slowloris clients are closed.
    fn begin_stop(&mut self) {
        self.stopping = true;
        for slot in 0..self.slots.len() {
            self.reopen_at[slot] = None;
            let Some(c) = self.slots[slot].as_mut() else {
                continue;
            };
            match c.kind {
                Kind::Silent | Kind::Dribble | Kind::NonReader => self.drop_conn(slot, None),
                Kind::PingPong | Kind::Bulk => {
                    c.next_at = None;
                    c.draining = true;
                    if !c.connected {
                        self.drop_conn(slot, None);
                    } else {
                        self.finish_if_drained(slot);
                    }
                }
                Kind::Slow => {
                    c.next_at = None;
                    c.draining = true;
                    c.limit = c.sent;
                    if !c.connected {
                        self.drop_conn(slot, None);
                    } else if self.read_ready(slot, usize::MAX) {
                        self.finish_if_drained(slot);
                    }
                }
                Kind::Churn | Kind::Reset => {
                    if !c.connected {
                        self.drop_conn(slot, None);
                    }
                }
            }
        }
    }

    /// After [`Engine::begin_stop`]: runs until every connection is done or the drain times out.
    fn drain(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + self.p.drain_timeout;
        while self.live() > 0 && Instant::now() < deadline {
            let step = (Instant::now() + Duration::from_millis(50)).min(deadline);
            self.turn_until(step)?;
        }
        for slot in 0..self.slots.len() {
            if self.slots[slot].is_some() {
                let timeout = self.p.drain_timeout;
                let c = self.conn(slot);
                let owed = c.sent.max(c.limit) - c.rx.received();
                self.fail(
                    slot,
                    FailKind::Drain,
                    format_args!(
                        "{owed} echoed bytes still missing {timeout:?} after the load stopped"
                    ),
                );
                self.drop_conn(slot, None);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The run: server, preflight, load with samples, drain, settle, verdict.

/// A silent connection the server must close (with timeouts), or one round
/// trip it must echo (without), before the load starts.
fn preflight(addr: SocketAddrV4, p: &SoakParams) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)
        .map_err(|e| format!("preflight: connect to {addr}: {e}"))?;
    let mut buf = [0u8; 16];
    match p.timeouts {
        Some(t) => {
            let limit = t.first_byte + p.slack;
            s.set_read_timeout(Some(limit))
                .map_err(|e| format!("preflight: {e}"))?;
            let t0 = Instant::now();
            match s.read(&mut buf) {
                Ok(0) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
                Ok(n) => Err(format!(
                    "preflight: the server sent {n} bytes on a silent connection"
                )),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    Err(format!(
                        "preflight: the server kept a silent connection open for {:.1?}, past \
                         --first-byte-timeout {} + {:?} slack: it does not apply the timeout \
                         flags (use --soak-no-timeouts for a server without them)",
                        t0.elapsed(),
                        secs_arg(t.first_byte),
                        p.slack
                    ))
                }
                Err(e) => Err(format!("preflight: read: {e}")),
            }
        }
        None => {
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| format!("preflight: {e}"))?;
            s.write_all(b"soak")
                .and_then(|_| s.read_exact(&mut buf[..4]))
                .map_err(|e| format!("preflight: echo round trip: {e}"))?;
            if &buf[..4] != b"soak" {
                return Err("preflight: the echo came back wrong".into());
            }
            Ok(())
        }
    }
}

struct Meter {
    pid: u32,
    t0: Instant,
    last_t: Instant,
    last_cpu: Duration,
    last_gen: Duration,
    last_stats: [KindStats; 8],
}

impl Meter {
    fn sample(
        &mut self,
        phase: &'static str,
        t: Duration,
        stats: &[KindStats; 8],
        conns: usize,
        failures: u64,
    ) -> Result<Sample, String> {
        let gone = |e: io::Error| {
            format!(
                "the server process (pid {}) is gone at {}: {e}",
                self.pid,
                fmt_t(self.t0.elapsed())
            )
        };
        let rss = driver::rss_bytes(self.pid).map_err(gone)?;
        let fds = driver::fd_count(self.pid).map_err(gone)?;
        let cpu = driver::cpu_time(self.pid).map_err(gone)?;
        let gen = sys::self_cpu_time();
        let now = Instant::now();
        let span = now.saturating_duration_since(self.last_t);
        let pct = |d: Duration| {
            if span.is_zero() {
                0.0
            } else {
                100.0 * d.as_secs_f64() / span.as_secs_f64()
            }
        };
        let mut ops = [0; 8];
        let mut bytes = [0; 8];
        for i in 0..8 {
            ops[i] = stats[i].ops - self.last_stats[i].ops;
            bytes[i] = stats[i].bytes - self.last_stats[i].bytes;
        }
        let pct = |d: Duration| if phase == "baseline" { 0.0 } else { pct(d) };
        let s = Sample {
            phase,
            t,
            rss,
            fds,
            cpu,
            cpu_pct: pct(cpu.saturating_sub(self.last_cpu)),
            gen_cpu_pct: pct(gen.saturating_sub(self.last_gen)),
            ops,
            bytes,
            client_conns: conns,
            failures,
            span,
        };
        self.last_t = now;
        self.last_cpu = cpu;
        self.last_gen = gen;
        self.last_stats = *stats;
        Ok(s)
    }
}

/// Runs the soak against `cmd`, calling `progress` with every sample.
///
/// `Err` means the soak could not run to its end (the server did not start,
/// ignored its timeouts, or died); a run that finished returns its
/// [`Report`], whose verdict may still be a failure.
pub fn run(
    cmd: &ServerCmd,
    p: &SoakParams,
    mut progress: impl FnMut(&Sample),
) -> Result<Report, String> {
    p.validate()?;
    let _ = sys::raise_nofile_limit();
    let mut cmd = cmd.clone();
    if let Some(t) = p.timeouts {
        cmd.args.extend(t.server_args());
    }
    let program = std::fs::canonicalize(&cmd.program).unwrap_or_else(|_| cmd.program.clone());
    let cmdline = format!("{} 127.0.0.1:0 {}", program.display(), cmd.args.join(" "))
        .trim_end()
        .to_string();
    let server = Server::start(&cmd)
        .map_err(|e| format!("server did not start: {e}\n  command: {cmdline}"))?;
    let pid = server.pid;
    let fds_at_start = driver::fd_count(pid).map_err(|e| format!("/proc/{pid}/fd: {e}"))?;
    preflight(server.addr, p)?;
    // Baseline: once the preflight connection is gone from the server.
    let settle_until = Instant::now() + Duration::from_secs(5);
    let mut baseline_fds = driver::fd_count(pid).map_err(|e| format!("/proc/{pid}/fd: {e}"))?;
    while baseline_fds > fds_at_start && Instant::now() < settle_until {
        std::thread::sleep(Duration::from_millis(20));
        baseline_fds = driver::fd_count(pid).map_err(|e| format!("/proc/{pid}/fd: {e}"))?;
    }

    let mut engine =
        Engine::new(server.addr, p).map_err(|e| format!("generator: epoll_create1: {e}"))?;
    let t0 = Instant::now();
    let mut meter = Meter {
        pid,
        t0,
        last_t: t0,
        last_cpu: driver::cpu_time(pid).unwrap_or_default(),
        last_gen: sys::self_cpu_time(),
        last_stats: [KindStats::default(); 8],
    };
    let mut samples = Vec::new();
    let s = meter.sample("baseline", Duration::ZERO, &engine.stats, 0, 0)?;
    progress(&s);
    samples.push(s);

    // The load.
    let end = t0 + p.duration;
    engine.open_all();
    let mut k = 1u32;
    loop {
        let at = (t0 + p.interval * k).min(end);
        engine
            .turn_until(at)
            .map_err(|e| format!("generator: epoll_wait: {e}"))?;
        let s = meter.sample(
            "load",
            at - t0,
            &engine.stats,
            engine.live(),
            engine.fails.total(),
        )?;
        progress(&s);
        samples.push(s);
        if at >= end {
            break;
        }
        k += 1;
    }
    let rss_last = samples.len() - 1;

    // Stop, drain, and wait for the server's fds to come back down.
    engine.begin_stop();
    engine
        .drain()
        .map_err(|e| format!("generator: epoll_wait: {e}"))?;
    let stop_at = Instant::now();
    let settle_deadline = stop_at + p.settle_timeout;
    let mut final_fds = driver::fd_count(pid).unwrap_or(usize::MAX);
    while final_fds > baseline_fds && Instant::now() < settle_deadline {
        std::thread::sleep(Duration::from_millis(50));
        final_fds = driver::fd_count(pid).unwrap_or(usize::MAX);
    }
    let settled_in = (final_fds <= baseline_fds).then(|| stop_at.elapsed());
    let s = meter.sample(
        "after",
        t0.elapsed(),
        &engine.stats,
        engine.live(),
        engine.fails.total(),
    )?;
    progress(&s);
    samples.push(s);
    let server_exit = server.stop();

    // The verdict.
    let target = p.duration.mul_f64(0.2);
    let rss_ref = (1..=rss_last)
        .min_by_key(|&i| samples[i].t.abs_diff(target))
        .unwrap_or(rss_last);
    let (r0, r1) = (samples[rss_ref].rss as f64, samples[rss_last].rss as f64);
    let rss_growth_pct = if r0 > 0.0 {
        100.0 * (r1 - r0) / r0
    } else {
        f64::INFINITY
    };
    let peak_fds = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    let loris: Vec<LorisSummary> = Kind::ALL
        .iter()
        .filter(|k| k.is_slowloris() && p.count(**k) > 0)
        .map(|&kind| {
            let mut v = engine.loris_lat[kind.idx()].clone();
            v.sort();
            let t = p.timeouts.unwrap_or_default();
            LorisSummary {
                kind,
                timeout: match kind {
                    Kind::Silent => t.first_byte,
                    Kind::Dribble => t.idle,
                    _ => t.idle.max(t.write_stall),
                },
                closes: v.len() as u64,
                min: v.first().copied().unwrap_or_default(),
                median: v.get(v.len() / 2).copied().unwrap_or_default(),
                max: v.last().copied().unwrap_or_default(),
            }
        })
        .collect();
    let f = &engine.fails;
    let mut checks = vec![
        Check {
            name: "zero verify failures",
            pass: f.of(FailKind::Verify) == 0,
            detail: format!(
                "{} verify failures; {} echoed bytes verified",
                f.of(FailKind::Verify),
                engine.stats.iter().map(|s| s.bytes).sum::<u64>()
            ),
        },
        Check {
            name: "no other client failure",
            pass: f.total() == f.of(FailKind::Verify),
            detail: FailKind::ALL[1..]
                .iter()
                .map(|&k| format!("{} {}", k.name(), f.of(k)))
                .collect::<Vec<_>>()
                .join(", "),
        },
        Check {
            name: "every client kind made progress",
            pass: Kind::ALL
                .iter()
                .all(|&k| p.count(k) == 0 || engine.stats[k.idx()].ops > 0 || k == Kind::Slow)
                && (p.count(Kind::Slow) == 0 || engine.stats[Kind::Slow.idx()].bytes > 0),
            detail: Kind::ALL
                .iter()
                .filter(|&&k| p.count(k) > 0)
                .map(|&k| {
                    let s = engine.stats[k.idx()];
                    if k == Kind::Slow {
                        format!("{} {:.1} MB", k.name(), s.bytes as f64 / 1e6)
                    } else {
                        format!("{} {}", k.name(), s.ops)
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
        },
        Check {
            name: "fds back to the baseline",
            pass: settled_in.is_some(),
            detail: match settled_in {
                Some(d) => format!(
                    "baseline {baseline_fds}, peak sampled {peak_fds}, {final_fds} after the load \
                     ({:.2} s after the last client closed)",
                    d.as_secs_f64()
                ),
                None => format!(
                    "baseline {baseline_fds}, peak sampled {peak_fds}, still {final_fds} \
                     {:?} after the last client closed",
                    p.settle_timeout
                ),
            },
        },
        Check {
            name: "RSS growth under the limit",
            pass: rss_growth_pct < p.max_rss_growth_pct,
            detail: format!(
                "{:.2} MiB at {} → {:.2} MiB at {}: {:+.2} % (limit {} %)",
                r0 / MIB,
                fmt_t(samples[rss_ref].t),
                r1 / MIB,
                fmt_t(samples[rss_last].t),
                rss_growth_pct,
                p.max_rss_growth_pct
            ),
        },
    ];
    if p.timeouts.is_some() {
        checks.push(Check {
            name: "slowloris clients closed by the server",
            pass: loris.iter().all(|l| l.closes > 0),
            detail: loris
                .iter()
                .map(|l| {
                    format!(
                        "{} {} (max {:.2} s)",
                        l.kind.name(),
                        l.closes,
                        l.max.as_secs_f64()
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    checks.push(Check {
        name: "server exits 0 on SIGTERM",
        pass: server_exit.is_ok(),
        detail: match &server_exit {
            Ok(()) => "yes".into(),
            Err(e) => e.clone(),
        },
    });
    Ok(Report {
        server: cmd.name.clone(),
        server_cmdline: cmdline,
        params: p.clone(),
        samples,
        totals: engine.stats,
        failures: engine.fails.clone(),
        loris,
        baseline_fds,
        peak_fds,
        final_fds,
        settled_in,
        rss_ref,
        rss_last,
        rss_growth_pct,
        server_exit,
        checks,
    })
}

// ---------------------------------------------------------------------------
// Reporting.

/// `YYYY-MM-DD HH:MM UTC` for a Unix time.
pub fn utc_stamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// CPU model, cores, kernel and memory of this machine, in one line.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(String::new(), |kb| {
            format!(", {:.1} GiB RAM", kb as f64 / 1024.0 / 1024.0)
        });
    format!("{cpu}, {cores} cores, Linux {kernel}{mem}")
}

fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 && (s % 60.0) == 0.0 {
        format!("{} min", s as u64 / 60)
    } else {
        format!("{s} s")
    }
}

impl Report {
    /// The report as markdown; `command` is how the run was invoked,
    /// `svg` the chart's file name (linked when given).
    pub fn markdown(&self, command: &str, date: &str, svg: Option<&str>) -> String {
        let p = &self.params;
        let mut md = String::new();
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let _ = writeln!(md, "# Soak: {} — {verdict}\n", self.server);
        let _ = writeln!(md, "- Date: {date}");
        let _ = writeln!(md, "- Command: `{command}`");
        let _ = writeln!(md, "- Server: `{}`", self.server_cmdline);
        let _ = writeln!(
            md,
            "- Duration: {} of load, sampled every {}",
            fmt_dur(p.duration),
            fmt_dur(p.interval)
        );
        let _ = writeln!(
            md,
            "- Machine: {}; the single-threaded generator shares it",
            machine()
        );
        match p.timeouts {
            Some(t) => {
                let _ = writeln!(
                    md,
                    "- Server timeouts: idle {}, first byte {}, write stall {} (slowloris slack {})",
                    fmt_dur(t.idle),
                    fmt_dur(t.first_byte),
                    fmt_dur(t.write_stall),
                    fmt_dur(p.slack)
                );
            }
            None => {
                let _ = writeln!(
                    md,
                    "- Server timeouts: **none** (run with `--soak-no-timeouts`: no timeout flags, no slowloris clients)"
                );
            }
        }
        let _ = writeln!(
            md,
            "- Clients at once: {}",
            p.mix.describe(p.timeouts.is_some())
        );
        let _ = writeln!(md, "\n## Verdict: {verdict}\n");
        let _ = writeln!(md, "| check | result | detail |\n|---|---|---|");
        for c in &self.checks {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                c.name,
                if c.pass { "pass" } else { "**FAIL**" },
                c.detail
            );
        }
        if !self.failures.messages.is_empty() {
            let _ = writeln!(md, "\nFirst failures:\n");
            for m in &self.failures.messages {
                let _ = writeln!(md, "- {m}");
            }
        }
        let _ = writeln!(
            md,
            "\n## Totals\n\n| client kind | connections opened | ops | op is | echoed bytes verified |\n|---|---:|---:|---|---:|"
        );
        for kind in Kind::ALL {
            if p.count(kind) == 0 {
                continue;
            }
            let s = self.totals[kind.idx()];
            let _ = writeln!(
                md,
                "| {} × {} | {} | {} | {} | {} |",
                kind.name(),
                p.count(kind),
                s.opened,
                s.ops,
                kind.op(),
                s.bytes
            );
        }
        if !self.loris.is_empty() {
            let _ = writeln!(
                md,
                "\n## Slowloris closes\n\nLatency from connect (silent) or the last byte sent (dribble, non-reader) \
                 to the server's close, as the client saw it.\n\n\
                 | kind | closed by the server | timeout | min | median | max |\n|---|---:|---:|---:|---:|---:|"
            );
            for l in &self.loris {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.1} s | {:.2} s | {:.2} s | {:.2} s |",
                    l.kind.name(),
                    l.closes,
                    l.timeout.as_secs_f64(),
                    l.min.as_secs_f64(),
                    l.median.as_secs_f64(),
                    l.max.as_secs_f64()
                );
            }
        }
        let _ = writeln!(
            md,
            "\n## Samples\n\nServer RSS (`VmRSS`), open fds (`/proc/PID/fd`) and CPU (`utime + stime`, % of one core \
             over the interval); rates over the interval. The RSS check compares the rows marked ◆.\n"
        );
        if let Some(svg) = svg {
            let _ = writeln!(md, "![RSS, fds and CPU over the soak]({svg})\n");
        }
        let _ = writeln!(
            md,
            "| t | phase | RSS MiB | fds | server CPU % | gen CPU % | client conns | pingpong msgs/s | churn conns/s | bulk MB/s | slow MB/s | resets/s | slowloris closed | failures |\n\
             |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (i, s) in self.samples.iter().enumerate() {
            let mark = if i == self.rss_ref || i == self.rss_last {
                " ◆"
            } else {
                ""
            };
            let secs = s.interval_secs();
            let rate = |k: Kind| s.ops[k.idx()] as f64 / secs;
            let mbs = |k: Kind| s.bytes[k.idx()] as f64 / secs / 1e6;
            let loris: u64 = Kind::ALL
                .iter()
                .filter(|k| k.is_slowloris())
                .map(|k| s.ops[k.idx()])
                .sum();
            let _ = writeln!(
                md,
                "| {} | {} | {:.2}{mark} | {} | {:.1} | {:.1} | {} | {:.0} | {:.0} | {:.1} | {:.2} | {:.0} | {} | {} |",
                fmt_t(s.t),
                s.phase,
                s.rss as f64 / MIB,
                s.fds,
                s.cpu_pct,
                s.gen_cpu_pct,
                s.client_conns,
                rate(Kind::PingPong),
                rate(Kind::Churn),
                mbs(Kind::Bulk),
                mbs(Kind::Slow),
                rate(Kind::Reset),
                loris,
                s.failures
            );
        }
        md
    }

    /// Writes a chart of RSS, fds and CPU over time.
    pub fn svg(&self, path: &Path) -> Result<(), String> {
        use plotters::prelude::*;

        let err = |e: &dyn std::fmt::Display| format!("writing {}: {e}", path.display());
        let minutes = self.params.duration >= Duration::from_secs(120);
        let (unit, div) = if minutes { ("min", 60.0) } else { ("s", 1.0) };
        let xs: Vec<f64> = self
            .samples
            .iter()
            .map(|s| s.t.as_secs_f64() / div)
            .collect();
        let xmax = xs.iter().copied().fold(0.0, f64::max).max(1e-9);
        type Series = (&'static str, Vec<f64>, RGBColor);
        let panels: [(String, Vec<Series>); 3] = [
            (
                "server RSS (MiB)".into(),
                vec![(
                    "RSS",
                    self.samples.iter().map(|s| s.rss as f64 / MIB).collect(),
                    BLUE,
                )],
            ),
            (
                "server open fds".into(),
                vec![(
                    "fds",
                    self.samples.iter().map(|s| s.fds as f64).collect(),
                    RGBColor(0, 140, 0),
                )],
            ),
            (
                "CPU, % of one core over each interval".into(),
                vec![
                    (
                        "server",
                        self.samples.iter().map(|s| s.cpu_pct).collect(),
                        RED,
                    ),
                    (
                        "generator",
                        self.samples.iter().map(|s| s.gen_cpu_pct).collect(),
                        RGBColor(150, 150, 150),
                    ),
                ],
            ),
        ];
        let root = SVGBackend::new(path, (900, 780)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let title = format!(
            "soak: {} — {}",
            self.server,
            if self.passed() { "PASS" } else { "FAIL" }
        );
        let root = root
            .titled(&title, ("sans-serif", 20))
            .map_err(|e| err(&e))?;
        let areas = root.split_evenly((3, 1));
        for (area, (caption, series)) in areas.iter().zip(panels.iter()) {
            let ymax = series
                .iter()
                .flat_map(|(_, v, _)| v.iter().copied())
                .fold(0.0, f64::max)
                .max(1e-9)
                * 1.15;
            let mut chart = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 15))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..xmax, 0f64..ymax)
                .map_err(|e| err(&e))?;
            let decimals = if ymax >= 20.0 { 0 } else { 1 };
            chart
                .configure_mesh()
                .x_desc(format!("time since the load started ({unit})"))
                .y_label_formatter(&|y| format!("{y:.decimals$}"))
                .draw()
                .map_err(|e| err(&e))?;
            for (name, ys, color) in series {
                let color = *color;
                let pts: Vec<(f64, f64)> = xs.iter().copied().zip(ys.iter().copied()).collect();
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        pts.clone(),
                        color.stroke_width(2),
                    )))
                    .map_err(|e| err(&e))?
                    .label(*name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 2, color.filled())))
                    .map_err(|e| err(&e))?;
            }
            if series.len() > 1 {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .border_style(BLACK)
                    .background_style(WHITE.mix(0.8))
                    .draw()
                    .map_err(|e| err(&e))?;
            }
        }
        root.present().map_err(|e| err(&e))?;
        Ok(())
    }
}
