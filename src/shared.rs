//! What the reactor thread shares with other threads: the command queue, the coalesced wake-up,
//! and the per-connection state behind [`ConnHandle`] and the async halves.
//!
//! # Wake-up protocol
//!
//! Producers push a [`Command`] and then call [`Shared::wake`], which writes the eventfd only if
//! `wake_pending` was false. The reactor keeps `wake_pending` true while it is awake, and sets it
//! to false just before `epoll_wait`, *then* checks the queue: a command pushed before that check
//! is seen by it, one pushed after it finds `wake_pending` false and writes the eventfd. Either
//! way nothing is lost, and a burst of commands costs at most one `write(2)` and one wake-up.

use crate::codec::Encoder;
use crate::error::{catch_panic, SendError, SendErrorKind};
use crate::handoff::{PauseFlag, WakeGate, WriteProgress};
use crate::id::ConnId;
use crate::sys::EventFd;
use bytes::Bytes;
use std::fmt;
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Mutex};

/// A request from another thread to the reactor.
#[derive(Debug)]
pub(crate) enum Command {
    /// Queue these buffers (one message, or the encoded pieces of one frame) for output.
    /// Already counted in the connection's `queued` bytes.
    Send(ConnId, Bytes),
    SendParts(ConnId, Vec<Bytes>),
    /// Close after writing what is queued.
    Close(ConnId),
    /// Stop reading from the connection (user request).
    Pause(ConnId),
    /// Resume reading (user request).
    Resume(ConnId),
    /// The async consumer drained inbound items: deliver parked ones and read again.
    InboundResume(ConnId),
    /// Flush, then `shutdown(SHUT_WR)`.
    ShutdownWrite(ConnId),
    /// Both async halves are gone: close after writing what is queued.
    Release(ConnId),
    /// The async consumer took accepted connections: accept again.
    AcceptResume,
    /// User code run for this connection on another thread (an encoder) panicked: close it
    /// with this error.
    Fail(ConnId, std::io::Error),
    /// Override one timeout of one connection.
    SetTimeout(ConnId, crate::Timeout, Option<std::time::Duration>),
    /// The last `Incoming` was dropped: close what it buffered and the async listeners.
    IncomingDropped,
    /// Test hook: panic on the reactor thread (see `ServerHandle::inject_panic`).
    InjectPanic,
    /// Open an outbound connection for the async face and send it (or the error) back.
    Connect(crate::addr::Address, crate::async_face::ConnectReply),
    /// A send to a connection by its id, from another reactor's callback or a
    /// [`ServerHandle`]: queued like `Context::send` on the connection's own reactor.
    SendTo(ConnId, Bytes),
    /// A close by id, from another reactor's callback or a [`ServerHandle`].
    CloseId(ConnId),
    /// Stop or resume reading by id, from another reactor's callback or a [`ServerHandle`].
    PauseId(ConnId),
    ResumeId(ConnId),
}

/// Every reactor of one server (see [`Builder::reactors`](crate::Builder::reactors)): what a
/// [`ServerHandle`] stops, sums and routes to.
pub(crate) struct Group {
    /// Each reactor's shared state, by reactor index.
    pub(crate) reactors: Box<[Arc<Shared>]>,
    /// Connections open over every reactor, counted only when `max_connections` bounds them
    /// (the limit applies to the server as a whole).
    pub(crate) open: AtomicUsize,
    /// Where the next outbound connect of the async face goes (round-robin).
    next_connect: AtomicUsize,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("reactors", &self.reactors.len())
            .finish()
    }
}

impl Group {
    pub(crate) fn new(reactors: Vec<Arc<Shared>>) -> Group {
        Group {
            reactors: reactors.into_boxed_slice(),
            open: AtomicUsize::new(0),
            next_connect: AtomicUsize::new(0),
        }
    }

    /// The reactor that serves `id`, if the id names one of ours.
    pub(crate) fn of(&self, id: ConnId) -> Option<&Arc<Shared>> {
        self.reactors.get(id.reactor())
    }

