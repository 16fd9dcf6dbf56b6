//! Regression tests for the findings of a code review, one or more per defect (the comment above
//! each test names the defect). Every test failed, or hung until its bound, before the fix.

mod common;
mod common_async;

use bytes::BytesMut;
use common::{assert_echo, assert_pattern, is_reset, pattern, read_until_reset, Event, Recorder};
use common_async::{eventually, socket_queues, Watchdog};
use epoll_server::codec::{Decoder, Encoder, Framing};
use epoll_server::{
    Builder, Bytes, CloseReason, ConnHandle, ConnId, ConnInfo, Context, Handler, Incoming, Server,
    ServerThread,
};
use futures::{FutureExt, Sink, SinkExt, StreamExt};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;
const KIB: usize = 1024;
/// Safety bound of every single wait.
const BOUND: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Runs `fut` on a fresh current-thread runtime, failing the test after `BOUND`.
#[track_caller]
fn block_on_bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    runtime()
        .block_on(async { tokio::time::timeout(BOUND, fut).await })
        .unwrap_or_else(|_| panic!("{what}: not done within {BOUND:?}"))
}

/// An async server on 127.0.0.1, its `incoming` stream and its thread.
fn spawn_async(builder: Builder) -> (Incoming, ServerThread) {
    let server = builder
        .bind_async("127.0.0.1:0")
        .expect("bind")
        .build_async()
        .expect("build");
    let incoming = server.incoming();
    (incoming, server.spawn().expect("spawn"))
}

/// The clock ticks per second of `/proc/*/stat` times.
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system CPU time from a `/proc/.../stat` file.
fn stat_cpu(path: &str) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    // Fields after the command name (which may hold spaces) start at field 3, `state`.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / clock_ticks())
}

/// CPU time of the calling thread (so a callback measures the reactor thread alone, whatever
/// the other tests of this binary do meanwhile).
fn thread_cpu() -> Duration {
    stat_cpu("/proc/thread-self/stat")
}

/// Reads until the server ends the connection: end of file or a reset are both fine; data
/// or a timeout are not.
#[track_caller]
fn assert_connection_ends(stream: &mut TcpStream, within: Duration) {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected {n} bytes from a connection that should end"),
        Err(e) if is_reset(&e) => {}
        Err(e) => panic!("the connection did not end within {within:?}: {e}"),
    }
}

/// Sends `byte` as TCP urgent data (std has no `MSG_OOB`).
fn send_urgent(stream: &TcpStream, byte: u8) {
    // SAFETY: `stream` owns the fd and outlives the call; the buffer is one initialised byte on
    // our stack and its length, 1, is passed with it.
    let sent = unsafe {
        libc::send(
            stream.as_raw_fd(),
            (&byte as *const u8).cast::<libc::c_void>(),
            1,
            libc::MSG_OOB,
        )
    };
    assert_eq!(sent, 1, "send(MSG_OOB): {}", io::Error::last_os_error());
}

/// A decoder that hands on whatever is buffered, and panics on input holding `boom`.
#[derive(Debug)]
struct BoomDecoder;

impl Decoder for BoomDecoder {
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
        if buf.windows(4).any(|w| w == b"boom") {
            panic!("the test's decoder panics on boom");
        }
        if buf.is_empty() {
            return Ok(None);
        }
        Ok(Some(buf.split().freeze()))
    }

    fn max_buffered(&self) -> usize {
        64 * KIB
    }
}

/// An encoder that writes frames as they are, and panics on frames holding `boom`.
#[derive(Debug)]
struct BoomEncoder;

impl Encoder for BoomEncoder {
    fn encode(&mut self, frame: Bytes, out: &mut Vec<Bytes>) -> io::Result<()> {
        if frame.windows(4).any(|w| w == b"boom") {
            panic!("the test's encoder panics on boom");
        }
        out.push(frame);
        Ok(())
    }
}

/// Serves `incoming` with the echo of `common_async` on a thread of its own; each
/// connection's outcome is reported with its peer address.
fn spawn_async_echo(
    mut incoming: Incoming,
) -> (
    thread::JoinHandle<()>,
    mpsc::Receiver<(SocketAddr, io::Result<u64>)>,
) {
    let (tx, rx) = mpsc::channel();
    let server = thread::spawn(move || {
        runtime().block_on(async move {
            while let Some(conn) = incoming.next().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let peer = conn.peer_addr().as_tcp().unwrap();
                    let result = common_async::echo(conn).await;
                    let _ = tx.send((peer, result));
                });
            }
        })
    });
    (server, rx)
}

// ---------------------------------------------------------------------------------------------
// Defect 1: a close with output queued gave up at a deadline counted from the close.
// ---------------------------------------------------------------------------------------------

