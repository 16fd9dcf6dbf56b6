//! Several reactors behind one server (`Builder::reactors`): each accepts and serves its own
//! connections, ids name their reactor, handles and `Context::send` route to it, `incoming()`
//! merges them, a stop flushes every reactor, and the limits and counters are server-wide.

mod common;

use common::{assert_pattern, connect, pattern, TIMEOUT};
use epoll_server::{
    AcceptSpread, Builder, Bytes, CloseReason, ConnHandle, ConnId, ConnInfo, Context, Handler,
    Server,
};
use futures::{SinkExt, StreamExt};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        if ctx.send(conn, data).is_err() {
            ctx.close(conn);
        }
    }
}

/// Waits (bounded) until `f` holds, polling a cheap condition such as a counter snapshot.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Binds 127.0.0.1:0 on `builder` and runs it with a handler per reactor made by `make`.
fn serve<H: Handler>(builder: Builder, make: impl FnMut(usize) -> H) -> epoll_server::ServerThread {
    builder
        .bind("127.0.0.1:0")
        .unwrap()
        .build_with(make)
        .unwrap()
        .spawn()
        .unwrap()
}

fn echo_400_connections(spread: AcceptSpread) {
    let server = serve(Builder::new().reactors(2).accept_spread(spread), |_| Echo);
    let addr = server.local_addr();
    let mut clients: Vec<TcpStream> = (0..400).map(|_| connect(addr)).collect();
    // Every client sends a different 4 KiB, interleaved, then reads its own back.
    for round in 0..4 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(&pattern(i * 4096 + round * 1024, 1024))
                .unwrap();
        }
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let mut got = vec![0u8; 4096];
        c.read_exact(&mut got).unwrap();
        assert_pattern(i * 4096, &got);
    }
    let per = server.handle().reactor_stats();
    assert_eq!(per.len(), 2);
    for (i, s) in per.iter().enumerate() {
        assert!(s.accepted > 0, "reactor {i} served no connection: {per:?}");
        assert_eq!(s.bytes_read, s.accepted * 4096, "reactor {i}");
    }
    let total = server.handle().stats();
    assert_eq!(total.accepted, 400);
    assert_eq!(total.open, 400);
    assert_eq!(total.bytes_read, 400 * 4096);
    assert_eq!(total.accepted, per[0].accepted + per[1].accepted);
    drop(clients);
    server.stop_and_join().unwrap();
}

#[test]
fn echo_400_connections_over_two_reactors_with_reuseport() {
    echo_400_connections(AcceptSpread::ReusePort);
}

#[test]
fn echo_400_connections_over_two_reactors_with_a_shared_listener() {
    echo_400_connections(AcceptSpread::SharedListener);
}

#[test]
fn reuseport_spreads_connections_within_ten_percent_of_even() {
    // A hash of the 4-tuple picks the reactor: with 2,000 connections from one address, 10 %
    // of even is 4.5 standard deviations of a fair split.
    const N: usize = 2000;
    let server = serve(Builder::new().reactors(2).max_fds(8192), |_| Echo);
    let addr = server.local_addr();
    let mut held = Vec::with_capacity(N);
    for _ in 0..N {
        held.push(connect(addr));
    }
    let handle = server.handle();
    wait_until("every connection accepted", || {
        handle.stats().accepted == N as u64
    });
    let per = handle.reactor_stats();
    let even = N as f64 / 2.0;
    for (i, s) in per.iter().enumerate() {
        let off = (s.accepted as f64 - even).abs() / even;
        assert!(off <= 0.10, "reactor {i} took {} of {N}", s.accepted);
    }
    drop(held);
    server.stop_and_join().unwrap();
}

