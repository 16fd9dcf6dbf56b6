//! One connection's reactor-side state and its write path.
//!
//! # Write path
//!
//! Output is an ordered queue of [`Bytes`]; a flush writes up to [`MAX_IOV`] of them in one
//! `sendmsg(MSG_NOSIGNAL)`. The socket is registered for `EPOLLIN | EPOLLET` only, so a new
//! connection costs no `EPOLLOUT` event; the first time a write finds the socket full,
//! `EPOLLOUT` is added with one `EPOLL_CTL_MOD` (which reports the socket at once if it has
//! become writable meanwhile) and stays for the connection's life, so nothing is re-registered
//! per message: `writable` remembers whether the last write left room.
//!
//! ```text
//!  writable | outcome of sendmsg               | next
//! ----------+----------------------------------+---------------------------------------------
//!  true     | Ok(n) == all offered bytes       | writable; continue while the queue has data
//!  true     | Ok(n) <  offered (partial)       | not writable: the send buffer is full, wait
//!           |                                  | for the EPOLLOUT edge (saves an EAGAIN call)
//!  true     | Err(WouldBlock)                  | not writable, wait for EPOLLOUT
//!  true     | Err(Interrupted)                 | retry
//!  true     | Err(e) (EPIPE, ECONNRESET, ...)  | error: the caller drops the queue and closes
//!  false    | —                                | nothing; the EPOLLOUT edge sets writable
//! ```

use crate::buf_queue::BufQueue;
use crate::error::CloseReason;
use crate::read_path::{ReadSource, ReadState};
use crate::shared::ConnShared;
use crate::sys;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

/// At most this many buffers go into one `sendmsg` (libuv caps at a similar count).
pub(crate) const MAX_IOV: usize = 64;

/// Pause reasons (bits of [`ReadState`]'s pause mask).
pub(crate) const PAUSE_USER: u8 = 1;
pub(crate) const PAUSE_OUTPUT: u8 = 2;
pub(crate) const PAUSE_CONSUMER: u8 = 4;
pub(crate) const PAUSE_CLOSING: u8 = 8;

/// Why a connection is closing once its output is written: a [`CloseReason`] without the
/// error payload (a close with output to write never comes from an error), in one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    PeerClosed,
    Reset,
    Local,
    Shutdown,
    TimedOut,
}

impl Closing {
    pub(crate) fn of(reason: &CloseReason) -> Closing {
        match reason {
            CloseReason::PeerClosed => Closing::PeerClosed,
            CloseReason::Reset => Closing::Reset,
            CloseReason::Local | CloseReason::Error(_) => Closing::Local,
            CloseReason::Shutdown => Closing::Shutdown,
            CloseReason::TimedOut => Closing::TimedOut,
        }
    }

    pub(crate) fn reason(self) -> CloseReason {
        match self {
            Closing::PeerClosed => CloseReason::PeerClosed,
            Closing::Reset => CloseReason::Reset,
            Closing::Local => CloseReason::Local,
            Closing::Shutdown => CloseReason::Shutdown,
            Closing::TimedOut => CloseReason::TimedOut,
        }
    }
}

/// A connected socket as a [`ReadSource`].
pub(crate) struct SocketSource<'a>(pub(crate) BorrowedFd<'a>);

impl ReadSource for SocketSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::recv(self.0, buf)
    }
}

/// Rarely used parts of a connection, boxed so a plain callback connection stays small.
#[derive(Default)]
pub(crate) struct Extra {
    /// State shared with handles and async halves, once someone asked for it.
    pub(crate) shared: Option<Arc<ConnShared>>,
    /// Async face: a consumer takes inbound frames (through the shared state's queue); false
    /// again once the stream has ended.
    pub(crate) inbound: bool,
    /// Frames the consumer had no room for; delivered first when it catches up.
    pub(crate) parked: VecDeque<Bytes>,
    /// Async face: frames accepted this turn and not yet in the channel (their room is reserved).
    pub(crate) inbound_pending: u32,
    /// Framing state, when the listener has a decoder (boxed: most connections have none).
    pub(crate) framer: Option<Box<Framer>>,
    /// An outbound connection still connecting: where to.
    pub(crate) connect_to: Option<Box<crate::addr::Address>>,
    /// The framing's encoder while no handle exists (then it moves into [`ConnShared`]).
    pub(crate) encoder: Option<Box<dyn crate::codec::Encoder>>,
    /// This connection's own timeouts, once one was overridden (else the server's).
    pub(crate) timeouts: Option<Box<crate::config::Timeouts>>,
    /// When the user timer fires (reactor milliseconds); 0 if none is set. Here rather than
    /// in [`Conn`], which every connection pays for.
    pub(crate) timer_at: u64,
    /// When the queued output last made progress, or got stuck; 0 while nothing is stuck.
    /// Here rather than in [`Conn`]: only a connection whose output ever got stuck needs it.
    pub(crate) progress_ms: u64,
    /// Unacknowledged bytes in the kernel's send queue at `progress_ms`: if the peer acknowledged
    /// some since, it is reading, and the flush is not stalled even without a new write.
    pub(crate) unacked_at_progress: u32,
}

