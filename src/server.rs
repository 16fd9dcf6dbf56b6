//! Building a server, running it on the caller's thread or its own.

use crate::addr::Address;
use crate::async_face::{AsyncFace, Incoming};
use crate::codec::Framing;
use crate::config::{Config, Timeout};
use crate::handler::{CallbackFace, Handler};
use crate::reactor::{Face, ListenerSpec, Reactor};
use crate::shared::{Group, ServerHandle, Shared};
use crate::sys::{self, FdLimit};
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Which face serves a listener's connections.
pub(crate) const CALLBACK_FACE: usize = 0;
pub(crate) const ASYNC_FACE: usize = 1;

/// The handler of a server with only async listeners: callbacks never carry data then.
struct NoHandler;

impl Handler for NoHandler {
    fn on_message(
        &mut self,
        ctx: &mut crate::Context<'_>,
        conn: crate::ConnId,
        _data: bytes::Bytes,
    ) {
        ctx.close(conn);
    }
}

/// Makes a listening socket the way the C++ design's `make_listener_socket` did: reuse-address,
/// non-blocking, close-on-exec, with the given `backlog` (IPv6 sockets are v6-only).
///
/// # Errors
///
/// The failing system call, named in the message (e.g. `bind(127.0.0.1:80): permission denied`).
///
/// # Examples
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let listener = epoll_server::make_listener("127.0.0.1:0".parse().unwrap(), 128)?;
/// assert_ne!(listener.local_addr()?.port(), 0);
/// # Ok(())
/// # }
/// ```
pub fn make_listener(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    Ok(TcpListener::from(sys::listener(&addr, backlog)?))
}