#[test]
fn ids_name_their_reactor_and_build_needs_a_handler_per_reactor() {
    let err = Builder::new().reactors(2).build(Echo).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);

    let (tx, rx) = mpsc::channel::<(usize, ConnId)>();
    struct Report(mpsc::Sender<(usize, ConnId)>);
    impl Handler for Report {
        fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnInfo) {
            let _ = self.0.send((ctx.reactor(), conn.id));
        }
        fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}
    }
    let made = Arc::new(Mutex::new(Vec::new()));
    let made2 = made.clone();
    let server = Builder::new()
        .reactors(3)
        .bind("127.0.0.1:0")
        .unwrap()
        .build_with(move |i| {
            made2.lock().unwrap().push(i);
            Report(tx.clone())
        })
        .unwrap()
        .spawn()
        .unwrap();
    assert_eq!(*made.lock().unwrap(), vec![0, 1, 2]);
    let _clients: Vec<TcpStream> = (0..60).map(|_| connect(server.local_addr())).collect();
    let mut seen = HashSet::new();
    for _ in 0..60 {
        let (reactor, id) = rx.recv_timeout(TIMEOUT).unwrap();
        assert_eq!(id.reactor(), reactor, "an id names the reactor serving it");
        assert!(seen.insert(id), "ids are unique server-wide: {id} twice");
    }
    server.stop_and_join().unwrap();
}

/// A handler that records its connections in a shared room and sends every message to every
/// member, through `Context::send`, whichever reactor serves the member.
struct Broadcast {
    room: Arc<Mutex<Vec<ConnId>>>,
}

impl Handler for Broadcast {
    fn on_open(&mut self, _: &mut Context<'_>, conn: ConnInfo) {
        self.room.lock().unwrap().push(conn.id);
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, _from: ConnId, data: Bytes) {
        let room = self.room.lock().unwrap().clone();
        for id in room {
            ctx.send(id, data.clone()).unwrap();
        }
    }
    fn on_close(&mut self, _: &mut Context<'_>, conn: ConnId, _: CloseReason) {
        self.room.lock().unwrap().retain(|&id| id != conn);
    }
}

#[test]
fn context_send_reaches_members_on_every_reactor_in_order_per_sender() {
    let room = Arc::new(Mutex::new(Vec::new()));
    let server = serve(Builder::new().reactors(2), |_| Broadcast {
        room: room.clone(),
    });
    let addr = server.local_addr();
    let handle = server.handle();
    // Enough clients that both reactors have some (checked, not assumed).
    let mut clients: Vec<TcpStream> = (0..16).map(|_| connect(addr)).collect();
    wait_until("16 members", || room.lock().unwrap().len() == 16);
    let per = handle.reactor_stats();
    assert!(
        per.iter().all(|s| s.open > 0),
        "one reactor has no client: {per:?}"
    );
    // Four senders, 50 numbered lines each, all at once.
    const LINES: usize = 50;
    for n in 0..LINES {
        for (s, c) in clients.iter_mut().take(4).enumerate() {
            c.write_all(format!("{s}:{n}\n").as_bytes()).unwrap();
        }
    }
    let per_sender: usize = (0..LINES).map(|n| format!("0:{n}\n").len()).sum();
    let expected = 4 * per_sender;
    for c in clients.iter_mut() {
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut got = vec![0u8; expected];
        c.read_exact(&mut got).unwrap();
        let mut next = [0usize; 4];
        for line in String::from_utf8(got).unwrap().lines() {
            let (s, n) = line.split_once(':').unwrap();
            let (s, n): (usize, usize) = (s.parse().unwrap(), n.parse().unwrap());
            assert_eq!(n, next[s], "sender {s}'s lines out of order");
            next[s] += 1;
        }
        assert_eq!(next, [LINES; 4]);
    }
    drop(clients);
    server.stop_and_join().unwrap();
}

