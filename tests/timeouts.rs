//! Per-connection timeouts (idle, first byte, write stall), their per-connection overrides, and
//! user timers: slowloris peers and peers that stopped reading no longer hold connections
//! forever, while busy connections are left alone.

mod common;

use common::{
    assert_nothing_to_read, connect, echo, is_reset, pattern, read_until_reset, Event, Recorder,
};
use epoll_server::{Builder, Bytes, CloseReason, ConnHandle, ConnId, Context, Handler, Timeout};
use futures::StreamExt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1024 * 1024;

/// Reads until the server ends the connection; returns how long that took, or panics on data
/// or on a timeout (the stream's read timeout bounds the wait).
#[track_caller]
fn wait_for_end(stream: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected {n} bytes from a connection that should end"),
        Err(e) if is_reset(&e) => {}
        Err(e) => panic!("the connection did not end within {within:?}: {e}"),
    }
    start.elapsed()
}

// ---------------------------------------------------------------------------------------------
// (a) slowloris
// ---------------------------------------------------------------------------------------------

/// How a slowloris client ended: the time from its last byte (or its open) to the server's
/// close, and whether it sent anything.
#[derive(Debug)]
struct Ended {
    after_last_byte: Duration,
    sender: bool,
}

/// A slowloris client: sends one byte at once and then one every 2 s (`sender`), or nothing;
/// waits for the server to close the connection.
async fn slowloris(addr: SocketAddr, sender: bool) -> io::Result<Ended> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut last = Instant::now();
    if sender {
        stream.write_all(b"x").await?;
        last = Instant::now();
    }
    let mut buf = [0u8; 64];
    loop {
        let next_byte = tokio::time::sleep_until((last + Duration::from_secs(2)).into());
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) => break,
                Ok(_) => {} // the echo of our byte
                Err(e) if is_reset(&e) => break,
                Err(e) => return Err(e),
            },
            _ = next_byte, if sender => {
                stream.write_all(b"x").await?;
                last = Instant::now();
            }
        }
    }
    Ok(Ended {
        after_last_byte: last.elapsed(),
        sender,
    })
}

/// A well-behaved client: a ping every 100 ms until `until`, each answered within 500 ms.
async fn pinger(addr: SocketAddr, until: Instant) -> io::Result<usize> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut answered = 0;
    while Instant::now() < until {
        stream.write_all(b"ping").await?;
        let mut back = [0u8; 4];
        match tokio::time::timeout(Duration::from_millis(500), stream.read_exact(&mut back)).await {
            Ok(Ok(_)) => assert_eq!(&back, b"ping"),
            Ok(Err(e)) => return Err(e),
            Err(_) => panic!("ping {answered} not answered within 500 ms"),
        }
        answered += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(answered)
}

// Timeouts (new API): slowloris connections are closed one idle / first-byte timeout after
// their last byte or their open, while a busy client is served throughout.
#[test]
fn slowloris_connections_close_on_time_while_a_busy_client_is_served() {
    const EACH: usize = 250;
    let timeout = Duration::from_secs(1);
    let (handler, events) = Recorder::echo();
    let builder = Builder::new()
        .idle_timeout(timeout)
        .first_byte_timeout(timeout);
    let server = common::spawn(builder, handler.quiet());
    let addr = server.local_addr();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ended, pings) = rt.block_on(async {
        let start = Instant::now();
        let ping = tokio::spawn(pinger(addr, start + Duration::from_millis(1800)));
        let clients: Vec<_> = (0..2 * EACH)
            .map(|i| tokio::spawn(slowloris(addr, i % 2 == 0)))
            .collect();
        let mut ended = Vec::new();
        for client in clients {
            let end = tokio::time::timeout(Duration::from_secs(10), client)
                .await
                .expect("a slowloris connection was not closed within 10 s")
                .expect("the client task")
                .expect("the client's I/O");
            ended.push(end);
        }
        let pings = ping
            .await
            .expect("the pinger task")
            .expect("the pinger's I/O");
        (ended, pings)
    });
    let early_or_late: Vec<&Ended> = ended
        .iter()
        .filter(|e| {
            e.after_last_byte < Duration::from_millis(900)
                || e.after_last_byte > Duration::from_millis(1300)
        })
        .collect();
    let min = ended.iter().map(|e| e.after_last_byte).min().unwrap();
    let max = ended.iter().map(|e| e.after_last_byte).max().unwrap();
    eprintln!("closed {min:?} to {max:?} after the last byte; {pings} pings answered");
    assert!(
        early_or_late.is_empty(),
        "{} of {} connections closed outside 0.9-1.3 s after their last byte (min {min:?}, \
         max {max:?}), e.g. {:?}",
        early_or_late.len(),
        ended.len(),
        &early_or_late[..early_or_late.len().min(5)]
    );
    assert_eq!(ended.iter().filter(|e| e.sender).count(), EACH);
    assert!(pings >= 10, "only {pings} pings in 1.8 s");
    let mut timed_out = 0;
    while timed_out < 2 * EACH {
        events.wait("on_close(TimedOut) of every slowloris connection", |e| {
            matches!(e, Event::Close(_, CloseReason::TimedOut)).then_some(())
        });
        timed_out += 1;
    }
    server.stop_and_join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// (b) write stall