/// Configures and builds a [`Server`].
///
/// Listeners are bound as they are added, so their real ports are known before the server runs.
///
/// # Examples
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use epoll_server::{Context, ConnId, Handler, Server};
/// use bytes::Bytes;
/// use std::time::Duration;
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
///         let _ = ctx.send(conn, data);
///     }
/// }
///
/// let server = Server::builder()
///     .backlog(512)
///     .max_connections(10_000)
///     .tick(Duration::from_secs(1))
///     .bind("127.0.0.1:0")?
///     .build(Echo)?;
/// assert_ne!(server.local_addr().port(), 0);
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct Builder {
    pub(crate) cfg: Config,
    pub(crate) listeners: Vec<ListenerSpec>,
    framing: Framing,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.cfg)
            .field(
                "listeners",
                &self.listeners.iter().map(|l| &l.addr).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Builder {
    /// A builder with the defaults.
    pub fn new() -> Builder {
        Builder::default()
    }

    pub(crate) fn add(mut self, addrs: impl ToSocketAddrs, face: usize) -> io::Result<Builder> {
        let mut any = false;
        for addr in addrs.to_socket_addrs()? {
            let fd = sys::listener(&addr, self.cfg.backlog)?;
            let addr = sys::local_addr(fd.as_fd())?;
            self.listeners.push(ListenerSpec {
                fd,
                addr: Address::Tcp(addr),
                face,
                framing: None,
                path_guard: None,
                exclusive: false,
            });
            any = true;
        }
        if !any {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no address to bind",
            ));
        }
        Ok(self)
    }

    pub(crate) fn add_listener(
        mut self,
        listener: TcpListener,
        face: usize,
    ) -> io::Result<Builder> {
        listener
            .set_nonblocking(true)
            .map_err(|e| sys::context(e, "set_nonblocking"))?;
        let addr = listener.local_addr()?;
        self.listeners.push(ListenerSpec {
            fd: OwnedFd::from(listener),
            addr: Address::Tcp(addr),
            face,
            framing: None,
            path_guard: None,
            exclusive: false,
        });
        Ok(self)
    }

    fn add_unix(mut self, path: &Path, face: usize) -> io::Result<Builder> {
        let (fd, guard) = bind_unix_path(path, self.cfg.backlog)?;
        self.listeners.push(ListenerSpec {
            fd,
            addr: Address::unix(path),
            face,
            framing: None,
            path_guard: Some(guard),
            exclusive: false,
        });
        Ok(self)
    }

    fn add_unix_listener(mut self, listener: UnixListener, face: usize) -> io::Result<Builder> {
        listener
            .set_nonblocking(true)
            .map_err(|e| sys::context(e, "set_nonblocking"))?;
        let fd = OwnedFd::from(listener);
        let addr = sys::local_address(fd.as_fd())?;
        self.listeners.push(ListenerSpec {
            fd,
            addr,
            face,
            framing: None,
            path_guard: None,
            exclusive: false,
        });
        Ok(self)
    }

    fn add_address(self, addr: &Address, face: usize) -> io::Result<Builder> {
        match addr {
            Address::Tcp(a) => self.add(*a, face),
            Address::Unix(Some(path)) => self.add_unix(path, face),
            Address::Unix(None) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an unnamed Unix socket address cannot be bound",
            )),
        }
    }

    /// Listens on a Unix domain stream socket at `path` for the callback face.
    ///
    /// A socket file left at `path` by a process that died is replaced; one that something
    /// still accepts on is an error of kind `AddrInUse`, and so is a path that exists and is
    /// not a socket: neither is ever removed. The file is removed again when the listener
    /// closes (when the server stops), unless another socket has replaced it meanwhile.
    /// Connections' [`ConnInfo::peer_credentials`](crate::ConnInfo::peer_credentials) say who
    /// connected.
    ///
    /// # Errors
    ///
    /// `AddrInUse` as above; a path too long for `sockaddr_un` (107 bytes); the failing
    /// `socket`/`bind`/`listen` call, named in the message.
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
    /// let path = std::env::temp_dir().join(format!("epoll-server-doc-{}.sock", std::process::id()));
    /// let server = Server::builder().bind_unix(&path)?.build(Echo)?.spawn()?;
    /// let mut client = std::os::unix::net::UnixStream::connect(&path)?;
    /// client.write_all(b"hi")?;
    /// let mut reply = [0u8; 2];
    /// client.read_exact(&mut reply)?;
    /// assert_eq!(&reply, b"hi");
    /// server.stop_and_join()?;
    /// assert!(!path.exists(), "the socket file is removed on stop");
    /// # Ok(())
    /// # }
    /// ```
    pub fn bind_unix(self, path: impl AsRef<Path>) -> io::Result<Builder> {
        self.add_unix(path.as_ref(), CALLBACK_FACE)
    }

    /// Listens on a Unix domain stream socket at `path` for the async face (see
    /// [`bind_unix`](Self::bind_unix) for how an existing file is treated).
    ///
    /// # Errors
    ///
    /// As [`bind_unix`](Self::bind_unix).
    pub fn bind_unix_async(self, path: impl AsRef<Path>) -> io::Result<Builder> {
        self.add_unix(path.as_ref(), ASYNC_FACE)
    }

    /// Serves an already bound and listening Unix domain socket with the callback face. It is
    /// switched to non-blocking mode. Its file is left in place when the server stops: whoever
    /// bound it owns it.
    ///
    /// # Errors
    ///
    /// If the socket's mode or address cannot be read or set.
    pub fn unix_listener(self, listener: UnixListener) -> io::Result<Builder> {
        self.add_unix_listener(listener, CALLBACK_FACE)
    }

    /// Serves an already listening Unix domain socket with the async face.
    ///
    /// # Errors
    ///
    /// As [`unix_listener`](Self::unix_listener).
    pub fn unix_listener_async(self, listener: UnixListener) -> io::Result<Builder> {
        self.add_unix_listener(listener, ASYNC_FACE)
    }

    /// Listens on `addr`, TCP or Unix, for the callback face: [`bind`](Self::bind) or
    /// [`bind_unix`](Self::bind_unix). Handy for a command-line argument parsed as an
    /// [`Address`] (`127.0.0.1:7878` or `unix:/run/app.sock`).
    ///
    /// # Errors
    ///
    /// As `bind` or `bind_unix`.
    pub fn bind_address(self, addr: &Address) -> io::Result<Builder> {
        self.add_address(addr, CALLBACK_FACE)
    }

    /// Listens on `addr`, TCP or Unix, for the async face.
    ///
    /// # Errors
    ///
    /// As `bind_async` or `bind_unix_async`.
    pub fn bind_address_async(self, addr: &Address) -> io::Result<Builder> {
        self.add_address(addr, ASYNC_FACE)
    }

    /// How long an outbound connect ([`Context::connect`](crate::Context::connect),
    /// [`ServerHandle::connect`](crate::ServerHandle::connect)) may take before it fails with
    /// `TimedOut` (default 30 s; at least 1 ms, at most about 24.8 days).
    pub fn connect_timeout(mut self, timeout: Duration) -> Builder {
        self.cfg.timeouts.connect = crate::config::timeout_ms(timeout);
        self
    }

    /// Binds every address `addrs` resolves to (IPv4 or IPv6) for the callback face.
    ///
    /// # Errors
    ///
    /// The failing `socket`/`bind`/`listen` call, named in the message.
    pub fn bind(self, addrs: impl ToSocketAddrs) -> io::Result<Builder> {
        self.add(addrs, CALLBACK_FACE)
    }

    /// Serves an already configured, listening socket with the callback face (the C++ design's
    /// `register_listener_socket`). It is switched to non-blocking mode.
    ///
    /// # Errors
    ///
    /// If the socket's mode or address cannot be read or set.
    pub fn listener(self, listener: TcpListener) -> io::Result<Builder> {
        self.add_listener(listener, CALLBACK_FACE)
    }

    /// Binds every address `addrs` resolves to for the async face: its connections come out of
    /// [`Server::incoming`].
    ///
    /// # Errors
    ///
    /// The failing `socket`/`bind`/`listen` call, named in the message.
    pub fn bind_async(self, addrs: impl ToSocketAddrs) -> io::Result<Builder> {
        self.add(addrs, ASYNC_FACE)
    }

    /// Serves an already listening socket with the async face.
    ///
    /// # Errors
    ///
    /// If the socket's mode or address cannot be read or set.
    pub fn listener_async(self, listener: TcpListener) -> io::Result<Builder> {
        self.add_listener(listener, ASYNC_FACE)
    }

    /// Async face: bytes a connection's inbound stream may hold before the reactor stops reading
    /// from its socket (default 1 MiB); it reads again once the consumer drained half of it.
    pub fn inbound_high_water(mut self, bytes: usize) -> Builder {
        self.cfg.inbound_high_water = bytes;
        self
    }

    /// Async face: accepted connections [`Server::incoming`] may hold before the reactor stops
    /// accepting (default 128).
    pub fn incoming_capacity(mut self, connections: usize) -> Builder {
        self.cfg.incoming_capacity = connections.max(1);
        self
    }

    /// The `listen(2)` backlog of listeners bound after this call (default 1024).
    pub fn backlog(mut self, backlog: i32) -> Builder {
        self.cfg.backlog = backlog;
        self
    }

    /// `TCP_NODELAY` on accepted sockets (default on).
    pub fn nodelay(mut self, on: bool) -> Builder {
        self.cfg.nodelay = on;
        self
    }

    /// Raises the soft `RLIMIT_NOFILE` toward `max_fds` (up to the hard limit, which is never
    /// lowered) when the server is built; [`Server::fd_limit`] tells what was obtained.
    pub fn max_fds(mut self, max_fds: u64) -> Builder {
        self.cfg.max_fds = Some(max_fds);
        self
    }

    /// At most this many open connections; beyond it new ones wait in the kernel's backlog
    /// until one closes (default unlimited). With several [reactors](Self::reactors) it bounds
    /// the server as a whole.
    pub fn max_connections(mut self, max: usize) -> Builder {
        self.cfg.max_connections = max;
        self
    }

    /// Runs `n` reactors (default 1): `n` threads, each with its own epoll instance, its own
    /// connections and its own command queue, so a server uses `n` cores. `n = 1` is exactly
    /// the single-reactor server.
    ///
    /// Each reactor accepts its own connections from every listener (see
    /// [`accept_spread`](Self::accept_spread)), and serves them for their whole life: a
    /// [`ConnId`](crate::ConnId) names its reactor, and handles route to it. The callback face
    /// needs one handler per reactor, made by [`build_with`](Self::build_with) (so no lock is
    /// needed on the hot path); [`Server::incoming`] merges every reactor's connections.
    /// Stopping stops every reactor (each flushes under the shut-down deadline), timeouts and
    /// the idle tick run per reactor, and [`ServerHandle::stats`] sums the reactors'
    /// counters ([`ServerHandle::reactor_stats`] shows each).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use epoll_server::{Bytes, ConnId, Context, Handler, Server};
    ///
    /// struct Echo;
    /// impl Handler for Echo {
    ///     fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
    ///         let _ = ctx.send(conn, data);
    ///     }
    /// }
    ///
    /// let server = Server::builder()
    ///     .reactors(2)
    ///     .bind("127.0.0.1:0")?
    ///     .build_with(|_reactor| Echo)?
    ///     .spawn()?;
    /// assert_eq!(server.handle().reactors(), 2);
    /// server.stop_and_join()
    /// # }
    /// ```
    pub fn reactors(mut self, n: usize) -> Builder {
        self.cfg.reactors = n.clamp(1, u16::MAX as usize);
        self
    }

    /// How several [reactors](Self::reactors) share each TCP listener (default
    /// [`AcceptSpread::ReusePort`]; Unix listeners always use
    /// [`AcceptSpread::SharedListener`]). See `docs/many-cores.md` for the measurements.
    pub fn accept_spread(mut self, spread: AcceptSpread) -> Builder {
        self.cfg.accept_spread = spread;
        self
    }

    /// The `epoll_wait` event buffer: `initial` entries (default 4096), doubled each time a wait
    /// fills it up to `max` (default 65536), halved back after each second without such load
    /// (an idle server wakes up for that, so it gives the memory back).
    pub fn event_capacity(mut self, initial: usize, max: usize) -> Builder {
        self.cfg.events_initial = initial.max(1);
        self.cfg.events_max = max.max(self.cfg.events_initial);
        self
    }

    /// Test hook: the reactor's clock starts `ms` milliseconds in, so a test can cross the
    /// points where the 32-bit time stamps of connections wrap (2^32 ms, 2^32 ticks).
    #[doc(hidden)]
    pub fn clock_offset_for_tests(mut self, ms: u64) -> Builder {
        self.cfg.clock_offset_ms = ms;
        self
    }

    /// Test hook: the quiet time after which a grown event buffer is halved (default 1 s).
    #[doc(hidden)]
    pub fn event_shrink_after(mut self, quiet: Duration) -> Builder {
        self.cfg.events_shrink_after = quiet.max(Duration::from_millis(1));
        self
    }

    /// Calls [`Handler::on_idle`] each time the server has seen no event for `interval`
    /// (the C++ design's `listen(timeout)`). Off by default. An interval under 1 ms counts as
    /// 1 ms (zero would make the loop spin).
    ///
    /// It fires only when the *whole server* is idle, so it is no per-connection timeout: see
    /// [`idle_timeout`](Self::idle_timeout) for that.
    pub fn tick(mut self, interval: Duration) -> Builder {
        self.cfg.tick = Some(interval.max(Duration::from_millis(1)));
        self
    }

    /// Closes a connection that received no bytes for `after` while reading
    /// ([`Timeout::Idle`]); off by default. Queued output is still written. Each connection can
    /// override it ([`Context::set_timeout`](crate::Context::set_timeout),
    /// [`ConnHandle::set_timeout`](crate::ConnHandle::set_timeout)).
    ///
    /// Deadlines live in a coarse timer wheel on the reactor (10 ms ticks): a read only stores
    /// a time stamp, no system call is made per timer, and a timeout fires at most one tick late.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use epoll_server::{Bytes, ConnId, Context, Handler, Server};
    /// use std::time::Duration;
    ///
    /// struct Echo;
    /// impl Handler for Echo {
    ///     fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
    ///         let _ = ctx.send(conn, data);
    ///     }
    /// }
    ///
    /// let server = Server::builder()
    ///     .idle_timeout(Duration::from_secs(60))       // silent for a minute: closed
    ///     .first_byte_timeout(Duration::from_secs(5))  // slowloris openers: closed
    ///     .write_stall_timeout(Duration::from_secs(30)) // peers that stopped reading: reset
    ///     .bind("127.0.0.1:0")?
    ///     .build(Echo)?;
    /// # let _ = server;
    /// # Ok(())
    /// # }
    /// ```
    pub fn idle_timeout(mut self, after: Duration) -> Builder {
        self.cfg.timeouts.set(Timeout::Idle, Some(after));
        self
    }

    /// Closes a connection that sent nothing within `after` of being accepted
    /// ([`Timeout::FirstByte`]); off by default.
    pub fn first_byte_timeout(mut self, after: Duration) -> Builder {
        self.cfg.timeouts.set(Timeout::FirstByte, Some(after));
        self
    }

    /// Resets a connection whose queued output made no progress for `after`
    /// ([`Timeout::WriteStall`]): a peer that stopped reading no longer holds its fd and up to
    /// the output hard limit of memory. Off by default. It is also the linger time of a close
    /// with output queued (else the [`shutdown_deadline`](Self::shutdown_deadline) is).
    pub fn write_stall_timeout(mut self, after: Duration) -> Builder {
        self.cfg.timeouts.set(Timeout::WriteStall, Some(after));
        self
    }

    /// Size of the reactor's one read buffer (default 64 KiB): the largest chunk one read delivers.
    pub fn read_buffer_size(mut self, bytes: usize) -> Builder {
        self.cfg.read_buffer = bytes.max(1);
        self
    }

    /// Bytes read from one connection per loop turn before the others get their turn
    /// (default 256 KiB).
    pub fn read_budget(mut self, bytes: usize) -> Builder {
        self.cfg.read_budget = bytes.max(1);
        self
    }

    /// Output limits per connection, in bytes: above `high_water` reading from the connection
    /// pauses (see [`pause_reading_on_backpressure`](Self::pause_reading_on_backpressure)) and an
    /// async sink waits; at or below `low_water` it resumes; a send that would pass `hard_limit`
    /// is refused with the message handed back. Defaults 1 MiB, 256 KiB and 4 MiB.
    pub fn output_limits(
        mut self,
        high_water: usize,
        low_water: usize,
        hard_limit: usize,
    ) -> Builder {
        self.cfg.out_high_water = high_water;
        self.cfg.out_low_water = low_water.min(high_water);
        self.cfg.out_hard_limit = hard_limit.max(high_water);
        self
    }

    /// Whether reading from a connection pauses while its queued output is above the high-water
    /// mark (default on), so an echo-style server never buffers without bound for a peer that
    /// does not read.
    pub fn pause_reading_on_backpressure(mut self, on: bool) -> Builder {
        self.cfg.pause_on_backpressure = on;
        self
    }

    /// How long a stop may spend writing queued output before resetting what is left
    /// (default 5 s). Without a [`write_stall_timeout`](Self::write_stall_timeout), it is also
    /// how long a closing connection's queued output may go without write progress before the
    /// connection is reset (and reported as [`CloseReason::TimedOut`](crate::CloseReason::TimedOut)):
    /// a slow but steady reader always gets the whole reply.
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Builder {
        self.cfg.shutdown_deadline = deadline;
        self
    }

    /// Back-off after an accept error such as fd exhaustion: starts at `min`, doubles up to `max`
    /// (defaults 10 ms and 1 s). A closing connection cuts it short. Values under 1 ms count as
    /// 1 ms (zero would retry in a spin).
    pub fn accept_backoff(mut self, min: Duration, max: Duration) -> Builder {
        let min = min.max(Duration::from_millis(1));
        self.cfg.accept_backoff_min = min;
        self.cfg.accept_backoff_max = max.max(min);
        self
    }

    /// The framing of every listener's connections (default [`Framing::raw`]).
    pub fn framing(mut self, framing: Framing) -> Builder {
        self.framing = framing;
        self
    }

    fn into_server(
        mut self,
        mut handler: impl FnMut(usize) -> Box<dyn Handler>,
    ) -> io::Result<Server> {
        let fd_limit = match self.cfg.max_fds {
            Some(n) => Some(sys::raise_nofile_limit(n)?),
            None => None,
        };
        for l in self.listeners.iter_mut() {
            if l.framing.is_none() && !self.framing.is_raw() {
                l.framing = Some(self.framing.clone());
            }
        }
        let addresses: Vec<Address> = self.listeners.iter().map(|l| l.addr.clone()).collect();
        let addrs = addresses.iter().filter_map(Address::as_tcp).collect();
        let n = self.cfg.reactors.max(1);
        let limits = crate::shared::Limits {
            out_hard: self.cfg.out_hard_limit,
            out_high: self.cfg.out_high_water,
            inbound_high: self.cfg.inbound_high_water,
        };
        let shared = (0..n)
            .map(|_| Shared::new(limits).map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        let group = Arc::new(Group::new(shared.clone()));
        let (async_faces, incoming) = AsyncFace::for_group(&group, self.cfg.incoming_capacity);
        let specs = spread_listeners(self.listeners, n, self.cfg.accept_spread, self.cfg.backlog)?;
        let cfg = Arc::new(self.cfg);
        let mut reactors = Vec::with_capacity(n);
        for (index, ((async_face, specs), shared)) in
            async_faces.into_iter().zip(specs).zip(shared).enumerate()
        {
            let faces: Vec<Box<dyn Face>> = vec![
                Box::new(CallbackFace::new(handler(index))),
                Box::new(async_face),
            ];
            reactors.push(Reactor::new(
                cfg.clone(),
                shared,
                group.clone(),
                index as u16,
                faces,
                specs,
            )?);
        }
        Ok(Server {
            reactors,
            handle: ServerHandle { group },
            addrs,
            addresses,
            fd_limit,
            incoming,
        })
    }

    /// Builds the server with `handler` serving the callback listeners.
    ///
    /// # Errors
    ///
    /// A failing `epoll_create1`, `eventfd`, `epoll_ctl` or `setrlimit`; `InvalidInput` with
    /// several [reactors](Self::reactors), which need a handler each
    /// ([`build_with`](Self::build_with)).
    pub fn build(self, handler: impl Handler) -> io::Result<Server> {
        if self.cfg.reactors > 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "several reactors need a handler each: use Builder::build_with",
            ));
        }
        let mut handler = Some(handler);
        self.into_server(move |_| {
            Box::new(handler.take().expect("one reactor, one handler")) as Box<dyn Handler>
        })
    }

    /// Builds the server with a handler per [reactor](Self::reactors), made by `factory`
    /// from the reactor's index (0 to n - 1). Each handler runs on its reactor's thread only,
    /// for that reactor's connections, so none needs a lock; state shared between reactors
    /// (a chat room, counters) is the application's, behind its own `Arc`.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_with<H: Handler>(self, mut factory: impl FnMut(usize) -> H) -> io::Result<Server> {
        self.into_server(move |i| Box::new(factory(i)) as Box<dyn Handler>)
    }

    /// Builds a server whose connections are all taken through [`Server::incoming`]
    /// (listeners added with [`bind_async`](Self::bind_async)).
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), except that any number of reactors works.
    pub fn build_async(self) -> io::Result<Server> {
        self.into_server(|_| Box::new(NoHandler))
    }
}

