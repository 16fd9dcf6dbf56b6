//! Stopping a server: from another thread or a signal, queued output is written before the
//! sockets close, the loop returns `Ok`, and `on_shutdown` runs last.

mod common;

use common::{assert_pattern, connect, pattern, read_to_eof, Event, Recorder};
use epoll_server::{Builder, CloseReason, ConnHandle};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const CONNS: usize = 10;
/// More than loopback socket buffers absorb for a peer that does not read (about 4 MiB).
const PER_CONN: usize = 6 * 1024 * 1024;

#[test]
fn stop_writes_queued_output_to_every_peer_before_closing() {
    let (handles_tx, handles) = mpsc::channel::<ConnHandle>();
    let (handler, events) = Recorder::echo();
    let handler = handler.quiet().on_open(move |ctx, info| {
        ctx.send(info.id, pattern(0, PER_CONN)).unwrap();
        let _ = handles_tx.send(ctx.handle(info.id).unwrap());
    });
    let builder = Builder::new()
        .output_limits(1024 * 1024, 256 * 1024, 2 * PER_CONN)
        .shutdown_deadline(Duration::from_secs(30));
    let server = common::spawn(builder, handler);
    let addr = server.local_addr();
    let mut clients: Vec<_> = (0..CONNS).map(|_| connect(addr)).collect();
    let handles: Vec<_> = (0..CONNS)
        .map(|_| handles.recv_timeout(common::TIMEOUT).unwrap())
        .collect();
    // The clients have not read anything: the server still holds part of every stream.
    for (i, h) in handles.iter().enumerate() {
        assert!(
            h.queued_bytes() > 0,
            "nothing left queued for connection {i}"
        );
    }

    let handle = server.handle();
    // Stop from this thread, join from another: the join only returns once the clients read.
    server.stop();
    let stopper = thread::spawn(move || server.join());
    for (i, client) in clients.iter_mut().enumerate() {
        let got = read_to_eof(client).unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(got.len(), PER_CONN, "client {i} got a short stream");
        assert_pattern(0, &got);
    }
    stopper
        .join()
        .unwrap()
        .expect("stop_and_join returns Ok after a graceful stop");
    assert!(handle.is_finished());

    let rest = events.drain_until_gone();
    let shutdown_closes = rest
        .iter()
        .filter(|e| matches!(e, Event::Close(_, CloseReason::Shutdown)))
        .count();
    assert_eq!(
        shutdown_closes, CONNS,
        "on_close(Shutdown) per connection: {rest:?}"
    );
    assert!(
        matches!(rest.last(), Some(Event::Shutdown)),
        "on_shutdown must come last: {rest:?}"
    );
    assert!(handles.iter().all(ConnHandle::is_closed));
    let err = handles[0]
        .send("too late")
        .expect_err("send after the server stopped");
    assert_eq!(err.kind(), epoll_server::SendErrorKind::Closed);
}

#[test]
fn stop_closes_idle_connections_and_refuses_new_ones() {
    // On a loopback address of its own: once this listener is closed, another test's server
    // on 127.0.0.1 may get the same port, and a connect would reach that one instead.
    let (handler, events) = Recorder::echo();
    let server = Builder::new()
        .bind("127.0.0.77:0")
        .and_then(|b| b.build(handler))
        .and_then(|s| s.spawn())
        .expect("a server on 127.0.0.77");
    let addr = server.local_addr();
    let mut client = connect(addr);
    let id = events.open().id;
    common::assert_echo(&mut client, b"before the stop");

    let handle = server.handle();
    server.stop();
    server.join().expect("join returns Ok");
    assert!(handle.is_stop_requested() && handle.is_finished());
    assert_eq!(read_to_eof(&mut client).unwrap(), b"");
    assert!(matches!(events.closed(id), CloseReason::Shutdown));
    events.wait("on_shutdown", |e| {
        matches!(e, Event::Shutdown).then_some(())
    });
    // The listener is closed.
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting after stop"
    );
}

