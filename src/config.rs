//! Server limits and tunables, set through [`Builder`](crate::Builder).

use std::time::Duration;

/// Every tunable of a server, with the defaults [`Builder`](crate::Builder) starts from.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) backlog: i32,
    pub(crate) nodelay: bool,
    pub(crate) max_fds: Option<u64>,
    pub(crate) max_connections: usize,
    /// Reactor threads, each with its own epoll instance and connections.
    pub(crate) reactors: usize,
    /// How the reactors share the listeners.
    pub(crate) accept_spread: crate::server::AcceptSpread,
    pub(crate) events_initial: usize,
    pub(crate) events_max: usize,
    pub(crate) events_shrink_after: Duration,
    /// Test hook: the reactor's clock starts this many milliseconds in (to cross the points
    /// where its 32-bit time stamps wrap within a test).
    pub(crate) clock_offset_ms: u64,
    pub(crate) tick: Option<Duration>,
    pub(crate) read_buffer: usize,
    pub(crate) read_budget: usize,
    pub(crate) out_high_water: usize,
    pub(crate) out_low_water: usize,
    pub(crate) out_hard_limit: usize,
    pub(crate) pause_on_backpressure: bool,
    pub(crate) shutdown_deadline: Duration,
    pub(crate) inbound_high_water: usize,
    pub(crate) incoming_capacity: usize,
    pub(crate) accept_batch: usize,
    pub(crate) accept_backoff_min: Duration,
    pub(crate) accept_backoff_max: Duration,
    pub(crate) timeouts: Timeouts,
}

/// A per-connection timeout, set for every connection through the
/// [`Builder`](crate::Builder) and overridden for one connection through
/// [`Context::set_timeout`](crate::Context::set_timeout) or
/// [`ConnHandle::set_timeout`](crate::ConnHandle::set_timeout). All are off by default.
///
/// A connection that times out closes with [`CloseReason::TimedOut`](crate::CloseReason::TimedOut);
/// on the async face its inbound stream yields an error of kind
/// [`TimedOut`](std::io::ErrorKind::TimedOut), then ends.
///
/// Every timeout is at least 1 ms and at most about 24.8 days (2^31 ms); a longer one is cut to
/// that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timeout {
    /// No inbound bytes for this long while the connection is reading (the time reading is
    /// paused, by the application or by backpressure, does not count). Closes gracefully:
    /// queued output is still written.
    Idle,
    /// Opened, and not one byte received within this time (the slowloris opener, nginx's
    /// `client_header_timeout`). Closes gracefully.
    FirstByte,
    /// Output queued and no write progress for this long (measured between successive writes,
    /// like nginx's `send_timeout`): a peer that stopped reading. The socket is reset and the
    /// queue freed. It is also the linger time of a close with output queued (by default the
    /// shut-down deadline).
    WriteStall,
}

/// The longest timeout, in milliseconds (2^31 - 1: about 24.8 days): longer ones are cut to it.
/// A connection keeps the low 32 bits of its idle clock (see `Conn::last_in_ms`), which stays
/// exact while the time since is under 2^32 ms.
pub(crate) const MAX_TIMEOUT_MS: u64 = (1 << 31) - 1;

/// A duration in milliseconds for a timeout: at least 1 (a zero timeout would close every
/// connection at once), at most [`MAX_TIMEOUT_MS`].
pub(crate) fn timeout_ms(d: Duration) -> u64 {
    (d.as_millis().min(u128::from(MAX_TIMEOUT_MS)) as u64).max(1)
}

/// Timeout settings in milliseconds (`None`: off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub(crate) idle: Option<u64>,
    pub(crate) first_byte: Option<u64>,
    pub(crate) write_stall: Option<u64>,
    /// Milliseconds an outbound connect may take (at least 1).
    pub(crate) connect: u64,
}

impl Timeouts {
    pub(crate) fn set(&mut self, which: Timeout, after: Option<Duration>) {
        let ms = after.map(timeout_ms);
        match which {
            Timeout::Idle => self.idle = ms,
            Timeout::FirstByte => self.first_byte = ms,
            Timeout::WriteStall => self.write_stall = ms,
        }
    }

    /// Whether a new connection needs a wheel entry from the start.
    pub(crate) fn on_open(&self) -> bool {
        self.idle.is_some() || self.first_byte.is_some()
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            backlog: 1024,
            nodelay: true,
            max_fds: None,
            max_connections: usize::MAX,
            reactors: 1,
            accept_spread: crate::server::AcceptSpread::ReusePort,
            events_initial: 4096,
            events_max: 65536,
            events_shrink_after: Duration::from_secs(1),
            clock_offset_ms: 0,
            tick: None,
            read_buffer: 64 * 1024,
            read_budget: 256 * 1024,
            out_high_water: 1024 * 1024,
            out_low_water: 256 * 1024,
            out_hard_limit: 4 * 1024 * 1024,
            pause_on_backpressure: true,
            shutdown_deadline: Duration::from_secs(5),
            inbound_high_water: 1024 * 1024,
            incoming_capacity: 128,
            accept_batch: 128,
            accept_backoff_min: Duration::from_millis(10),
            accept_backoff_max: Duration::from_secs(1),
            timeouts: Timeouts {
                connect: 30_000,
                ..Timeouts::default()
            },
        }
    }
}
