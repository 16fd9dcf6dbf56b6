//! The reactor's connection table and the operations callbacks and commands perform on it.
//!
//! Nothing here calls user code: operations that end a connection record a [`Closed`] event, and
//! the loop delivers those after the borrow of the table ends (see `Reactor::settle`).
//!
//! # Connection lifecycle
//!
//! ```text
//!  open ──send──▶ open (dirty: flushed at the end of the turn)
//!  open ──close / peer EOF (callback face) / stop──▶ closing: reading paused, channel sealed
//!  closing ──queue written──▶ closed (reason kept)
//!  open | closing ──reset / socket error / panic / shut-down deadline──▶ closed, queue dropped
//! ```

use super::conn::{Conn, PAUSE_CLOSING, PAUSE_OUTPUT};
use crate::config::Config;
use crate::error::{CloseReason, SendError, SendErrorKind};
use crate::id::ConnId;
use crate::shared::{self, ConnShared, Shared};
use crate::sys::{self, Epoll};
use bytes::Bytes;
use std::collections::VecDeque;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Instant;

struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

/// A connection that just ended, waiting for its face to be told.
pub(crate) struct Closed {
    pub(crate) id: ConnId,
    pub(crate) face: usize,
    pub(crate) reason: CloseReason,
    pub(crate) inbound_tx: Option<async_channel::Sender<io::Result<Bytes>>>,
    pub(crate) shared: Option<Arc<ConnShared>>,
}

pub(crate) struct Core {
    pub(crate) cfg: Arc<Config>,
    pub(crate) epoll: Epoll,
    pub(crate) shared: Arc<Shared>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    count: usize,
    /// Connections with output to flush at the end of the turn.
    pub(crate) dirty: Vec<ConnId>,
    /// Connections to read without waiting for an edge (budget spent, or resumed).
    pub(crate) ready: Vec<ConnId>,
    /// Connections that ended and whose face has not been told yet.
    pub(crate) closed: Vec<Closed>,
    /// A connection ended since the last accept attempt: listeners held back by limits may retry.
    pub(crate) slot_freed: bool,
    pub(crate) stopping: bool,
    /// Closing connections with output still queued, and when to give up on writing it
    /// (in deadline order: every entry waits the same `shutdown_deadline`).
    pub(crate) lingering: VecDeque<(Instant, ConnId)>,
}

impl Core {
    pub(crate) fn new(cfg: Arc<Config>, epoll: Epoll, shared: Arc<Shared>) -> Core {
        Core {
            cfg,
            epoll,
            shared,
            slots: Vec::new(),
            free: Vec::new(),
            count: 0,
            dirty: Vec::new(),
            ready: Vec::new(),
            closed: Vec::new(),
            slot_freed: false,
            stopping: false,
            lingering: VecDeque::new(),
        }
    }

    /// Open connections.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Takes a slot for `conn` and returns its id.
    pub(crate) fn insert(&mut self, conn: Conn) -> ConnId {
        self.count += 1;
        if let Some(slot) = self.free.pop() {
            let s = &mut self.slots[slot as usize];
            s.conn = Some(conn);
            return ConnId::new(slot, s.generation);
        }
        let slot = self.slots.len() as u32;
        self.slots.push(Slot {
            generation: 1,
            conn: Some(conn),
        });
        ConnId::new(slot, 1)
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        let s = self.slots.get(id.slot())?;
        if s.generation != id.generation() {
            return None;
        }
        s.conn.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
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
            .map(|(i, s)| ConnId::new(i as u32, s.generation))
            .collect()
    }

