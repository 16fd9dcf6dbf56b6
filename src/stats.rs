//! Live counters of a server, read from any thread with [`ServerHandle::stats`].
//!
//! Each reactor keeps its own counters (its own cache lines: reactors never write a shared
//! counter); [`ServerHandle::stats`] sums them and [`ServerHandle::reactor_stats`] shows each.
//!
//! The reactor thread is the only writer: each update is a relaxed load and store of one
//! counter (no locked instruction), and a snapshot reads each counter once. Each counter is
//! exact; a snapshot taken while the loop runs may mix counters of two adjacent moments.
//!
//! [`ServerHandle::stats`]: crate::ServerHandle::stats
//! [`ServerHandle::reactor_stats`]: crate::ServerHandle::reactor_stats

use crate::error::CloseReason;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a server's counters (see [`ServerHandle::stats`](crate::ServerHandle::stats)).
///
/// Totals count since the server was built; gauges (`open`, `queued_output_bytes`,
/// `paused_for_backpressure`, `event_buffer`) give the state at the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections open now (gauge).
    pub open: u64,
    /// Connections taken into the server (accepted and registered).
    pub accepted: u64,
    /// Outbound connections established (see [`Context::connect`](crate::Context::connect) and
    /// [`ServerHandle::connect`](crate::ServerHandle::connect)).
    pub connected: u64,
    /// Outbound connects that failed: refused, unreachable, timed out or cancelled.
    pub connect_errors: u64,
    /// Connections closed, by reason; their sum is `accepted + connected - open`.
    pub closed: ClosedBy,
    /// Bytes read from connections.
    pub bytes_read: u64,
    /// Bytes written to connections (handed to the kernel).
    pub bytes_written: u64,
    /// Output bytes in the reactor's write queues, not yet written (gauge).
    pub queued_output_bytes: u64,
    /// Connections whose reading is paused for backpressure: their output is above the
    /// high-water mark, or their async consumer lags (gauge).
    pub paused_for_backpressure: u64,
    /// Failed `accept` calls (`WouldBlock` aside), including the ones retried at once.
    pub accept_errors: u64,
    /// Times a listener backed off after a resource error such as fd exhaustion.
    pub accept_backoffs: u64,
    /// Turns of the event loop (one `epoll_wait` each).
    pub loop_turns: u64,
    /// Readiness events returned by `epoll_wait` over all turns.
    pub events: u64,
    /// Entries of the `epoll_wait` event buffer now (gauge).
    pub event_buffer: u64,
}

/// Closed connections, by [`CloseReason`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClosedBy {
    /// [`CloseReason::PeerClosed`].
    pub peer_closed: u64,
    /// [`CloseReason::Reset`].
    pub reset: u64,
    /// [`CloseReason::Local`].
    pub local: u64,
    /// [`CloseReason::Error`].
    pub error: u64,
    /// [`CloseReason::Shutdown`].
    pub shutdown: u64,
    /// [`CloseReason::TimedOut`].
    pub timed_out: u64,
}

impl ClosedBy {
    /// Every closed connection.
    pub fn total(&self) -> u64 {
        self.peer_closed + self.reset + self.local + self.error + self.shutdown + self.timed_out
    }
}

impl Stats {
    /// Field-wise sum, for a server's total over its reactors.
    pub(crate) fn sum(&self, o: &Stats) -> Stats {
        Stats {
            open: self.open + o.open,
            accepted: self.accepted + o.accepted,
            connected: self.connected + o.connected,
            connect_errors: self.connect_errors + o.connect_errors,
            closed: ClosedBy {
                peer_closed: self.closed.peer_closed + o.closed.peer_closed,
                reset: self.closed.reset + o.closed.reset,
                local: self.closed.local + o.closed.local,
                error: self.closed.error + o.closed.error,
                shutdown: self.closed.shutdown + o.closed.shutdown,
                timed_out: self.closed.timed_out + o.closed.timed_out,
            },
            bytes_read: self.bytes_read + o.bytes_read,
            bytes_written: self.bytes_written + o.bytes_written,
            queued_output_bytes: self.queued_output_bytes + o.queued_output_bytes,
            paused_for_backpressure: self.paused_for_backpressure + o.paused_for_backpressure,
            accept_errors: self.accept_errors + o.accept_errors,
            accept_backoffs: self.accept_backoffs + o.accept_backoffs,
            loop_turns: self.loop_turns + o.loop_turns,
            events: self.events + o.events,
            event_buffer: self.event_buffer + o.event_buffer,
        }
    }
}