/// Sends `len` bytes of the test pattern in 64 KiB pieces on open, then closes.
fn send_then_close(len: usize) -> (Recorder, common::Events) {
    const PIECE: usize = 64 * KIB;
    // Made here, so that the callback is quick even in a debug build.
    let pieces: Vec<Bytes> = (0..len)
        .step_by(PIECE)
        .map(|at| Bytes::from(pattern(at, PIECE.min(len - at))))
        .collect();
    let (handler, events) = Recorder::echo();
    let handler = handler.quiet().on_open(move |ctx, info| {
        for piece in &pieces {
            ctx.send(info.id, piece.clone()).expect("queue a piece");
        }
        ctx.close(info.id);
    });
    (handler, events)
}

// Defect 1: a slow reader was cut off at the shut-down deadline although every write made progress.
#[test]
fn close_with_output_queued_completes_for_a_slow_but_steady_reader() {
    const LEN: usize = 8 * MIB;
    const CHUNK: usize = 128 * KIB;
    let (handler, events) = send_then_close(LEN);
    let builder = Builder::new()
        .output_limits(16 * MIB, 4 * MIB, 16 * MIB)
        .shutdown_deadline(Duration::from_millis(300));
    let server = common::spawn(builder, handler);
    let mut client = common::connect(server.local_addr());
    let id = events.open().id;

    // 128 KiB every 30 ms: about 4 MiB/s, so the whole reply takes about 2 s, several times
    // the deadline, while every write makes progress.
    let start = Instant::now();
    let mut got = Vec::with_capacity(LEN);
    let mut buf = vec![0u8; CHUNK];
    while got.len() < LEN {
        let want = (LEN - got.len()).min(CHUNK);
        if let Err(e) = client.read_exact(&mut buf[..want]) {
            panic!(
                "the reply was cut off after {} of {LEN} bytes, {:?} into reading: {e}",
                got.len(),
                start.elapsed()
            );
        }
        got.extend_from_slice(&buf[..want]);
        thread::sleep(Duration::from_millis(30));
    }
    let took = start.elapsed();
    assert_pattern(0, &got);
    assert!(
        took > Duration::from_secs(1),
        "the reader was not slow ({took:?}): the test proves nothing"
    );
    match client.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{n} bytes more than were sent"),
        Err(e) => panic!("expected a clean end of file after the reply, got {e}"),
    }
    let reason = events.closed(id);
    assert!(
        matches!(reason, CloseReason::Local | CloseReason::PeerClosed),
        "on_close: {reason}"
    );
    server.stop_and_join().unwrap();
}