    /// The state handles share with the reactor, created on first use.
    pub(crate) fn conn_shared(&mut self, id: ConnId) -> Option<Arc<ConnShared>> {
        let (hard_limit, high_water) = (self.cfg.out_hard_limit, self.cfg.out_high_water);
        let server = self.shared.clone();
        let conn = self.get_mut(id)?;
        let queued_now = conn.out_bytes;
        let closing = conn.closing.is_some() || conn.wr_shut || conn.shut_wr_pending;
        let extra = conn.extra();
        if let Some(s) = &extra.shared {
            return Some(s.clone());
        }
        let encoder = extra.encoder.take().map(Mutex::new);
        let s = Arc::new(ConnShared {
            id,
            server,
            queued: AtomicUsize::new(queued_now),
            enqueued_total: AtomicU64::new(0),
            written_total: AtomicU64::new(0),
            state: AtomicU8::new(shared::OPEN),
            write_shut: AtomicBool::new(closing),
            output_dropped: AtomicBool::new(false),
            write_waker: Default::default(),
            hard_limit,
            high_water,
            inbound_bytes: AtomicUsize::new(0),
            inbound_paused: AtomicBool::new(false),
            inbound_error: Default::default(),
            encoder,
        });
        extra.shared = Some(s.clone());
        Some(s)
    }

    /// Queues `msg` on connection `id` from the reactor thread.
    pub(crate) fn send(&mut self, id: ConnId, msg: Bytes) -> Result<(), SendError> {
        let (hard, high, pause) = (
            self.cfg.out_hard_limit,
            self.cfg.out_high_water,
            self.cfg.pause_on_backpressure,
        );
        let Some(conn) = self.get_mut(id) else {
            return Err(SendError::new(SendErrorKind::Closed, msg));
        };
        if conn.closing.is_some() || conn.wr_shut || conn.shut_wr_pending {
            return Err(SendError::new(SendErrorKind::Closed, msg));
        }
        // Encode with the connection's encoder (under the handles' lock, if they share it).
        let mut pieces: Vec<Bytes> = Vec::new();
        let shared = conn.shared().cloned();
        let mut guard = shared
            .as_ref()
            .and_then(|s| s.encoder.as_ref())
            .map(|e| e.lock().unwrap_or_else(|p| p.into_inner()));
        let encoder = match guard.as_deref_mut() {
            Some(e) => Some(e),
            None => conn.extra.as_mut().and_then(|x| x.encoder.as_mut()),
        };
        let len = match encoder {
            None => msg.len(),
            Some(encoder) => {
                if let Err(e) = encoder.encode(msg.clone(), &mut pieces) {
                    log::debug!("connection {id}: {e}");
                    return Err(SendError::new(SendErrorKind::Invalid, msg));
                }
                pieces.iter().map(Bytes::len).sum()
            }
        };
        let queued = conn.queued_bytes();
        if queued > 0 && queued + len > hard {
            return Err(SendError::new(SendErrorKind::Full, msg));
        }
        if pieces.is_empty() {
            conn.push_out(msg);
        } else {
            for piece in pieces {
                conn.push_out(piece);
            }
        }
        drop(guard);
        if pause && conn.queued_bytes() > high {
            conn.read.pause(PAUSE_OUTPUT);
        }
        self.mark_dirty(id);
        Ok(())
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
        let Some(conn) = self.get_mut(id) else { return };
        if conn.read.resume(reason) {
            self.mark_ready(id);
        }
    }

    /// Closes after writing what is queued (including what other threads already sent).
    pub(crate) fn close(&mut self, id: ConnId, reason: CloseReason) {
        let Some(conn) = self.get_mut(id) else { return };
        if conn.closing.is_none() {
            conn.closing = Some(reason);
            let deadline = Instant::now() + self.cfg.shutdown_deadline;
            self.lingering.push_back((deadline, id));
        }
        let conn = self.get_mut(id).expect("looked up above");
        conn.read.pause(PAUSE_CLOSING);
        if let Some(s) = conn.shared() {
            s.write_shut.store(true, SeqCst);
        }
        self.mark_dirty(id);
    }

