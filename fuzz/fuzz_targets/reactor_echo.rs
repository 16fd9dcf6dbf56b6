//! A real reactor over loopback, driven by an arbitrary script of client actions on up to four
//! connections at once, with an echo handler on the server.
//!
//! The script writes at arbitrary split points, half-closes a connection's write side (the rest
//! of the echo must then arrive, followed by end of file), resets a connection (`SO_LINGER` 0,
//! then close) at any point, even before the server accepted it, and pauses and resumes reading
//! on the server, either from this thread through a `ConnHandle` or from inside the handler
//! through `Context::pause_reading`/`resume_reading` (a side channel of commands the handler
//! applies at its next callback, which may be in the middle of another connection's read turn).
//!
//! Checks: every connection that was not reset gets its echo complete, in order, byte for byte
//! (a per-connection pattern catches loss, duplication, reordering and mixing of connections),
//! and end of file exactly when it half-closed; no read error on a connection that was not
//! reset; after a reset the server still serves a fresh connection; when an input ends the
//! server holds no connection (reset and half-closed ones included). Every wait is bounded:
//! a hang fails with a message saying what it waited for.
#![no_main]

use arbitrary::Arbitrary;
use epoll_server::{Bytes, ConnHandle, ConnId, ConnInfo, Context, Handler, Server, ServerThread};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long any one wait may take before the input fails as a hang. Generous: the machine is
/// shared and the target runs under AddressSanitizer.
const PATIENCE: Duration = Duration::from_secs(5);
const SLOTS: usize = 4;
const MAX_OPS: usize = 48;
const MAX_WRITE: usize = 8 * 1024;
const MAX_BYTES_PER_INPUT: usize = 128 * 1024;

/// What the handler and the harness share.
#[derive(Default)]
struct Shared {
    /// Open connections by peer address: (sequence number of the open, id, handle).
    /// The harness removes entries; the handler only inserts.
    registry: Mutex<HashMap<SocketAddr, (u64, ConnId, ConnHandle)>>,
    /// Incremented by every `on_open`.
    opens: AtomicU64,
    /// Connections open on the server (`on_open` minus `on_close`).
    open: AtomicUsize,
    /// Idle ticks seen.
    idle: AtomicU64,
    /// Pause (`true`) and resume commands for the handler to apply through its `Context`.
    commands: Mutex<Vec<(ConnId, bool)>>,
    /// Errors that must not happen: of the server itself, or a panic in this handler.
    bad_errors: Mutex<Vec<String>>,
}

struct Echo(Arc<Shared>);

impl Echo {
    fn apply_commands(&self, ctx: &mut Context<'_>) {
        // Applied with the lock held, so an empty queue seen by the harness means applied.
        let mut commands = self.0.commands.lock().unwrap();
        for (id, pause) in commands.drain(..) {
            if pause {
                ctx.pause_reading(id);
            } else {
                ctx.resume_reading(id);
            }
        }
    }
}

impl Handler for Echo {
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnInfo) {
        self.0.open.fetch_add(1, Ordering::SeqCst);
        let seq = self.0.opens.fetch_add(1, Ordering::SeqCst) + 1;
        let handle = ctx
            .handle(conn.id)
            .expect("a handle to a connection being opened");
        self.0.registry.lock().unwrap().insert(
            conn.peer.as_tcp().expect("a TCP peer"),
            (seq, conn.id, handle),
        );
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        self.apply_commands(ctx);
        if ctx.send(conn, data).is_err() {
            ctx.close(conn);
        }
    }

    fn on_close(&mut self, _: &mut Context<'_>, _: ConnId, _: epoll_server::CloseReason) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }

    fn on_error(&mut self, _: &mut Context<'_>, conn: Option<ConnId>, error: &std::io::Error) {
        // A connection's errors (a reset, say) are expected; the server's own are not.
        if conn.is_none() || error.to_string().contains("panicked") {
            let mut bad = self.0.bad_errors.lock().unwrap();
            bad.push(format!("{conn:?}: {error}"));
        }
    }

    fn on_idle(&mut self, ctx: &mut Context<'_>) {
        self.0.idle.fetch_add(1, Ordering::SeqCst);
        self.apply_commands(ctx);
    }
}

