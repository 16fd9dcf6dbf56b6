//! Helpers shared by the integration tests: a handler that reports every callback over a
//! channel, bounded waits for those reports, and blocking loopback clients with timeouts.

// Each test file uses its own subset of these helpers.
#![allow(dead_code)]

use epoll_server::{Builder, Bytes, CloseReason, ConnId, ConnInfo, Context, Handler, ServerThread};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// How long any single wait of a test may take before it is declared failed.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// One callback, as the [`Recorder`] reports it.
#[derive(Debug)]
pub enum Event {
    Listening(Vec<epoll_server::Address>),
    Open(ConnInfo),
    Message(ConnId, Bytes),
    Close(ConnId, CloseReason),
    Error(Option<ConnId>, String),
    Idle,
    Shutdown,
}

type MessageFn = Box<dyn FnMut(&mut Context<'_>, ConnId, Bytes) + Send>;
type OpenFn = Box<dyn FnMut(&mut Context<'_>, ConnInfo) + Send>;
type IdleFn = Box<dyn FnMut(&mut Context<'_>) + Send>;
type CloseFn = Box<dyn FnMut(&mut Context<'_>, ConnId) + Send>;

/// A handler that reports each callback on a channel, then runs the test's behaviour.
pub struct Recorder {
    tx: Sender<Event>,
    on_message: MessageFn,
    on_open: Option<OpenFn>,
    on_idle: Option<IdleFn>,
    on_close: Option<CloseFn>,
    record_messages: bool,
}

/// Echoes `data` back on `conn`, closing the connection if the send is refused.
pub fn echo(ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
    if ctx.send(conn, data).is_err() {
        ctx.close(conn);
    }
}

impl Recorder {
    /// A recorder whose `on_message` runs `f` (after reporting the message).
    pub fn new(
        f: impl FnMut(&mut Context<'_>, ConnId, Bytes) + Send + 'static,
    ) -> (Recorder, Events) {
        let (tx, rx) = mpsc::channel();
        let recorder = Recorder {
            tx,
            on_message: Box::new(f),
            on_open: None,
            on_idle: None,
            on_close: None,
            record_messages: true,
        };
        (recorder, Events { rx })
    }

    /// A recorder that echoes every message.
    pub fn echo() -> (Recorder, Events) {
        Recorder::new(echo)
    }

    /// Runs `f` in `on_open`, after reporting the open.
    pub fn on_open(
        mut self,
        f: impl FnMut(&mut Context<'_>, ConnInfo) + Send + 'static,
    ) -> Recorder {
        self.on_open = Some(Box::new(f));
        self
    }

    /// Runs `f` in `on_idle`, after reporting the tick.
    pub fn on_idle(mut self, f: impl FnMut(&mut Context<'_>) + Send + 'static) -> Recorder {
        self.on_idle = Some(Box::new(f));
        self
    }

    /// Runs `f` in `on_close`, after reporting the close.
    pub fn on_close(
        mut self,
        f: impl FnMut(&mut Context<'_>, ConnId) + Send + 'static,
    ) -> Recorder {
        self.on_close = Some(Box::new(f));
        self
    }

    /// Does not report messages (for tests that move many megabytes).
    pub fn quiet(mut self) -> Recorder {
        self.record_messages = false;
        self
    }

    fn report(&self, event: Event) {
        // The test may have finished waiting; a closed channel is not the handler's problem.
        let _ = self.tx.send(event);
    }
}

impl Handler for Recorder {
    fn on_listening(&mut self, _ctx: &mut Context<'_>, addrs: &[epoll_server::Address]) {
        self.report(Event::Listening(addrs.to_vec()));
    }

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnInfo) {
        self.report(Event::Open(conn.clone()));
        if let Some(f) = self.on_open.as_mut() {
            f(ctx, conn);
        }
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        if self.record_messages {
            self.report(Event::Message(conn, data.clone()));
        }
        (self.on_message)(ctx, conn, data);
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        self.report(Event::Close(conn, reason));
        if let Some(f) = self.on_close.as_mut() {
            f(ctx, conn);
        }
    }

    fn on_error(&mut self, _ctx: &mut Context<'_>, conn: Option<ConnId>, error: &io::Error) {
        self.report(Event::Error(conn, error.to_string()));
    }

    fn on_idle(&mut self, ctx: &mut Context<'_>) {
        self.report(Event::Idle);
        if let Some(f) = self.on_idle.as_mut() {
            f(ctx);
        }
    }

    fn on_shutdown(&mut self) {
        self.report(Event::Shutdown);
    }
}

/// The test side of a [`Recorder`]: bounded waits for its reports.
pub struct Events {
    rx: Receiver<Event>,
}

impl Events {
    /// The next event, or `None` if none comes within `wait`.
    pub fn next_within(&self, wait: Duration) -> Option<Event> {
        match self.rx.recv_timeout(wait) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// The next event; panics if none comes within [`TIMEOUT`].
    #[track_caller]
    pub fn next(&self) -> Event {
        match self.rx.recv_timeout(TIMEOUT) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => panic!("no handler event within {TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the handler is gone (server ended)"),
        }
    }

    /// Skips events until `f` accepts one; panics after [`TIMEOUT`] (`what` names the wait).
    /// An `Error` event that `f` does not accept fails the test: no test expects stray errors.
    #[track_caller]
    pub fn wait<T>(&self, what: &str, mut f: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match self.rx.recv_timeout(left) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => panic!("timed out waiting for {what}"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the handler is gone while waiting for {what}")
                }
            };
            if let Some(t) = f(&event) {
                return t;
            }
            if let Event::Error(conn, msg) = &event {
                panic!("unexpected on_error({conn:?}, {msg:?}) while waiting for {what}");
            }
        }
    }

    /// Waits for the next `on_open`.
    #[track_caller]
    pub fn open(&self) -> ConnInfo {
        self.wait("on_open", |e| match e {
            Event::Open(info) => Some(info.clone()),
            _ => None,
        })
    }

    /// Waits at most `wait` for the next `on_open`.
    #[track_caller]
    pub fn open_within(&self, wait: Duration, what: &str) -> ConnInfo {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Event::Open(info)) => return info,
                Ok(Event::Error(conn, msg)) => {
                    panic!("unexpected on_error({conn:?}, {msg:?}) while waiting for {what}")
                }
                Ok(_) => {}
                Err(_) => panic!("no on_open within {wait:?}: {what}"),
            }
        }
    }

    /// Waits for `on_close` of `id` and returns its reason.
    #[track_caller]
    pub fn closed(&self, id: ConnId) -> CloseReason {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Event::Close(c, reason)) if c == id => return reason,
                Ok(Event::Error(conn, msg)) if conn != Some(id) => {
                    panic!(
                        "unexpected on_error({conn:?}, {msg:?}) while waiting for on_close({id})"
                    )
                }
                Ok(_) => {}
                Err(e) => panic!("no on_close({id}): {e:?}"),
            }
        }
    }

    /// Waits for the next message on `id` and returns its bytes.
    #[track_caller]
    pub fn message(&self, id: ConnId) -> Bytes {
        self.wait(&format!("on_message({id})"), |e| match e {
            Event::Message(c, data) if *c == id => Some(data.clone()),
            _ => None,
        })
    }

    /// Collects the messages of `id` until they add up to `len` bytes.
    #[track_caller]
    pub fn messages(&self, id: ConnId, len: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < len {
            got.extend_from_slice(&self.message(id));
        }
        got
    }

    /// Asserts that no event `bad` accepts arrives within `wait` (other events are dropped).
    #[track_caller]
    pub fn assert_none_within(&self, wait: Duration, what: &str, bad: impl Fn(&Event) -> bool) {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.rx.recv_timeout(left) {
                Ok(e) if bad(&e) => panic!("{what}: got {e:?}"),
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }

    /// Every event still queued or arriving until the handler is dropped, bounded by [`TIMEOUT`].
    #[track_caller]
    pub fn drain_until_gone(&self) -> Vec<Event> {
        let deadline = Instant::now() + TIMEOUT;
        let mut all = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(e) => all.push(e),
                Err(RecvTimeoutError::Disconnected) => return all,
                Err(RecvTimeoutError::Timeout) => panic!("the handler was not dropped in time"),
            }
        }
    }
}