/// How several reactors share a server's listeners (see [`Builder::reactors`] and
/// [`Builder::accept_spread`]). With one reactor there is nothing to share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AcceptSpread {
    /// Each reactor gets its own socket on every TCP listener's address, in one
    /// `SO_REUSEPORT` group (the listener bound by the builder gets the option too): the kernel
    /// spreads new connections over the reactors by a hash of their addresses, and no two
    /// reactors ever touch the same accept queue. The default: the even spread measured.
    #[default]
    ReusePort,
    /// One socket per listener, registered in every reactor with `EPOLLEXCLUSIVE`: a new
    /// connection wakes one waiting reactor, which accepts what is queued. Unix listeners
    /// always work this way (`SO_REUSEPORT` does not spread Unix connections).
    SharedListener,
}

/// Gives each of `n` reactors its copy of every listener: its own `SO_REUSEPORT` socket (TCP,
/// [`AcceptSpread::ReusePort`]) or a duplicate of the one socket, registered exclusively.
/// Only reactor 0 removes a Unix socket file when it closes.
fn spread_listeners(
    specs: Vec<ListenerSpec>,
    n: usize,
    spread: AcceptSpread,
    backlog: i32,
) -> io::Result<Vec<Vec<ListenerSpec>>> {
    let mut out: Vec<Vec<ListenerSpec>> = (0..n).map(|_| Vec::new()).collect();
    for mut spec in specs {
        if n == 1 {
            out[0].push(spec);
            continue;
        }
        let reuseport = match (&spec.addr, spread) {
            (Address::Tcp(_), AcceptSpread::ReusePort) => true,
            (_, AcceptSpread::ReusePort | AcceptSpread::SharedListener) => false,
        };
        if reuseport {
            sys::set_reuseport(spec.fd.as_fd())?;
        }
        spec.exclusive = !reuseport;
        for copies in out.iter_mut().skip(1) {
            let fd = match (&spec.addr, reuseport) {
                (Address::Tcp(addr), true) => sys::reuseport_listener(addr, backlog)?,
                _ => spec
                    .fd
                    .try_clone()
                    .map_err(|e| sys::context(e, "dup(listener)"))?,
            };
            copies.push(ListenerSpec {
                fd,
                addr: spec.addr.clone(),
                face: spec.face,
                framing: spec.framing.clone(),
                path_guard: None,
                exclusive: spec.exclusive,
            });
        }
        out[0].push(spec);
    }
    Ok(out)
}

