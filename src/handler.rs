//! The callback face: a [`Handler`] runs on the reactor thread and acts through a [`Context`].

use crate::addr::{Address, PeerCredentials};
use crate::error::{catch_panic_in, CloseReason, SendError};
use crate::id::ConnId;
use crate::reactor::{Closed, Core, Face};
use crate::shared::{ConnHandle, ServerHandle};
use bytes::Bytes;
use std::io;
use std::time::Duration;

/// Who a new connection is with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnInfo {
    /// The connection's id, valid until it closes.
    pub id: ConnId,
    /// The peer's address: TCP, or for a Unix domain socket its path (usually unnamed for
    /// accepted connections, whose clients rarely bind one).
    pub peer: Address,
    /// The local address: the one the peer connected to, or for an outbound connection the
    /// one it was given.
    pub local: Address,
    /// Unix domain sockets: the peer process's credentials (`SO_PEERCRED`); `None` for TCP.
    pub peer_credentials: Option<PeerCredentials>,
    /// Opened by this server ([`Context::connect`], [`ServerHandle::connect`]) rather than
    /// accepted.
    pub outbound: bool,
}

/// Callbacks for connection events, run on the reactor thread.
///
/// Every callback runs on the one reactor thread, between system calls: while it runs, no other
/// connection is served. Keep them short and never block in them; hand slow work to another
/// thread and answer through a [`ConnHandle`] (see [`Context::handle`]).
///
/// A callback that panics does not take the server down: the panic is caught, the connection it
/// concerned is closed with [`CloseReason::Error`] (so [`on_error`](Self::on_error) and
/// [`on_close`](Self::on_close) hear of it), and every other connection keeps being served.
///
/// The C++ design's callbacks map as: `on_connection_opened` → [`on_open`](Self::on_open),
/// `on_message_received` → [`on_message`](Self::on_message), `on_connection_closed` →
/// [`on_close`](Self::on_close), `on_exception_occurred` → [`on_error`](Self::on_error),
/// `on_waiting_for_activity` → [`on_idle`](Self::on_idle), `on_listen_success` →
/// [`on_listening`](Self::on_listening), `on_shutdown_success` → [`on_shutdown`](Self::on_shutdown).
///
/// # Examples
///
/// An echo server on its own thread, and a client talking to it:
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use epoll_server::{Bytes, Context, ConnId, Handler, Server};
/// use std::io::{Read, Write};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
///         // A refused send hands the message back; an echo can only drop it and close.
///         if ctx.send(conn, data).is_err() {
///             ctx.close(conn);
///         }
///     }
/// }
///
/// let server = Server::builder().bind("127.0.0.1:0")?.build(Echo)?.spawn()?;
/// let mut client = std::net::TcpStream::connect(server.local_addr())?;
/// client.write_all(b"hello")?;
/// let mut reply = [0u8; 5];
/// client.read_exact(&mut reply)?;
/// assert_eq!(&reply, b"hello");
/// server.stop_and_join()?;
/// # Ok(())
/// # }
/// ```
pub trait Handler: Send + 'static {
    /// The server is listening on `addrs` (the real bound addresses, with their ports).
    fn on_listening(&mut self, ctx: &mut Context<'_>, addrs: &[Address]) {
        let _ = ctx;
        log::info!("listening on {addrs:?}");
    }

    /// A connection was accepted.
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnInfo) {
        let _ = ctx;
        log::debug!("connection {} opened from {}", conn.id, conn.peer);
    }

    /// Bytes (or, with a codec, one whole frame) arrived on `conn`. Messages of one connection
    /// arrive in order.
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes);

    /// The peer closed its side of `conn` (it sent its end of file, for example with
    /// `shutdown(SHUT_WR)`): no more messages will come, but the connection can still be
    /// written to.
    ///
    /// The default closes `conn` once what is queued for it is written (answers to the last
    /// messages included), and [`on_close`](Self::on_close) then reports
    /// [`CloseReason::PeerClosed`]. Override it to keep answering, for instance from a worker
    /// thread through a [`ConnHandle`], for request-then-shutdown clients such as `nc -N`; close
    /// the connection when done.
    fn on_peer_eof(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        ctx.close(conn);
    }

    /// An outbound connection started with [`Context::connect`] failed: refused, unreachable,
    /// timed out ([`Builder::connect_timeout`](crate::Builder::connect_timeout)), closed
    /// before it completed, or the server stopped. `conn` is gone; no other callback names it.
    /// (A connect that succeeds calls [`on_open`](Self::on_open) with
    /// [`ConnInfo::outbound`] set.) The default reports the error to
    /// [`on_error`](Self::on_error).
    fn on_connect_failed(&mut self, ctx: &mut Context<'_>, conn: ConnId, error: io::Error) {
        self.on_error(ctx, Some(conn), &error);
    }

    /// `conn`'s queued output, after rising above the high-water mark, drained to the
    /// low-water mark ([`Builder::output_limits`](crate::Builder::output_limits)): a good time
    /// to resume reading whatever feeds it, such as the other side of a proxy.
    fn on_drained(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let _ = (ctx, conn);
    }

    /// The timer set with [`Context::set_timer`] for `conn` fired.
    fn on_timer(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let _ = (ctx, conn);
    }

    /// `conn` closed; `reason` says why. Sends to it fail from now on.
    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        let _ = ctx;
        log::debug!("connection {conn} {reason}");
    }

    /// Something failed: a connection (`Some(id)`, which then closes), or the server itself
    /// (`None`: an accept error such as fd exhaustion, or a panic in a callback without a connection).
    fn on_error(&mut self, ctx: &mut Context<'_>, conn: Option<ConnId>, error: &io::Error) {
        let _ = ctx;
        match conn {
            Some(id) => log::warn!("connection {id}: {error}"),
            None => log::warn!("server: {error}"),
        }
    }

    /// The server has been idle for the tick interval (see [`Builder::tick`](crate::Builder::tick)).
    fn on_idle(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }

    /// The server stopped: every connection is closed, its loop is about to return.
    fn on_shutdown(&mut self) {
        log::info!("server shut down");
    }
}