    /// Async-signal-safe stop of every reactor: atomic stores and `write(2)`s, no allocation.
    pub(crate) fn stop(&self) {
        for r in self.reactors.iter() {
            r.stop();
        }
    }

    /// The reactor for the next outbound connect.
    pub(crate) fn next_for_connect(&self) -> &Arc<Shared> {
        let i = self.next_connect.fetch_add(1, Relaxed) % self.reactors.len();
        &self.reactors[i]
    }
}

/// State shared by the reactor and every handle of one server.
pub(crate) struct Shared {
    waker: EventFd,
    /// Whether a producer must write the eventfd (see the module docs; model-checked).
    wake_gate: WakeGate,
    stop: AtomicBool,
    finished: AtomicBool,
    /// Lock-free MPSC queue (async-channel's unbounded queue; only its `try_*` calls are used).
    commands_tx: async_channel::Sender<Command>,
    commands_rx: async_channel::Receiver<Command>,
    /// Closed (never sent on) when the loop has returned, however it ended: what
    /// [`ServerHandle::stopped`] waits for.
    done_tx: async_channel::Sender<()>,
    done_rx: async_channel::Receiver<()>,
    /// What `ServerHandle::stats` reports; written by the reactor thread only.
    pub(crate) counters: crate::stats::Counters,
    /// The per-connection queue bounds, the same for every connection (kept here rather than
    /// in each connection's shared state).
    pub(crate) limits: Limits,
}

/// Queue bounds of every connection of a server, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Queued output past which sends are refused.
    pub(crate) out_hard: usize,
    /// Queued output past which a sink's `poll_ready` waits.
    pub(crate) out_high: usize,
    /// Inbound bytes delivered and not yet taken past which the reactor stops reading.
    pub(crate) inbound_high: usize,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("stop", &self.stop.load(SeqCst))
            .field("finished", &self.finished.load(SeqCst))
            .finish()
    }
}

impl Shared {
    pub(crate) fn new(limits: Limits) -> std::io::Result<Shared> {
        let (commands_tx, commands_rx) = async_channel::unbounded();
        let (done_tx, done_rx) = async_channel::bounded(1);
        Ok(Shared {
            waker: EventFd::new()?,
            // The reactor is not sleeping yet: nobody needs to write the eventfd.
            wake_gate: WakeGate::new(),
            stop: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            commands_tx,
            commands_rx,
            done_tx,
            done_rx,
            counters: Default::default(),
            limits,
        })
    }

    pub(crate) fn eventfd(&self) -> &EventFd {
        &self.waker
    }

    /// Queues `cmd` and wakes the reactor if it may be sleeping.
    pub(crate) fn push(&self, cmd: Command) {
        // Never fails: the reactor holds a receiver for as long as this `Shared` lives.
        let _ = self.commands_tx.try_send(cmd);
        self.wake();
    }

    /// Wakes the reactor unless a wake-up is already pending or it is awake.
    pub(crate) fn wake(&self) {
        if self.wake_gate.should_signal() {
            self.waker.notify();
        }
    }

    /// Async-signal-safe stop: an atomic store and a `write(2)`.
    pub(crate) fn stop(&self) {
        self.stop.store(true, SeqCst);
        self.waker.notify();
    }

    pub(crate) fn is_stop_requested(&self) -> bool {
        self.stop.load(SeqCst)
    }

    /// The loop returned (or its thread is unwinding): wake everything waiting for that.
    pub(crate) fn set_finished(&self) {
        self.finished.store(true, SeqCst);
        self.done_tx.close();
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(SeqCst)
    }

    /// Reactor side, before `epoll_wait`: allows producers to wake us; returns whether commands
    /// are already waiting (then the wait must not block).
    pub(crate) fn prepare_sleep(&self) -> bool {
        self.wake_gate.prepare_sleep();
        !self.commands_rx.is_empty()
    }

    /// Reactor side, after `epoll_wait`: we are awake, producers need not write the eventfd.
    pub(crate) fn awake(&self) {
        self.wake_gate.awake();
    }

    /// Drops every queued command (once the loop is over: nobody will run them, and a connect's
    /// reply must not be kept waiting).
    pub(crate) fn discard_commands(&self) {
        while self.commands_rx.try_recv().is_ok() {}
    }