/// A built server: its listeners are bound, its loop not yet running.
///
/// Run it on the current thread with [`run`](Self::run) or on a thread of its own with
/// [`spawn`](Self::spawn).
pub struct Server {
    reactors: Vec<Reactor>,
    handle: ServerHandle,
    addrs: Vec<SocketAddr>,
    addresses: Vec<Address>,
    fd_limit: Option<FdLimit>,
    incoming: Incoming,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addresses", &self.addresses)
            .finish()
    }
}

impl Server {
    /// Starts configuring a server.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// The bound address of every TCP listener, with real ports.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The first TCP listener's bound address.
    ///
    /// # Panics
    ///
    /// If the server has no TCP listener (see [`addresses`](Self::addresses) for Unix ones).
    pub fn local_addr(&self) -> SocketAddr {
        *self.addrs.first().expect("the server has a TCP listener")
    }

    /// The address of every listener, TCP or Unix, in the order they were added.
    pub fn addresses(&self) -> &[Address] {
        &self.addresses
    }

    /// A handle to stop the server from any thread.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// The stream of connections accepted on the async listeners (clones share one queue); it
    /// ends when the server stops.
    ///
    /// Take it *before* [`spawn`](Self::spawn) or [`run`](Self::run), which consume the
    /// server: if no `Incoming` is alive once the server runs, nobody can ever take an async
    /// connection, so the async listeners are closed (with a warning in the log) and their
    /// clients refused. See [`Incoming`] for what dropping the last one does.
    pub fn incoming(&self) -> Incoming {
        self.incoming.clone()
    }