// Defect 1: a close that gave up on a peer that stopped reading ended with a clean end of file,
// so the peer took the cut-short reply for a complete one.
#[test]
fn close_that_gives_up_on_a_stalled_peer_resets_it_instead_of_a_clean_eof() {
    const LEN: usize = 8 * MIB;
    let (handler, events) = send_then_close(LEN);
    let builder = Builder::new()
        .output_limits(16 * MIB, 4 * MIB, 16 * MIB)
        .shutdown_deadline(Duration::from_millis(300));
    let server = common::spawn(builder, handler);
    let mut client = common::connect(server.local_addr());
    let id = events.open().id;
    // The client reads nothing until the server gave up.
    events.closed(id);
    let got = read_until_reset(&mut client);
    assert!(
        got.len() < LEN,
        "all {LEN} bytes arrived: nothing was given up"
    );
    assert_pattern(0, &got);
    server.stop_and_join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Defect 2: frames read in the loop turn in which a connection died were dropped.
// ---------------------------------------------------------------------------------------------

// Defect 2: bytes read in the same turn as the peer's reset never reached the stream.
#[test]
fn async_stream_yields_the_bytes_before_a_reset_then_the_reset() {
    let _dog = Watchdog::new("bytes before a reset", Duration::from_secs(30));
    // `incoming` holds one connection: while it is full the server does not accept, so the
    // second client's bytes and reset wait together in the kernel and are read in one turn.
    let (mut incoming, running) = spawn_async(Builder::new().incoming_capacity(1));
    let addr = running.local_addr();
    let port = addr.port();
    let accept_queue = || socket_queues(port, None).map_or(u64::MAX, |q| q.rx);

    let _first = common_async::connect(addr);
    assert!(
        eventually(BOUND, || accept_queue() == 0),
        "the first connection was not accepted"
    );
    let mut second = common_async::connect(addr);
    common_async::write_all(&mut second, b"hello");
    common_async::set_linger_zero(&second);
    drop(second);
    assert_eq!(
        accept_queue(),
        1,
        "the second connection waits in the backlog"
    );

    block_on_bounded("the stream of the reset connection", async {
        let _first = incoming.next().await.expect("the first connection");
        let conn = incoming.next().await.expect("the second connection");
        let (mut inbound, _outbound) = conn.split();
        match inbound.next().await {
            Some(Ok(buf)) => assert_eq!(&buf[..], b"hello"),
            other => panic!("expected Ok(\"hello\") first, got {other:?}"),
        }
        match inbound.next().await {
            Some(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
            other => panic!("expected Err(ConnectionReset) after the bytes, got {other:?}"),
        }
        assert!(
            inbound.next().await.is_none(),
            "the stream ends after the error"
        );
    });
    running.stop_and_join().unwrap();
}

// Defect 2: whole lines decoded in the same turn as an oversize line never reached the stream.
#[test]
fn async_stream_yields_whole_lines_before_an_oversize_line_error() {
    let (mut incoming, running) = spawn_async(Builder::new().framing(Framing::lines(16)));
    let mut client = common_async::connect(running.local_addr());
    let mut wire = b"a\nb\n".to_vec();
    wire.extend_from_slice(&[b'x'; 40]);
    // One write: one segment, read in one turn.
    common_async::write_all(&mut client, &wire);
    block_on_bounded("the stream of the oversize line", async {
        let conn = incoming.next().await.expect("a connection");
        let (mut inbound, _outbound) = conn.split();
        let mut items = Vec::new();
        while let Some(item) = inbound.next().await {
            items.push(item.map_err(|e| e.kind()));
        }
        let want: Vec<Result<Bytes, io::ErrorKind>> = vec![
            Ok(Bytes::from_static(b"a")),
            Ok(Bytes::from_static(b"b")),
            Err(io::ErrorKind::InvalidData),
        ];
        assert_eq!(items, want);
    });
    running.stop_and_join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Defect 3: panics in user code called outside the handler's callbacks killed the reactor.
// ---------------------------------------------------------------------------------------------

// Defect 3: a panicking custom decoder took the reactor thread, and every connection, down.
#[test]
fn panicking_decoder_closes_only_its_connection_on_the_callback_face() {
    let (handler, events) = Recorder::echo();
    let builder = Builder::new().framing(Framing::custom(|| BoomDecoder, || BoomEncoder));
    let server = common::spawn(builder, handler.quiet());
    let addr = server.local_addr();
    let mut a = common::connect(addr);
    let a_id = events.open().id;
    let mut b = common::connect(addr);
    events.open();
    assert_echo(&mut a, b"a is served");
    assert_echo(&mut b, b"b is served");

    a.write_all(b"boom").unwrap();
    assert_connection_ends(&mut a, BOUND);
    match events.closed(a_id) {
        CloseReason::Error(_) => {}
        other => panic!("expected on_close(Error) for the decoder's panic, got {other}"),
    }
    assert_echo(&mut b, b"b is still served");
    let mut c = common::connect(addr);
    assert_echo(&mut c, b"and so are new connections");
    server
        .stop_and_join()
        .expect("the reactor survived the panic");
}

// Defect 3: a panicking custom decoder took the reactor down on the async face too.
#[test]
fn panicking_decoder_ends_only_its_stream_on_the_async_face() {
    let builder = Builder::new().framing(Framing::custom(|| BoomDecoder, || BoomEncoder));
    let (incoming, running) = spawn_async(builder);
    let addr = running.local_addr();
    let (echoer, results) = spawn_async_echo(incoming);
    let mut a = common_async::connect(addr);
    let mut b = common_async::connect(addr);
    assert_echo(&mut a, b"a is served");
    assert_echo(&mut b, b"b is served");

    a.write_all(b"boom").unwrap();
    let a_addr = a.local_addr().unwrap();
    let (peer, result) = results
        .recv_timeout(BOUND)
        .expect("the echo task of the panicking connection did not end");
    assert_eq!(peer, a_addr, "only the panicking connection ends");
    assert!(
        result.is_err(),
        "its stream must end with an error, got {result:?}"
    );
    assert_connection_ends(&mut a, BOUND);
    assert_echo(&mut b, b"b is still served");
    running
        .stop_and_join()
        .expect("the reactor survived the panic");
    common_async::join(echoer);
}

// Defect 3: a framing factory that panicked when a connection was accepted killed the reactor.
#[test]
fn panicking_framing_factory_refuses_only_that_connection() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let framing = Framing::custom(
        move || {
            if counted.fetch_add(1, SeqCst) == 1 {
                panic!("the test's decoder factory panics for the second connection");
            }
            BoomDecoder
        },
        || BoomEncoder,
    );
    let (handler, _events) = Recorder::echo();
    let server = common::spawn(Builder::new().framing(framing), handler.quiet());
    let addr = server.local_addr();
    let mut first = common::connect(addr);
    assert_echo(&mut first, b"first");
    let mut second = common::connect(addr);
    assert_connection_ends(&mut second, BOUND);
    assert_eq!(calls.load(SeqCst), 2, "one decoder per connection");
    let mut third = common::connect(addr);
    assert_echo(&mut third, b"third");
    assert_echo(&mut first, b"first, again");
    server
        .stop_and_join()
        .expect("the reactor survived the panic");
}

// Defect 3: a panicking encoder panicked inside the task that sent through the sink.
#[test]
fn panicking_encoder_fails_the_send_instead_of_panicking_the_task() {
    let builder = Builder::new().framing(Framing::custom(|| BoomDecoder, || BoomEncoder));
    let (mut incoming, running) = spawn_async(builder);
    let addr = running.local_addr();
    let _a = common_async::connect(addr);
    let sent = block_on_bounded("a send through a panicking encoder", async {
        let conn = incoming.next().await.expect("a connection");
        let (_inbound, mut outbound) = conn.split();
        AssertUnwindSafe(outbound.send(Bytes::from_static(b"boom")))
            .catch_unwind()
            .await
    });
    match sent {
        Ok(Err(_)) => {}
        Ok(Ok(())) => panic!("the send of a frame the encoder panicked on succeeded"),
        Err(_) => panic!("the encoder's panic reached the task that sent"),
    }
    // The server goes on serving others.
    let mut b = common_async::connect(addr);
    b.write_all(b"ping").unwrap();
    block_on_bounded("an echo on another connection", async {
        let conn = incoming.next().await.expect("another connection");
        let (mut inbound, mut outbound) = conn.split();
        let got = inbound.next().await.expect("data").expect("no error");
        outbound.send(got).await.expect("echo");
    });
    let mut back = [0u8; 4];
    b.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    running
        .stop_and_join()
        .expect("the reactor survived the panic");
}

// ---------------------------------------------------------------------------------------------
// Defect 4: a send on the reactor thread could overtake a handle's send that had returned.
// ---------------------------------------------------------------------------------------------

/// Gives each connection's handle to the worker; answers "B" to the trigger byte once the
/// worker said it sent "A".
struct Ordering {
    handles: mpsc::Sender<ConnHandle>,
    sent: mpsc::Receiver<ConnId>,
}

impl Handler for Ordering {
    fn on_open(&mut self, ctx: &mut Context<'_>, info: ConnInfo) {
        let handle = ctx.handle(info.id).expect("an open connection");
        let _ = self.handles.send(handle);
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        assert_eq!(&data[..], b"t", "only trigger bytes are sent");
        while let Ok(id) = self.sent.try_recv() {
            if id == conn {
                ctx.send(conn, "B").expect("send B");
            }
        }
    }
}

// Defect 4: bytes sent through a ConnHandle, whose send had returned, were written after bytes
// the handler sent later from a callback.
#[test]
fn context_send_after_a_handle_send_returned_is_written_after_it() {
    const ROUNDS: usize = 200;
    let (handles_tx, handles_rx) = mpsc::channel::<ConnHandle>();
    let (sent_tx, sent_rx) = mpsc::channel::<ConnId>();
    let (clients_tx, clients_rx) = mpsc::channel::<TcpStream>();
    let server = common::spawn(
        Builder::new(),
        Ordering {
            handles: handles_tx,
            sent: sent_rx,
        },
    );
    // The worker: sends "A" through the handle, tells the handler, then writes the trigger
    // itself so that the trigger and the handle's command reach the reactor together.
    let worker = thread::spawn(move || {
        while let Ok(mut client) = clients_rx.recv() {
            let handle = handles_rx.recv_timeout(BOUND).expect("a handle");
            handle.send("A").expect("send A");
            sent_tx.send(handle.id()).unwrap();
            client.write_all(b"t").unwrap();
        }
    });
    let mut wrong = Vec::new();
    for round in 0..ROUNDS {
        let mut client = common::connect(server.local_addr());
        clients_tx.send(client.try_clone().unwrap()).unwrap();
        let mut wire = [0u8; 2];
        client.read_exact(&mut wire).unwrap();
        if &wire != b"AB" {
            wrong.push((round, String::from_utf8_lossy(&wire).into_owned()));
        }
    }
    drop(clients_tx);
    worker.join().unwrap();
    assert!(
        wrong.is_empty(),
        "{} of {ROUNDS} rounds put B before A on the wire: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    server.stop_and_join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Defect 5: a stop with the idle tick set spun while it waited for queued output.
// ---------------------------------------------------------------------------------------------

// Defect 5: stopping with a tick set spun the CPU until the deadline while a peer did not read.
#[test]
fn stop_waiting_for_a_peer_that_never_reads_does_not_spin_with_a_tick_set() {
    const LEN: usize = 16 * MIB;
    let at_idle = Arc::new(Mutex::new(None::<Duration>));
    let at_close = Arc::new(Mutex::new(None::<Duration>));
    let (idle_mark, close_mark) = (at_idle.clone(), at_close.clone());
    let (handler, events) = Recorder::echo();
    let handler = handler
        .quiet()
        .on_open(|ctx, info| {
            ctx.send(info.id, pattern(0, LEN)).expect("queue");
        })
        // Both run on the reactor thread: they read its CPU time alone.
        .on_idle(move |_ctx| *idle_mark.lock().unwrap() = Some(thread_cpu()))
        .on_close(move |_ctx, _id| *close_mark.lock().unwrap() = Some(thread_cpu()));
    let builder = Builder::new()
        .tick(Duration::from_millis(10))
        .shutdown_deadline(Duration::from_secs(1))
        .output_limits(MIB, 256 * KIB, 2 * LEN);
    let server = common::spawn(builder, handler);
    let _client = common::connect(server.local_addr());
    let id = events.open().id;
    // Ticks after the open: the socket buffers are full, the server is idle. A tick is
    // reported before its closure runs: after the second report, the first has stored its mark.
    for _ in 0..2 {
        events.wait("an idle tick", |e| matches!(e, Event::Idle).then_some(()));
    }
    let before = at_idle.lock().unwrap().expect("CPU time at a tick");
    let start = Instant::now();
    server.stop_and_join().unwrap();
    let wall = start.elapsed();
    events.closed(id);
    let used = at_close.lock().unwrap().expect("CPU time at the close") - before;
    eprintln!("stop took {wall:?} of wall time and {used:?} of the reactor's CPU");
    // A spinning loop gets whatever CPU the machine spares (0.4-0.9 of the wall time was seen);
    // a waiting one next to nothing.
    assert!(
        used < wall / 10,
        "the reactor used {used:?} of CPU during a stop of {wall:?}: it spins"
    );
}

// ---------------------------------------------------------------------------------------------
// Defect 6: connections waiting in a dropped `Incoming` were never closed.
// ---------------------------------------------------------------------------------------------

// Defect 6: after the last Incoming was dropped, the connections it held stayed open and the
// listener kept completing handshakes nobody would take.
#[test]
fn dropping_every_incoming_closes_the_connections_it_held_and_the_listener() {
    let (incoming, running) = spawn_async(Builder::new().incoming_capacity(4));
    let addr = running.local_addr();
    let port = addr.port();
    let clients: Vec<TcpStream> = (0..4).map(|_| common_async::connect(addr)).collect();
    assert!(
        eventually(BOUND, || socket_queues(port, None)
            .is_some_and(|q| q.rx == 0)),
        "the four connections were not accepted into incoming"
    );
    drop(incoming);
    for (i, mut client) in clients.into_iter().enumerate() {
        client
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let mut buf = [0u8; 16];
        match client.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("client {i}: {n} unexpected bytes"),
            Err(e) if is_reset(&e) => {}
            Err(e) => panic!("client {i} is still connected 3 s after incoming was dropped: {e}"),
        }
    }
    match TcpStream::connect(addr) {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(mut late) => assert_connection_ends(&mut late, Duration::from_secs(2)),
    }
    running.stop_and_join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Defect 7: urgent data cut a read short, and the bytes after it waited for an edge.
// ---------------------------------------------------------------------------------------------

/// Writes `hello`, one urgent byte, then `world`, and expects `helloworld` echoed within 2 s.
#[track_caller]
fn assert_echo_around_urgent_byte(client: &mut TcpStream, before_read: impl FnOnce()) {
    client.set_nodelay(true).unwrap();
    client.write_all(b"hello").unwrap();
    send_urgent(client, b'!');
    client.write_all(b"world").unwrap();
    before_read();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 10 {
        match client.read(&mut buf) {
            Ok(0) => panic!("end of file after {:?}", String::from_utf8_lossy(&got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "only {:?} echoed within 2 s: {e}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&got),
        "helloworld",
        "the urgent byte is out of band"
    );
}

// Defect 7: the bytes after an urgent byte were not read until more data came.
#[test]
fn bytes_after_urgent_data_are_echoed() {
    let (handler, _events) = Recorder::echo();
    let server = common::spawn(Builder::new(), handler.quiet());
    let mut client = common::connect(server.local_addr());
    assert_echo_around_urgent_byte(&mut client, || {});
    server.stop_and_join().unwrap();
}

// Defect 7: the same, with all of it waiting in the socket when the server reads (reading is
// paused until it arrived), so the read that stops at the urgent mark is not the last edge.
#[test]
fn bytes_after_urgent_data_are_echoed_when_they_arrive_together() {
    let (handles_tx, handles) = mpsc::channel::<ConnHandle>();
    let (handler, _events) = Recorder::echo();
    let handler = handler.quiet().on_open(move |ctx, info| {
        ctx.pause_reading(info.id);
        let _ = handles_tx.send(ctx.handle(info.id).unwrap());
    });
    let server = common::spawn(Builder::new(), handler);
    let port = server.local_addr().port();
    let mut client = common::connect(server.local_addr());
    let local = client.local_addr().unwrap().port();
    let handle = handles.recv_timeout(BOUND).expect("a handle");
    assert_echo_around_urgent_byte(&mut client, || {
        assert!(
            eventually(BOUND, || socket_queues(port, Some(local))
                .is_some_and(|q| q.rx >= 10)),
            "the bytes did not arrive"
        );
        handle.resume_reading();
    });
    server.stop_and_join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Defect 8: the async sink and stream.
// ---------------------------------------------------------------------------------------------

// Defect 8a: a frame the encoder refused came out of the sink as BrokenPipe, as if the
// connection were gone.
#[test]
fn sink_refusing_a_frame_reports_the_encoder_error_and_keeps_the_connection() {
    let (mut incoming, running) = spawn_async(Builder::new().framing(Framing::lines(16)));
    let mut client = common_async::connect(running.local_addr());
    client.write_all(b"hi\n").unwrap();
    block_on_bounded("sends through a line sink", async {
        let conn = incoming.next().await.expect("a connection");
        let (mut inbound, mut outbound) = conn.split();
        let err = outbound
            .send(Bytes::from(vec![b'x'; 40]))
            .await
            .expect_err("a 40-byte line with a 16-byte limit is refused");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData
            ),
            "the refusal must carry the encoder's kind, got {:?}: {err}",
            err.kind()
        );
        outbound
            .send(Bytes::from_static(b"fine"))
            .await
            .expect("the connection is still open for a valid frame");
        let line = inbound.next().await.expect("a line").expect("no error");
        assert_eq!(&line[..], b"hi");
    });
    let mut line = String::new();
    BufReader::new(&mut client).read_line(&mut line).unwrap();
    assert_eq!(line, "fine\n");
    running.stop_and_join().unwrap();
}

// Defect 8b: dropping the inbound half while the reactor was paused for it left the socket
// unread for good: the peer's writes stalled and its end of file was never seen.
#[test]
fn dropping_a_paused_inbound_lets_the_reactor_drain_the_socket() {
    const SENT: usize = 32 * MIB;
    let (mut incoming, running) = spawn_async(Builder::new().inbound_high_water(64 * KIB));
    let addr = running.local_addr();
    let port = addr.port();
    let client = thread::spawn(move || {
        let mut stream = common_async::connect(addr);
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let chunk = vec![7u8; MIB];
        for i in 0..SENT / MIB {
            if let Err(e) = stream.write_all(&chunk) {
                panic!("the peer's write stalled after {i} MiB: nobody reads the socket ({e})");
            }
        }
        stream.shutdown(Shutdown::Write).unwrap();
        common_async::read_to_eof(&mut stream, 16)
    });
    let rt = runtime();
    let conn = rt
        .block_on(async { tokio::time::timeout(BOUND, incoming.next()).await })
        .expect("a connection in time")
        .expect("a connection");
    let peer = conn.peer_addr().as_tcp().unwrap().port();
    let (inbound, mut outbound) = conn.split();
    // Nobody polls the stream: the reactor pauses and the kernel's queue fills up.
    assert!(
        eventually(BOUND, || socket_queues(port, Some(peer))
            .is_some_and(|q| q.rx >= 16 * KIB as u64)),
        "the reactor did not pause reading for the lagging stream"
    );
    drop(inbound);
    rt.block_on(async {
        outbound.send(Bytes::from_static(b"ok")).await.unwrap();
        outbound.close().await.unwrap();
    });
    // The sink stays alive until the peer is done: the connection is not closed under it.
    let answer = common_async::join(client);
    assert_eq!(answer, b"ok");
    drop(outbound);
    running.stop_and_join().unwrap();
}

// Defect 8c: poll_flush counted bytes a ConnHandle queued concurrently as the sink's own, and
// resolved while the sink's bytes were still waiting behind them.
#[test]
fn sink_flush_waits_for_its_own_bytes_while_a_handle_sends_concurrently() {
    const ROUNDS: usize = 200;
    const SENDERS: usize = 2;
    // Large, so that bytes queued behind one of them wait a while even for a fast reader.
    const BIG: usize = 4 * MIB;
    const MARK: &[u8] = b"SINK-MARKER";
    const TOTAL: usize = SENDERS * BIG + MARK.len();
    let _dog = Watchdog::new("flush vs handle", Duration::from_secs(240));
    let (mut incoming, running) =
        spawn_async(Builder::new().output_limits(32 * MIB, 16 * MIB, 64 * MIB));
    let addr = running.local_addr();
    let big = Bytes::from(vec![0u8; BIG]);
    let rt = runtime();
    let mut premature = Vec::new();
    let mut sink_first = 0;
    for round in 0..ROUNDS {
        // The peer reads everything, at a steady pace: bytes queued behind a big buffer wait
        // for milliseconds.
        let mut client = common_async::connect(addr);
        let reader = thread::spawn(move || {
            let mut wire = vec![0u8; TOTAL];
            for chunk in wire.chunks_mut(256 * KIB) {
                client.read_exact(chunk).expect("read the stream");
                thread::sleep(Duration::from_millis(1));
            }
            wire
        });
        let conn = rt
            .block_on(async { tokio::time::timeout(BOUND, incoming.next()).await })
            .expect("a connection in time")
            .expect("a connection");
        let handle = conn.handle();
        let (_inbound, mut outbound) = conn.split();
        // Every sender spins until `go`, then one side waits a little: sweep the handles'
        // sends across the sink's from round to round.
        let offset = ((round % 41) as i64 - 20) * 25;
        let ready = Arc::new(AtomicUsize::new(0));
        let go = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..SENDERS)
            .map(|i| {
                let (ready, go, handle, big) =
                    (ready.clone(), go.clone(), handle.clone(), big.clone());
                thread::spawn(move || {
                    ready.fetch_add(1, SeqCst);
                    while !go.load(SeqCst) {
                        std::hint::spin_loop();
                    }
                    for _ in 0..offset.max(0) * i as i64 {
                        std::hint::spin_loop();
                    }
                    handle.send(big).expect("a handle's send");
                    Instant::now()
                })
            })
            .collect();
        outbound
            .feed(Bytes::new())
            .now_or_never()
            .expect("the sink is ready")
            .expect("an empty send");
        while ready.load(SeqCst) < SENDERS {
            std::hint::spin_loop();
        }
        go.store(true, SeqCst);
        for _ in 0..(-offset).max(0) {
            std::hint::spin_loop();
        }
        std::pin::Pin::new(&mut outbound)
            .start_send(Bytes::from_static(MARK))
            .expect("the sink's send");
        rt.block_on(async { tokio::time::timeout(BOUND, outbound.flush()).await })
            .expect("flush in time")
            .expect("flush");
        // Right after the flush resolved: what is still queued (flushed bytes are not).
        let flushed_at = Instant::now();
        let queued = handle.queued_bytes();
        let sends_done = senders
            .into_iter()
            .map(|s| s.join().unwrap())
            .max()
            .unwrap();
        let wire = common_async::join(reader);
        let mark_end = wire
            .windows(MARK.len())
            .position(|w| w == MARK)
            .expect("the sink's bytes arrived")
            + MARK.len();
        sink_first += usize::from(mark_end == MARK.len());
        // With every send counted in it, `queued` says how much was written when the flush
        // resolved: the sink's bytes must be in that part of the stream.
        if sends_done < flushed_at && mark_end > TOTAL - queued {
            premature.push((round, mark_end, TOTAL - queued));
        }
    }
    eprintln!("the sink's bytes went first in {sink_first} of {ROUNDS} rounds");
    assert!(
        premature.is_empty(),
        "flush resolved with the sink's bytes unwritten in {} of {ROUNDS} rounds \
         (round, end of the sink's bytes on the wire, bytes written): {:?}",
        premature.len(),
        premature
    );
    running.stop_and_join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Defect 9: zero intervals made the loop spin.
// ---------------------------------------------------------------------------------------------

/// Echoes, and records the reactor thread's CPU time when it starts and when it stops.
struct CpuMarks {
    start: Arc<Mutex<Option<Duration>>>,
    end: Arc<Mutex<Option<Duration>>>,
}

impl Handler for CpuMarks {
    fn on_listening(&mut self, _ctx: &mut Context<'_>, _addrs: &[epoll_server::Address]) {
        *self.start.lock().unwrap() = Some(thread_cpu());
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        common::echo(ctx, conn, data);
    }

    fn on_shutdown(&mut self) {
        *self.end.lock().unwrap() = Some(thread_cpu());
    }
}

// Defect 9: tick(Duration::ZERO) made an idle server spin.
#[test]
fn zero_tick_does_not_spin_an_idle_server() {
    let (start, end) = (Arc::new(Mutex::new(None)), Arc::new(Mutex::new(None)));
    let handler = CpuMarks {
        start: start.clone(),
        end: end.clone(),
    };
    let server = common::spawn(Builder::new().tick(Duration::ZERO), handler);
    let mut client = common::connect(server.local_addr());
    assert_echo(&mut client, b"served");
    // The measured window: the server has nothing to do.
    let window = Instant::now();
    thread::sleep(Duration::from_millis(300));
    server.stop_and_join().unwrap();
    let wall = window.elapsed();
    let used = end.lock().unwrap().expect("CPU at shutdown")
        - start.lock().unwrap().expect("CPU at start");
    eprintln!("idle server with a zero tick: {used:?} of CPU in {wall:?}");
    assert!(
        used < wall / 10,
        "an idle server with a zero tick used {used:?} of CPU in {wall:?}"
    );
}

const FD_CHILD_ENV: &str = "EPOLL_SERVER_REGRESSION_FD_CHILD";
const FD_CHILD_TEST: &str = "child_server_with_zero_accept_backoff";
const FD_CHILD_PREFIX: &str = "FDCHILD ";

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{FD_CHILD_PREFIX}{line}");
    let _ = out.flush();
}

/// The child's handler: echo, and report errors on stdout.
struct SayErrors;

impl Handler for SayErrors {
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        common::echo(ctx, conn, data);
    }

    fn on_error(&mut self, _ctx: &mut Context<'_>, conn: Option<ConnId>, error: &io::Error) {
        say(&format!("error {} {error}", conn.is_some()));
    }
}

/// The child side of the test below: a server with a zero accept back-off, run under a low fd
/// limit (set by the parent), until its stdin closes.
#[test]
fn child_server_with_zero_accept_backoff() {
    if std::env::var_os(FD_CHILD_ENV).is_none() {
        return; // Only runs when re-executed by the parent test.
    }
    let server = Server::builder()
        .accept_backoff(Duration::ZERO, Duration::ZERO)
        .bind("127.0.0.1:0")
        .unwrap()
        .build(SayErrors)
        .unwrap()
        .spawn()
        .unwrap();
    say(&format!("port {}", server.local_addr().port()));
    let _ = io::stdin().read_to_end(&mut Vec::new());
    server.stop_and_join().unwrap();
    say("stopped");
}

/// Kills the child when the test ends, however it ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// Defect 9: accept_backoff(ZERO, ZERO) made the loop spin while fds were exhausted.
#[test]
fn zero_accept_backoff_does_not_spin_while_fds_are_exhausted() {
    if std::env::var_os(FD_CHILD_ENV).is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    // The shell lowers the fd limit of the child only (64 fds: fewer than the clients below).
    let mut child = ChildGuard(
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 64 && exec \"$0\" \"$@\"")
            .arg(&exe)
            .args([FD_CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(FD_CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("re-execute the test binary"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(at) = line.find(FD_CHILD_PREFIX) {
                if tx
                    .send(line[at + FD_CHILD_PREFIX.len()..].to_string())
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    let line = |what: &str| {
        lines
            .recv_timeout(BOUND)
            .unwrap_or_else(|_| panic!("child: no line while waiting for {what}"))
    };
    let port: u16 = line("its port")
        .strip_prefix("port ")
        .expect("the child's first line is its port")
        .parse()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let _clients: Vec<TcpStream> = (0..100).map(|_| common::connect(addr)).collect();
    let error = line("the accept error");
    assert!(
        error.starts_with("error false"),
        "expected an accept error, got {error:?}"
    );
    let pid = child.0.id();
    let before = stat_cpu(&format!("/proc/{pid}/stat"));
    let window = Instant::now();
    thread::sleep(Duration::from_millis(300));
    let used = stat_cpu(&format!("/proc/{pid}/stat")) - before;
    let wall = window.elapsed();
    eprintln!("fd-exhausted server with a zero back-off: {used:?} of CPU in {wall:?}");
    assert!(
        used < wall / 10,
        "the fd-exhausted server with a zero back-off used {used:?} of CPU in {wall:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// NEW API: the tests below use API the fixes added (CloseReason::TimedOut,
// ServerHandle::stopped); everything above also builds against the code before the fixes.
// ---------------------------------------------------------------------------------------------

// Defect 1: a close that gives up on a stalled peer reports it as a timeout, not a local close.
#[test]
fn close_that_gives_up_on_a_stalled_peer_reports_timed_out() {
    const LEN: usize = 8 * MIB;
    let (handler, events) = send_then_close(LEN);
    let builder = Builder::new()
        .output_limits(16 * MIB, 4 * MIB, 16 * MIB)
        .shutdown_deadline(Duration::from_millis(300));
    let server = common::spawn(builder, handler);
    let mut client = common::connect(server.local_addr());
    let start = Instant::now();
    let id = events.open().id;
    let reason = events.closed(id);
    let took = start.elapsed();
    assert!(
        matches!(reason, CloseReason::TimedOut),
        "on_close: {reason}"
    );
    assert!(
        took >= Duration::from_millis(250),
        "gave up after {took:?}, before the 300 ms linger time"
    );
    let got = read_until_reset(&mut client);
    assert_pattern(0, &got);
    server.stop_and_join().unwrap();
}

fn assert_send_unpin<T: Send + Unpin>(_: &T) {}

// Defect 9: there was no way to await the server's end from async code.
#[test]
fn stopped_resolves_after_stop_under_tokio_and_futures_block_on() {
    let (handler, _events) = Recorder::echo();
    let server = common::spawn(Builder::new(), handler);
    let handle = server.handle();
    let stopped = handle.stopped();
    assert_send_unpin(&stopped);
    assert!(
        handle.stopped().now_or_never().is_none(),
        "stopped() resolved while the server runs"
    );
    handle.stop();
    runtime()
        .block_on(async { tokio::time::timeout(BOUND, stopped).await })
        .expect("stopped() resolves under tokio after stop()");
    assert!(handle.is_finished());
    server.join().unwrap();
    // Resolved already: a new future resolves at once.
    assert!(handle.stopped().now_or_never().is_some());

    // futures' executor, with the stop coming from another thread while it waits.
    let (handler, _events) = Recorder::echo();
    let server = common::spawn(Builder::new(), handler);
    let handle = server.handle();
    let (done_tx, done) = mpsc::channel();
    let waiter = {
        let handle = handle.clone();
        thread::spawn(move || {
            futures::executor::block_on(handle.stopped());
            let _ = done_tx.send(());
        })
    };
    assert!(
        done.recv_timeout(Duration::from_millis(100)).is_err(),
        "stopped() resolved before the stop"
    );
    handle.stop();
    done.recv_timeout(BOUND)
        .expect("stopped() resolves under futures::executor::block_on after stop()");
    waiter.join().unwrap();
    server.join().unwrap();
}