/// What a callback can do: send, close, pause and resume reading, get thread-safe handles.
pub struct Context<'a> {
    pub(crate) core: &'a mut Core,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("connections", &self.core.len())
            .finish()
    }
}

impl Context<'_> {
    /// Queues `msg` on `conn`, after everything queued before it. It is written when this
    /// callback returns, together with other queued buffers in one system call.
    ///
    /// # Errors
    ///
    /// [`SendErrorKind::Closed`](crate::SendErrorKind::Closed) if `conn` is closed or closing,
    /// [`SendErrorKind::Full`](crate::SendErrorKind::Full) if its queued output would pass the
    /// hard limit ([`Builder::output_limits`](crate::Builder::output_limits)). The message comes
    /// back inside the error.
    ///
    /// With several [reactors](crate::Builder::reactors), `conn` may be served by another one
    /// (a chat broadcasting to every client): the message then goes to that reactor's command
    /// queue, in order with this reactor's other sends to it, as with
    /// [`ServerHandle::send`]; a closed or full connection there is not reported (the message
    /// is dropped).
    pub fn send(&mut self, conn: ConnId, msg: impl Into<Bytes>) -> Result<(), SendError> {
        if self.elsewhere(conn) {
            return self.server().send(conn, msg);
        }
        self.core.send(conn, msg.into())
    }

    /// Closes `conn` once what is queued for it is written. Reading from it stops now. With
    /// several reactors, `conn` may be served by another one (see [`send`](Self::send)).
    pub fn close(&mut self, conn: ConnId) {
        if self.elsewhere(conn) {
            return self.server().close(conn);
        }
        self.core.close(conn, CloseReason::Local);
    }

    /// Whether `conn` is served by another reactor than this one (see [`send`](Self::send)).
    fn elsewhere(&self, conn: ConnId) -> bool {
        conn.reactor() != self.core.index as usize
    }

    /// The index of the reactor running this callback (0 with one reactor; see
    /// [`Builder::reactors`](crate::Builder::reactors)).
    pub fn reactor(&self) -> usize {
        self.core.index as usize
    }

    /// Ends `conn` now with a reset (RST) instead of a clean end of file, dropping what is
    /// queued for it: the peer can tell the conversation was cut short (a proxy forwards a
    /// reset this way). [`Handler::on_close`] reports [`CloseReason::Local`].
    pub fn reset(&mut self, conn: ConnId) {
        self.core.reset(conn, CloseReason::Local);
    }

    /// Half-closes `conn`: once what is queued is written, sends the end of file
    /// (`shutdown(SHUT_WR)`). Reading goes on; sends fail from now on. Close it when the
    /// peer is done too.
    pub fn shutdown_write(&mut self, conn: ConnId) {
        self.core.shutdown_write(conn);
    }

    /// Opens an outbound connection to `addr` (TCP or Unix) on this reactor, and returns its
    /// id at once. [`Handler::on_open`] follows when it is connected (with
    /// [`ConnInfo::outbound`] set), or [`Handler::on_connect_failed`] with the error. Until
    /// then, sends to it are queued and go out once it is connected.
    ///
    /// # Errors
    ///
    /// Only if no connect could be started: no socket (fd exhaustion), an unusable address,
    /// [`max_connections`](crate::Builder::max_connections) reached, or the server stopping.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use epoll_server::{Bytes, ConnId, Context, Handler, Server};
    /// use std::io::Read;
    ///
    /// /// Connects to `upstream` at start and greets it.
    /// struct Greeter(std::net::SocketAddr);
    ///
    /// impl Handler for Greeter {
    ///     fn on_listening(&mut self, ctx: &mut Context<'_>, _: &[epoll_server::Address]) {
    ///         let id = ctx.connect(self.0).expect("a connect starts");
    ///         ctx.send(id, "hello").expect("queued until connected");
    ///     }
    ///     fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}
    /// }
    ///
    /// let upstream = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let server = Server::builder().build(Greeter(upstream.local_addr()?))?.spawn()?;
    /// let (mut peer, _) = upstream.accept()?;
    /// let mut got = [0u8; 5];
    /// peer.read_exact(&mut got)?;
    /// assert_eq!(&got, b"hello");
    /// server.stop_and_join()
    /// # }
    /// ```
    pub fn connect(&mut self, addr: impl Into<Address>) -> io::Result<ConnId> {
        self.core
            .connect(&addr.into(), crate::server::CALLBACK_FACE)
    }

    /// Stops reading from `conn` (the seed's `stop_reading_from_connection`); the peer then
    /// feels TCP flow control. With several reactors, `conn` may be served by another one.
    pub fn pause_reading(&mut self, conn: ConnId) {
        if self.elsewhere(conn) {
            return self.server().pause_reading(conn);
        }
        self.core.pause_reading(conn, crate::reactor::PAUSE_USER);
    }

    /// Resumes reading from `conn` (on any reactor, like [`send`](Self::send)).
    pub fn resume_reading(&mut self, conn: ConnId) {
        if self.elsewhere(conn) {
            return self.server().resume_reading(conn);
        }
        self.core.resume_reading(conn, crate::reactor::PAUSE_USER);
    }

    /// Sets `conn`'s timer: [`Handler::on_timer`] runs `after` from now (at most one tick of
    /// 10 ms late, never early). A connection has one timer: setting it again replaces it. It
    /// costs no system call; it is for keep-alive pings and protocol deadlines.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use epoll_server::{Bytes, ConnId, ConnInfo, Context, Handler, Server};
    /// use std::io::Read;
    /// use std::time::Duration;
    ///
    /// /// Sends a ping every 20 ms.
    /// struct Pinger;
    ///
    /// impl Handler for Pinger {
    ///     fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnInfo) {
    ///         ctx.set_timer(conn.id, Duration::from_millis(20));
    ///     }
    ///     fn on_timer(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
    ///         let _ = ctx.send(conn, "ping\n");
    ///         ctx.set_timer(conn, Duration::from_millis(20));
    ///     }
    ///     fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}
    /// }
    ///
    /// let server = Server::builder().bind("127.0.0.1:0")?.build(Pinger)?.spawn()?;
    /// let mut client = std::net::TcpStream::connect(server.local_addr())?;
    /// let mut pings = [0u8; 10];
    /// client.read_exact(&mut pings)?;
    /// assert_eq!(&pings, b"ping\nping\n");
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_timer(&mut self, conn: ConnId, after: Duration) {
        self.core.set_timer(conn, Some(after));
    }

    /// Cancels `conn`'s timer, if one is set.
    pub fn cancel_timer(&mut self, conn: ConnId) {
        self.core.set_timer(conn, None);
    }

    /// Overrides one of `conn`'s timeouts (`None` turns it off for this connection), for
    /// example a longer idle timeout once a client logged in. See [`Timeout`](crate::Timeout)
    /// and the builder's [`idle_timeout`](crate::Builder::idle_timeout).
    pub fn set_timeout(&mut self, conn: ConnId, which: crate::Timeout, after: Option<Duration>) {
        self.core.set_timeout(conn, which, after);
    }

    /// A thread-safe handle to `conn`, or `None` if it is closed. With several
    /// [reactors](crate::Builder::reactors), only this reactor's connections give one here (a
    /// connection's handle is made by its own reactor: take it in that reactor's callbacks);
    /// [`ServerHandle::send`] reaches any connection by id.
    pub fn handle(&mut self, conn: ConnId) -> Option<ConnHandle> {
        self.core
            .conn_shared(conn)
            .map(|inner| ConnHandle { inner })
    }

    /// A handle to the server, e.g. to stop it.
    pub fn server(&self) -> ServerHandle {
        ServerHandle {
            group: self.core.group.clone(),
        }
    }

    /// Stops the server (every reactor) gracefully once this callback returns.
    pub fn stop(&self) {
        self.core.group.stop();
    }

    /// Whether `conn` is open (and not closing).
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.core.get(conn).is_some_and(|c| c.closing.is_none())
    }

    /// Bytes queued for `conn` and not yet written, or `None` if it is closed.
    pub fn queued_bytes(&self, conn: ConnId) -> Option<usize> {
        self.core.get(conn).map(|c| c.queued_bytes())
    }

    /// The number of open connections.
    pub fn connection_count(&self) -> usize {
        self.core.len()
    }
}

