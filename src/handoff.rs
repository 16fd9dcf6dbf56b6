//! The atomic steps of the three cross-thread hand-offs, as small primitives the reactor and
//! the async face call, so that `tests/loom_handoff.rs` can model-check exactly these steps
//! (`RUSTFLAGS="--cfg epoll_server_loom" cargo test --release --test loom_handoff`).
//!
//! Each hand-off is the same shape: one side changes shared state, then *signals*; the other
//! side *arms* a flag or a waker, then *looks again* before it blocks. Whatever order the two
//! sides interleave in, either the second look sees the change or the signal sees the armed
//! flag, so no wake-up is lost.
//!
//! # Memory ordering
//!
//! These are store-buffering (Dekker) patterns, which plain acquire/release does not order. The
//! primitives do not lean on `SeqCst` loads and stores for it (loom models those as
//! acquire/release only, so it could not check such an argument); instead:
//!
//! - [`WakeGate`] makes every access to its flag a read-modify-write: RMWs on one location read
//!   the latest value and, with `AcqRel`, chain into one happens-before order;
//! - [`PauseFlag`] puts a `SeqCst` fence between each side's write and its look at the other
//!   side's state (the C++ fence-to-fence rule), so the consumer's common unpaused path stays a
//!   fence and a load, with no write to the shared line;
//! - [`WriteProgress`] relies on `AtomicWaker`'s own register/wake ordering.
//!
//! So the arguments hold whatever the ordering of the queue or channel operations they guard,
//! and loom, which models RMWs, acquire/release and `SeqCst` fences (though not every weak
//! behaviour: it does not explore load buffering), checks them. With `SeqCst` stores in place
//! of the swaps, or without the fences, the models in `tests/loom_handoff.rs` deadlock.
//!
//! | hand-off | signalling side | blocking side |
//! |---|---|---|
//! | [`WakeGate`]: commands to the reactor | producers: publish, [`should_signal`](WakeGate::should_signal) | reactor: [`prepare_sleep`](WakeGate::prepare_sleep), re-check the queue, `epoll_wait`, [`awake`](WakeGate::awake) |
//! | [`PauseFlag`]: inbound flow control | consumer: take, [`take_resume`](PauseFlag::take_resume) | reactor: offer fails, [`pause`](PauseFlag::pause), offer again, park |
//! | [`WriteProgress`]: flush and `poll_ready` | reactor: write, [`advance`](WriteProgress::advance) / [`wake`](WriteProgress::wake) | sink: [`poll_until`](WriteProgress::poll_until) (check, register, check) |

// Normal builds: the module is private, so `pub` here means the crate (the loom build makes
// the module public for the models). Nothing calls these yet; the reactor and the async face
// will.
#![cfg_attr(not(epoll_server_loom), allow(unreachable_pub, dead_code))]

use crate::sync::{fence, AtomicBool, AtomicU64, AtomicWaker, Ordering::AcqRel, Ordering::SeqCst};
use std::task::{Context, Poll};