/// A decoder and the bytes it has not turned into frames yet.
pub(crate) struct Framer {
    pub(crate) decoder: Box<dyn crate::codec::Decoder>,
    pub(crate) buf: BytesMut,
}

pub(crate) struct Conn {
    pub(crate) fd: OwnedFd,
    /// Index of the face (`server::CALLBACK_FACE` or `ASYNC_FACE`); see [`Conn::face`].
    face: u8,
    pub(crate) read: ReadState,
    /// The ordered output queue.
    pub(crate) out: BufQueue,
    /// Bytes in `out`.
    pub(crate) out_bytes: usize,
    pub(crate) writable: bool,
    pub(crate) in_dirty: bool,
    pub(crate) in_ready: bool,
    /// Close once `out` is written, for this reason.
    pub(crate) closing: Option<Closing>,
    /// `shutdown(SHUT_WR)` once `out` is written.
    pub(crate) shut_wr_pending: bool,
    pub(crate) wr_shut: bool,
    /// A byte has arrived (the first-byte timeout no longer applies).
    pub(crate) got_first_byte: bool,
    /// Counted in `Stats::paused_for_backpressure`.
    pub(crate) backpressure_counted: bool,
    /// An outbound connect in progress: not readable or writable until it completes.
    pub(crate) connecting: bool,
    /// `EPOLLOUT` is in the socket's registration (added when a write first found it full).
    pub(crate) out_armed: bool,
    /// Output went above the high-water mark: tell the face once it drains to the low-water mark.
    pub(crate) over_high_water: bool,
    /// The low 32 bits of the reactor milliseconds (see `Core::now_ms`) of the last inbound
    /// bytes, or of the open or connect: read it with [`last_in_ms`](Self::last_in_ms).
    pub(crate) last_in: u32,
    /// The low 32 bits of the tick of this connection's live timer-wheel entry; 0 if none (the
    /// wheel never hands out a tick whose low bits are 0, see `Wheel::tick_for`).
    pub(crate) wheel_at: u32,
    pub(crate) extra: Option<Box<Extra>>,
}

impl Conn {
    pub(crate) fn new(fd: OwnedFd, face: usize, read: ReadState, now_ms: u64) -> Conn {
        Conn {
            fd,
            face: face as u8,
            read,
            out: BufQueue::default(),
            out_bytes: 0,
            writable: true,
            in_dirty: false,
            in_ready: false,
            closing: None,
            shut_wr_pending: false,
            wr_shut: false,
            got_first_byte: false,
            backpressure_counted: false,
            connecting: false,
            out_armed: false,
            over_high_water: false,
            last_in: now_ms as u32,
            wheel_at: 0,
            extra: None,
        }
    }