    /// Reactor side: takes the queued commands into `buf`.
    pub(crate) fn take_commands(&self, buf: &mut Vec<Command>) {
        while let Ok(cmd) = self.commands_rx.try_recv() {
            buf.push(cmd);
        }
    }
}

/// A cloneable, thread-safe handle to a server: stop it from any thread or a signal handler.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use epoll_server::{Server, Handler, Context, ConnId};
/// use bytes::Bytes;
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
///         let _ = ctx.send(conn, data);
///     }
/// }
///
/// let server = Server::builder().bind("127.0.0.1:0")?.build(Echo)?;
/// let handle = server.handle();
/// let running = server.spawn()?;
/// handle.stop();
/// running.join()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ServerHandle {
    pub(crate) group: Arc<Group>,
}

impl ServerHandle {
    /// Asks the server to stop gracefully: it stops accepting, writes what is queued (up to the
    /// shut-down deadline), closes every connection and returns from its loop.
    ///
    /// With several reactors, every one of them stops so, and the server has stopped once
    /// all have.
    ///
    /// Async-signal-safe: it is an atomic store and a `write(2)` to an eventfd per reactor, so
    /// it may be called from a signal handler (see [`stop_on_signals`](crate::stop_on_signals)).
    pub fn stop(&self) {
        self.group.stop();
    }

    /// Whether a stop was requested.
    pub fn is_stop_requested(&self) -> bool {
        self.group.reactors.iter().any(|r| r.is_stop_requested())
    }

    /// Whether the server's loop has returned (every reactor's loop, with several).
    pub fn is_finished(&self) -> bool {
        self.group.reactors.iter().all(|r| r.is_finished())
    }

    /// The number of reactors (see [`Builder::reactors`](crate::Builder::reactors)).
    pub fn reactors(&self) -> usize {
        self.group.reactors.len()
    }

    /// Queues `msg` on connection `id`, whichever reactor serves it, from any thread: it goes
    /// to that reactor's command queue and is written after what is queued for `id` before it
    /// there. A [`ConnHandle`] does the same for one connection and also reports a closed or
    /// full connection at once; this reports only an id that names no reactor of this server.
    /// A send to a connection that closed meanwhile is dropped.
    ///
    /// # Errors
    ///
    /// [`SendErrorKind::Closed`] if `id` is not from this server or the server has stopped.
    pub fn send(&self, id: ConnId, msg: impl Into<Bytes>) -> Result<(), SendError> {
        let msg = msg.into();
        match self.group.of(id) {
            Some(r) if !r.is_finished() => {
                r.push(Command::SendTo(id, msg));
                Ok(())
            }
            _ => Err(SendError::new(SendErrorKind::Closed, msg)),
        }
    }

    /// Closes connection `id`, whichever reactor serves it, once what is queued for it is
    /// written. Nothing happens if it is already closed.
    pub fn close(&self, id: ConnId) {
        self.route(id, Command::CloseId(id));
    }

    /// Stops reading from connection `id`, whichever reactor serves it (the peer then feels
    /// TCP flow control), like [`Context::pause_reading`](crate::Context::pause_reading).
    pub fn pause_reading(&self, id: ConnId) {
        self.route(id, Command::PauseId(id));
    }

    /// Resumes reading from connection `id` after [`pause_reading`](Self::pause_reading).
    pub fn resume_reading(&self, id: ConnId) {
        self.route(id, Command::ResumeId(id));
    }

    /// Pushes `cmd` to the reactor that serves `id`, if `id` names one of this server's.
    fn route(&self, id: ConnId, cmd: Command) {
        if let Some(r) = self.group.of(id) {
            r.push(cmd);
        }
    }