    /// The file-descriptor limit obtained for [`Builder::max_fds`], if it was set.
    pub fn fd_limit(&self) -> Option<FdLimit> {
        self.fd_limit
    }

    /// Runs the loop on the current thread until the server is stopped (the C++ design's
    /// `listen`), then returns after the graceful stop.
    ///
    /// # Errors
    ///
    /// Only if `epoll_wait` itself fails; errors of single connections go to the handler.
    ///
    /// With several [reactors](Builder::reactors), reactor 0 runs on the current thread and the
    /// others on threads of their own (`epoll-server-1`, ...); it returns once all have stopped.
    pub fn run(self) -> io::Result<()> {
        let Server {
            reactors,
            incoming,
            handle,
            ..
        } = self;
        // The server's own `Incoming` is not one the application can use.
        drop(incoming);
        let mut reactors = reactors.into_iter();
        let first = reactors.next().expect("a server has a reactor");
        let others = match spawn_reactors(reactors, 1) {
            Ok(threads) => threads,
            Err(e) => {
                // Nothing runs the first reactor's stop otherwise: drop it (its guard ends it).
                handle.stop();
                return Err(e);
            }
        };
        let result = first.run();
        if result.is_err() {
            handle.stop();
        }
        join_reactors(others).and(result)
    }

