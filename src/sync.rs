//! The synchronisation types of the cross-thread hand-offs, swapped for loom's under
//! `--cfg epoll_server_loom` so the models in `tests/loom_handoff.rs` can explore every
//! interleaving of the real primitives (see the `handoff` module).
//!
//! Normal builds get the std types and `futures`' `AtomicWaker`: nothing changes for them, and
//! loom is not even compiled. A crate-specific cfg rather than `--cfg loom`, because the latter
//! also switches concurrent-queue (inside async-channel) to loom's types.
//!
//! Code that takes its atomics from here instead of `std::sync` is what the models check; the
//! rest of the crate still uses std directly.

// Some re-exports wait for the reactor and the async face to use them.
#![allow(unused_imports)]

#[cfg(not(epoll_server_loom))]
pub(crate) use futures::task::AtomicWaker;
#[cfg(not(epoll_server_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(epoll_server_loom))]
pub(crate) use std::sync::{Arc, Mutex};

#[cfg(epoll_server_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(epoll_server_loom)]
pub(crate) use loom::sync::{Arc, Mutex};

/// loom's `AtomicWaker` behind the API of `futures::task::AtomicWaker` (`register` by
/// reference, `take`), so the code using it reads the same in both builds.
#[cfg(epoll_server_loom)]
#[derive(Debug, Default)]
pub(crate) struct AtomicWaker(loom::future::AtomicWaker);

#[cfg(epoll_server_loom)]
impl AtomicWaker {
    pub(crate) fn new() -> AtomicWaker {
        AtomicWaker(loom::future::AtomicWaker::new())
    }

    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.0.register_by_ref(waker);
    }

    pub(crate) fn wake(&self) {
        self.0.wake();
    }

    #[allow(dead_code)] // as `futures`' `take`; nothing takes the waker yet
    pub(crate) fn take(&self) -> Option<std::task::Waker> {
        self.0.take_waker()
    }
}