/// Runs `f` on the handler, turning a panic into an `io::Error` naming the callback.
fn guarded<R>(what: &str, f: impl FnOnce() -> R) -> Result<R, io::Error> {
    catch_panic_in("the handler's ", what, f)
}

/// The callback face: the reactor's events, delivered to a [`Handler`].
pub(crate) struct CallbackFace {
    handler: Box<dyn Handler>,
}

impl CallbackFace {
    pub(crate) fn new(handler: Box<dyn Handler>) -> CallbackFace {
        CallbackFace { handler }
    }

    /// Runs a callback; a panic closes `conn` (if any) or is reported as a server error.
    fn run(
        &mut self,
        core: &mut Core,
        conn: Option<ConnId>,
        what: &str,
        f: impl FnOnce(&mut dyn Handler, &mut Context<'_>),
    ) {
        let handler = &mut *self.handler;
        let result = {
            let mut ctx = Context { core: &mut *core };
            guarded(what, || f(handler, &mut ctx))
        };
        if let Err(err) = result {
            match conn {
                Some(id) if core.get(id).is_some() => core.abort(id, CloseReason::Error(err)),
                _ => self.report(core, None, &err),
            }
        }
    }

    fn report(&mut self, core: &mut Core, conn: Option<ConnId>, err: &io::Error) {
        let handler = &mut *self.handler;
        let mut ctx = Context { core };
        if let Err(again) = guarded("on_error", || handler.on_error(&mut ctx, conn, err)) {
            log::error!("{again} (while reporting: {err})");
        }
    }
}

impl Face for CallbackFace {
    fn listening(&mut self, core: &mut Core, addrs: &[Address]) {
        self.run(core, None, "on_listening", |h, ctx| {
            h.on_listening(ctx, addrs)
        });
    }