    /// Runs the loop on a new thread named `epoll-server` (with several
    /// [reactors](Builder::reactors), one thread each: `epoll-server`, `epoll-server-1`, ...).
    ///
    /// # Errors
    ///
    /// If a thread cannot be spawned.
    pub fn spawn(self) -> io::Result<ServerThread> {
        let Server {
            reactors,
            handle,
            addrs,
            addresses,
            incoming,
            ..
        } = self;
        drop(incoming);
        let threads = spawn_reactors(reactors.into_iter(), 0).inspect_err(|_| handle.stop())?;
        Ok(ServerThread {
            handle,
            addrs,
            addresses,
            threads,
        })
    }
}

/// A server running on its own thread. Dropping it stops the server and waits for it.
///
/// Waiting blocks the dropping thread until the server has stopped, which can take up to the
/// [shut-down deadline](Builder::shutdown_deadline) while queued output is written. On an
/// async executor's thread, do not drop it (or call [`join`](Self::join)) there: call
/// [`stop`](Self::stop), await [`ServerHandle::stopped`], and only then drop it (it returns at
/// once), or move it to a blocking thread (`tokio::task::spawn_blocking`, `blocking::unblock`).
#[derive(Debug)]
pub struct ServerThread {
    handle: ServerHandle,
    addrs: Vec<SocketAddr>,
    addresses: Vec<Address>,
    /// One per reactor; empty once joined.
    threads: Vec<JoinHandle<io::Result<()>>>,
}