/// Coalesced wake-ups of the reactor: one flag says "a wake-up is pending, or the reactor is
/// awake", so a burst of commands costs at most one eventfd write.
///
/// # Protocol
///
/// - A producer publishes its work (pushes a command), *then* calls
///   [`should_signal`](Self::should_signal) and writes the eventfd only if it returns true.
/// - The reactor, before `epoll_wait`, calls [`prepare_sleep`](Self::prepare_sleep), *then*
///   looks at its queue: if work is waiting, it waits with timeout 0.
/// - After `epoll_wait` returns it calls [`awake`](Self::awake), then takes the queue.
///
/// # Why no wake-up is lost
///
/// All three operations are `AcqRel` swaps, so they form one chain: each reads the value the
/// previous one wrote and happens after it. Take a producer's push (P) and swap (W), and the
/// reactor's `prepare_sleep` swap (S) and queue check (C).
///
/// - If W comes before S in the chain, then P happens before W, before S, before C: the check
///   sees the work and the reactor does not block.
/// - If S comes before W, then W reads `false` unless another swap came between them. Only
///   `prepare_sleep` writes `false`, and the reactor's next swap is its `awake`, after the
///   wait. So anything between S and W is another producer's swap, and the first of those read
///   `false` and wrote the eventfd. Either way an eventfd write follows S, and its edge ends the
///   `epoll_wait` that follows S (each write is an edge; the reactor never reads it back). Then
///   `awake` comes after W in the chain (W wrote `true`, and `awake` cannot have come between S
///   and W, being after the wait), so the reactor's take, after `awake`, sees P.
///
/// `awake` must be a swap too: a plain store would break the chain, and a producer whose swap
/// read `true` just before it would not be ordered before the reactor's next check.
/// On x86 each swap is one `xchg`, the same instruction as a `SeqCst` store.
///
/// Coalescing: only a swap that reads `false` signals, and only `prepare_sleep` writes
/// `false`, so there is at most one eventfd write per sleep, however many producers push.
#[derive(Debug)]
pub struct WakeGate {
    /// True: the reactor is awake or a wake-up is already on its way.
    pending: AtomicBool,
}

impl WakeGate {
    /// A gate for a reactor that is not sleeping yet: nobody needs to signal.
    pub fn new() -> WakeGate {
        WakeGate {
            pending: AtomicBool::new(true),
        }
    }

    /// Producer, after publishing its work: whether this caller must write the eventfd
    /// (at most one caller per sleep gets `true`).
    #[inline]
    pub fn should_signal(&self) -> bool {
        !self.pending.swap(true, AcqRel)
    }

    /// Reactor, before `epoll_wait`: producers must signal from now on. The reactor must look
    /// at its queue *after* this call, and not block if work is waiting.
    #[inline]
    pub fn prepare_sleep(&self) {
        self.pending.swap(false, AcqRel);
    }

    /// Reactor, after `epoll_wait` returns and before it takes its queue: producers need not
    /// signal while it runs.
    #[inline]
    pub fn awake(&self) {
        self.pending.swap(true, AcqRel);
    }
}

impl Default for WakeGate {
    fn default() -> WakeGate {
        WakeGate::new()
    }
}

/// Inbound flow control of one async connection: the reactor stopped reading because the
/// consumer lags, and the consumer asks for one resume when it has drained.
///
/// # Protocol
///
/// - Reactor: an offer to the inbound channel failed (full). It calls [`pause`](Self::pause),
///   *then* offers the frame again; only if that fails too does it park the frame and stop
///   reading the socket.
/// - Consumer: after taking an item, and before it waits on an empty channel, it checks
///   [`is_paused`](Self::is_paused); if set and it has drained enough, it calls
///   [`take_resume`](Self::take_resume), and `true` means it must send exactly one
///   `InboundResume`.
/// - Reactor, processing that `InboundResume`: [`clear`](Self::clear), then offers the parked
///   frames again the same way (a failed offer pauses again), and reads again once none is left.
///
/// # Why no resume is lost, and none is doubled
///
/// `pause` is the store, then a `SeqCst` fence (X); `is_paused` and `take_resume` are a
/// `SeqCst` fence (Y), then the load. The fences are in one total order.
///
/// - If X comes before Y, the consumer's load sees the pause (or a later change: a `clear`,
///   which the reactor only makes while processing a resume, before offering again).
/// - If Y comes before X, the consumer's take, before Y, is seen by the reactor's second
///   offer, after X: the offer finds the room and nothing is parked.
///
/// The consumer's `swap(false)` lets one caller win per pause, so one pause yields at most
/// one `InboundResume`. A pause whose second offer succeeded leaves the flag set: the consumer
/// may then send a resume with nothing parked, which the reactor treats as a no-op; `clear`
/// drops such a stale flag when the reactor processes a resume. The same protocol fits the
/// accept gate (`Incoming` and `can_accept`).
#[derive(Debug)]
pub struct PauseFlag {
    paused: AtomicBool,
}

