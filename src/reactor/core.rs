//! The reactor's connection table and the operations callbacks and commands perform on it.
//!
//! Nothing here calls user code: operations that end a connection record a [`Closed`] event, and
//! the loop delivers those after the borrow of the table ends (see `Reactor::settle`).
//!
//! # Connection lifecycle
//!
//! ```text
//!  open ──send──▶ open (dirty: flushed at the end of the turn)
//!  open ──close / peer EOF (callback face default) / idle or first-byte timeout / stop──▶
//!        closing: reading paused, channel sealed
//!  closing ──queue written──▶ closed (reason kept)
//!  closing ──no write progress for the linger time──▶ closed (TimedOut), socket reset
//!  open ──write-stall timeout──▶ closed (TimedOut), socket reset, queue dropped
//!  open | closing ──reset / socket error / panic / shut-down deadline──▶ closed, queue dropped
//! ```
//!
//! # Deadlines
//!
//! Each connection has at most one entry in the timer wheel (see `wheel`), at its nearest
//! deadline: idle, first byte, write stall, close linger, user timer. Reads only store a time
//! stamp; the entry re-checks every deadline when it comes due.

use super::conn::{Closing, Conn, PAUSE_CLOSING, PAUSE_CONSUMER, PAUSE_OUTPUT};
use super::wheel::Wheel;
use crate::addr::Address;
use crate::config::{Config, Timeouts};
use crate::error::{CloseReason, SendError, SendErrorKind};
use crate::handoff::{PauseFlag, WriteProgress};
use crate::id::ConnId;
use crate::read_path::ReadState;
use crate::shared::{self, encode_guarded, Command, ConnShared, EncodeFailure, Shared};
use crate::sys::{self, Epoll};
use bytes::Bytes;
use std::collections::VecDeque;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::SeqCst,
};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A connection's epoll registration, without and with `EPOLLOUT`.
pub(crate) const CONN_EVENTS: u32 = sys::EV_IN | sys::EV_RDHUP | sys::EV_PRI | sys::EV_ET;
pub(crate) const CONN_EVENTS_OUT: u32 = CONN_EVENTS | sys::EV_OUT;

struct Slot {
    generation: u64,
    conn: Option<Conn>,
}

/// What a due wheel entry found.
pub(crate) enum Due {
    /// The user timer fired.
    Timer,
    /// A timeout expired; reset the socket (write stall, close linger) or close gracefully.
    TimedOut { reset: bool },
}

/// A connection that just ended, waiting for its face to be told.
pub(crate) struct Closed {
    pub(crate) id: ConnId,
    pub(crate) face: usize,
    pub(crate) reason: CloseReason,
    /// The async face's inbound stream was still open (see `Extra::inbound`).
    pub(crate) inbound: bool,
    pub(crate) shared: Option<Arc<ConnShared>>,
    /// Frames the async consumer had no room for yet: they go to the stream's tail.
    pub(crate) parked: VecDeque<Bytes>,
    /// `Some(address)` if this was an outbound connect that never completed: the face reports a
    /// failed connect, not a close.
    pub(crate) connect_to: Option<Address>,
}

/// The error a failed connect reports, from how its connection ended.
pub(crate) fn connect_error(to: &Address, reason: CloseReason) -> io::Error {
    match reason {
        CloseReason::Error(e) => e,
        CloseReason::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, format!("connect({to}) timed out"))
        }
        CloseReason::Reset => io::Error::new(
            io::ErrorKind::ConnectionReset,
            format!("connect({to}): connection reset"),
        ),
        CloseReason::Shutdown => io::Error::new(
            io::ErrorKind::NotConnected,
            format!("connect({to}): the server stopped"),
        ),
        other => io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("connect({to}) abandoned: {other}"),
        ),
    }
}