#[test]
fn server_handle_routes_sends_and_closes_by_id_and_stale_ids_reach_nobody() {
    let (tx, rx) = mpsc::channel::<(ConnId, ConnHandle)>();
    struct Opened(mpsc::Sender<(ConnId, ConnHandle)>);
    impl Handler for Opened {
        fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnInfo) {
            let handle = ctx.handle(conn.id).unwrap();
            let _ = self.0.send((conn.id, handle));
        }
        fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}
    }
    let server = serve(Builder::new().reactors(2), |_| Opened(tx.clone()));
    let addr = server.local_addr();
    let handle = server.handle();
    // Connect until each reactor has a connection in its slot 0 (the same slot and generation
    // on both: the ids differ only by reactor).
    let mut by_reactor: HashMap<usize, (TcpStream, ConnId, ConnHandle)> = HashMap::new();
    let mut extra = Vec::new();
    while by_reactor.len() < 2 {
        let stream = connect(addr);
        let (id, h) = rx.recv_timeout(TIMEOUT).unwrap();
        if let std::collections::hash_map::Entry::Vacant(e) = by_reactor.entry(id.reactor()) {
            e.insert((stream, id, h));
        } else {
            extra.push(stream);
        }
        assert!(extra.len() < 64, "every connection went to one reactor");
    }
    let (mut a, a_id, a_handle) = by_reactor.remove(&0).unwrap();
    let (mut b, b_id, _) = by_reactor.remove(&1).unwrap();
    assert_ne!(a_id, b_id);
    handle.send(a_id, "to a").unwrap();
    handle.send(b_id, "to b").unwrap();
    a.set_read_timeout(Some(TIMEOUT)).unwrap();
    b.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut got = [0u8; 4];
    a.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"to a");
    b.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"to b");

    // Close a by id; its id and handle then reach nobody, not b, not a newer connection.
    handle.close(a_id);
    assert_eq!(a.read(&mut got).unwrap(), 0, "closed by id: end of file");
    wait_until("a's handle sees the close", || a_handle.is_closed());
    let mut newer = Vec::new();
    for _ in 0..8 {
        let s = connect(addr);
        let (id, _) = rx.recv_timeout(TIMEOUT).unwrap();
        assert_ne!(id, a_id, "a stale id was handed out again");
        newer.push(s);
    }
    handle.send(a_id, "stale").unwrap(); // accepted for routing, then dropped
    assert!(a_handle.send("stale").is_err());
    handle.send(b_id, "after").unwrap();
    let mut got = [0u8; 5];
    b.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"after", "b got something else first");
    for s in newer.iter_mut().chain(extra.iter_mut()) {
        common::assert_nothing_to_read(s, Duration::from_millis(50));
    }
    server.stop_and_join().unwrap();
}

#[test]
fn max_connections_bounds_the_whole_server() {
    /// Greets each connection as it is taken, so a client knows it was accepted.
    struct Greet;
    impl Handler for Greet {
        fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnInfo) {
            let _ = ctx.send(conn.id, "+");
        }
        fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}
    }
    let server = serve(Builder::new().reactors(2).max_connections(10), |_| Greet);
    let addr = server.local_addr();
    let handle = server.handle();
    let mut waiting: Vec<TcpStream> = (0..30).map(|_| connect(addr)).collect();
    for c in &waiting {
        c.set_nonblocking(true).unwrap();
    }
    let mut accepted: Vec<TcpStream> = Vec::new();
    // Moves the clients that were greeted from `waiting` to `accepted`.
    let take_greeted = |waiting: &mut Vec<TcpStream>, accepted: &mut Vec<TcpStream>| {
        let mut i = 0;
        while i < waiting.len() {
            let mut b = [0u8; 1];
            if waiting[i].read(&mut b).is_ok_and(|n| n == 1) {
                accepted.push(waiting.remove(i));
            } else {
                i += 1;
            }
        }
    };
    wait_until("10 greeted", || {
        take_greeted(&mut waiting, &mut accepted);
        accepted.len() == 10
    });
    // The others wait in the backlog: no reactor takes an eleventh.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(handle.stats().accepted, 10);
    // Each close lets exactly one more in, whichever reactor it was on.
    for round in 1..=20u64 {
        drop(accepted.remove(0));
        wait_until("one more accepted", || {
            handle.stats().accepted == 10 + round
        });
        wait_until("it is greeted", || {
            take_greeted(&mut waiting, &mut accepted);
            accepted.len() == 10
        });
        assert!(handle.stats().open <= 10, "{:?}", handle.stats());
    }
    assert!(waiting.is_empty());
    drop(accepted);
    server.stop_and_join().unwrap();
}

