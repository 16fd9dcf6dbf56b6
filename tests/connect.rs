//! Outbound connections through the reactor, on both faces: IPv4, IPv6 and Unix; refused,
//! missing and timed-out connects; and the guarantees accepted connections have (ordering,
//! backpressure, half-close, stale ids, the stop flush).

mod common;

use common::{Event, Recorder, TIMEOUT};
use epoll_server::{Address, Bytes, ConnId, ConnInfo, Context, Handler, Server};
use futures::{SinkExt, StreamExt};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the connecting handler saw.
#[derive(Debug)]
#[allow(dead_code)] // the fields show in failure messages
enum Seen {
    Open(ConnInfo),
    Failed(ConnId, io::Error),
    Message(ConnId, Bytes),
    Eof(ConnId),
    Close(ConnId),
}

/// Connects to each of `targets` when listening, sending `greeting` to each at once (queued
/// until connected); reports what happens.
struct Dialer {
    targets: Vec<Address>,
    greeting: &'static [u8],
    tx: mpsc::Sender<Seen>,
    ids: mpsc::Sender<ConnId>,
}

impl Handler for Dialer {
    fn on_listening(&mut self, ctx: &mut Context<'_>, _: &[Address]) {
        for t in self.targets.clone() {
            let id = ctx.connect(t).expect("a connect starts");
            if !self.greeting.is_empty() {
                // Queued while connecting; refused only if the connect already failed (a
                // Unix connect fails at once), which `on_connect_failed` then reports.
                let _ = ctx.send(id, self.greeting);
            }
            let _ = self.ids.send(id);
        }
    }
    fn on_open(&mut self, _: &mut Context<'_>, info: ConnInfo) {
        let _ = self.tx.send(Seen::Open(info));
    }
    fn on_connect_failed(&mut self, _: &mut Context<'_>, conn: ConnId, error: io::Error) {
        let _ = self.tx.send(Seen::Failed(conn, error));
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        let _ = self.tx.send(Seen::Message(conn, data.clone()));
        let _ = ctx.send(conn, data);
    }
    fn on_peer_eof(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let _ = self.tx.send(Seen::Eof(conn));
        ctx.close(conn);
    }
    fn on_close(&mut self, _: &mut Context<'_>, conn: ConnId, _: epoll_server::CloseReason) {
        let _ = self.tx.send(Seen::Close(conn));
    }
}

fn dial(
    builder: epoll_server::Builder,
    targets: Vec<Address>,
    greeting: &'static [u8],
) -> (
    epoll_server::ServerThread,
    mpsc::Receiver<Seen>,
    Vec<ConnId>,
) {
    let (tx, rx) = mpsc::channel();
    let (ids_tx, ids_rx) = mpsc::channel();
    let n = targets.len();
    let server = builder
        .build(Dialer {
            targets,
            greeting,
            tx,
            ids: ids_tx,
        })
        .unwrap()
        .spawn()
        .unwrap();
    let ids = (0..n)
        .map(|_| ids_rx.recv_timeout(TIMEOUT).unwrap())
        .collect();
    (server, rx, ids)
}

fn next(rx: &mpsc::Receiver<Seen>) -> Seen {
    rx.recv_timeout(TIMEOUT)
        .expect("an event within the timeout")
}

fn accept(listener: &TcpListener) -> TcpStream {
    let (s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// The callback face connects over IPv4 and IPv6: `on_open` says outbound with the right
/// addresses, bytes queued before the connect completed go out first, and the echo works.
#[test]
fn callback_connect_over_ipv4_and_ipv6() {
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let upstream = TcpListener::bind(bind).unwrap();
        let addr = upstream.local_addr().unwrap();
        let (server, rx, ids) = dial(Server::builder(), vec![addr.into()], b"hello ");
        let mut peer = accept(&upstream);
        let info = match next(&rx) {
            Seen::Open(info) => info,
            other => panic!("expected on_open, got {other:?}"),
        };
        assert_eq!(info.id, ids[0]);
        assert!(info.outbound);
        assert_eq!(info.peer, addr);
        assert_eq!(info.local, peer.peer_addr().unwrap());
        let mut got = [0u8; 6];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello ");
        // The handler echoes what the upstream sends.
        peer.write_all(b"round trip").unwrap();
        let mut back = [0u8; 10];
        peer.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"round trip");
        // The upstream's end of file: default handling closes, and the upstream sees EOF.
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(common::read_to_eof(&mut peer).unwrap(), b"");
        server.stop_and_join().unwrap();
        let s = server_stats_after(&rx);
        assert!(s.iter().any(|e| matches!(e, Seen::Eof(_))));
    }
}

fn server_stats_after(rx: &mpsc::Receiver<Seen>) -> Vec<Seen> {
    rx.try_iter().collect()
}