pub(crate) struct Core {
    pub(crate) cfg: Arc<Config>,
    pub(crate) epoll: Epoll,
    pub(crate) shared: Arc<Shared>,
    /// Every reactor of the server (this one at `index`).
    pub(crate) group: Arc<crate::shared::Group>,
    /// This reactor's index: every id it hands out names it, and it serves no other ids.
    pub(crate) index: u16,
    slots: Vec<Slot>,
    /// Free slots, reused first-in first-out, so churn spreads over every free slot.
    free: VecDeque<u32>,
    count: usize,
    /// Connections with output to flush at the end of the turn.
    pub(crate) dirty: Vec<ConnId>,
    /// Connections to read without waiting for an edge (budget spent, or resumed).
    pub(crate) ready: Vec<ConnId>,
    /// Connections that ended and whose face has not been told yet.
    pub(crate) closed: Vec<Closed>,
    /// Connections whose output drained to the low-water mark after passing the high-water
    /// mark, and whose face has not been told yet.
    pub(crate) drained: Vec<ConnId>,
    /// A connection ended since the last accept attempt: listeners held back by limits may retry.
    pub(crate) slot_freed: bool,
    pub(crate) stopping: bool,
    /// Per-connection deadlines.
    pub(crate) wheel: Wheel,
    /// When the reactor started; `now_ms` counts from it (and is never 0).
    epoch: Instant,
    /// Milliseconds since `epoch` at the start of this loop turn (plus 1, so 0 means "none").
    pub(crate) now_ms: u64,
    /// Commands taken early (see `send`) that are not sends: run in the next `run_commands`.
    pub(crate) deferred: Vec<Command>,
    /// The encoder's output buffer for reactor-side sends, kept to reuse its allocation.
    pieces: Vec<Bytes>,
}

impl Core {
    pub(crate) fn new(
        cfg: Arc<Config>,
        epoll: Epoll,
        shared: Arc<Shared>,
        group: Arc<crate::shared::Group>,
        index: u16,
    ) -> Core {
        let offset = cfg.clock_offset_ms;
        Core {
            cfg,
            epoll,
            shared,
            group,
            index,
            slots: Vec::new(),
            free: VecDeque::new(),
            count: 0,
            dirty: Vec::new(),
            ready: Vec::new(),
            closed: Vec::new(),
            drained: Vec::new(),
            slot_freed: false,
            stopping: false,
            wheel: Wheel::new(1 + offset),
            epoch: Instant::now(),
            now_ms: 1 + offset,
            deferred: Vec::new(),
            pieces: Vec::new(),
        }
    }

    /// Reads the clock for this loop turn.
    pub(crate) fn set_now(&mut self, now: Instant) {
        self.now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64
            + 1
            + self.cfg.clock_offset_ms;
    }

    /// The `Instant` of reactor time `ms`.
    pub(crate) fn instant_of(&self, ms: u64) -> Instant {
        self.epoch
            + std::time::Duration::from_millis(ms.saturating_sub(1 + self.cfg.clock_offset_ms))
    }

    /// Open connections of this reactor.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Whether the server-wide count is kept: `max_connections` bounds several reactors.
    fn counts_globally(&self) -> bool {
        self.group.reactors.len() > 1 && self.cfg.max_connections != usize::MAX
    }

    /// Takes room for one more connection under `max_connections`, which applies to the server
    /// as a whole: with several reactors, a compare-and-swap on the server-wide count, so the
    /// reactors together never pass it. The room is given back by [`unreserve`](Self::unreserve)
    /// if no connection is inserted after all, else when the connection closes.
    pub(crate) fn reserve(&self) -> bool {
        let max = self.cfg.max_connections;
        if !self.counts_globally() {
            return self.count < max;
        }
        self.group
            .open
            .fetch_update(SeqCst, SeqCst, |n| (n < max).then_some(n + 1))
            .is_ok()
    }

    /// Gives back room taken by [`reserve`](Self::reserve) for a connection that was not made.
    pub(crate) fn unreserve(&self) {
        self.counted_close(1);
    }

    /// `n` connections of this reactor ended: the server-wide count goes down too.
    fn counted_close(&self, n: usize) {
        if self.counts_globally() {
            self.group.open.fetch_sub(n, SeqCst);
        }
    }

    /// Takes a slot for `conn` (room taken with [`reserve`](Self::reserve)) and returns its id.
    pub(crate) fn insert(&mut self, conn: Conn) -> ConnId {
        self.count += 1;
        if let Some(slot) = self.free.pop_front() {
            let s = &mut self.slots[slot as usize];
            s.conn = Some(conn);
            return ConnId::new(self.index, slot, s.generation);
        }
        let slot = self.slots.len() as u32;
        self.slots.push(Slot {
            generation: 1,
            conn: Some(conn),
        });
        ConnId::new(self.index, slot, 1)
    }