/// Starts `reactors` on threads of their own, numbered from `first`; if one cannot be spawned,
/// the ones already running are stopped and joined.
fn spawn_reactors(
    reactors: impl Iterator<Item = Reactor>,
    first: usize,
) -> io::Result<Vec<JoinHandle<io::Result<()>>>> {
    let mut threads = Vec::new();
    for (i, reactor) in reactors.enumerate() {
        let index = first + i;
        let name = if index == 0 {
            "epoll-server".to_string()
        } else {
            format!("epoll-server-{index}")
        };
        let stop = reactor.handle_to_stop();
        match std::thread::Builder::new()
            .name(name)
            .spawn(move || reactor.run())
        {
            Ok(t) => threads.push(t),
            Err(e) => {
                stop.stop();
                let _ = join_reactors(threads);
                return Err(e);
            }
        }
    }
    Ok(threads)
}

/// Waits for every reactor thread; the first error wins.
fn join_reactors(threads: Vec<JoinHandle<io::Result<()>>>) -> io::Result<()> {
    let mut result = Ok(());
    for t in threads {
        let r = t
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the reactor thread panicked")));
        if result.is_ok() {
            result = r;
        }
    }
    result
}

impl ServerThread {
    /// A handle to stop the server from any thread.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// The bound address of every TCP listener, with real ports.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The first TCP listener's bound address.
    ///
    /// # Panics
    ///
    /// If the server has no TCP listener (see [`addresses`](Self::addresses) for Unix ones).
    pub fn local_addr(&self) -> SocketAddr {
        *self.addrs.first().expect("the server has a TCP listener")
    }

