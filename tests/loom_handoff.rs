//! Model checks of the three cross-thread hand-offs with loom, over the real primitives of
//! `epoll_server::handoff`, used the way the reactor and the async face use them.
//!
//! ```sh
//! RUSTFLAGS="--cfg epoll_server_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test --release --test loom_handoff
//! ```
//!
//! loom runs each model under every interleaving (up to a preemption bound) and reports a
//! deadlock when every thread is blocked: that is how a lost wake-up shows. Each model also
//! counts every item, so a duplicate, a loss or a reordering fails an assertion. Each protocol
//! has a deliberately broken variant that loom must catch (checked in a child process, see
//! `expect_caught`), so we know the models can fail.
//!
//! What is modelled rather than real: the command queue and the inbound channel are a
//! `Mutex<VecDeque>` for the items plus an atomic length that `len`/`is_empty` read without the
//! lock, as concurrent-queue reads its head and tail (loom gives those `SeqCst` operations
//! acquire/release semantics only, so the models check that the primitives do not lean on the
//! queue's ordering); a blocked consumer waits on a `Condvar` (async-channel's listener:
//! registered, then the channel re-checked); the eventfd is a counter of edges behind a
//! `Mutex` and `Condvar`; and the sink's waker is loom's `AtomicWaker` model, not `futures`'
//! implementation.

#![cfg(epoll_server_loom)]

use epoll_server::handoff::{PauseFlag, WakeGate, WriteProgress};
use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::SeqCst;
use std::task::Poll;

/// Runs `f` under loom with a preemption bound (`LOOM_MAX_PREEMPTIONS` overrides it), and
/// returns how many executions it explored.
fn check<F>(bound: usize, f: F) -> usize
where
    F: Fn() + Sync + Send + 'static,
{
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(bound);
    }
    let bound = builder.preemption_bound;
    builder.check(move || {
        counted.fetch_add(1, SeqCst);
        f();
    });
    let runs = runs.load(SeqCst);
    eprintln!("explored {runs} executions (preemption bound {bound:?})");
    runs
}

/// Set in the child process that runs a broken model.
const CHILD: &str = "LOOM_HANDOFF_BROKEN_CHILD";

/// Asserts that loom finds the bug in a broken model: runs test `name` again in a child process,
/// where it runs `model`, and expects the child to fail with loom's deadlock report.
///
/// A child process, not `#[should_panic]`: after reporting a deadlock, loom 0.7 panics again
/// while the blocked threads' loom objects drop (tokio-rs/loom#291, #331), which aborts the
/// whole test binary.
fn expect_caught(name: &str, model: impl FnOnce()) {
    expect_caught_as(name, "deadlock", model)
}