    /// The connection an epoll token names, if it is still the same one.
    pub(crate) fn id_of_token(&self, token: u64) -> Option<ConnId> {
        let (slot, generation_bits) = ConnId::token_parts(token);
        let s = self.slots.get(slot)?;
        s.conn.as_ref()?;
        ConnId::token_matches(s.generation, generation_bits)
            .then(|| ConnId::new(self.index, slot as u32, s.generation))
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        if id.reactor() != self.index as usize {
            return None;
        }
        let s = self.slots.get(id.slot())?;
        if s.generation != id.generation() {
            return None;
        }
        s.conn.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        if id.reactor() != self.index as usize {
            return None;
        }
        let s = self.slots.get_mut(id.slot())?;
        if s.generation != id.generation() {
            return None;
        }
        s.conn.as_mut()
    }

    /// Ids of every open connection.
    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.conn.is_some())
            .map(|(i, s)| ConnId::new(self.index, i as u32, s.generation))
            .collect()
    }

    /// Whether a per-turn work list kept more than `keep` entries of room.
    pub(crate) fn buffers_grown(&self, keep: usize) -> bool {
        [
            self.dirty.capacity(),
            self.ready.capacity(),
            self.closed.capacity(),
            self.drained.capacity(),
            self.deferred.capacity(),
            self.pieces.capacity(),
        ]
        .iter()
        .any(|&c| c > keep)
    }

    /// Gives back the room of the per-turn work lists past `keep` entries.
    pub(crate) fn trim_buffers(&mut self, keep: usize) {
        self.dirty.shrink_to(keep);
        self.ready.shrink_to(keep);
        self.closed.shrink_to(keep);
        self.drained.shrink_to(keep);
        self.deferred.shrink_to(keep);
        self.pieces.shrink_to(keep);
    }

    /// The state handles share with the reactor, created on first use.
    pub(crate) fn conn_shared(&mut self, id: ConnId) -> Option<Arc<ConnShared>> {
        self.conn_shared_with(id, None)
    }

    /// [`conn_shared`](Self::conn_shared), keeping `info` in it if it is created now (the async
    /// face's connections read their `ConnInfo` from there).
    pub(crate) fn conn_shared_with(
        &mut self,
        id: ConnId,
        info: Option<crate::handler::ConnInfo>,
    ) -> Option<Arc<ConnShared>> {
        let server = self.shared.clone();
        let conn = self.get_mut(id)?;
        let queued_now = conn.out_bytes;
        let closing = conn.closing.is_some() || conn.wr_shut || conn.shut_wr_pending;
        if let Some(s) = conn.shared() {
            return Some(s.clone());
        }
        let fd = crate::sys::SharedFd::default();
        if !conn.connecting {
            fd.set(conn.fd.as_fd());
        }
        let extra = conn.extra();
        let encoder = extra.encoder.take();
        let s = Arc::new(ConnShared {
            id,
            server,
            queued: AtomicUsize::new(queued_now),
            enqueued_total: AtomicU64::new(0),
            progress: WriteProgress::new(),
            state: AtomicU8::new(shared::OPEN),
            write_shut: AtomicBool::new(closing),
            output_dropped: AtomicBool::new(false),
            inbound_bytes: AtomicUsize::new(0),
            inbound_paused: PauseFlag::new(),
            inbound: Default::default(),
            halves: AtomicU8::new(0),
            info,
            out_lock: Mutex::new(encoder),
            remote_pending: AtomicU32::new(0),
            commands_pending: AtomicU32::new(0),
            fd,
        });
        extra.shared = Some(s.clone());
        Some(s)
    }

    /// Queues `msg` on connection `id` from the reactor thread.
    ///
    /// A send that returned earlier on another thread must be written earlier: it is in the
    /// command queue, not yet in `out`. So when the connection has sends in flight, the queue's
    /// sends are taken first (under the output lock, which senders hold until their command is
    /// queued; other commands wait in `deferred` for this turn's `run_commands`).
    pub(crate) fn send(&mut self, id: ConnId, msg: Bytes) -> Result<(), SendError> {
        // The encoder's output buffer is reused, so a send through a framing allocates nothing.
        let mut pieces = std::mem::take(&mut self.pieces);
        let sent = self.send_with(id, msg, &mut pieces);
        pieces.clear();
        self.pieces = pieces;
        sent
    }

    fn send_with(
        &mut self,
        id: ConnId,
        msg: Bytes,
        pieces: &mut Vec<Bytes>,
    ) -> Result<(), SendError> {
        let hard = self.cfg.out_hard_limit;
        let Some(conn) = self.get_mut(id) else {
            return Err(SendError::new(SendErrorKind::Closed, msg));
        };
        if conn.closing.is_some() || conn.wr_shut || conn.shut_wr_pending {
            return Err(SendError::new(SendErrorKind::Closed, msg));
        }
        let shared = conn.shared().cloned();
        let mut guard = shared
            .as_ref()
            .map(|s| s.out_lock.lock().unwrap_or_else(|p| p.into_inner()));
        if shared
            .as_ref()
            .is_some_and(|s| s.remote_pending.load(SeqCst) > 0)
        {
            self.take_remote_sends();
        }
        let Some(conn) = self.get_mut(id) else {
            return Err(SendError::new(SendErrorKind::Closed, msg));
        };
        let encoder = match guard.as_deref_mut() {
            Some(locked) => locked.as_mut(),
            None => conn.extra.as_mut().and_then(|x| x.encoder.as_mut()),
        };
        let len = match encoder {
            None => msg.len(),
            Some(encoder) => match encode_guarded(id, &mut **encoder, &msg, pieces) {
                Ok(len) => len,
                Err(EncodeFailure::Refused(e)) => return Err(SendError::invalid(msg, e)),
                Err(EncodeFailure::Panicked(e)) => {
                    drop(guard);
                    let reported = io::Error::new(e.kind(), e.to_string());
                    self.abort(id, CloseReason::Error(e));
                    return Err(SendError::with_cause(SendErrorKind::Closed, msg, reported));
                }
            },
        };
        let queued = conn.queued_bytes();
        if queued > 0 && queued + len > hard {
            return Err(SendError::new(SendErrorKind::Full, msg));
        }
        if pieces.is_empty() {
            conn.push_out(msg);
        } else {
            for piece in pieces.drain(..) {
                conn.push_out(piece);
            }
        }
        drop(guard);
        self.queued_more(id, len);
        Ok(())
    }

    /// Connection `id` has `len` more bytes in its write queue: count them, note the high-water
    /// mark (pausing reading if so configured) and schedule the flush.
    fn queued_more(&mut self, id: ConnId, len: usize) {
        let (high, pause) = (self.cfg.out_high_water, self.cfg.pause_on_backpressure);
        let Some(conn) = self.get_mut(id) else { return };
        if conn.queued_bytes() > high {
            conn.over_high_water = true;
            if pause {
                conn.read.pause(PAUSE_OUTPUT);
            }
        }
        self.shared.counters.queued(len);
        self.note_backpressure(id);
        self.mark_dirty(id);
    }

    /// Takes the command queue now, queueing the sends it holds (in order) and keeping the
    /// other commands for `run_commands`.
    fn take_remote_sends(&mut self) {
        let mut commands = Vec::new();
        self.shared.take_commands(&mut commands);
        for cmd in commands {
            match cmd {
                Command::Send(id, msg) => self.push_remote(id, [msg]),
                Command::SendParts(id, pieces) => self.push_remote(id, pieces),
                other => self.deferred.push(other),
            }
        }
    }

    /// A handle's command for `id` (other than a send) ran: sends may write through again.
    pub(crate) fn command_done(&mut self, id: ConnId) {
        if let Some(s) = self.get(id).and_then(|c| c.shared()) {
            s.commands_pending.fetch_sub(1, SeqCst);
        }
    }

    /// Keeps `Stats::paused_for_backpressure` in step with connection `id`'s pause reasons.
    pub(crate) fn note_backpressure(&mut self, id: ConnId) {
        let Some(conn) = self.get_mut(id) else { return };
        let paused = conn.read.is_paused_for(PAUSE_OUTPUT | PAUSE_CONSUMER);
        if paused != conn.backpressure_counted {
            conn.backpressure_counted = paused;
            self.shared.counters.backpressure(paused);
        }
    }

    pub(crate) fn mark_dirty(&mut self, id: ConnId) {
        if let Some(conn) = self.get_mut(id) {
            if !conn.in_dirty {
                conn.in_dirty = true;
                self.dirty.push(id);
            }
        }
    }

    pub(crate) fn mark_ready(&mut self, id: ConnId) {
        if let Some(conn) = self.get_mut(id) {
            if !conn.in_ready {
                conn.in_ready = true;
                self.ready.push(id);
            }
        }
    }

    pub(crate) fn pause_reading(&mut self, id: ConnId, reason: u8) {
        if let Some(conn) = self.get_mut(id) {
            conn.read.pause(reason);
        }
    }

    pub(crate) fn resume_reading(&mut self, id: ConnId, reason: u8) {
        let now = self.now_ms;
        let Some(conn) = self.get_mut(id) else { return };
        let was_paused = conn.read.is_paused();
        if conn.read.resume(reason) {
            self.mark_ready(id);
        }
        self.note_backpressure(id);
        let Some(conn) = self.get_mut(id) else { return };
        if was_paused && !conn.read.is_paused() {
            // The idle clock stood still while reading was paused.
            conn.set_last_in(now);
            self.arm(id);
        }
    }

    /// Closes after writing what is queued (including what other threads already sent).
    ///
    /// The queue is given up on (and the socket reset) only when it makes no write progress
    /// for the linger time, so a slow but steady reader gets the whole reply.
    pub(crate) fn close(&mut self, id: ConnId, reason: CloseReason) {
        let Some(conn) = self.get_mut(id) else { return };
        if conn.closing.is_none() {
            // A local close after the peer's end of file is the normal end of a request.
            let reason = match reason {
                CloseReason::Local if conn.read.is_finished() => CloseReason::PeerClosed,
                other => other,
            };
            conn.closing = Some(Closing::of(&reason));
        }
        conn.read.pause(PAUSE_CLOSING);
        if let Some(s) = conn.shared() {
            s.write_shut.store(true, SeqCst);
        }
        self.mark_dirty(id);
    }

    /// Queues buffers another thread sent. They are taken even while the connection is
    /// closing: they were sent before the close was seen, and a graceful close writes them.
    pub(crate) fn push_remote(&mut self, id: ConnId, pieces: impl IntoIterator<Item = Bytes>) {
        let Some(conn) = self.get_mut(id) else { return };
        if let Some(s) = conn.shared() {
            s.remote_pending.fetch_sub(1, SeqCst);
        }
        if conn.wr_shut {
            // Sent while the write side was being shut down: it cannot go out any more.
            if let Some(s) = conn.shared() {
                let len: usize = pieces.into_iter().map(|p| p.len()).sum();
                s.queued.fetch_sub(len, SeqCst);
                s.output_dropped.store(true, SeqCst);
                s.progress.wake();
            }
            return;
        }
        let mut len = 0;
        for piece in pieces {
            len += piece.len();
            conn.push_remote(piece);
        }
        self.queued_more(id, len);
    }

    /// Flush, then `shutdown(SHUT_WR)`; reading goes on.
    pub(crate) fn shutdown_write(&mut self, id: ConnId) {
        let Some(conn) = self.get_mut(id) else { return };
        if let Some(s) = conn.shared() {
            s.write_shut.store(true, SeqCst);
        }
        conn.shut_wr_pending = true;
        self.mark_dirty(id);
    }

    /// Ends connection `id` now: drops its queue, closes its socket, records the event.
    pub(crate) fn abort(&mut self, id: ConnId, reason: CloseReason) {
        let Some(s) = self.slots.get_mut(id.slot()) else {
            return;
        };
        if s.generation != id.generation() {
            return;
        }
        let Some(mut conn) = s.conn.take() else {
            return;
        };
        s.generation = s.generation.wrapping_add(1).max(1);
        self.free.push_back(id.slot() as u32);
        self.count -= 1;
        self.counted_close(1);
        self.slot_freed = true;
        let counters = &self.shared.counters;
        if conn.connecting {
            crate::stats::add(&counters.connect_errors, 1);
        } else {
            counters.closed(&reason);
        }
        counters.dequeued(conn.out_bytes);
        if conn.backpressure_counted {
            counters.backpressure(false);
        }
        conn.discard_output();
        let mut inbound = false;
        let mut shared_state = None;
        let mut parked = VecDeque::new();
        let mut connect_to = None;
        if let Some(mut extra) = conn.extra.take() {
            if conn.connecting {
                connect_to = extra.connect_to.take().map(|to| *to);
            }
            if let Some(sh) = &extra.shared {
                // No thread may write to the descriptor once it is closed below.
                sh.fd.revoke();
                sh.state.store(state_for(&reason), SeqCst);
                sh.progress.wake();
            }
            inbound = extra.inbound;
            shared_state = extra.shared.take();
            parked = std::mem::take(&mut extra.parked);
        }
        let face = conn.face();
        // Closing the fd also removes it from the epoll set: it is never dup'ed.
        drop(conn);
        self.closed.push(Closed {
            id,
            face,
            reason,
            inbound,
            shared: shared_state,
            parked,
            connect_to,
        });
    }

    /// Ends connection `id` now with a reset (RST) instead of a FIN, so the peer can tell that
    /// what it received is incomplete: for a reply given up on.
    pub(crate) fn reset(&mut self, id: ConnId, reason: CloseReason) {
        if let Some(conn) = self.get(id) {
            if let Err(e) = sys::set_linger_zero(conn.fd.as_fd()) {
                log::debug!("connection {id}: {e}");
            }
        }
        self.abort(id, reason);
    }

    /// Every connection's shared state marked closed and every waiter woken, without calling
    /// any face: for a reactor thread that is unwinding. Sinks, flushes and streams then fail
    /// or end instead of waiting for a reactor that is gone.
    pub(crate) fn fail_all(&mut self) {
        for slot in self.slots.iter_mut() {
            let Some(mut conn) = slot.conn.take() else {
                continue;
            };
            if let Some(mut extra) = conn.extra.take() {
                if let Some(sh) = &extra.shared {
                    sh.fd.revoke();
                    sh.state.store(shared::CLOSED_ERROR, SeqCst);
                    sh.inbound.end(
                        std::mem::take(&mut extra.parked),
                        Some(io::Error::other(
                            "the server's reactor thread ended abnormally",
                        )),
                    );
                    sh.progress.wake();
                }
            }
        }
        self.counted_close(self.count);
        self.count = 0;
    }

    /// Arms the wheel for connection `id`'s nearest deadline, unless an entry at or before it
    /// exists (that entry re-checks when it comes due).
    pub(crate) fn arm(&mut self, id: ConnId) {
        let linger = self.linger_ms();
        let defaults = self.cfg.timeouts;
        let now = self.now_ms;
        let Some(conn) = self.get_mut(id) else { return };
        let Some((at, _)) = next_deadline(conn, &defaults, linger, now) else {
            return;
        };
        let tick = self.wheel.tick_for(at);
        let conn = self.get_mut(id).expect("looked up above");
        // Ticks are compared by their low 32 bits: live entries are all within the ring's
        // span (1024 ticks) of each other, far from the 2^31 where the comparison would turn.
        if conn.wheel_at == 0 || ((tick as u32).wrapping_sub(conn.wheel_at) as i32) < 0 {
            conn.wheel_at = tick as u32;
            self.wheel.insert(id, tick);
        }
    }

    /// How long a close with output queued waits for write progress before giving up.
    fn linger_ms(&self) -> u64 {
        self.cfg
            .timeouts
            .write_stall
            .unwrap_or(self.cfg.shutdown_deadline.as_millis() as u64)
    }

    /// Checks a due wheel entry (`tick` is the one it was filed under): what expired, if
    /// anything; otherwise the entry is filed again at the connection's next deadline.
    pub(crate) fn check_due(&mut self, id: ConnId, tick: u64) -> Option<Due> {
        let now = self.now_ms;
        let linger = self.linger_ms();
        let defaults = self.cfg.timeouts;
        let conn = self.get_mut(id)?;
        if conn.wheel_at != tick as u32 {
            // Stale: the connection was filed again at an earlier tick since.
            return None;
        }
        conn.wheel_at = 0;
        let (at, due) = next_deadline(conn, &defaults, linger, now)?;
        if at > now {
            self.arm(id);
            return None;
        }
        if matches!(due, Due::TimedOut { reset: true }) {
            // No write for the whole time; but if the peer acknowledged bytes meanwhile, it is
            // reading (a full send buffer only signals writable again once a third of it is
            // free), so the flush is slow, not stalled.
            let unacked = sys::unacked_bytes(conn.fd.as_fd()).unwrap_or(usize::MAX);
            let extra = conn.extra();
            if unacked < extra.unacked_at_progress as usize {
                extra.progress_ms = now;
                extra.unacked_at_progress = unacked as u32;
                self.arm(id);
                return None;
            }
        }
        if matches!(due, Due::Timer) {
            if let Some(extra) = conn.extra.as_mut() {
                extra.timer_at = 0;
            }
        }
        Some(due)
    }

    /// Sets (or with `None` clears) the user timer of `id`.
    pub(crate) fn set_timer(&mut self, id: ConnId, after: Option<std::time::Duration>) {
        let now = self.now_ms;
        let Some(conn) = self.get_mut(id) else { return };
        let at = match after {
            Some(d) => now + (d.as_millis().min(u64::MAX as u128 / 2) as u64).max(1),
            None => 0,
        };
        if at != 0 || conn.timer_at() != 0 {
            conn.extra().timer_at = at;
        }
        self.arm(id);
    }

    /// Overrides one timeout of `id`.
    pub(crate) fn set_timeout(
        &mut self,
        id: ConnId,
        which: crate::Timeout,
        after: Option<std::time::Duration>,
    ) {
        let defaults = self.cfg.timeouts;
        let now = self.now_ms;
        let Some(conn) = self.get_mut(id) else { return };
        if which == crate::Timeout::Idle {
            // The new idle time counts from now, not from a read long ago.
            conn.set_last_in(now);
        }
        conn.extra()
            .timeouts
            .get_or_insert_with(|| Box::new(defaults))
            .set(which, after);
        self.arm(id);
    }

    /// Flushes connection `id`, then applies what an empty queue allows (close, half-close,
    /// resume reading).
    pub(crate) fn flush(&mut self, id: ConnId) {
        let low = self.cfg.out_low_water;
        let now = self.now_ms;
        let Some(conn) = self.get_mut(id) else { return };
        conn.in_dirty = false;
        if conn.connecting {
            // Nothing can be written yet; the connect's completion marks the connection dirty
            // again. A close with nothing queued cancels the connect.
            if conn.out.is_empty() {
                if let Some(closing) = conn.closing.take() {
                    self.abort(id, closing.reason());
                }
            }
            return;
        }
        let written = match conn.flush() {
            Ok(n) => n,
            Err(e) => {
                let reason = reason_for(e);
                self.abort(id, reason);
                return;
            }
        };
        if !conn.writable && !conn.out_armed {
            // The socket is full for the first time: from now on, tell us when it has room.
            conn.out_armed = true;
            let conn = self.get(id).expect("looked up above");
            let armed = self
                .epoll
                .modify(conn.fd.as_fd(), CONN_EVENTS_OUT, id.token());
            if let Err(e) = armed {
                self.abort(id, CloseReason::Error(e));
                return;
            }
        }
        if written > 0 {
            let counters = &self.shared.counters;
            crate::stats::add(&counters.bytes_written, written as u64);
            counters.dequeued(written);
        }
        let Some(conn) = self.get_mut(id) else { return };
        if conn.out.is_empty() {
            conn.clear_progress();
            if conn.closing.is_some() {
                let reason = conn
                    .closing
                    .take()
                    .map_or(CloseReason::Local, Closing::reason);
                self.abort(id, reason);
                return;
            }
            if conn.shut_wr_pending && !conn.wr_shut {
                conn.shut_wr_pending = false;
                conn.wr_shut = true;
                if let Err(e) = sys::shutdown_write(conn.fd.as_fd()) {
                    log::debug!("connection {id}: {e}");
                }
            }
        } else {
            // Stuck output: the write-stall and linger clocks run from the last progress
            // (`arm` files the connection only if one of them applies).
            if written > 0 || conn.progress_ms() == 0 {
                conn.mark_progress(now);
            }
            self.arm(id);
        }
        let Some(conn) = self.get_mut(id) else { return };
        if conn.queued_bytes() <= low {
            let paused = conn.read.is_paused_for(PAUSE_OUTPUT);
            if std::mem::take(&mut conn.over_high_water) {
                self.drained.push(id);
            }
            if paused {
                self.resume_reading(id, PAUSE_OUTPUT);
            }
        }
    }

    /// Sets `TCP_NODELAY` on a new TCP connection if configured (a failure only costs latency).
    pub(crate) fn tune_tcp(&self, fd: std::os::fd::BorrowedFd<'_>) {
        if self.cfg.nodelay {
            if let Err(e) = sys::set_nodelay(fd, true) {
                log::debug!("{e}");
            }
        }
    }

    /// Starts an outbound connection to `addr` for `face`; completion (or failure) is reported
    /// to the face later. `Err` only if no connection could be started at all.
    pub(crate) fn connect(&mut self, addr: &Address, face: usize) -> io::Result<ConnId> {
        if self.stopping {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the server is stopping: no new connections",
            ));
        }
        if !self.reserve() {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("connect({addr}): max_connections reached"),
            ));
        }
        let (fd, failed) = sys::connect(addr).map_err(|e| {
            self.unreserve();
            sys::context(e, &format!("connect({addr})"))
        })?;
        if addr.as_tcp().is_some() {
            self.tune_tcp(fd.as_fd());
        }
        let mut conn = Conn::new(
            fd,
            face,
            ReadState::new(self.cfg.read_budget, true),
            self.now_ms,
        );
        conn.connecting = true;
        conn.writable = false;
        // Completion is reported as writability.
        conn.out_armed = true;
        // The first-byte timeout is for clients that open and say nothing; not for upstreams.
        conn.got_first_byte = true;
        conn.extra().connect_to = Some(Box::new(addr.clone()));
        let id = self.insert(conn);
        if let Some(e) = failed {
            self.abort(id, CloseReason::Error(e));
            return Ok(id);
        }
        let conn = self.get(id).expect("just inserted");
        if let Err(e) = self.epoll.add(conn.fd.as_fd(), CONN_EVENTS_OUT, id.token()) {
            self.abort(id, CloseReason::Error(e));
            return Ok(id);
        }
        self.arm(id);
        Ok(id)
    }
}

