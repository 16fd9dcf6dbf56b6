//! A FIFO of buffers whose front lives inline: the reactor's output queue and an async
//! connection's inbound queue.

use bytes::Bytes;
use std::collections::VecDeque;

/// A FIFO of [`Bytes`]. The front buffer lives inline, so the common case of one buffer at a
/// time (an echo, a request/response protocol) never allocates, and an idle connection holds no
/// queue memory.
///
/// # Invariant
/// `rest` is empty whenever `head` is `None`.
#[derive(Default)]
pub(crate) struct BufQueue {
    head: Option<Bytes>,
    /// Boxed: most connections never queue a second buffer, and this keeps them small (an
    /// empty `VecDeque` alone is 32 bytes in every connection).
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<Bytes>>>,
}

impl BufQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.as_ref().map_or(0, |r| r.len())
    }

    pub(crate) fn push_back(&mut self, buf: Bytes) {
        if self.head.is_none() {
            self.head = Some(buf);
        } else {
            self.rest
                .get_or_insert_with(Default::default)
                .push_back(buf);
        }
    }

    pub(crate) fn front_mut(&mut self) -> Option<&mut Bytes> {
        self.head.as_mut()
    }

    /// Takes the front buffer.
    pub(crate) fn pop_front(&mut self) -> Option<Bytes> {
        let front = self.head.take()?;
        self.head = self.rest.as_mut().and_then(|r| r.pop_front());
        Some(front)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.head
            .iter()
            .chain(self.rest.iter().flat_map(|r| r.iter()))
    }

    /// Frees the room behind the front once a burst is over: when nothing waits behind the
    /// front and that room holds more than `keep` buffers.
    pub(crate) fn release_spare(&mut self, keep: usize) {
        if self
            .rest
            .as_ref()
            .is_some_and(|r| r.is_empty() && r.capacity() > keep)
        {
            self.rest = None;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.head = None;
        self.rest = None;
    }
}