#[test]
fn callback_connect_over_a_unix_socket() {
    let path =
        std::env::temp_dir().join(format!("epoll-server-connect-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let upstream = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let (server, rx, _) = dial(Server::builder(), vec![Address::unix(&path)], b"unix!");
    let (mut peer, _) = upstream.accept().unwrap();
    peer.set_read_timeout(Some(TIMEOUT)).unwrap();
    let info = match next(&rx) {
        Seen::Open(info) => info,
        other => panic!("expected on_open, got {other:?}"),
    };
    assert_eq!(info.peer, Address::unix(&path));
    assert_eq!(
        info.peer_credentials.map(|c| c.pid),
        Some(std::process::id() as i32)
    );
    let mut got = [0u8; 5];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"unix!");
    server.stop_and_join().unwrap();
    let _ = std::fs::remove_file(&path);
}

/// A port nobody listens on.
fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

#[test]
fn refused_and_missing_connects_fail_with_their_errors_and_are_counted() {
    let missing =
        std::env::temp_dir().join(format!("epoll-server-missing-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&missing);
    let targets = vec![closed_port().into(), Address::unix(&missing)];
    let (server, rx, ids) = dial(Server::builder(), targets, b"lost");
    let mut failures = std::collections::HashMap::new();
    for _ in 0..2 {
        match next(&rx) {
            Seen::Failed(id, e) => {
                failures.insert(id, e);
            }
            other => panic!("expected a failed connect, got {other:?}"),
        }
    }
    assert_eq!(
        failures[&ids[0]].kind(),
        io::ErrorKind::ConnectionRefused,
        "{}",
        failures[&ids[0]]
    );
    assert!(
        failures[&ids[0]].to_string().contains("connect(127.0.0.1:"),
        "{}",
        failures[&ids[0]]
    );
    assert_eq!(
        failures[&ids[1]].kind(),
        io::ErrorKind::NotFound,
        "{}",
        failures[&ids[1]]
    );
    let stats = server.handle().stats();
    assert_eq!(
        (stats.connect_errors, stats.connected, stats.open),
        (2, 0, 0)
    );
    assert_eq!(
        stats.closed.total(),
        0,
        "a failed connect is not a closed connection"
    );
    server.stop_and_join().unwrap();
    assert!(rx
        .try_iter()
        .all(|e| !matches!(e, Seen::Close(_) | Seen::Open(_))));
}

/// A listener whose accept queue is full drops further SYNs: a connect to it hangs until
/// the connect timeout.
fn full_listener() -> (TcpListener, Vec<TcpStream>) {
    let listener = epoll_server::make_listener("127.0.0.1:0".parse().unwrap(), 0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    // Fill the accept queue (backlog 0 holds one) with non-blocking connects via the OS.
    for _ in 0..4 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    (listener, fillers)
}

#[test]
fn a_connect_that_hangs_fails_with_timed_out_after_the_connect_timeout() {
    let (listener, _fillers) = full_listener();
    let addr = listener.local_addr().unwrap();
    let started = Instant::now();
    let (server, rx, ids) = dial(
        Server::builder().connect_timeout(Duration::from_millis(300)),
        vec![addr.into()],
        b"",
    );
    match next(&rx) {
        Seen::Failed(id, e) => {
            assert_eq!(id, ids[0]);
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        }
        other => panic!("expected a timed-out connect, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "timed out early: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "timed out late: {took:?}");
    server.stop_and_join().unwrap();
}

#[test]
fn stop_fails_a_connect_in_progress_instead_of_hanging() {
    let (listener, _fillers) = full_listener();
    let addr = listener.local_addr().unwrap();
    let (server, rx, _) = dial(Server::builder(), vec![addr.into()], b"");
    server.stop();
    match next(&rx) {
        Seen::Failed(_, e) => assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e}"),
        other => panic!("expected the connect to fail on stop, got {other:?}"),
    }
    server.join().unwrap();
}

/// A tiny echo upstream on its own thread, for the async tests.
fn echo_upstream() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        // Echo the half-close back.
        let _ = s.shutdown(std::net::Shutdown::Write);
    });
    (addr, t)
}

async fn async_round_trip(handle: epoll_server::ServerHandle, addr: SocketAddr) -> io::Result<()> {
    let mut conn = handle.connect(addr).await?;
    assert_eq!(conn.peer_addr(), &Address::Tcp(addr));
    assert!(conn.info().outbound);
    let mut expected = Vec::new();
    for i in 0..100u32 {
        let msg = format!("message {i}\n");
        expected.extend_from_slice(msg.as_bytes());
        conn.feed(msg.into()).await?;
    }
    conn.flush().await?;
    // poll_close flushes, then half-closes: the upstream echoes its end of file back.
    let (mut inbound, mut outbound) = conn.split();
    outbound.close().await?;
    let mut got = Vec::new();
    while let Some(chunk) = inbound.next().await {
        got.extend_from_slice(&chunk?);
    }
    assert_eq!(got, expected, "every byte back, in order");
    Ok(())
}

#[test]
fn async_connect_on_tokio_smol_and_futures_executor() {
    let server = Server::builder().build_async().unwrap().spawn().unwrap();
    let handle = server.handle();

    let (addr, up) = echo_upstream();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async_round_trip(handle.clone(), addr)).unwrap();
    up.join().unwrap();

    let (addr, up) = echo_upstream();
    smol::block_on(async_round_trip(handle.clone(), addr)).unwrap();
    up.join().unwrap();

    let (addr, up) = echo_upstream();
    futures::executor::block_on(async_round_trip(handle.clone(), addr)).unwrap();
    up.join().unwrap();

    let stats = handle.stats();
    assert_eq!(stats.connected, 3);
    server.stop_and_join().unwrap();
}