#[test]
fn stop_flushes_queued_output_on_every_reactor() {
    // Each connection gets 12 MiB in reply to one byte, more than the kernel's socket buffers
    // take (loopback: 4 MiB to send, 6 MiB to receive at most); clients read only after the
    // stop, so every reactor has output queued when it is asked to stop.
    const REPLY: usize = 12 << 20;
    struct Big;
    impl Handler for Big {
        fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, _: Bytes) {
            ctx.send(conn, Bytes::from(pattern(0, REPLY))).unwrap();
        }
    }
    let server = serve(
        Builder::new()
            .reactors(2)
            .output_limits(32 << 20, 1 << 20, 64 << 20)
            .shutdown_deadline(Duration::from_secs(20)),
        |_| Big,
    );
    let addr = server.local_addr();
    let handle = server.handle();
    // Connect until each reactor serves two clients (checked, not assumed).
    let mut clients: Vec<TcpStream> = Vec::new();
    while handle.reactor_stats().iter().any(|s| s.accepted < 2) {
        assert!(
            clients.len() < 40,
            "the connections all went to one reactor"
        );
        clients.push(connect(addr));
        let n = clients.len() as u64;
        wait_until("the client accepted", || handle.stats().accepted == n);
    }
    for c in clients.iter_mut() {
        c.write_all(b"!").unwrap();
    }
    let n = clients.len() as u64;
    wait_until("output queued on both reactors", || {
        let per = handle.reactor_stats();
        per.iter().map(|s| s.bytes_read).sum::<u64>() == n
            && per.iter().all(|s| s.queued_output_bytes > 0)
    });
    handle.stop();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                c.set_read_timeout(Some(TIMEOUT)).unwrap();
                let mut got = Vec::new();
                c.read_to_end(&mut got).unwrap();
                got
            })
        })
        .collect();
    for r in readers {
        let got = r.join().unwrap();
        assert_eq!(got.len(), REPLY, "a reply was cut short by the stop");
        assert_pattern(0, &got);
    }
    server.join().unwrap();
    assert!(handle.is_finished());
}

async fn echo_async(conn: epoll_server::Connection) {
    let (mut inbound, mut outbound) = conn.split();
    while let Some(Ok(buf)) = inbound.next().await {
        if outbound.feed(buf).await.is_err() {
            return;
        }
    }
    let _ = outbound.close().await;
}

/// 100 clients each echo 64 KiB through a server with 2 reactors, on the given executor.
fn async_echo_over_two_reactors(run: impl FnOnce(epoll_server::Incoming)) {
    let server = Server::builder()
        .reactors(2)
        .bind_async("127.0.0.1:0")
        .unwrap()
        .build_async()
        .unwrap();
    let incoming = server.incoming();
    let addr = server.local_addr();
    let server = server.spawn().unwrap();
    let handle = server.handle();
    let clients = std::thread::spawn(move || {
        let mut clients: Vec<TcpStream> = (0..100).map(|_| connect(addr)).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(&pattern(i, 65536)).unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let mut got = vec![0u8; 65536];
            c.read_exact(&mut got).unwrap();
            assert_pattern(i, &got);
        }
    });
    let stopper = handle.clone();
    let stop_after_clients = std::thread::spawn(move || {
        let r = clients.join();
        stopper.stop();
        r
    });
    run(incoming);
    stop_after_clients.join().unwrap().unwrap();
    let per = handle.reactor_stats();
    assert!(per.iter().all(|s| s.accepted > 0), "{per:?}");
    server.join().unwrap();
}

#[test]
fn incoming_merges_every_reactor_on_tokio() {
    async_echo_over_two_reactors(|mut incoming| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            while let Some(conn) = incoming.next().await {
                tokio::spawn(echo_async(conn));
            }
        });
    });
}

#[test]
fn incoming_merges_every_reactor_on_smol() {
    async_echo_over_two_reactors(|mut incoming| {
        let ex = smol::LocalExecutor::new();
        smol::block_on(ex.run(async {
            while let Some(conn) = incoming.next().await {
                ex.spawn(echo_async(conn)).detach();
            }
        }));
    });
}