    /// A future that resolves once the server's loop has returned (after a graceful stop, or
    /// if the reactor thread died). Any executor can await it; it never blocks a thread, unlike
    /// [`ServerThread::join`](crate::ServerThread::join) and dropping a
    /// [`ServerThread`](crate::ServerThread).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use epoll_server::Server;
    ///
    /// let server = Server::builder().bind_async("127.0.0.1:0")?.build_async()?;
    /// let _incoming = server.incoming();
    /// let handle = server.handle();
    /// let running = server.spawn()?;
    /// handle.stop();
    /// futures::executor::block_on(handle.stopped());
    /// assert!(handle.is_finished());
    /// running.join()?; // returns at once now
    /// # Ok(())
    /// # }
    /// ```
    pub fn stopped(&self) -> Stopped {
        Stopped {
            rx: self
                .group
                .reactors
                .iter()
                .map(|r| Box::pin(r.done_rx.clone()))
                .collect(),
        }
    }

    /// A snapshot of the server's counters: connections, bytes, queues, accept errors, loop
    /// turns. Any thread can take one at any time; the loop does not stop for it.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use epoll_server::{Bytes, ConnId, Context, Handler, Server};
    /// use std::io::{Read, Write};
    ///
    /// struct Echo;
    /// impl Handler for Echo {
    ///     fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
    ///         let _ = ctx.send(conn, data);
    ///     }
    /// }
    ///
    /// let server = Server::builder().bind("127.0.0.1:0")?.build(Echo)?.spawn()?;
    /// let mut client = std::net::TcpStream::connect(server.local_addr())?;
    /// client.write_all(b"hello")?;
    /// client.read_exact(&mut [0u8; 5])?;
    /// // Counted before the echo was sent (bytes written are counted just after it is).
    /// let stats = server.handle().stats();
    /// assert_eq!((stats.open, stats.accepted, stats.bytes_read), (1, 1, 5));
    /// # server.stop_and_join()
    /// # }
    /// ```
    pub fn stats(&self) -> crate::Stats {
        self.reactor_stats()
            .iter()
            .fold(crate::Stats::default(), |sum, r| sum.sum(r))
    }

    /// Each reactor's counters, by reactor index; [`stats`](Self::stats) is their sum.
    pub fn reactor_stats(&self) -> Vec<crate::Stats> {
        self.group
            .reactors
            .iter()
            .map(|r| r.counters.snapshot())
            .collect()
    }

    /// Makes the (first) reactor thread panic on its next turn, to test that everything
    /// waiting on the server fails or ends instead of hanging. Not for production use.
    #[doc(hidden)]
    pub fn inject_panic(&self) {
        self.group.reactors[0].push(Command::InjectPanic);
    }
}

/// The future of [`ServerHandle::stopped`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Stopped {
    /// One per reactor; an ended one is removed.
    rx: Vec<std::pin::Pin<Box<async_channel::Receiver<()>>>>,
}

impl std::future::Future for Stopped {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        use futures::Stream;
        // Nothing is ever sent: each stream ends when its reactor closes the channel.
        self.rx.retain_mut(|rx| loop {
            match rx.as_mut().poll_next(cx) {
                std::task::Poll::Ready(None) => break false,
                std::task::Poll::Ready(Some(())) => {}
                std::task::Poll::Pending => break true,
            }
        });
        if self.rx.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }
}

/// Connection life, as the handles see it.
pub(crate) const OPEN: u8 = 0;
pub(crate) const CLOSED: u8 = 1;
pub(crate) const CLOSED_RESET: u8 = 2;
pub(crate) const CLOSED_ERROR: u8 = 3;
pub(crate) const CLOSED_SHUTDOWN: u8 = 4;
pub(crate) const CLOSED_TIMEDOUT: u8 = 5;