/// The state handles see for a connection closed for `reason`.
fn state_for(reason: &CloseReason) -> u8 {
    match reason {
        CloseReason::Reset => shared::CLOSED_RESET,
        CloseReason::Error(_) => shared::CLOSED_ERROR,
        CloseReason::Shutdown => shared::CLOSED_SHUTDOWN,
        CloseReason::TimedOut => shared::CLOSED_TIMEDOUT,
        _ => shared::CLOSED,
    }
}

/// The nearest deadline of `conn` (reactor milliseconds) and what happens then.
///
/// ```text
///  deadline     | applies while                                  | from             | then
/// --------------+------------------------------------------------+------------------+---------------
///  user timer   | set                                            | set_timer        | on_timer
///  first byte   | nothing received yet, reading                  | open             | close
///  idle         | reading (not paused, no end of file)           | last bytes in    | close
///  write stall  | output stuck, timeout set                      | last progress    | reset
///  linger       | closing with output stuck                      | last progress    | reset
/// ```
fn next_deadline(
    conn: &Conn,
    defaults: &Timeouts,
    linger_ms: u64,
    now_ms: u64,
) -> Option<(u64, Due)> {
    let last_in = conn.last_in_ms(now_ms);
    let t = conn
        .extra
        .as_ref()
        .and_then(|e| e.timeouts.as_deref().copied())
        .unwrap_or(*defaults);
    let mut best: Option<(u64, Due)> = None;
    let mut consider = |at: u64, due: Due| {
        if best.as_ref().map_or(true, |(b, _)| at < *b) {
            best = Some((at, due));
        }
    };
    if conn.timer_at() != 0 {
        consider(conn.timer_at(), Due::Timer);
    }
    if conn.connecting {
        // `last_in` is when the connect started.
        consider(last_in + t.connect.max(1), Due::TimedOut { reset: true });
        return best;
    }
    let reading = conn.closing.is_none() && !conn.read.is_finished() && !conn.read.is_paused();
    if reading {
        if let (false, Some(fb)) = (conn.got_first_byte, t.first_byte) {
            consider(last_in + fb, Due::TimedOut { reset: false });
        }
        if let Some(idle) = t.idle {
            consider(last_in + idle, Due::TimedOut { reset: false });
        }
    }
    if conn.progress_ms() != 0 && !conn.out.is_empty() {
        let stall = if conn.closing.is_some() {
            Some(t.write_stall.unwrap_or(linger_ms))
        } else {
            t.write_stall
        };
        if let Some(stall) = stall {
            consider(conn.progress_ms() + stall, Due::TimedOut { reset: true });
        }
    }
    best
}

/// The close reason an I/O error stands for.
pub(crate) fn reason_for(e: io::Error) -> CloseReason {
    if sys::is_reset(&e) {
        CloseReason::Reset
    } else {
        CloseReason::Error(e)
    }
}