#[test]
fn incoming_merges_every_reactor_on_futures_thread_pool() {
    async_echo_over_two_reactors(|mut incoming| {
        let pool = futures::executor::ThreadPool::new().unwrap();
        futures::executor::block_on(async {
            while let Some(conn) = incoming.next().await {
                pool.spawn_ok(echo_async(conn));
            }
        });
    });
}

#[test]
fn outbound_connects_spread_over_reactors_and_work() {
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = upstream.local_addr().unwrap();
    let server = Server::builder()
        .reactors(2)
        .build_async()
        .unwrap()
        .spawn()
        .unwrap();
    let handle = server.handle();
    let peers = std::thread::spawn(move || {
        let mut peers = Vec::new();
        for _ in 0..4 {
            let (mut p, _) = upstream.accept().unwrap();
            let mut b = [0u8; 4];
            p.read_exact(&mut b).unwrap();
            p.write_all(&b).unwrap();
            peers.push(p);
        }
        peers
    });
    let reactors: Vec<usize> = futures::executor::block_on(async {
        let mut seen = Vec::new();
        for _ in 0..4 {
            let mut conn = handle.connect(up).await.unwrap();
            conn.send(Bytes::from_static(b"ping")).await.unwrap();
            assert_eq!(&conn.next().await.unwrap().unwrap()[..], b"ping");
            seen.push(conn.id().reactor());
        }
        seen
    });
    assert!(
        reactors.contains(&0) && reactors.contains(&1),
        "{reactors:?}"
    );
    drop(peers.join().unwrap());
    server.stop_and_join().unwrap();
}

#[test]
fn stopped_resolves_once_every_reactor_has_stopped() {
    let server = Server::builder()
        .reactors(3)
        .bind_async("127.0.0.1:0")
        .unwrap()
        .build_async()
        .unwrap();
    let _incoming = server.incoming();
    let handle = server.handle();
    let running = server.spawn().unwrap();
    assert!(!handle.is_finished());
    handle.stop();
    futures::executor::block_on(handle.stopped());
    assert!(handle.is_finished());
    running.join().unwrap();
}

#[test]
fn run_on_the_current_thread_serves_with_every_reactor() {
    let server = Builder::new()
        .reactors(2)
        .bind("127.0.0.1:0")
        .unwrap()
        .build_with(|_| Echo)
        .unwrap();
    let addr = server.local_addr();
    let handle = server.handle();
    let clients = std::thread::spawn(move || {
        let mut cs: Vec<TcpStream> = (0..40).map(|_| connect(addr)).collect();
        for c in cs.iter_mut() {
            common::assert_echo(c, b"hello");
        }
        let per = handle.reactor_stats();
        handle.stop();
        per
    });
    server.run().unwrap();
    let per = clients.join().unwrap();
    assert!(per.iter().all(|s| s.accepted > 0), "{per:?}");
}

#[test]
fn idle_ticks_and_timeouts_run_on_every_reactor() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    /// Counts idle ticks per reactor and reports timed-out closes.
    struct Ticks {
        reactor: usize,
        ticks: Arc<[AtomicUsize; 2]>,
        closed: mpsc::Sender<(ConnId, CloseReason)>,
    }
    impl Handler for Ticks {
        fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}
        fn on_idle(&mut self, _: &mut Context<'_>) {
            self.ticks[self.reactor].fetch_add(1, Ordering::SeqCst);
        }
        fn on_close(&mut self, _: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
            let _ = self.closed.send((conn, reason));
        }
    }
    let ticks: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let (closed_tx, closed) = mpsc::channel();
    let server = serve(
        Builder::new()
            .reactors(2)
            .tick(Duration::from_millis(10))
            .idle_timeout(Duration::from_millis(150)),
        |reactor| Ticks {
            reactor,
            ticks: ticks.clone(),
            closed: closed_tx.clone(),
        },
    );
    let addr = server.local_addr();
    let handle = server.handle();
    // Silent clients until both reactors hold some.
    let mut clients = Vec::new();
    while handle.reactor_stats().iter().any(|s| s.accepted == 0) {
        assert!(clients.len() < 64, "every connection went to one reactor");
        clients.push(connect(addr));
        let n = clients.len() as u64;
        wait_until("the client accepted", || handle.stats().accepted == n);
    }
    // Every one of them times out, on both reactors.
    let mut by_reactor = [0usize; 2];
    for _ in 0..clients.len() {
        let (id, reason) = closed.recv_timeout(TIMEOUT).unwrap();
        assert!(matches!(reason, CloseReason::TimedOut), "{id}: {reason:?}");
        by_reactor[id.reactor()] += 1;
    }
    assert!(by_reactor.iter().all(|&n| n > 0), "{by_reactor:?}");
    let per = handle.reactor_stats();
    for (i, s) in per.iter().enumerate() {
        assert_eq!(
            s.closed.timed_out, by_reactor[i] as u64,
            "reactor {i}'s own counters"
        );
    }
    wait_until("idle ticks on both reactors", || {
        ticks.iter().all(|t| t.load(Ordering::SeqCst) >= 3)
    });
    drop(clients);
    server.stop_and_join().unwrap();
}