/// Builds and spawns a server on 127.0.0.1 (port 0) with `handler`.
pub fn spawn(builder: Builder, handler: impl Handler) -> ServerThread {
    builder
        .bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .build(handler)
        .expect("build the server")
        .spawn()
        .expect("spawn the server thread")
}

/// An echo server with default settings, and its events.
pub fn echo_server() -> (ServerThread, Events) {
    let (handler, events) = Recorder::echo();
    (spawn(Builder::new(), handler), events)
}

/// A blocking client with 10 s read and write timeouts.
#[track_caller]
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the server");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Writes `data` and asserts that exactly the same bytes come back.
#[track_caller]
pub fn assert_echo(stream: &mut TcpStream, data: &[u8]) {
    stream.write_all(data).expect("write to the echo server");
    let mut back = vec![0u8; data.len()];
    stream
        .read_exact(&mut back)
        .expect("read the echo back in time");
    assert!(back == data, "echo differs from what was sent");
}

/// Reads until end of file (bounded by the stream's read timeout).
pub fn read_to_eof(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all)?;
    Ok(all)
}

/// Reads what arrives until the connection is reset, and returns those bytes. A clean end of
/// file fails the test: for a reply that was cut short, it would look complete to the peer.
#[track_caller]
pub fn read_until_reset(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => panic!(
                "clean end of file after {} bytes: a cut-short reply looks complete to the peer",
                got.len()
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_reset(&e) => return got,
            Err(e) => panic!("after {} bytes: expected a reset, got {e}", got.len()),
        }
    }
}

/// Asserts that nothing can be read from `stream` within `wait`, then restores the timeout.
#[track_caller]
pub fn assert_nothing_to_read(stream: &mut TcpStream, wait: Duration) {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => panic!("unexpected end of file"),
        Ok(n) => panic!(
            "unexpected {n} bytes: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "unexpected read error {e}"
        ),
    }
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
}

/// The byte at `offset` of the test pattern: a cycle of 251 (prime, so it never lines up
/// with power-of-two buffer sizes).
pub fn pattern_byte(offset: usize) -> u8 {
    (offset % 251) as u8
}

/// `len` bytes of the test pattern starting at `offset`.
pub fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(pattern_byte).collect()
}

/// Asserts that `data` is the test pattern starting at `offset`.
#[track_caller]
pub fn assert_pattern(offset: usize, data: &[u8]) {
    if let Some(i) = (0..data.len()).find(|&i| data[i] != pattern_byte(offset + i)) {
        panic!(
            "pattern broken at byte {} of {}: got {}, expected {}",
            offset + i,
            offset + data.len(),
            data[i],
            pattern_byte(offset + i)
        );
    }
}

/// Whether an error is how a closed or reset connection shows up on a read.
pub fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Closes `stream` with a reset (`SO_LINGER` zero) instead of an orderly FIN.
#[track_caller]
pub fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is a live local of the size passed; `stream` keeps the fd open.
    let ret = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(
        ret,
        0,
        "setsockopt(SO_LINGER): {}",
        io::Error::last_os_error()
    );
    drop(stream);
}
