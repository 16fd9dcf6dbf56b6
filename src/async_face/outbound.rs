//! The outbound half: a `Sink` over an `async-channel` sender, bounded in bytes.
//!
//! `async-channel` has no `Sink` and cannot reserve a slot (smol-rs/async-channel#12, #25), so the
//! bound is ours: buffers travel on the server's command queue (an unbounded `async-channel`
//! queue, used with `try_send` only), and `poll_ready` waits while the bytes queued for the
//! connection (on their way and in the reactor's write queue) are above the high-water mark.
//! The reactor wakes the sink each time it writes.
//!
//! ```text
//!  poll_ready  Pending while queued > high water; Err once the connection closed or reset
//!  start_send  hands the buffer to the reactor's queue; a burst from many sinks is one wake-up
//!  poll_flush  Ready once every byte sent through this sink is in the kernel's socket buffer
//!  poll_close  flush, then shutdown(SHUT_WR); the inbound stream keeps working
//! ```

use crate::shared::{Command, ConnShared};
use crate::ConnHandle;
use bytes::Bytes;
use futures::Sink;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The outbound half of a [`Connection`](super::Connection): a [`Sink`] of buffers written to
/// the peer in order.
///
/// Sending one [`Bytes`] to many connections shares it: no copy per connection.
pub struct Outbound {
    shared: Arc<ConnShared>,
    /// Output position at the end of the last buffer this sink sent, and [`SHUT_SENT`] once
    /// `poll_close` asked for the half-close (one word: this sink lives in the user's task).
    sent_upto: u64,
}

/// The bit of `Outbound::sent_upto` that says the half-close was asked for (positions count
/// bytes, so they never reach it).
const SHUT_SENT: u64 = 1 << 63;

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("id", &self.shared.id)
            .field("queued", &self.shared.queued.load(SeqCst))
            .finish()
    }
}

impl Outbound {
    /// The sink of a new connection; counts as one of its two halves (see
    /// `ConnShared::release_half`).
    pub(super) fn new(shared: Arc<ConnShared>) -> Outbound {
        Outbound {
            shared,
            sent_upto: 0,
        }
    }

    /// A thread-safe handle to the same connection.
    pub fn handle(&self) -> ConnHandle {
        ConnHandle {
            inner: self.shared.clone(),
        }
    }

    /// Bytes queued for the connection and not yet written to the kernel; 0 once it closed.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued_bytes()
    }
}

impl Sink<Bytes> for Outbound {
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let s = &self.shared;
        // Check, register, check again (`WriteProgress::poll_until`): a write between the
        // check and the registration would otherwise wake nobody.
        s.progress.poll_until(cx, |_| {
            if let Some(e) = s.write_error() {
                return Some(Err(e));
            }
            (s.queued.load(SeqCst) <= s.server.limits.out_high).then_some(Ok(()))
        })
    }

    fn start_send(mut self: Pin<&mut Self>, item: Bytes) -> io::Result<()> {
        // Even an empty frame goes through: a framing may encode it to a header.
        match self.shared.send(item, false) {
            Ok(end) => {
                self.sent_upto = end | (self.sent_upto & SHUT_SENT);
                Ok(())
            }
            // The encoder refused this frame (its own error kind); the connection stays open.
            Err(e) if e.kind() == crate::SendErrorKind::Invalid => Err(e.into()),
            Err(e) => Err(match e.cause() {
                // The encoder panicked: the connection is being closed on that error.
                Some(cause) => io::Error::new(cause.kind(), cause.to_string()),
                None => self.shared.write_error().unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::BrokenPipe, "connection closed")
                }),
            }),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (s, upto) = (&self.shared, self.sent_upto & !SHUT_SENT);
        s.progress.poll_until(cx, |progress| {
            if progress.written() >= upto {
                return Some(Ok(()));
            }
            (s.is_closed() || s.output_dropped.load(SeqCst)).then(|| {
                Err(s.write_error().unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::BrokenPipe, "connection closed")
                }))
            })
        })
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.sent_upto & SHUT_SENT != 0 {
            return Poll::Ready(Ok(()));
        }
        futures::ready!(self.as_mut().poll_flush(cx))?;
        self.sent_upto |= SHUT_SENT;
        // Refuse sends from now on, before the reactor gets to the command: a send accepted in
        // between would be written after what the peer should see as the last byte.
        self.shared.write_shut.store(true, SeqCst);
        if !self.shared.is_closed() {
            self.shared
                .server
                .push(Command::ShutdownWrite(self.shared.id));
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for Outbound {
    /// Queued output is still written; the connection closes once both halves are gone.
    fn drop(&mut self) {
        self.shared.release_half();
    }
}