impl PauseFlag {
    /// Not paused.
    pub fn new() -> PauseFlag {
        PauseFlag {
            paused: AtomicBool::new(false),
        }
    }

    /// Reactor, after an offer failed: flag the pause. Offer once more *after* this call.
    #[inline]
    pub fn pause(&self) {
        self.paused.store(true, SeqCst);
        fence(SeqCst);
    }

    /// Consumer, after taking items (or before waiting on an empty channel): whether this
    /// caller must send one `InboundResume`. Only a set flag is swapped.
    #[inline]
    pub fn take_resume(&self) -> bool {
        fence(SeqCst);
        self.paused.load(SeqCst) && self.paused.swap(false, AcqRel)
    }

    /// Consumer, after taking items: whether the reactor paused for it (then measure the
    /// backlog, and call [`take_resume`](Self::take_resume) if drained enough). `false` is a
    /// safe answer to skip the resume on: the fence orders it after the take.
    #[inline]
    pub fn is_paused(&self) -> bool {
        fence(SeqCst);
        self.paused.load(SeqCst)
    }

    /// Reactor, processing an `InboundResume`: forget the pause before offering the parked
    /// frames again (a failed offer then pauses again).
    #[inline]
    pub fn clear(&self) {
        self.paused.store(false, SeqCst);
    }
}

impl Default for PauseFlag {
    fn default() -> PauseFlag {
        PauseFlag::new()
    }
}

/// Output progress of one connection, for the sink's `poll_flush` and `poll_ready`: a count
/// of bytes ever written to the kernel, and the waker of the task waiting on it.
///
/// # Protocol
///
/// - Reactor: after bytes reach the kernel, [`advance`](Self::advance) (add, then wake). After
///   any other change a waiting sink must see (closed, reset, output dropped, queued bytes
///   below the high-water mark), change that state first, then [`wake`](Self::wake).
/// - Sink: [`poll_until`](Self::poll_until) with a `done` test over this progress and that
///   state: test, register the waker, test again, else `Pending`.
///
/// # Why no wake-up is lost
///
/// `AtomicWaker` orders `register` and `wake`: a `wake` that runs after a `register` wakes the
/// registered waker, and a `register` that runs after a `wake` synchronises with it, so the
/// second test sees every change made before that `wake`. A change made after the second test
/// is followed by a `wake` that finds the new waker. The first test is only the fast path.
#[derive(Debug)]
pub struct WriteProgress {
    written: AtomicU64,
    waker: AtomicWaker,
}

impl WriteProgress {
    /// Nothing written, nobody waiting.
    pub fn new() -> WriteProgress {
        WriteProgress {
            written: AtomicU64::new(0),
            waker: AtomicWaker::new(),
        }
    }

    /// Reactor: `n` more bytes reached the kernel. Adds, then wakes the waiting sink.
    #[inline]
    pub fn advance(&self, n: u64) {
        self.written.fetch_add(n, SeqCst);
        self.waker.wake();
    }

    /// Reactor: state a waiting sink tests changed (closed, reset, ...); call after the change.
    #[inline]
    pub fn wake(&self) {
        self.waker.wake();
    }

    /// Bytes ever written to the kernel.
    #[inline]
    pub fn written(&self) -> u64 {
        self.written.load(SeqCst)
    }

    /// Sink: `Ready` with `done`'s answer once it has one; otherwise registers the task's waker
    /// and tests once more before `Pending`. `done` reads this progress and any state whose
    /// change the reactor follows with [`wake`](Self::wake) or [`advance`](Self::advance).
    #[inline]
    pub fn poll_until<R>(
        &self,
        cx: &mut Context<'_>,
        done: impl Fn(&Self) -> Option<R>,
    ) -> Poll<R> {
        if let Some(r) = done(self) {
            return Poll::Ready(r);
        }
        // Register, then test again: a write between the first test and the registration
        // would otherwise wake nobody.
        self.waker.register(cx.waker());
        match done(self) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

impl Default for WriteProgress {
    fn default() -> WriteProgress {
        WriteProgress::new()
    }
}