#[test]
fn async_connect_errors_refused_timed_out_and_after_stop() {
    let server = Server::builder()
        .connect_timeout(Duration::from_millis(200))
        .build_async()
        .unwrap()
        .spawn()
        .unwrap();
    let handle = server.handle();
    futures::executor::block_on(async {
        let e = handle.connect(closed_port()).await.expect_err("refused");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
        let (listener, _fillers) = full_listener();
        let e = handle
            .connect(listener.local_addr().unwrap())
            .await
            .expect_err("times out");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    });
    server.stop_and_join().unwrap();
    // The reactor is gone: the future fails at once instead of waiting forever.
    let e = futures::executor::block_on(handle.connect(closed_port())).expect_err("stopped");
    assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e}");
}

#[test]
fn async_outbound_connection_keeps_order_across_sink_handle_and_threads() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = upstream.local_addr().unwrap();
    let server = Server::builder().build_async().unwrap().spawn().unwrap();
    let handle = server.handle();
    let conn = futures::executor::block_on(handle.connect(addr)).unwrap();
    let mut peer = accept(&upstream);
    let conn_handle = conn.handle();
    let (_inbound, mut outbound) = conn.split();
    // Alternate the sink (this thread) and the handle (another thread) in a fixed order.
    let mut expected = Vec::new();
    for i in 0..200u32 {
        let msg = format!("{i:05}");
        expected.extend_from_slice(msg.as_bytes());
        if i % 2 == 0 {
            futures::executor::block_on(async {
                outbound.send(msg.into()).await.unwrap();
            });
        } else {
            let h = conn_handle.clone();
            std::thread::spawn(move || h.send(msg).unwrap())
                .join()
                .unwrap();
        }
    }
    let mut got = vec![0u8; expected.len()];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(got, expected);
    server.stop_and_join().unwrap();
}

#[test]
fn async_outbound_connection_feels_backpressure_and_is_flushed_on_stop() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = upstream.local_addr().unwrap();
    let server = Server::builder()
        .output_limits(256 * 1024, 64 * 1024, 1024 * 1024)
        .build_async()
        .unwrap()
        .spawn()
        .unwrap();
    let handle = server.handle();
    let mut conn = futures::executor::block_on(handle.connect(addr)).unwrap();
    let mut peer = accept(&upstream);
    // The peer does not read: the sink must stop accepting at some point (bounded queue).
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let mut sent = 0usize;
    let blocked = futures::executor::block_on(async {
        loop {
            let ready = futures::poll!(futures::future::poll_fn(|cx| {
                futures::Sink::poll_ready(std::pin::Pin::new(&mut conn), cx)
            }));
            match ready {
                std::task::Poll::Ready(r) => {
                    r.unwrap();
                    conn.start_send_unpin(chunk.clone()).unwrap();
                    sent += chunk.len();
                    assert!(sent < 256 * 1024 * 1024, "the sink never pushed back");
                }
                std::task::Poll::Pending => break true,
            }
        }
    });
    assert!(blocked);
    // Stop with all of it queued: the stop flushes it to a reader that starts now.
    server.stop();
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match peer.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                assert!(buf[..n].iter().all(|&b| b == 7));
                got += n;
            }
            Err(e) => panic!("reading the flushed output: {e}"),
        }
    }
    assert_eq!(
        got, sent,
        "everything the sink accepted was delivered on stop"
    );
    drop(conn);
    server.join().unwrap();
}

#[test]
fn a_stale_outbound_id_never_reaches_a_newer_connection() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = upstream.local_addr().unwrap();
    let (recorder, events) = Recorder::echo();
    let server = common::spawn(Server::builder().bind("127.0.0.1:0").unwrap(), recorder);
    let handle = server.handle();
    // Open and close an outbound connection through the async API of the same server...
    let conn = futures::executor::block_on(handle.connect(addr)).unwrap();
    let old = conn.handle();
    let mut first_peer = accept(&upstream);
    drop(conn);
    assert_eq!(common::read_to_eof(&mut first_peer).unwrap(), b"");
    // ...then accept a new connection, likely in the same slot.
    let mut client = common::connect(server.local_addr());
    common::assert_echo(&mut client, b"new");
    events.wait("the new connection", |e| match e {
        Event::Open(info) if !info.outbound => Some(()),
        _ => None,
    });
    assert!(
        old.send("stale").is_err(),
        "a send through a stale handle must fail"
    );
    common::assert_nothing_to_read(&mut client, Duration::from_millis(100));
    server.stop_and_join().unwrap();
}