#[test]
fn stop_gives_up_on_a_peer_that_never_reads_after_the_deadline() {
    const LEN: usize = 16 * 1024 * 1024;
    let (handler, events) = Recorder::echo();
    let handler = handler.on_open(|ctx, info| {
        // Far more than the socket buffers hold: a peer that does not read keeps it queued.
        ctx.send(info.id, pattern(0, LEN)).unwrap();
    });
    let builder = Builder::new()
        .output_limits(1024 * 1024, 256 * 1024, 2 * LEN)
        .shutdown_deadline(Duration::from_millis(200));
    let server = common::spawn(builder, handler);
    let mut client = connect(server.local_addr());
    let id = events.open().id;

    let start = Instant::now();
    server.stop_and_join().expect("stop_and_join returns Ok");
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "stop took {took:?} with a 200 ms deadline"
    );
    assert!(matches!(events.closed(id), CloseReason::Shutdown));
    events.wait("on_shutdown", |e| {
        matches!(e, Event::Shutdown).then_some(())
    });
    // What reached the kernel before the deadline arrives, intact; the rest was dropped, and
    // the connection is reset rather than ended with a FIN, so the client can tell.
    let got = common::read_until_reset(&mut client);
    assert!(
        got.len() < LEN,
        "all {LEN} bytes arrived: nothing was left to give up on"
    );
    assert_pattern(0, &got);
}

#[test]
fn signal_registered_with_stop_on_signals_stops_the_server() {
    let (server, events) = common::echo_server();
    let mut client = connect(server.local_addr());
    let id = events.open().id;
    common::assert_echo(&mut client, b"before the signal");
    epoll_server::stop_on_signals(&server.handle(), &[libc::SIGUSR1]).unwrap();

    let status = Command::new("kill")
        .args(["-USR1", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());

    // The signal alone stops the server: wait for the loop to end without calling stop.
    let (done_tx, done) = mpsc::channel();
    let handle = server.handle();
    thread::spawn(move || {
        let _ = done_tx.send(server.join());
    });
    let result = done
        .recv_timeout(common::TIMEOUT)
        .expect("the server did not stop on SIGUSR1");
    result.expect("join returns Ok");
    assert!(handle.is_stop_requested());
    assert_eq!(read_to_eof(&mut client).unwrap(), b"");
    assert!(matches!(events.closed(id), CloseReason::Shutdown));
    events.wait("on_shutdown", |e| {
        matches!(e, Event::Shutdown).then_some(())
    });
}

#[test]
fn run_on_the_calling_thread_returns_after_a_stop_from_another_thread() {
    let (handler, events) = Recorder::echo();
    let server = Builder::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .build(handler)
        .unwrap();
    let addr = server.local_addr();
    let handle = server.handle();
    let client = thread::spawn(move || {
        let mut client = connect(addr);
        common::assert_echo(&mut client, b"served by run()");
        handle.stop();
        read_to_eof(&mut client).unwrap()
    });
    server.run().expect("run returns Ok after a stop");
    assert_eq!(client.join().unwrap(), b"");
    let rest = events.drain_until_gone();
    assert!(
        matches!(rest.last(), Some(Event::Shutdown)),
        "on_shutdown must come last: {rest:?}"
    );
}

#[test]
fn stop_before_run_returns_at_once() {
    let (handler, events) = Recorder::echo();
    let server = Builder::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .build(handler)
        .unwrap();
    server.handle().stop();
    let start = Instant::now();
    server.run().expect("run returns Ok");
    assert!(start.elapsed() < Duration::from_secs(2));
    let all = events.drain_until_gone();
    assert!(
        matches!(all.as_slice(), [Event::Listening(_), Event::Shutdown]),
        "expected on_listening then on_shutdown: {all:?}"
    );
}

/// A server built and dropped without ever running has nothing to stop: waiting for it
/// (`ServerHandle::stopped`) returns at once instead of hanging.
#[test]
fn stopped_resolves_for_a_server_dropped_without_running() {
    let (handler, _events) = Recorder::echo();
    let server = Builder::new()
        .bind("127.0.0.1:0")
        .and_then(|b| b.build(handler))
        .expect("build the server");
    let handle = server.handle();
    drop(server);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        futures::executor::block_on(handle.stopped());
        let _ = tx.send(handle.is_finished());
    });
    assert_eq!(rx.recv_timeout(common::TIMEOUT), Ok(true));
}
