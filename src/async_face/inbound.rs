//! The inbound half: a `Stream` of the buffers (or frames) the peer sent, and the one-consumer
//! queue that carries them from the reactor.

use crate::buf_queue::BufQueue;
use crate::shared::{Command, ConnShared};
use bytes::Bytes;
use futures::Stream;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Frames delivered to a consumer and not yet taken, at most (the byte bound applies too).
pub(crate) const INBOUND_ITEMS: usize = 4;

/// The queue from the reactor (one producer) to a connection's [`Inbound`] (one consumer).
///
/// It lives inside the connection's shared state, so an async connection's inbound side costs
/// no allocation of its own: an idle one holds no buffer (the first frame is stored inline, a
/// `VecDeque` is only grown by a consumer that lags), and a waiting consumer's waker is stored
/// in place. `async-channel` was the carrier before: its channel is a 768-byte allocation at any
/// capacity (concurrent-queue's cache-padded queue variants are inline in its enum), and a
/// waiting receiver allocates two more event-listener nodes, so an idle connection paid about
/// 1.1 KiB for it (docs/async-speed.md).
///
/// Wake-ups: the reactor takes the stored waker when it pushes, so a burst of frames in one
/// loop turn wakes the consumer once, and a consumer that has not gone back to waiting is not
/// woken at all. Both sides hold the lock only for a push or a pop.
#[derive(Default)]
pub(crate) struct InboundQueue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    /// The frames, the oldest inline (only a consumer that lags has more than one).
    frames: BufQueue,
    /// The consumer waiting for a frame or the end.
    waker: Option<Waker>,
    /// No more frames will come; the error (if any) is yielded after the frames.
    ended: bool,
    error: Option<io::Error>,
    /// The consumer dropped its half: frames are discarded.
    consumer_gone: bool,
}