// ---------------------------------------------------------------------------------------------

// Timeouts (new API): a peer that never reads is reset by the write-stall timeout and its queue
// is freed.
#[test]
fn write_stall_timeout_resets_a_peer_that_never_reads_and_frees_its_queue() {
    const LEN: usize = 16 * MIB;
    let payload = Bytes::from(pattern(0, LEN));
    let (handles_tx, handles) = mpsc::channel::<ConnHandle>();
    let (handler, events) = Recorder::echo();
    let handler = handler.quiet().on_open(move |ctx, info| {
        ctx.send(info.id, payload.clone()).expect("queue");
        let _ = handles_tx.send(ctx.handle(info.id).unwrap());
    });
    let builder = Builder::new()
        .write_stall_timeout(Duration::from_millis(300))
        .output_limits(MIB, 256 * 1024, 32 * MIB);
    let server = common::spawn(builder, handler);
    let mut client = connect(server.local_addr());
    let start = Instant::now();
    let id = events.open().id;
    let handle = handles.recv_timeout(common::TIMEOUT).expect("a handle");
    let reason = events.closed(id);
    let took = start.elapsed();
    assert!(
        matches!(reason, CloseReason::TimedOut),
        "on_close: {reason}"
    );
    assert!(
        took >= Duration::from_millis(250),
        "reset after {took:?}, before the 300 ms write-stall timeout"
    );
    assert_eq!(handle.queued_bytes(), 0, "the queue is freed");
    assert!(handle.is_closed());
    let got = read_until_reset(&mut client);
    assert!(got.len() < LEN, "everything arrived: nothing stalled");
    common::assert_pattern(0, &got);
    server.stop_and_join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// (c) per-connection overrides
// ---------------------------------------------------------------------------------------------

// Timeouts (new API): Context::set_timeout(conn, Idle, None) keeps one connection while another
// times out.
#[test]
fn idle_timeout_turned_off_from_the_context_keeps_that_connection_only() {
    let idle = Duration::from_millis(400);
    let (handler, events) = Recorder::new(|ctx, conn, data| {
        if &data[..] == b"keep me" {
            ctx.set_timeout(conn, Timeout::Idle, None);
        }
        echo(ctx, conn, data);
    });
    let server = common::spawn(Builder::new().idle_timeout(idle), handler.quiet());
    let addr = server.local_addr();
    let mut kept = connect(addr);
    let kept_id = events.open().id;
    let mut dropped = connect(addr);
    let dropped_id = events.open().id;
    common::assert_echo(&mut kept, b"keep me");
    let kept_last = Instant::now();
    common::assert_echo(&mut dropped, b"idle me");

    wait_for_end(&mut dropped, common::TIMEOUT);
    let reason = events.closed(dropped_id);
    assert!(
        matches!(reason, CloseReason::TimedOut),
        "on_close: {reason}"
    );
    // Three idle timeouts after its last byte, the other one is still open.
    let left = (kept_last + 3 * idle).saturating_duration_since(Instant::now());
    assert_nothing_to_read(&mut kept, left.max(Duration::from_millis(10)));
    common::assert_echo(&mut kept, b"still here");
    events.assert_none_within(
        Duration::ZERO,
        "the kept connection closed",
        |e| matches!(e, Event::Close(id, _) if *id == kept_id),
    );
    server.stop_and_join().unwrap();
}

// Timeouts (new API): ConnHandle::set_timeout overrides the builder's timeouts for its
// connection, both ways.
#[test]
fn timeouts_set_through_a_conn_handle_apply_to_that_connection_only() {
    let (handles_tx, handles) = mpsc::channel::<ConnHandle>();
    let (handler, events) = Recorder::echo();
    let handler = handler.quiet().on_open(move |ctx, info| {
        let _ = handles_tx.send(ctx.handle(info.id).unwrap());
    });
    // Idle 400 ms by default; one connection turns it off, one is left with it.
    let idle = Duration::from_millis(400);
    let server = common::spawn(Builder::new().idle_timeout(idle), handler);
    let addr = server.local_addr();
    let mut kept = connect(addr);
    let kept_open = Instant::now();
    let kept_id = events.open().id;
    handles
        .recv_timeout(common::TIMEOUT)
        .expect("a handle")
        .set_timeout(Timeout::Idle, None);
    let mut plain = connect(addr);
    let plain_id = events.open().id;
    let _plain_handle = handles.recv_timeout(common::TIMEOUT).expect("a handle");
    wait_for_end(&mut plain, common::TIMEOUT);
    assert!(matches!(events.closed(plain_id), CloseReason::TimedOut));
    let left = (kept_open + 3 * idle).saturating_duration_since(Instant::now());
    assert_nothing_to_read(&mut kept, left.max(Duration::from_millis(10)));
    common::assert_echo(&mut kept, b"no idle timeout for me");
    events.assert_none_within(
        Duration::ZERO,
        "the kept connection closed",
        |e| matches!(e, Event::Close(id, _) if *id == kept_id),
    );
    server.stop_and_join().unwrap();

    // No timeouts by default; one connection turns the first-byte timeout on.
    let (handles_tx, handles) = mpsc::channel::<ConnHandle>();
    let (handler, events) = Recorder::echo();
    let handler = handler.quiet().on_open(move |ctx, info| {
        let _ = handles_tx.send(ctx.handle(info.id).unwrap());
    });
    let server = common::spawn(Builder::new(), handler);
    let addr = server.local_addr();
    let mut silent = connect(addr);
    let silent_id = events.open().id;
    handles
        .recv_timeout(common::TIMEOUT)
        .expect("a handle")
        .set_timeout(Timeout::FirstByte, Some(Duration::from_millis(300)));
    let mut other = connect(addr);
    let other_open = Instant::now();
    let other_id = events.open().id;
    wait_for_end(&mut silent, common::TIMEOUT);
    assert!(matches!(events.closed(silent_id), CloseReason::TimedOut));
    let left = (other_open + Duration::from_millis(900)).saturating_duration_since(Instant::now());
    assert_nothing_to_read(&mut other, left.max(Duration::from_millis(10)));
    common::assert_echo(&mut other, b"never timed out");
    events.assert_none_within(
        Duration::ZERO,
        "the other connection closed",
        |e| matches!(e, Event::Close(id, _) if *id == other_id),
    );
    server.stop_and_join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// (d) user timers
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum TimerEvent {
    Armed(ConnId, String, Instant),
    Fired(ConnId, Instant),
}

/// Arms, re-arms or cancels a connection's timer on its message; reports every firing.
struct Timers {
    tx: mpsc::Sender<TimerEvent>,
}

impl Handler for Timers {
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        let short = Duration::from_millis(100);
        match &data[..] {
            b"once" => ctx.set_timer(conn, short),
            b"replace" => {
                ctx.set_timer(conn, short);
                ctx.set_timer(conn, Duration::from_millis(300));
            }
            b"cancel" => {
                ctx.set_timer(conn, short);
                ctx.cancel_timer(conn);
            }
            other => panic!("unexpected message {other:?}"),
        }
        let what = String::from_utf8_lossy(&data).into_owned();
        let _ = self.tx.send(TimerEvent::Armed(conn, what, Instant::now()));
    }

    fn on_timer(&mut self, _ctx: &mut Context<'_>, conn: ConnId) {
        let _ = self.tx.send(TimerEvent::Fired(conn, Instant::now()));
    }
}

// Timers (new API): on_timer fires once after set_timer; setting again replaces the timer;
// cancel_timer cancels it.
#[test]
fn timer_fires_once_is_replaced_by_a_new_one_and_can_be_cancelled() {
    let (tx, rx) = mpsc::channel();
    let server = common::spawn(Builder::new(), Timers { tx });
    let addr = server.local_addr();
    let mut clients = Vec::new();
    for what in ["once", "replace", "cancel"] {
        let mut client = connect(addr);
        client.write_all(what.as_bytes()).unwrap();
        clients.push((what, client));
    }
    // Every event until 800 ms after the last timer was armed: long past every timer.
    let mut armed = Vec::new();
    let mut fired = Vec::new();
    let mut deadline = Instant::now() + common::TIMEOUT;
    while let Ok(event) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        match event {
            TimerEvent::Armed(id, what, at) => {
                armed.push((id, what, at));
                if armed.len() == clients.len() {
                    deadline = at + Duration::from_millis(800);
                }
            }
            TimerEvent::Fired(id, at) => fired.push((id, at)),
        }
    }
    assert_eq!(armed.len(), clients.len(), "every timer was armed");
    let firings = |what: &str| -> Vec<Duration> {
        let (id, _, at) = armed.iter().find(|(_, w, _)| w == what).unwrap();
        fired
            .iter()
            .filter(|(i, _)| i == id)
            .map(|(_, f)| f.saturating_duration_since(*at))
            .collect()
    };
    let once = firings("once");
    assert_eq!(once.len(), 1, "the timer fires once: {once:?}");
    assert!(
        once[0] >= Duration::from_millis(90),
        "fired early: {once:?}"
    );
    let replaced = firings("replace");
    assert_eq!(
        replaced.len(),
        1,
        "the replaced timer fires once: {replaced:?}"
    );
    assert!(
        replaced[0] >= Duration::from_millis(280),
        "the first setting still fired: {replaced:?}"
    );
    let cancelled = firings("cancel");
    assert!(
        cancelled.is_empty(),
        "a cancelled timer fired: {cancelled:?}"
    );
    // Timers do not close connections.
    for (_, client) in clients.iter_mut() {
        assert_nothing_to_read(client, Duration::from_millis(10));
    }
    server.stop_and_join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// (e) the async face
// ---------------------------------------------------------------------------------------------

// Timeouts (new API): on the async face an idle timeout ends the stream with Err(TimedOut).
#[test]
fn idle_timeout_ends_an_async_stream_with_a_timed_out_error() {
    let server = Builder::new()
        .idle_timeout(Duration::from_millis(300))
        .bind_async("127.0.0.1:0")
        .unwrap()
        .build_async()
        .unwrap();
    let mut incoming = server.incoming();
    let running = server.spawn().unwrap();
    let mut client = connect(running.local_addr());
    client.write_all(b"hi").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let items = rt.block_on(async {
        tokio::time::timeout(common::TIMEOUT, async {
            let conn = incoming.next().await.expect("a connection");
            let (mut inbound, _outbound) = conn.split();
            let mut items = Vec::new();
            while let Some(item) = inbound.next().await {
                items.push(item.map_err(|e| e.kind()));
            }
            items
        })
        .await
        .expect("the stream ended in time")
    });
    assert_eq!(
        items,
        vec![Ok(Bytes::from_static(b"hi")), Err(io::ErrorKind::TimedOut)]
    );
    wait_for_end(&mut client, common::TIMEOUT);
    running.stop_and_join().unwrap();
}