    /// When the last inbound bytes came (or the connection opened or started connecting), in
    /// full reactor milliseconds. `last_in` keeps only the low 32 bits (8 bytes less in every
    /// connection); the time since is under 2^32 ms (49 days) whenever a deadline depends on
    /// it, since the idle, first-byte and connect timeouts are capped at 24 days
    /// (`config::MAX_TIMEOUT_MS`) and the idle clock restarts when reading resumes.
    pub(crate) fn last_in_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(u64::from((now_ms as u32).wrapping_sub(self.last_in)))
    }

    /// Sets the idle clock to `now_ms` (see [`last_in_ms`](Self::last_in_ms)).
    pub(crate) fn set_last_in(&mut self, now_ms: u64) {
        self.last_in = now_ms as u32;
    }

    /// When the user timer fires (reactor milliseconds); 0 if none is set.
    pub(crate) fn timer_at(&self) -> u64 {
        self.extra.as_ref().map_or(0, |e| e.timer_at)
    }

    /// Index of the connection's face.
    pub(crate) fn face(&self) -> usize {
        self.face as usize
    }

    pub(crate) fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    /// Whether frames wait for the async consumer to catch up.
    pub(crate) fn has_parked(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| !e.parked.is_empty())
    }

    pub(crate) fn shared(&self) -> Option<&Arc<ConnShared>> {
        self.extra.as_ref().and_then(|e| e.shared.as_ref())
    }

    /// Bytes queued for this connection and not yet written, from every source.
    pub(crate) fn queued_bytes(&self) -> usize {
        match self.shared() {
            Some(s) => s.queued.load(std::sync::atomic::Ordering::SeqCst),
            None => self.out_bytes,
        }
    }

    /// Appends to the write queue (accounting for handles if any).
    pub(crate) fn push_out(&mut self, msg: Bytes) {
        let len = msg.len();
        if len == 0 {
            return;
        }
        if let Some(s) = self.shared() {
            use std::sync::atomic::Ordering::SeqCst;
            s.queued.fetch_add(len, SeqCst);
            s.enqueued_total.fetch_add(len as u64, SeqCst);
        }
        self.out_bytes += len;
        self.out.push_back(msg);
    }

    /// Appends buffers sent from another thread (already counted in the handles' `queued`).
    pub(crate) fn push_remote(&mut self, msg: Bytes) {
        if !msg.is_empty() {
            self.out_bytes += msg.len();
            self.out.push_back(msg);
        }
    }

    /// Writes as much of the queue as the socket takes. Returns the bytes written.
    ///
    /// # Errors
    /// The socket's error; the caller then drops the queue and closes the connection.
    pub(crate) fn flush(&mut self) -> io::Result<usize> {
        let mut total = 0;
        while self.writable && !self.out.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            let mut offered = 0;
            for (slot, buf) in iov.iter_mut().zip(self.out.iter()) {
                *slot = IoSlice::new(buf);
                offered += buf.len();
                count += 1;
            }
            match sys::send_vectored(self.fd.as_fd(), &iov[..count]) {
                Ok(n) => {
                    self.consume(n);
                    total += n;
                    if n < offered {
                        self.writable = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if total > 0 {
            if let Some(s) = self.shared() {
                use std::sync::atomic::Ordering::SeqCst;
                s.queued.fetch_sub(total, SeqCst);
                s.progress.advance(total as u64);
            }
        }
        Ok(total)
    }

    /// Records write progress (or the moment output got stuck) at reactor time `now`.
    pub(crate) fn mark_progress(&mut self, now: u64) {
        let unacked = sys::unacked_bytes(self.fd.as_fd()).unwrap_or(0);
        let extra = self.extra();
        extra.progress_ms = now;
        extra.unacked_at_progress = unacked.min(u32::MAX as usize) as u32;
    }

    /// When the queued output last made progress, or got stuck; 0 while nothing is stuck.
    pub(crate) fn progress_ms(&self) -> u64 {
        self.extra.as_ref().map_or(0, |e| e.progress_ms)
    }

    /// Output is flowing again (or gone): no write-stall clock runs.
    pub(crate) fn clear_progress(&mut self) {
        if let Some(extra) = self.extra.as_mut() {
            extra.progress_ms = 0;
        }
    }

    /// Drops `n` written bytes from the front of the queue.
    fn consume(&mut self, mut n: usize) {
        self.out_bytes -= n;
        while n > 0 {
            let front = self
                .out
                .front_mut()
                .expect("written bytes come from the queue");
            if n >= front.len() {
                n -= front.len();
                let _ = self.out.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// Drops all queued output (after a reset), keeping the handles' accounting right.
    pub(crate) fn discard_output(&mut self) {
        if let Some(s) = self.shared() {
            s.queued
                .fetch_sub(self.out_bytes, std::sync::atomic::Ordering::SeqCst);
        }
        self.out.clear();
        self.out_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    /// The per-connection memory budget of the callback face (issue 8: at most 128 B per idle
    /// connection): the slot is the generation (8 B) and this. A new field must find room.
    #[test]
    fn a_connection_fits_in_96_bytes() {
        assert!(
            std::mem::size_of::<super::Conn>() <= 96,
            "Conn is {} bytes",
            std::mem::size_of::<super::Conn>()
        );
    }

    /// The async face's per-connection budget (issue 8: at most 1 KiB per idle connection with
    /// the executor's task): the reactor's extras and the shared state hold their sizes.
    #[test]
    fn the_async_parts_of_a_connection_hold_their_sizes() {
        let extra = std::mem::size_of::<super::Extra>();
        let shared = std::mem::size_of::<crate::shared::ConnShared>();
        assert!(extra <= 112, "Extra is {extra} bytes");
        assert!(shared <= 320, "ConnShared is {shared} bytes");
        assert!(std::mem::size_of::<crate::Connection>() <= 24);
    }
}