/// One server for the whole fuzzing run; each input opens its own connections.
fn server() -> &'static (ServerThread, Arc<Shared>) {
    static SERVER: OnceLock<(ServerThread, Arc<Shared>)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let shared = Arc::new(Shared::default());
        let server = Server::builder()
            // Small buffers, budgets and output limits exercise the partial paths, the
            // read budget and output backpressure with small inputs.
            .read_buffer_size(257)
            .read_budget(1000)
            .output_limits(2048, 512, 64 * 1024)
            // The idle tick applies commands when no message comes to carry them.
            .tick(Duration::from_millis(1))
            .bind("127.0.0.1:0")
            .and_then(|b| b.build(Echo(shared.clone())))
            .and_then(|s| s.spawn())
            .expect("echo server starts");
        (server, shared)
    })
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Via {
    /// `ConnHandle::pause_reading`/`resume_reading` from the harness thread.
    Handle,
    /// `Context::pause_reading`/`resume_reading` inside the handler's next callback.
    Callback,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Write `len % (MAX_WRITE + 1)` bytes on a slot's connection, opening one first if the
    /// slot is empty (a zero-length write just connects). A half-closed connection is finished
    /// (rest of the echo and end of file) and replaced by a new one.
    Write {
        slot: u8,
        len: u16,
    },
    /// `shutdown(Write)`.
    HalfClose {
        slot: u8,
    },
    /// `SO_LINGER` 0 and close: the server gets a reset.
    Reset {
        slot: u8,
    },
    Pause {
        slot: u8,
        via: Via,
    },
    Resume {
        slot: u8,
        via: Via,
    },
    /// Wait until everything written so far on the slot is echoed (skipped while paused).
    Drain {
        slot: u8,
    },
    /// Let the reactor run a little, and read whatever echo has arrived.
    Settle,
}

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
    /// Half-close every connection at the end (else only read the whole echo, then close).
    half_close_at_end: bool,
}

/// The byte at `offset` of connection `seed`'s stream: differs between connections, so bytes
/// of one connection echoed on another show up too.
fn pattern(seed: u64, offset: usize) -> u8 {
    // splitmix64's finaliser over (seed, offset).
    let mut x = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(offset as u64);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) as u8
}

/// Every connection of the run gets its own pattern.
static NEXT_SEED: AtomicU64 = AtomicU64::new(0);

struct Client {
    sock: TcpStream,
    /// Our address, the server's peer address: the registry key.
    addr: SocketAddr,
    /// `Shared::opens` before connecting: the server's entry for us has a larger number.
    opens_before: u64,
    /// Found in the registry, when needed.
    conn: Option<(ConnId, ConnHandle)>,
    seed: u64,
    sent: usize,
    received: usize,
    write_closed: bool,
    eof: bool,
    /// Reading on the server was (last) asked to pause.
    paused: bool,
}

impl Client {
    fn name(&self) -> String {
        format!("connection {} (from {})", self.seed, self.addr)
    }

    /// Reads whatever has arrived, checking it. Returns at `WouldBlock` or end of file.
    fn read_available(&mut self) {
        let mut buf = [0u8; 4096];
        while !self.eof {
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    assert!(
                        self.write_closed,
                        "{}: the server closed it after echoing {} of {} bytes, \
                         though the client neither half-closed nor reset it",
                        self.name(),
                        self.received,
                        self.sent
                    );
                    assert_eq!(
                        self.received,
                        self.sent,
                        "{}: end of file after {} of {} echoed bytes",
                        self.name(),
                        self.received,
                        self.sent
                    );
                    self.eof = true;
                }
                Ok(n) => {
                    for (k, &b) in buf[..n].iter().enumerate() {
                        let at = self.received + k;
                        let want = pattern(self.seed, at);
                        assert!(
                            b == want,
                            "{}: echoed byte {at} is {b:#04x}, expected {want:#04x} \
                             ({} bytes sent)",
                            self.name(),
                            self.sent
                        );
                    }
                    self.received += n;
                    assert!(
                        self.received <= self.sent,
                        "{}: {} bytes echoed, only {} sent",
                        self.name(),
                        self.received,
                        self.sent
                    );
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!(
                    "{}: read error {e} after {} of {} echoed bytes (it was not reset)",
                    self.name(),
                    self.received,
                    self.sent
                ),
            }
        }
    }

    /// Waits until the whole echo arrived, and end of file too after a half-close.
    fn wait_echo(&mut self, what: &str) {
        let start = Instant::now();
        loop {
            self.read_available();
            if self.received == self.sent && (self.eof || !self.write_closed) {
                return;
            }
            let left = PATIENCE.saturating_sub(start.elapsed());
            assert!(
                !left.is_zero(),
                "hang: {}: {what}: {} of {} echoed bytes{} after {PATIENCE:?} \
                 (half-closed: {}, paused: {})",
                self.name(),
                self.received,
                self.sent,
                if self.received == self.sent {
                    " but no end of file"
                } else {
                    ""
                },
                self.write_closed,
                self.paused
            );
            poll(
                &[(self.sock.as_raw_fd(), libc::POLLIN)],
                left.min(Duration::from_millis(100)),
            );
        }
    }
}

/// `poll(2)` on some fds, for at most `timeout`.
fn poll(fds: &[(i32, i16)], timeout: Duration) {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structs.
    unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
}