/// State of one connection shared with handles on other threads. Created only when a handle or
/// the async face needs it, so a callback connection nobody holds costs nothing extra.
pub(crate) struct ConnShared {
    pub(crate) id: ConnId,
    pub(crate) server: Arc<Shared>,
    /// Bytes accepted for output and not yet written to the kernel (channel + write queue).
    pub(crate) queued: AtomicUsize,
    /// Bytes ever accepted for output, for `poll_flush`.
    pub(crate) enqueued_total: AtomicU64,
    /// Bytes ever written to the kernel, and the waker of a sink waiting for that or for the
    /// connection's end (woken on each write and at the close; model-checked).
    pub(crate) progress: WriteProgress,
    /// One of the constants above.
    pub(crate) state: AtomicU8,
    /// Writes refused after a half-close.
    pub(crate) write_shut: AtomicBool,
    /// A send raced with the half-close and its bytes were dropped: flushing reports it.
    pub(crate) output_dropped: AtomicBool,
    /// Async inbound: bytes delivered to the consumer and not yet taken by it.
    pub(crate) inbound_bytes: AtomicUsize,
    /// Async inbound: the reactor stopped reading because the consumer lags (model-checked).
    pub(crate) inbound_paused: PauseFlag,
    /// Async inbound: the frames on their way to the consumer, then the end or the error.
    pub(crate) inbound: crate::async_face::InboundQueue,
    /// Async face: how many of the connection's two halves (stream and sink) are alive; the
    /// last one dropped releases the connection.
    pub(crate) halves: AtomicU8,
    /// Async face: who the connection is with (kept here rather than in every `Connection`,
    /// which lives in the executor's task).
    pub(crate) info: Option<crate::handler::ConnInfo>,
    /// The output lock, with the framing's encoder if there is one. Every send that has a
    /// handle-visible position takes it across encoding, numbering (`enqueued_total`) *and*
    /// queueing, so (1) the pieces of one frame are never interleaved with another frame's,
    /// (2) positions are handed out in the order the reactor writes the bytes, which is what
    /// makes `poll_flush` exact, and (3) the reactor, holding it, knows that every send which
    /// returned earlier on another thread is already in the command queue.
    pub(crate) out_lock: Mutex<Option<Box<dyn Encoder>>>,
    /// Sends from other threads pushed onto the command queue and not yet taken by the reactor.
    pub(crate) remote_pending: AtomicU32,
    /// Handle commands other than sends (close, pause, resume, set a timeout) pushed and not
    /// yet run: while any is on its way, sends queue behind it instead of writing through, so
    /// one thread's `pause_reading(); send(x)` still reaches the peer in that order.
    pub(crate) commands_pending: AtomicU32,
    /// The socket, for write-through: a send that finds nothing queued writes it at once
    /// from its own thread (see [`ConnShared::send`]). Revoked before the reactor closes it.
    pub(crate) fd: crate::sys::SharedFd,
}

impl fmt::Debug for ConnShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnShared")
            .field("id", &self.id)
            .field("queued", &self.queued.load(SeqCst))
            .field("state", &self.state.load(SeqCst))
            .finish()
    }
}