/// The counters behind [`Stats`]; written by the reactor thread only.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    open: AtomicU64,
    accepted: AtomicU64,
    connected: AtomicU64,
    pub(crate) connect_errors: AtomicU64,
    closed: [AtomicU64; 6],
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    /// Bytes written by senders on other threads (write-through), in shards so that threads
    /// writing at once do not share a counter (see [`Shards`]).
    bytes_written_directly: Shards,
    queued_output_bytes: AtomicU64,
    paused_for_backpressure: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) accept_backoffs: AtomicU64,
    pub(crate) loop_turns: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) event_buffer: AtomicU64,
}

/// Adds `n` to a counter only the reactor thread writes: no locked instruction needed.
#[inline]
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Sets a gauge only the reactor thread writes.
#[inline]
pub(crate) fn set(counter: &AtomicU64, n: u64) {
    counter.store(n, Relaxed);
}

/// Subtracts `n` from such a counter.
#[inline]
pub(crate) fn sub(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_sub(n), Relaxed);
}

impl Counters {
    pub(crate) fn opened(&self) {
        add(&self.accepted, 1);
        add(&self.open, 1);
    }

    /// Bytes a sender wrote from its own thread (write-through).
    pub(crate) fn written_directly(&self, n: usize) {
        self.bytes_written_directly.add(n as u64);
    }

    pub(crate) fn connected(&self) {
        add(&self.connected, 1);
        add(&self.open, 1);
    }

    pub(crate) fn closed(&self, reason: &CloseReason) {
        sub(&self.open, 1);
        let i = match reason {
            CloseReason::PeerClosed => 0,
            CloseReason::Reset => 1,
            CloseReason::Local => 2,
            CloseReason::Error(_) => 3,
            CloseReason::Shutdown => 4,
            CloseReason::TimedOut => 5,
        };
        add(&self.closed[i], 1);
    }

    pub(crate) fn queued(&self, more: usize) {
        add(&self.queued_output_bytes, more as u64);
    }

    pub(crate) fn dequeued(&self, less: usize) {
        sub(&self.queued_output_bytes, less as u64);
    }

    pub(crate) fn backpressure(&self, paused: bool) {
        if paused {
            add(&self.paused_for_backpressure, 1);
        } else {
            sub(&self.paused_for_backpressure, 1);
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Relaxed);
        Stats {
            open: get(&self.open),
            accepted: get(&self.accepted),
            connected: get(&self.connected),
            connect_errors: get(&self.connect_errors),
            closed: ClosedBy {
                peer_closed: get(&self.closed[0]),
                reset: get(&self.closed[1]),
                local: get(&self.closed[2]),
                error: get(&self.closed[3]),
                shutdown: get(&self.closed[4]),
                timed_out: get(&self.closed[5]),
            },
            bytes_read: get(&self.bytes_read),
            bytes_written: get(&self.bytes_written) + self.bytes_written_directly.sum(),
            queued_output_bytes: get(&self.queued_output_bytes),
            paused_for_backpressure: get(&self.paused_for_backpressure),
            accept_errors: get(&self.accept_errors),
            accept_backoffs: get(&self.accept_backoffs),
            loop_turns: get(&self.loop_turns),
            events: get(&self.events),
            event_buffer: get(&self.event_buffer),
        }
    }
}

/// A counter many threads add to: one cache line per shard, a thread always adding to the
/// same shard (handed out round-robin on its first add), so each add is an uncontended
/// relaxed atomic add. A snapshot sums the shards.
#[derive(Debug, Default)]
pub(crate) struct Shards([Padded; SHARDS]);

const SHARDS: usize = 16;

/// An `AtomicU64` alone on its cache line (128 bytes: adjacent-line prefetch pairs lines).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

impl Shards {
    fn add(&self, n: u64) {
        use std::sync::atomic::AtomicUsize;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
        }
        let i = SHARD.with(|s| *s);
        self.0[i].0.fetch_add(n, Relaxed);
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Relaxed)).sum()
    }
}