/// Waits for `done`, failing with `what` after `PATIENCE`.
fn wait_for(what: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < PATIENCE,
            "hang: {} after {PATIENCE:?}",
            what()
        );
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Sets `SO_LINGER` to 0, so that closing the socket sends a reset.
fn set_linger_zero(sock: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a valid `linger` of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt(SO_LINGER): {}",
        std::io::Error::last_os_error()
    );
}

struct Harness {
    addr: SocketAddr,
    shared: Arc<Shared>,
    slots: [Option<Client>; SLOTS],
    resets: usize,
    bytes: usize,
    /// A `ConnHandle` command may not have been carried out yet: before a callback command,
    /// wait for an idle tick, which comes only after the reactor ran its commands, so the
    /// two kinds are carried out in the order the script gave them.
    handle_command_pending: bool,
}

impl Harness {
    fn connect(&mut self) -> Client {
        let opens_before = self.shared.opens.load(Ordering::SeqCst);
        let sock = TcpStream::connect(self.addr).expect("connect to the server");
        sock.set_nodelay(true).unwrap();
        sock.set_nonblocking(true).unwrap();
        Client {
            addr: sock.local_addr().unwrap(),
            sock,
            opens_before,
            conn: None,
            seed: NEXT_SEED.fetch_add(1, Ordering::Relaxed) + 1,
            sent: 0,
            received: 0,
            write_closed: false,
            eof: false,
            paused: false,
        }
    }

    /// The server's id and handle for a slot's connection (waits for the server to accept it).
    fn conn(&mut self, slot: usize) -> (ConnId, ConnHandle) {
        let shared = self.shared.clone();
        let c = self.slots[slot].as_mut().unwrap();
        if c.conn.is_none() {
            let mut found = None;
            wait_for(
                || format!("{} never reached on_open", c.name()),
                || {
                    let registry = shared.registry.lock().unwrap();
                    found = registry
                        .get(&c.addr)
                        .filter(|(seq, _, _)| *seq > c.opens_before)
                        .map(|(_, id, handle)| (*id, handle.clone()));
                    found.is_some()
                },
            );
            c.conn = found;
        }
        c.conn.clone().unwrap()
    }

    /// Waits until the handler applied every callback command.
    fn commands_applied(&self) {
        wait_for(
            || "the handler never applied the pause/resume commands (no callback ran)".into(),
            || self.shared.commands.lock().unwrap().is_empty(),
        );
    }

    fn pause_or_resume(&mut self, slot: usize, pause: bool, via: Via) {
        let (id, handle) = self.conn(slot);
        match via {
            Via::Handle => {
                self.commands_applied();
                if pause {
                    handle.pause_reading();
                } else {
                    handle.resume_reading();
                }
                self.handle_command_pending = true;
            }
            Via::Callback => {
                if self.handle_command_pending {
                    let idle = self.shared.idle.load(Ordering::SeqCst);
                    wait_for(
                        || "no idle tick after a ConnHandle command".into(),
                        || self.shared.idle.load(Ordering::SeqCst) >= idle + 2,
                    );
                    self.handle_command_pending = false;
                }
                self.shared.commands.lock().unwrap().push((id, pause));
            }
        }
        self.slots[slot].as_mut().unwrap().paused = pause;
    }

    fn read_all(&mut self) {
        for c in self.slots.iter_mut().flatten() {
            c.read_available();
        }
    }

    fn write(&mut self, slot: usize, len: usize) {
        let len = len.min(MAX_BYTES_PER_INPUT - self.bytes);
        let c = self.slots[slot].as_mut().unwrap();
        let data: Vec<u8> = (c.sent..c.sent + len).map(|i| pattern(c.seed, i)).collect();
        let mut off = 0;
        let mut blocked_since: Option<Instant> = None;
        while off < data.len() {
            let c = self.slots[slot].as_mut().unwrap();
            match c.sock.write(&data[off..]) {
                Ok(n) => {
                    off += n;
                    c.sent += n;
                    self.bytes += n;
                    blocked_since = None;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if c.paused {
                        // The server is not reading this connection: the write stops here.
                        return;
                    }
                    let since = *blocked_since.get_or_insert_with(Instant::now);
                    assert!(
                        since.elapsed() < PATIENCE,
                        "hang: {}: writes blocked for {PATIENCE:?} though reading is not \
                         paused and the echo is read ({} sent, {} echoed)",
                        c.name(),
                        c.sent,
                        c.received
                    );
                    let fd = c.sock.as_raw_fd();
                    // Reading the echo lets the server's output, and so its reading, go on.
                    self.read_all();
                    let mut fds = vec![(fd, libc::POLLOUT)];
                    fds.extend(
                        self.slots
                            .iter()
                            .flatten()
                            .map(|c| (c.sock.as_raw_fd(), libc::POLLIN)),
                    );
                    poll(&fds, Duration::from_millis(20));
                }
                Err(e) => panic!("{}: write error {e} (it was not reset)", c.name()),
            }
        }
    }