impl ConnShared {
    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(SeqCst) != OPEN
    }

    /// One async half (stream or sink) was dropped: after the last one, close the connection
    /// once its queued output is written.
    pub(crate) fn release_half(&self) {
        if self.halves.fetch_sub(1, SeqCst) == 1 && !self.is_closed() {
            self.server.push(Command::Release(self.id));
        }
    }

    /// Bytes still to be written: 0 once closed, since sends racing with the close may have
    /// been counted after the reactor dropped the queue.
    pub(crate) fn queued_bytes(&self) -> usize {
        if self.is_closed() {
            0
        } else {
            self.queued.load(SeqCst)
        }
    }

    /// The error a write on this connection gets now, if any.
    pub(crate) fn write_error(&self) -> Option<std::io::Error> {
        use std::io::{Error, ErrorKind};
        match self.state.load(SeqCst) {
            OPEN if self.write_shut.load(SeqCst) => Some(Error::new(
                ErrorKind::BrokenPipe,
                "the connection's write side is closed",
            )),
            OPEN => None,
            CLOSED_RESET => Some(Error::new(
                ErrorKind::ConnectionReset,
                "connection reset by peer",
            )),
            CLOSED_ERROR => Some(Error::new(
                ErrorKind::BrokenPipe,
                "connection closed on an error",
            )),
            CLOSED_SHUTDOWN => Some(Error::new(ErrorKind::NotConnected, "the server shut down")),
            CLOSED_TIMEDOUT => Some(Error::new(ErrorKind::TimedOut, "the connection timed out")),
            _ => Some(Error::new(ErrorKind::BrokenPipe, "connection closed")),
        }
    }

    /// Queues `msg` for output from any thread, counting it against the hard limit when `bounded`.
    /// Returns the output position (in bytes ever queued) at the end of `msg`.
    ///
    /// Outbound buffers travel on the server's one command queue (an `async-channel` queue,
    /// lock-free), not a channel per connection: one FIFO keeps every sender's order, needs no
    /// per-connection allocation, and a burst from many connections costs one wake-up.
    pub(crate) fn send(&self, msg: Bytes, bounded: bool) -> Result<u64, SendError> {
        if self.is_closed() || self.write_shut.load(SeqCst) {
            return Err(SendError::new(SendErrorKind::Closed, msg));
        }
        let mut guard = self.out_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (len, pieces) = match guard.as_mut() {
            None => (msg.len(), None),
            Some(encoder) => {
                let mut pieces = Vec::with_capacity(2);
                match encode_guarded(self.id, &mut **encoder, &msg, &mut pieces) {
                    Ok(len) => (len, Some(pieces)),
                    Err(EncodeFailure::Refused(e)) => return Err(SendError::invalid(msg, e)),
                    Err(EncodeFailure::Panicked(e)) => {
                        // Like a panicking callback: this connection closes on the error, the
                        // server and every other connection go on.
                        let reported = std::io::Error::new(e.kind(), e.to_string());
                        self.write_shut.store(true, SeqCst);
                        self.server.push(Command::Fail(self.id, e));
                        return Err(SendError::with_cause(SendErrorKind::Closed, msg, reported));
                    }
                }
            }
        };
        let before = self
            .reserve(len, bounded)
            .map_err(|kind| SendError::new(kind, msg.clone()))?;
        let end = self.enqueued_total.fetch_add(len as u64, SeqCst) + len as u64;
        let mut msg = msg;
        let mut pieces = pieces;
        if before == 0 && len > 0 && self.commands_pending.load(SeqCst) == 0 {
            // Write-through: nothing is queued anywhere (not in the reactor's queue, not in
            // the command queue: both count in `queued`), and every other sender waits on
            // this lock, so writing now keeps the order. The reactor is not woken at all
            // when the kernel takes everything.
            let written = match pieces.as_deref() {
                None => self.write_through(std::slice::from_ref(&msg)),
                Some(pieces) => self.write_through(pieces),
            };
            if written == len {
                return Ok(end);
            }
            match pieces.as_mut() {
                None => {
                    let _ = msg.split_to(written);
                }
                Some(pieces) => advance_pieces(pieces, written),
            }
        }
        self.remote_pending.fetch_add(1, SeqCst);
        self.server.push(match pieces {
            None => Command::Send(self.id, msg),
            Some(pieces) => Command::SendParts(self.id, pieces),
        });
        Ok(end)
    }

    /// Writes `pieces` straight to the socket, under the output lock (held by the caller),
    /// and accounts for what the kernel took. Returns the bytes written; the caller queues
    /// the rest (after a partial write, `EAGAIN`, an error, or a revoked socket) for the
    /// reactor, which then writes it, or meets the error and closes the connection.
    fn write_through(&self, pieces: &[Bytes]) -> usize {
        use crate::reactor::MAX_IOV;
        let mut iov = [std::io::IoSlice::new(&[]); MAX_IOV];
        let count = pieces.len().min(MAX_IOV);
        for (slot, piece) in iov.iter_mut().zip(pieces) {
            *slot = std::io::IoSlice::new(piece);
        }
        let written = loop {
            match self.fd.send_vectored(&iov[..count]) {
                Some(Ok(n)) => break n,
                Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                _ => break 0,
            }
        };
        if written > 0 {
            self.queued.fetch_sub(written, SeqCst);
            self.progress.advance(written as u64);
            self.server.counters.written_directly(written);
        }
        written
    }

    /// Pushes a command that later sends must not overtake (see `commands_pending`).
    fn command(&self, cmd: Command) {
        self.commands_pending.fetch_add(1, SeqCst);
        self.server.push(cmd);
    }

    /// Counts `len` more queued bytes, or says why not. Returns the bytes queued before.
    fn reserve(&self, len: usize, bounded: bool) -> Result<usize, SendErrorKind> {
        let before = self.queued.fetch_add(len, SeqCst);
        if bounded && before > 0 && before + len > self.server.limits.out_hard {
            self.queued.fetch_sub(len, SeqCst);
            return Err(SendErrorKind::Full);
        }
        Ok(before)
    }
}