/// Like [`expect_caught`], for a bug that loom reports as a failed assertion containing `needle`.
fn expect_caught_as(name: &str, needle: &str, model: impl FnOnce()) {
    if std::env::var_os(CHILD).is_some() {
        model();
        // Reached only if loom found nothing: the child exits 0 and the parent fails.
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD, "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = stderr.lines().find(|l| l.contains(needle));
    assert!(
        !out.status.success() && report.is_some(),
        "loom did not report the bug in {name} ({}):\n{stderr}",
        out.status
    );
    eprintln!("{name}: caught: {}", report.unwrap_or_default());
}

/// A queue or channel: items behind a lock, a length readable without it.
struct Queue<T> {
    items: Mutex<VecDeque<T>>,
    len: AtomicUsize,
    /// Signalled by each push: a consumer blocked on an empty queue (async-channel's listener).
    cv: Condvar,
}

impl<T> Queue<T> {
    fn new() -> Queue<T> {
        Queue {
            items: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            cv: Condvar::new(),
        }
    }

    fn push(&self, item: T) {
        let mut items = self.items.lock().unwrap();
        items.push_back(item);
        self.len.fetch_add(1, SeqCst);
        self.cv.notify_one();
    }

    fn pop(&self) -> Option<T> {
        let mut items = self.items.lock().unwrap();
        let item = items.pop_front()?;
        self.len.fetch_sub(1, SeqCst);
        Some(item)
    }

    /// Without the lock, like `async_channel::Receiver::len`/`is_empty`.
    fn len(&self) -> usize {
        self.len.load(SeqCst)
    }

    /// Blocks until the queue is not empty (checked under the lock, so no push is missed).
    fn wait_not_empty(&self) {
        let mut items = self.items.lock().unwrap();
        while items.is_empty() {
            items = self.cv.wait(items).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Wake-up: producers push commands and signal through `WakeGate`; the reactor sleeps in
//    `epoll_wait` on an eventfd.
// ---------------------------------------------------------------------------------------------

/// An eventfd registered edge-triggered: every `write(2)` is an edge, and one `epoll_wait`
/// returns once for all the edges since the last one. The reactor never reads it back.
#[derive(Default)]
struct EventFd {
    /// (edges not yet seen by an `epoll_wait`, writes ever made)
    state: Mutex<(u32, u32)>,
    cv: Condvar,
}

impl EventFd {
    fn notify(&self) {
        let mut s = self.state.lock().unwrap();
        s.0 += 1;
        s.1 += 1;
        self.cv.notify_one();
    }

    /// `epoll_wait` with the eventfd as its only source: timeout -1 blocks until an edge,
    /// timeout 0 does not.
    fn wait(&self, block: bool) {
        let mut s = self.state.lock().unwrap();
        while block && s.0 == 0 {
            s = self.cv.wait(s).unwrap();
        }
        s.0 = 0;
    }

    fn writes(&self) -> u32 {
        self.state.lock().unwrap().1
    }
}

/// How a model's reactor and producers use the gate.
#[derive(Clone, Copy, PartialEq)]
enum WakeVariant {
    /// As `Shared::push` and the reactor's loop do.
    Real,
    /// Broken: the reactor blocks without looking at its queue after `prepare_sleep`.
    NoRecheck,
    /// Broken: a producer signals before it publishes its command.
    SignalFirst,
}

struct Server {
    queue: Queue<(usize, u32)>,
    gate: WakeGate,
    eventfd: EventFd,
}

impl Server {
    /// `Shared::push`: publish, then signal if the reactor may be asleep.
    fn push(&self, cmd: (usize, u32), variant: WakeVariant) {
        if variant == WakeVariant::SignalFirst {
            if self.gate.should_signal() {
                self.eventfd.notify();
            }
            self.queue.push(cmd);
            return;
        }
        self.queue.push(cmd);
        if self.gate.should_signal() {
            self.eventfd.notify();
        }
    }
}

/// Two producers (two commands and one) and the reactor, which runs its loop until it has
/// taken all three: `prepare_sleep`, look at the queue, `epoll_wait`, `awake`, take commands.
fn wake_model(variant: WakeVariant) {
    const SENDS: [u32; 2] = [2, 1];
    let server = Arc::new(Server {
        queue: Queue::new(),
        gate: WakeGate::new(),
        eventfd: EventFd::default(),
    });
    let producers: Vec<_> = SENDS
        .iter()
        .enumerate()
        .map(|(p, &n)| {
            let server = server.clone();
            thread::spawn(move || {
                for seq in 0..n {
                    server.push((p, seq), variant);
                }
            })
        })
        .collect();

    // The reactor.
    let total = SENDS.iter().sum::<u32>() as usize;
    let mut taken = Vec::new();
    let mut sleeps = 0;
    loop {
        // `take_commands`
        while let Some(cmd) = server.queue.pop() {
            taken.push(cmd);
        }
        if taken.len() == total {
            break;
        }
        // `Shared::prepare_sleep`: allow wake-ups, then look at the queue.
        server.gate.prepare_sleep();
        sleeps += 1;
        let waiting = match variant {
            WakeVariant::NoRecheck => false,
            _ => server.queue.len() != 0,
        };
        server.eventfd.wait(!waiting);
        server.gate.awake();
    }
    for p in producers {
        p.join().unwrap();
    }

    // Every command once, each producer's in its order.
    let mut next = [0u32; SENDS.len()];
    for (p, seq) in taken {
        assert_eq!(seq, next[p], "producer {p}: command out of order or twice");
        next[p] += 1;
    }
    assert_eq!(next, SENDS);
    // Coalescing: an eventfd write needs a `false` that only `prepare_sleep` stores.
    let writes = server.eventfd.writes();
    assert!(
        writes <= sleeps,
        "{writes} eventfd writes for {sleeps} sleeps"
    );
}

#[test]
fn wakeup_is_never_lost() {
    check(4, || wake_model(WakeVariant::Real));
}

#[test]
fn broken_wakeup_without_recheck_is_caught() {
    expect_caught("broken_wakeup_without_recheck_is_caught", || {
        check(3, || wake_model(WakeVariant::NoRecheck));
    });
}

#[test]
fn broken_wakeup_signal_before_publish_is_caught() {
    expect_caught("broken_wakeup_signal_before_publish_is_caught", || {
        check(3, || wake_model(WakeVariant::SignalFirst));
    });
}

// ---------------------------------------------------------------------------------------------
// 2. Inbound pause and resume: a bounded channel of capacity 1, three frames arriving in two
//    reads ([0, 1] then [2]); the reactor parks what does not fit and stops reading, the
//    consumer resumes it.
// ---------------------------------------------------------------------------------------------

const CAPACITY: usize = 1;
const READS: [&[u32]; 2] = [&[0, 1], &[2]];
const FRAMES: u32 = 3;

struct Conn {
    /// The inbound channel (bounded by `offer`, which reserves room).
    inbound: Queue<u32>,
    paused: PauseFlag,
    /// What the consumer's `InboundResume` travels on: the reactor's command queue, here with
    /// a plain blocking wait (the model above checks the real wake-up).
    commands: Queue<()>,
}

/// The reactor's side of one connection: `AsyncFace::received`/`offer`, `Reactor::deliver`,
/// `Reactor::inbound_resume` and `AsyncFace::end_turn`.
struct ReactorSide {
    conn: Arc<Conn>,
    /// Frames accepted this turn, delivered at its end; their room is reserved.
    pending: Vec<u32>,
    parked: VecDeque<u32>,
    reading: bool,
    pauses: u32,
    /// Broken variant: flag the pause but do not offer again.
    no_reoffer: bool,
}

impl ReactorSide {
    /// `AsyncFace::offer`: room counts the frames reserved this turn.
    fn offer(&mut self, frame: u32) -> Option<u32> {
        if self.conn.inbound.len() + self.pending.len() >= CAPACITY {
            return Some(frame);
        }
        self.pending.push(frame);
        None
    }

    /// `AsyncFace::received`: offer; when full, flag the pause, then offer again.
    fn received(&mut self, frame: u32) -> Option<u32> {
        let frame = self.offer(frame)?;
        self.conn.paused.pause();
        self.pauses += 1;
        if self.no_reoffer {
            return Some(frame);
        }
        self.offer(frame)
    }

    /// `Reactor::deliver`: behind a parked frame, every later one parks too (order).
    fn deliver(&mut self, frames: impl IntoIterator<Item = u32>) {
        for frame in frames {
            let rejected = if self.parked.is_empty() {
                self.received(frame)
            } else {
                Some(frame)
            };
            if let Some(frame) = rejected {
                self.parked.push_back(frame);
                self.reading = false;
            }
        }
    }

    /// `Reactor::inbound_resume`.
    fn inbound_resume(&mut self) {
        self.conn.paused.clear();
        let frames: Vec<u32> = self.parked.drain(..).collect();
        self.deliver(frames);
        if self.parked.is_empty() {
            self.reading = true;
        }
    }

    /// `AsyncFace::end_turn`: hand this turn's frames to the channel (cannot fail: reserved).
    fn end_turn(&mut self) {
        for frame in self.pending.drain(..) {
            self.conn.inbound.push(frame);
            assert!(
                self.conn.inbound.len() <= CAPACITY,
                "a reserved slot was taken"
            );
        }
    }
}

/// `Inbound::maybe_resume`: once drained (with capacity 1, empty), one resume per pause.
fn maybe_resume(conn: &Conn, resumes: &mut u32) {
    if !conn.paused.is_paused() {
        return;
    }
    let low = conn.inbound.len() * 2 <= CAPACITY; // len <= capacity / 2
    if low && conn.paused.take_resume() {
        *resumes += 1;
        conn.commands.push(());
    }
}

fn pause_model(no_reoffer: bool) {
    let conn = Arc::new(Conn {
        inbound: Queue::new(),
        paused: PauseFlag::new(),
        commands: Queue::new(),
    });

    // The consumer: `Inbound::poll_next` in a loop.
    let consumer = {
        let conn = conn.clone();
        thread::spawn(move || {
            let mut got = Vec::new();
            let mut resumes = 0;
            while got.len() < FRAMES as usize {
                match conn.inbound.pop() {
                    Some(frame) => {
                        got.push(frame);
                        maybe_resume(&conn, &mut resumes);
                    }
                    None => {
                        // Pending: the channel's listener is registered; ask for parked frames,
                        // then sleep until a send.
                        maybe_resume(&conn, &mut resumes);
                        conn.inbound.wait_not_empty();
                    }
                }
            }
            (got, resumes)
        })
    };

    // The reactor.
    let mut r = ReactorSide {
        conn: conn.clone(),
        pending: Vec::new(),
        parked: VecDeque::new(),
        reading: true,
        pauses: 0,
        no_reoffer,
    };
    let mut reads = READS.iter();
    let mut reads_done = false;
    loop {
        if r.reading && !reads_done {
            match reads.next() {
                Some(frames) => r.deliver(frames.iter().copied()),
                None => reads_done = true,
            }
        } else if reads_done && r.parked.is_empty() {
            break;
        } else {
            // Nothing to do until a command: block (epoll_wait on the eventfd).
            conn.commands.wait_not_empty();
            conn.commands.pop();
            r.inbound_resume();
        }
        r.end_turn();
    }

    let (got, resumes) = consumer.join().unwrap();
    assert_eq!(got, [0, 1, 2], "frames lost, doubled or reordered");
    assert!(
        resumes <= r.pauses,
        "{resumes} resumes for {} pauses",
        r.pauses
    );
}

#[test]
fn inbound_resume_is_never_lost() {
    check(5, || pause_model(false));
}

#[test]
fn broken_pause_without_reoffer_is_caught() {
    expect_caught("broken_pause_without_reoffer_is_caught", || {
        check(3, || pause_model(true));
    });
}

// ---------------------------------------------------------------------------------------------
// 3. The sink's flush and write waker: the sink waits in `poll_ready` and `poll_flush`
//    (`WriteProgress::poll_until`) while the reactor writes; a flush racing a close.
// ---------------------------------------------------------------------------------------------

/// What the sink waits on: `ConnShared`'s progress, queued bytes and state.
struct Sink {
    progress: WriteProgress,
    queued: loom::sync::atomic::AtomicU64,
    closed: AtomicBool,
}

#[derive(Clone, Copy, PartialEq)]
enum SinkVariant {
    Real,
    /// Broken: the sink registers its waker without testing again.
    RegisterWithoutRecheck,
    /// Broken: the reactor wakes before it marks the connection closed.
    WakeBeforeClose,
}

/// Drives the sink's wait to its end: `poll_until` (or its broken variant) under a loom
/// executor, which parks the thread on `Pending` until the waker is woken.
fn poll_until<R>(
    p: &WriteProgress,
    variant: SinkVariant,
    done: impl Fn(&WriteProgress) -> Option<R>,
) -> R {
    loom::future::block_on(std::future::poll_fn(|cx| {
        if variant != SinkVariant::RegisterWithoutRecheck {
            return p.poll_until(cx, &done);
        }
        if let Some(r) = done(p) {
            return Poll::Ready(r);
        }
        // Register only: `poll_until` with a test that never answers registers the waker,
        // and `done` is not tested again.
        p.poll_until(cx, |_| None::<R>)
    }))
}

/// `Conn::flush` writing two bytes in two `sendmsg` calls: queued down, then written up and
/// wake (`advance`).
fn reactor_writes(sink: &Sink) {
    for _ in 0..2 {
        sink.queued.fetch_sub(1, SeqCst);
        sink.progress.advance(1);
    }
}

/// The sink has sent two bytes (high-water mark 1): `poll_ready` waits until at most one byte
/// is queued, `poll_flush` until both are written; the reactor writes them one at a time.
fn flush_model(variant: SinkVariant) {
    let sink = Arc::new(Sink {
        progress: WriteProgress::new(),
        queued: loom::sync::atomic::AtomicU64::new(2),
        closed: AtomicBool::new(false),
    });
    let reactor = {
        let sink = sink.clone();
        thread::spawn(move || reactor_writes(&sink))
    };
    let sent_upto = 2;
    let high_water = 1;
    // `Outbound::poll_ready`
    let ready: Result<(), ()> = poll_until(&sink.progress, variant, |_| {
        if sink.closed.load(SeqCst) {
            Some(Err(()))
        } else if sink.queued.load(SeqCst) <= high_water {
            Some(Ok(()))
        } else {
            None
        }
    });
    assert_eq!(ready, Ok(()));
    // `Outbound::poll_flush`
    let flushed: Result<(), ()> = poll_until(&sink.progress, variant, |p| {
        if p.written() >= sent_upto {
            Some(Ok(()))
        } else if sink.closed.load(SeqCst) {
            Some(Err(()))
        } else {
            None
        }
    });
    assert_eq!(flushed, Ok(()));
    assert!(sink.progress.written() >= sent_upto);
    reactor.join().unwrap();
    assert_eq!(sink.progress.written(), 2, "a write counted twice");
}

/// The reactor writes one of two bytes, then the connection closes (`Core::abort`: state
/// stored, then `wake` with no progress). The flush must end, with the failure.
fn flush_close_model(variant: SinkVariant) {
    let sink = Arc::new(Sink {
        progress: WriteProgress::new(),
        queued: loom::sync::atomic::AtomicU64::new(2),
        closed: AtomicBool::new(false),
    });
    let reactor = {
        let sink = sink.clone();
        thread::spawn(move || {
            sink.queued.fetch_sub(1, SeqCst);
            sink.progress.advance(1);
            if variant == SinkVariant::WakeBeforeClose {
                sink.progress.wake();
                sink.closed.store(true, SeqCst);
            } else {
                sink.closed.store(true, SeqCst);
                sink.progress.wake();
            }
        })
    };
    let flushed: Result<(), ()> = poll_until(&sink.progress, variant, |p| {
        if p.written() >= 2 {
            Some(Ok(()))
        } else if sink.closed.load(SeqCst) {
            Some(Err(()))
        } else {
            None
        }
    });
    assert_eq!(flushed, Err(()), "a flush past a close must fail");
    reactor.join().unwrap();
}

#[test]
fn flush_and_ready_wakeups_are_never_lost() {
    check(8, || flush_model(SinkVariant::Real));
}

#[test]
fn flush_racing_close_sees_the_failure() {
    check(8, || flush_close_model(SinkVariant::Real));
}

#[test]
fn broken_register_without_recheck_is_caught() {
    expect_caught("broken_register_without_recheck_is_caught", || {
        check(3, || flush_model(SinkVariant::RegisterWithoutRecheck));
    });
}

#[test]
fn broken_close_wake_before_state_is_caught() {
    expect_caught("broken_close_wake_before_state_is_caught", || {
        check(3, || flush_close_model(SinkVariant::WakeBeforeClose));
    });
}

// ---------------------------------------------------------------------------------------------
// Send order and flush positions (defect 8c of the review)
// ---------------------------------------------------------------------------------------------
//
// A sink's `poll_flush` resolves once the bytes written reach the output position at the end of
// its last send. Positions come from one counter (`enqueued_total`), and the bytes travel on one
// FIFO command queue that the reactor writes in order. If a sender could number its bytes and
// another sender queue its own before the first one queued, the reactor would write the second
// sender's bytes first, the count would pass the first one's position, and its flush would
// resolve with its bytes still unwritten. `ConnShared::send` (and the reactor's own
// `Core::send`) therefore number *and* queue under the connection's output lock. This is a model
// of that protocol (the real code needs a reactor and sockets): the fixed variant takes the lock,
// the broken one (the code before the fix) does not, and loom must find the early flush there.

/// Numbers `len` bytes and queues them as `(sender, len)`, under `lock` if given.
fn numbered_send(
    lock: Option<&Mutex<()>>,
    enqueued: &loom::sync::atomic::AtomicU64,
    queue: &Queue<(usize, u64)>,
    sender: usize,
    len: u64,
) -> u64 {
    let guard = lock.map(|l| l.lock().unwrap());
    let end = enqueued.fetch_add(len, SeqCst) + len;
    queue.push((sender, len));
    drop(guard);
    end
}

fn send_order_model(locked: bool) {
    check(4, move || {
        let lock = Arc::new(Mutex::new(()));
        let enqueued = Arc::new(loom::sync::atomic::AtomicU64::new(0));
        let queue = Arc::new(Queue::new());
        let progress = Arc::new(WriteProgress::new());
        let written = Arc::new(Mutex::new(Vec::new()));

        // A `ConnHandle` on another thread sends 2 bytes.
        let handle = {
            let (lock, enqueued, queue) = (lock.clone(), enqueued.clone(), queue.clone());
            thread::spawn(move || {
                numbered_send(locked.then_some(&*lock), &enqueued, &queue, 1, 2);
            })
        };
        // The reactor writes what the queue holds, in order, and counts it.
        let reactor = {
            let (queue, progress, written) = (queue.clone(), progress.clone(), written.clone());
            thread::spawn(move || {
                let mut taken = 0;
                while taken < 2 {
                    match queue.pop() {
                        Some((sender, len)) => {
                            written.lock().unwrap().push(sender);
                            progress.advance(len);
                            taken += 1;
                        }
                        None => thread::yield_now(),
                    }
                }
            })
        };
        // The sink sends 1 byte, then polls its flush once.
        let end = numbered_send(locked.then_some(&*lock), &enqueued, &queue, 0, 1);
        if progress.written() >= end {
            assert!(
                written.lock().unwrap().contains(&0),
                "flush resolved before the sink's own bytes were written"
            );
        }
        handle.join().unwrap();
        reactor.join().unwrap();
        assert_eq!(progress.written(), 3);
    });
}

#[test]
fn flush_position_is_reached_only_by_the_senders_own_bytes() {
    send_order_model(true);
}

#[test]
fn broken_numbering_outside_the_lock_is_caught() {
    expect_caught_as(
        "broken_numbering_outside_the_lock_is_caught",
        "flush resolved before the sink's own bytes were written",
        || send_order_model(false),
    );
}