#[test]
fn a_dead_reactor_stops_the_others_so_join_and_stopped_do_not_hang() {
    let server = serve(Builder::new().reactors(2), |_| Echo);
    let addr = server.local_addr();
    let handle = server.handle();
    // A client on the reactor that survives (reactor 1; the panic is injected in reactor 0).
    let mut clients = Vec::new();
    while handle.reactor_stats()[1].accepted == 0 {
        assert!(clients.len() < 64, "every connection went to reactor 0");
        clients.push(connect(addr));
        let n = clients.len() as u64;
        wait_until("the client accepted", || handle.stats().accepted == n);
    }
    for c in clients.iter_mut() {
        common::assert_echo(c, b"before");
    }
    handle.inject_panic();
    // The whole server ends: stopped() resolves and join() returns (the panic as an error),
    // within a bound, instead of the surviving reactor serving on with nobody to stop it.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        futures::executor::block_on(handle.stopped());
        let _ = tx.send(server.join());
    });
    let joined = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("join() returned after one reactor died");
    assert!(joined.is_err(), "the dead reactor's panic is reported");
    for c in clients.iter_mut() {
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut rest = Vec::new();
        // Ended: a clean end of file from the stopped reactor, or a reset from the dead one.
        let _ = c.read_to_end(&mut rest);
    }
}

#[test]
fn server_handle_pauses_and_resumes_reading_on_any_reactor() {
    let (tx, rx) = mpsc::channel::<ConnId>();
    struct EchoOpened(mpsc::Sender<ConnId>);
    impl Handler for EchoOpened {
        fn on_open(&mut self, _: &mut Context<'_>, conn: ConnInfo) {
            let _ = self.0.send(conn.id);
        }
        fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
            let _ = ctx.send(conn, data);
        }
    }
    let server = serve(Builder::new().reactors(2), |_| EchoOpened(tx.clone()));
    let addr = server.local_addr();
    let handle = server.handle();
    let mut by_reactor: HashMap<usize, (TcpStream, ConnId)> = HashMap::new();
    let mut extra = Vec::new();
    while by_reactor.len() < 2 {
        assert!(extra.len() < 64, "every connection went to one reactor");
        let s = connect(addr);
        let id = rx.recv_timeout(TIMEOUT).unwrap();
        match by_reactor.entry(id.reactor()) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert((s, id));
            }
            std::collections::hash_map::Entry::Occupied(_) => extra.push(s),
        }
    }
    for (_, (s, id)) in by_reactor.iter_mut() {
        handle.pause_reading(*id);
        // The pause is a command on the connection's reactor: once a later send through the
        // same queue arrives, the pause has been applied.
        handle.send(*id, "marker").unwrap();
        let mut got = [0u8; 6];
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.read_exact(&mut got).unwrap();
        s.write_all(b"held").unwrap();
        common::assert_nothing_to_read(s, Duration::from_millis(100));
        handle.resume_reading(*id);
        let mut got = [0u8; 4];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"held");
    }
    drop(extra);
    server.stop_and_join().unwrap();
}