    /// Everything written is echoed; with a half-close, end of file follows. Reading is
    /// resumed first if it was paused.
    fn finish(&mut self, slot: usize) {
        if self.slots[slot].as_ref().unwrap().paused {
            self.pause_or_resume(slot, false, Via::Handle);
        }
        self.commands_applied();
        let c = self.slots[slot].as_mut().unwrap();
        c.wait_echo("finishing it");
    }

    fn forget(&mut self, c: &Client) {
        let mut registry = self.shared.registry.lock().unwrap();
        if registry
            .get(&c.addr)
            .is_some_and(|(seq, _, _)| *seq > c.opens_before)
        {
            registry.remove(&c.addr);
        }
    }

    fn run(&mut self, op: &Op) {
        match *op {
            Op::Write { slot, len } => {
                let slot = slot as usize % SLOTS;
                if self.slots[slot].as_ref().is_some_and(|c| c.write_closed) {
                    self.finish(slot);
                    let old = self.slots[slot].take().unwrap();
                    self.forget(&old);
                }
                if self.slots[slot].is_none() {
                    self.slots[slot] = Some(self.connect());
                }
                self.write(slot, len as usize % (MAX_WRITE + 1));
            }
            Op::HalfClose { slot } => {
                if let Some(c) = self.slots[slot as usize % SLOTS].as_mut() {
                    if !c.write_closed {
                        c.sock.shutdown(Shutdown::Write).expect("shutdown(Write)");
                        c.write_closed = true;
                    }
                }
            }
            Op::Reset { slot } => {
                if let Some(c) = self.slots[slot as usize % SLOTS].take() {
                    set_linger_zero(&c.sock);
                    self.forget(&c);
                    drop(c);
                    self.resets += 1;
                }
            }
            Op::Pause { slot, via } | Op::Resume { slot, via } => {
                let slot = slot as usize % SLOTS;
                let pause = matches!(op, Op::Pause { .. });
                if self.slots[slot].as_ref().is_some_and(|c| !c.eof) {
                    self.pause_or_resume(slot, pause, via);
                }
            }
            Op::Drain { slot } => {
                let slot = slot as usize % SLOTS;
                if self.slots[slot].as_ref().is_some_and(|c| !c.paused) {
                    self.commands_applied();
                    self.slots[slot].as_mut().unwrap().wait_echo("draining it");
                }
            }
            Op::Settle => {
                std::thread::sleep(Duration::from_micros(200));
                self.read_all();
            }
        }
    }

    fn end(&mut self, half_close: bool) {
        for slot in 0..SLOTS {
            if let Some(c) = self.slots[slot].as_mut() {
                if half_close && !c.write_closed {
                    c.sock.shutdown(Shutdown::Write).expect("shutdown(Write)");
                    c.write_closed = true;
                }
                self.finish(slot);
            }
        }
        for slot in 0..SLOTS {
            if let Some(c) = self.slots[slot].take() {
                self.forget(&c);
            }
        }
        if self.resets > 0 {
            // The server still serves after resets.
            let mut c = self.connect();
            let ping: Vec<u8> = (0..32).map(|i| pattern(c.seed, i)).collect();
            (&c.sock)
                .write_all(&ping)
                .expect("write to a fresh connection");
            c.sent = ping.len();
            c.sock.shutdown(Shutdown::Write).unwrap();
            c.write_closed = true;
            c.wait_echo("a fresh connection after a reset");
            self.forget(&c);
        }
        let shared = self.shared.clone();
        wait_for(
            || {
                format!(
                    "the server still holds {} connection(s) after the client closed or \
                     reset all of them",
                    shared.open.load(Ordering::SeqCst)
                )
            },
            || shared.open.load(Ordering::SeqCst) == 0,
        );
        let bad = std::mem::take(&mut *shared.bad_errors.lock().unwrap());
        assert!(bad.is_empty(), "the server reported errors: {bad:?}");
        // Only entries of connections reset before the server accepted them can be left.
        shared.registry.lock().unwrap().clear();
    }
}

fuzz_target!(|input: Input| {
    let (server, shared) = server();
    let mut h = Harness {
        addr: server.local_addr(),
        shared: shared.clone(),
        slots: Default::default(),
        resets: 0,
        bytes: 0,
        handle_command_pending: false,
    };
    for op in input.ops.iter().take(MAX_OPS) {
        h.run(op);
    }
    h.end(input.half_close_at_end);
});