impl InboundQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Frames waiting for the consumer.
    pub(crate) fn len(&self) -> usize {
        self.lock().frames.len()
    }

    /// Whether the consumer dropped its half (frames pushed now are discarded).
    pub(crate) fn is_consumer_gone(&self) -> bool {
        self.lock().consumer_gone
    }

    /// Reactor side: hands `frame` to the consumer and wakes it if it waits. Returns `false`
    /// (dropping the frame) if the consumer is gone or the stream has ended.
    pub(crate) fn push(&self, frame: Bytes) -> bool {
        let waker = {
            let mut s = self.lock();
            if s.consumer_gone || s.ended {
                return false;
            }
            s.frames.push_back(frame);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Reactor side: no more frames after `tail`; the stream yields them, then `error` (if
    /// any), then ends. Only the first end counts.
    pub(crate) fn end(&self, tail: impl IntoIterator<Item = Bytes>, error: Option<io::Error>) {
        let waker = {
            let mut s = self.lock();
            if s.ended {
                return;
            }
            s.ended = true;
            if !s.consumer_gone {
                for frame in tail {
                    s.frames.push_back(frame);
                }
                s.error = error;
            }
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Consumer side: the next frame, the error, or the end (`None`), else registers `cx`'s
    /// waker. The second value is the number of frames still queued.
    fn poll_pop(&self, cx: &mut Context<'_>) -> (Poll<Option<io::Result<Bytes>>>, usize) {
        let mut s = self.lock();
        if let Some(frame) = s.frames.pop_front() {
            // A burst (the tail of a closed connection) is over: give its room back.
            s.frames.release_spare(INBOUND_ITEMS);
            return (Poll::Ready(Some(Ok(frame))), s.frames.len());
        }
        if s.ended {
            return (Poll::Ready(s.error.take().map(Err)), 0);
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        (Poll::Pending, 0)
    }

    /// Consumer side: the consumer is gone; what it did not take is dropped now.
    fn close_consumer(&self) {
        let mut s = self.lock();
        s.consumer_gone = true;
        s.frames.clear();
        s.waker = None;
        s.error = None;
    }
}

/// The inbound half of a [`Connection`](super::Connection): a [`Stream`] of the buffers the
/// peer sent, in order.
///
/// It ends (`None`) at the peer's end of file, or when the connection or the server closes; a
/// reset or another error is yielded once as `Err` before the end. It is bounded: while it is
/// not polled the reactor stops reading the socket, so the peer feels TCP flow control, and no
/// buffer is ever dropped.
pub struct Inbound {
    shared: Arc<ConnShared>,
}

impl fmt::Debug for Inbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound")
            .field("id", &self.shared.id)
            .field("buffered", &self.shared.inbound.len())
            .finish()
    }
}

impl Inbound {
    /// The stream of a new connection; counts as one of its two halves (see
    /// [`ConnShared::release_half`]).
    pub(super) fn new(shared: Arc<ConnShared>) -> Inbound {
        Inbound { shared }
    }

    pub(super) fn shared(&self) -> &Arc<ConnShared> {
        &self.shared
    }

    /// Tells the reactor to read again if it paused for us and we have drained enough
    /// (half the byte bound and half the items, so pauses do not flap per item).
    fn maybe_resume(&self, items_left: usize) {
        let s = &self.shared;
        if !s.inbound_paused.is_paused() {
            return;
        }
        let low = s.inbound_bytes.load(SeqCst) <= s.server.limits.inbound_high / 2
            && items_left <= INBOUND_ITEMS / 2;
        if low && s.inbound_paused.take_resume() {
            s.server.push(Command::InboundResume(s.id));
        }
    }
}

impl Stream for Inbound {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Once ended, the queue answers `None` for good (after the error, if any).
        let (item, left) = self.shared.inbound.poll_pop(cx);
        match item {
            Poll::Ready(Some(Ok(buf))) => {
                self.shared.inbound_bytes.fetch_sub(buf.len(), SeqCst);
                self.maybe_resume(left);
                Poll::Ready(Some(Ok(buf)))
            }
            // The error (once), then the end.
            Poll::Ready(end) => Poll::Ready(end),
            Poll::Pending => {
                // Paused with nothing buffered (the reactor parked a frame): ask for it.
                self.maybe_resume(0);
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
        self.shared.inbound.close_consumer();
        if self.shared.inbound_paused.take_resume() {
            self.shared
                .server
                .push(Command::InboundResume(self.shared.id));
        }
        self.shared.release_half();
    }
}

#[cfg(test)]
mod tests {
    use super::InboundQueue;
    use bytes::Bytes;
    use futures::task::noop_waker_ref;
    use std::io;
    use std::task::{Context, Poll};

    fn pop(q: &InboundQueue) -> Poll<Option<io::Result<Bytes>>> {
        q.poll_pop(&mut Context::from_waker(noop_waker_ref())).0
    }

    fn frame(q: &InboundQueue) -> Bytes {
        match pop(q) {
            Poll::Ready(Some(Ok(b))) => b,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn frames_come_out_in_order_then_the_tail_then_the_error_then_the_end() {
        let q = InboundQueue::default();
        assert!(pop(&q).is_pending());
        for i in 0..6u8 {
            assert!(q.push(Bytes::from(vec![i])));
        }
        assert_eq!(q.len(), 6);
        assert_eq!(frame(&q), [0u8][..]);
        q.end(
            [Bytes::from_static(b"t1"), Bytes::from_static(b"t2")],
            Some(io::Error::from(io::ErrorKind::ConnectionReset)),
        );
        assert!(
            !q.push(Bytes::from_static(b"late")),
            "no frame after the end"
        );
        for i in 1..6u8 {
            assert_eq!(frame(&q), [i][..]);
        }
        assert_eq!(frame(&q), &b"t1"[..]);
        assert_eq!(frame(&q), &b"t2"[..]);
        match pop(&q) {
            Poll::Ready(Some(Err(e))) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            other => panic!("expected the error, got {other:?}"),
        }
        assert!(matches!(pop(&q), Poll::Ready(None)));
        assert!(matches!(pop(&q), Poll::Ready(None)));
    }

    #[test]
    fn a_push_wakes_the_waiting_consumer_once() {
        use futures::task::ArcWake;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        struct Count(AtomicUsize);
        impl ArcWake for Count {
            fn wake_by_ref(me: &Arc<Self>) {
                me.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = futures::task::waker(count.clone());
        let q = InboundQueue::default();
        assert!(q.poll_pop(&mut Context::from_waker(&waker)).0.is_pending());
        q.push(Bytes::from_static(b"a"));
        q.push(Bytes::from_static(b"b"));
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "one wake for a burst");
        assert_eq!(frame(&q), &b"a"[..]);
        assert_eq!(frame(&q), &b"b"[..]);
        assert!(q.poll_pop(&mut Context::from_waker(&waker)).0.is_pending());
        q.end([], None);
        assert_eq!(count.0.load(Ordering::SeqCst), 2, "the end wakes it too");
    }

    #[test]
    fn a_gone_consumer_gets_nothing_more_and_frees_what_it_left() {
        let q = InboundQueue::default();
        q.push(Bytes::from_static(b"a"));
        q.push(Bytes::from_static(b"b"));
        q.close_consumer();
        assert!(q.is_consumer_gone());
        assert_eq!(q.len(), 0);
        assert!(!q.push(Bytes::from_static(b"c")));
    }
}