    /// The address of every listener, TCP or Unix, in the order they were added.
    pub fn addresses(&self) -> &[Address] {
        &self.addresses
    }

    /// Asks the server to stop gracefully (see [`ServerHandle::stop`]).
    pub fn stop(&self) {
        self.handle.stop();
    }

    /// Waits for the server's loop to return.
    ///
    /// # Errors
    ///
    /// The loop's error, or an error if the reactor thread panicked.
    pub fn join(mut self) -> io::Result<()> {
        self.join_inner()
    }

    /// Stops the server and waits for it.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join).
    pub fn stop_and_join(self) -> io::Result<()> {
        self.stop();
        self.join()
    }

    fn join_inner(&mut self) -> io::Result<()> {
        join_reactors(std::mem::take(&mut self.threads))
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.handle.stop();
            if let Err(e) = self.join_inner() {
                log::error!("{e}");
            }
        }
    }
}

/// Binds a Unix listener at `path`, replacing a stale socket file (one nothing accepts on) but
/// never a live one or a file that is not a socket.
fn bind_unix_path(path: &Path, backlog: i32) -> io::Result<(OwnedFd, UnixPathGuard)> {
    let first = match sys::unix_listener(path, backlog) {
        Ok(fd) => return Ok((fd, UnixPathGuard::new(path))),
        Err(e) => e,
    };
    if first.kind() != io::ErrorKind::AddrInUse {
        return Err(first);
    }
    let in_use = |why: String| {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("unix:{} {why}", path.display()),
        )
    };
    let meta = std::fs::symlink_metadata(path).map_err(|e| in_use(format!("is in use ({e})")))?;
    if !meta.file_type().is_socket() {
        return Err(in_use(
            "exists and is not a socket; not replacing it".into(),
        ));
    }
    // A live listener accepts (or has a full backlog: EAGAIN); a stale file refuses.
    match sys::connect(&Address::unix(path)) {
        Ok((_, Some(e))) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("replacing stale Unix socket {}", path.display());
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(in_use(format!("is stale but cannot be removed: {e}"))),
            }
            let fd = sys::unix_listener(path, backlog)?;
            Ok((fd, UnixPathGuard::new(path)))
        }
        Ok((_, None)) => Err(in_use("is in use: a live server accepts on it".into())),
        Ok((_, Some(e))) if e.kind() == io::ErrorKind::WouldBlock => {
            Err(in_use("is in use: a live server accepts on it".into()))
        }
        Ok((_, Some(e))) | Err(e) => Err(in_use(format!("is in use (probe failed: {e})"))),
    }
}

/// Removes a Unix listener's socket file when the listener closes, if the file is still the
/// one it bound (same device and inode): a newer server's socket at that path is left alone.
#[derive(Debug)]
pub(crate) struct UnixPathGuard {
    path: PathBuf,
    id: Option<(u64, u64)>,
}

impl UnixPathGuard {
    fn new(path: &Path) -> UnixPathGuard {
        let id = std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        UnixPathGuard {
            path: path.to_path_buf(),
            id,
        }
    }
}

impl Drop for UnixPathGuard {
    fn drop(&mut self) {
        let now = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if now.is_some() && now == self.id {
            if let Err(e) = std::fs::remove_file(&self.path) {
                log::debug!("removing {}: {e}", self.path.display());
            }
        }
    }
}
