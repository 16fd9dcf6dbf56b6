//! The inbound half: a `Stream` of the buffers (or frames) the peer sent.

use super::Release;
use crate::shared::{Command, ConnShared};
use bytes::Bytes;
use futures::Stream;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The inbound half of a [`Connection`](super::Connection): a [`Stream`] of the buffers the
/// peer sent, in order.
///
/// It ends (`None`) at the peer's end of file, or when the connection or the server closes; a
/// reset or another error is yielded once as `Err` before the end. It is bounded: while it is
/// not polled the reactor stops reading the socket, so the peer feels TCP flow control, and no
/// buffer is ever dropped.
pub struct Inbound {
    // Boxed so `Inbound` is `Unpin` (the receiver holds a pinned listener), as users of
    // `StreamExt::next` expect.
    rx: Pin<Box<async_channel::Receiver<io::Result<Bytes>>>>,
    shared: Arc<ConnShared>,
    _release: Arc<Release>,
    resume_below: usize,
    done: bool,
}

impl fmt::Debug for Inbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound")
            .field("id", &self.shared.id)
            .field("buffered", &self.rx.len())
            .finish()
    }
}

impl Inbound {
    pub(super) fn new(
        rx: async_channel::Receiver<io::Result<Bytes>>,
        shared: Arc<ConnShared>,
        release: Arc<Release>,
        high_water: usize,
    ) -> Inbound {
        Inbound {
            rx: Box::pin(rx),
            shared,
            _release: release,
            resume_below: high_water / 2,
            done: false,
        }
    }

    /// Tells the reactor to read again if it paused for us and we have drained enough
    /// (half the byte bound and half the items, so pauses do not flap per item).
    fn maybe_resume(&self) {
        if !self.shared.inbound_paused.is_paused() {
            return;
        }
        let low = self.shared.inbound_bytes.load(SeqCst) <= self.resume_below
            && self.rx.len() <= self.rx.capacity().unwrap_or(usize::MAX) / 2;
        if low && self.shared.inbound_paused.take_resume() {
            self.shared
                .server
                .push(Command::InboundResume(self.shared.id));
        }
    }
}

impl Stream for Inbound {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => {
                if let Ok(buf) = &item {
                    self.shared.inbound_bytes.fetch_sub(buf.len(), SeqCst);
                }
                self.maybe_resume();
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                // Frames parked when the connection ended, then the error, then the end.
                let parked = self
                    .shared
                    .inbound_tail
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front();
                if let Some(frame) = parked {
                    return Poll::Ready(Some(Ok(frame)));
                }
                self.done = true;
                let err = self
                    .shared
                    .inbound_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                Poll::Ready(err.map(Err))
            }
            Poll::Pending => {
                // Paused with nothing buffered (the reactor parked a frame): ask for it.
                self.maybe_resume();
                Poll::Pending
            }
        }
    }
}

impl Drop for Inbound {
    /// Nobody will read what comes in any more: the reactor discards it from now on, and if it
    /// had paused reading for this stream, it resumes, so the peer's end of file (or reset) is
    /// still seen and the connection can end.
    fn drop(&mut self) {
        self.rx.close();
        if self.shared.inbound_paused.take_resume() {
            self.shared
                .server
                .push(Command::InboundResume(self.shared.id));
        }
    }
}