    fn opened(&mut self, core: &mut Core, info: ConnInfo) {
        self.run(core, Some(info.id), "on_open", |h, ctx| {
            h.on_open(ctx, info)
        });
    }

    fn received(&mut self, core: &mut Core, id: ConnId, frame: Bytes) -> Option<Bytes> {
        self.run(core, Some(id), "on_message", |h, ctx| {
            h.on_message(ctx, id, frame)
        });
        None
    }

    fn read_finished(&mut self, core: &mut Core, id: ConnId) {
        // The peer is done sending; by default, answer what it sent, then close.
        self.run(core, Some(id), "on_peer_eof", |h, ctx| {
            h.on_peer_eof(ctx, id)
        });
    }

    fn timer(&mut self, core: &mut Core, id: ConnId) {
        self.run(core, Some(id), "on_timer", |h, ctx| h.on_timer(ctx, id));
    }

    fn drained(&mut self, core: &mut Core, id: ConnId) {
        self.run(core, Some(id), "on_drained", |h, ctx| h.on_drained(ctx, id));
    }

    fn closed(&mut self, core: &mut Core, closed: Closed) {
        let id = closed.id;
        if let Some(to) = &closed.connect_to {
            let err = crate::reactor::connect_error(to, closed.reason);
            self.run(core, None, "on_connect_failed", |h, ctx| {
                h.on_connect_failed(ctx, id, err)
            });
            return;
        }
        if let CloseReason::Error(e) = &closed.reason {
            self.report(core, Some(id), e);
        }
        let reason = closed.reason;
        self.run(core, None, "on_close", |h, ctx| h.on_close(ctx, id, reason));
    }

    fn error(&mut self, core: &mut Core, id: Option<ConnId>, err: io::Error) {
        self.report(core, id, &err);
    }

    fn idle(&mut self, core: &mut Core) {
        self.run(core, None, "on_idle", |h, ctx| h.on_idle(ctx));
    }

    fn shutdown(&mut self, _core: &mut Core) {
        let handler = &mut *self.handler;
        if let Err(e) = guarded("on_shutdown", || handler.on_shutdown()) {
            log::error!("{e}");
        }
    }
}