    /// Queues buffers another thread sent. They are taken even while the connection is
    /// closing: they were sent before the close was seen, and a graceful close writes them.
    pub(crate) fn push_remote(&mut self, id: ConnId, pieces: impl IntoIterator<Item = Bytes>) {
        let (high, pause) = (self.cfg.out_high_water, self.cfg.pause_on_backpressure);
        let Some(conn) = self.get_mut(id) else { return };
        if conn.wr_shut {
            // Sent while the write side was being shut down: it cannot go out any more.
            if let Some(s) = conn.shared() {
                let len: usize = pieces.into_iter().map(|p| p.len()).sum();
                s.queued.fetch_sub(len, SeqCst);
                s.output_dropped.store(true, SeqCst);
                s.write_waker.wake();
            }
            return;
        }
        for piece in pieces {
            conn.push_remote(piece);
        }
        if pause && conn.queued_bytes() > high {
            conn.read.pause(PAUSE_OUTPUT);
        }
        self.mark_dirty(id);
    }

    /// Closes the connections whose queued output could not be written in time (a peer that
    /// stopped reading must not keep a closed connection alive). Returns the next deadline.
    pub(crate) fn expire_lingering(&mut self, now: Instant) -> Option<Instant> {
        while let Some(&(deadline, id)) = self.lingering.front() {
            let closing = self.get(id).is_some_and(|c| c.closing.is_some());
            if !closing {
                self.lingering.pop_front();
            } else if deadline <= now {
                self.lingering.pop_front();
                let reason = self
                    .get_mut(id)
                    .and_then(|c| c.closing.take())
                    .unwrap_or(CloseReason::Local);
                log::debug!("connection {id}: queued output not written in time; closing");
                self.abort(id, reason);
            } else {
                return Some(deadline);
            }
        }
        None
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
        // Generations stay in 1..2^31 so a connection token never equals a reserved token.
        s.generation = (s.generation % 0x7fff_ffff) + 1;
        self.free.push(id.slot() as u32);
        self.count -= 1;
        self.slot_freed = true;
        conn.discard_output();
        let mut inbound_tx = None;
        let mut shared_state = None;
        if let Some(mut extra) = conn.extra.take() {
            if let Some(sh) = &extra.shared {
                let state = match &reason {
                    CloseReason::Reset => shared::CLOSED_RESET,
                    CloseReason::Error(_) => shared::CLOSED_ERROR,
                    CloseReason::Shutdown => shared::CLOSED_SHUTDOWN,
                    _ => shared::CLOSED,
                };
                sh.state.store(state, SeqCst);
                sh.write_waker.wake();
            }
            inbound_tx = extra.inbound_tx.take();
            shared_state = extra.shared.take();
        }
        let face = conn.face;
        // Closing the fd also removes it from the epoll set: it is never dup'ed.
        drop(conn);
        self.closed.push(Closed {
            id,
            face,
            reason,
            inbound_tx,
            shared: shared_state,
        });
    }

    /// Flushes connection `id`, then applies what an empty queue allows (close, half-close,
    /// resume reading).
    pub(crate) fn flush(&mut self, id: ConnId) {
        let low = self.cfg.out_low_water;
        let Some(conn) = self.get_mut(id) else { return };
        conn.in_dirty = false;
        if let Err(e) = conn.flush() {
            let reason = reason_for(e);
            self.abort(id, reason);
            return;
        }
        if conn.out.is_empty() {
            if conn.closing.is_some() {
                let reason = conn.closing.take().unwrap_or(CloseReason::Local);
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
        }
        if conn.read.is_paused_for(PAUSE_OUTPUT) && conn.queued_bytes() <= low {
            self.resume_reading(id, PAUSE_OUTPUT);
        }
    }
}

/// The close reason an I/O error stands for.
pub(crate) fn reason_for(e: io::Error) -> CloseReason {
    if sys::is_reset(&e) {
        CloseReason::Reset
    } else {
        CloseReason::Error(e)
    }
}