/// Drops the first `n` bytes of `pieces` (written already).
fn advance_pieces(pieces: &mut Vec<Bytes>, mut n: usize) {
    let mut done = 0;
    for piece in pieces.iter_mut() {
        if n >= piece.len() {
            n -= piece.len();
            done += 1;
        } else {
            let _ = piece.split_to(n);
            break;
        }
    }
    pieces.drain(..done);
}

/// Why the framing's encoder did not encode a frame.
pub(crate) enum EncodeFailure {
    /// It refused the frame (its own error); the connection stays open.
    Refused(std::io::Error),
    /// It panicked: user code failing, which closes the connection.
    Panicked(std::io::Error),
}

/// Encodes `msg` into `pieces` with the connection's encoder, catching a panic, and returns the
/// encoded length. Both send paths (handles and sinks here, `Context::send` on the reactor)
/// encode through it.
pub(crate) fn encode_guarded(
    id: ConnId,
    encoder: &mut dyn Encoder,
    msg: &Bytes,
    pieces: &mut Vec<Bytes>,
) -> Result<usize, EncodeFailure> {
    match catch_panic("the framing's encoder", || {
        encoder.encode(msg.clone(), pieces)
    }) {
        Ok(Ok(())) => Ok(pieces.iter().map(Bytes::len).sum()),
        Ok(Err(e)) => {
            log::debug!("connection {id}: {e}");
            Err(EncodeFailure::Refused(e))
        }
        Err(panicked) => Err(EncodeFailure::Panicked(panicked)),
    }
}

/// A cloneable, thread-safe handle to one connection: send to it, close it, or pause reading
/// from it from any thread.
///
/// A handle is tied to its connection, not to its fd number: once the connection closes, every
/// send through it fails with [`SendErrorKind::Closed`], even if a new connection got the same fd.
#[derive(Clone, Debug)]
pub struct ConnHandle {
    pub(crate) inner: Arc<ConnShared>,
}

impl ConnHandle {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.inner.id
    }

    /// Queues `msg` to be written after everything queued before it.
    ///
    /// # Errors
    ///
    /// [`SendErrorKind::Closed`] once the connection closed (or is closing),
    /// [`SendErrorKind::Full`] when its queued output would pass the hard limit, and
    /// [`SendErrorKind::Invalid`] when the framing's encoder refuses the frame; the message
    /// comes back inside the error.
    pub fn send(&self, msg: impl Into<Bytes>) -> Result<(), SendError> {
        self.inner.send(msg.into(), true).map(drop)
    }

    /// Closes the connection after writing what is queued.
    pub fn close(&self) {
        if !self.inner.is_closed() {
            self.inner.command(Command::Close(self.inner.id));
        }
    }

    /// Stops reading from the connection (the peer then feels TCP flow control).
    pub fn pause_reading(&self) {
        self.inner.command(Command::Pause(self.inner.id));
    }

    /// Resumes reading after [`pause_reading`](Self::pause_reading).
    pub fn resume_reading(&self) {
        self.inner.command(Command::Resume(self.inner.id));
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Overrides one of the connection's timeouts (`None` turns it off for this connection);
    /// see [`Timeout`](crate::Timeout). Takes effect on the reactor's next turn.
    pub fn set_timeout(&self, which: crate::Timeout, after: Option<std::time::Duration>) {
        if !self.inner.is_closed() {
            self.inner
                .command(Command::SetTimeout(self.inner.id, which, after));
        }
    }

    /// Bytes queued for output and not yet handed to the kernel; 0 once the connection closed
    /// (nothing more will be written).
    pub fn queued_bytes(&self) -> usize {
        self.inner.queued_bytes()
    }
}
