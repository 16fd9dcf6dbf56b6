//! Thread-safe handles: what can cross threads, sends from other threads, closing and pausing
//! through a handle.

mod common;

use common::{assert_echo, assert_pattern, connect, pattern, read_to_eof, Event, Recorder};
use epoll_server::{
    Builder, CloseReason, ConnHandle, SendError, Server, ServerHandle, ServerThread,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}

#[test]
fn handles_can_cross_threads() {
    assert_send::<ServerHandle>();
    assert_sync::<ServerHandle>();
    assert_send::<ConnHandle>();
    assert_sync::<ConnHandle>();
    assert_send::<Server>();
    assert_send::<ServerThread>();
    assert_sync::<ServerThread>();
    assert_send::<SendError>();
    assert_sync::<SendError>();
    assert_send::<CloseReason>();
    assert_sync::<CloseReason>();
}

/// A server whose `on_open` hands each connection's handle to the test.
fn server_with_handles(
    builder: Builder,
) -> (ServerThread, common::Events, mpsc::Receiver<ConnHandle>) {
    let (tx, handles) = mpsc::channel();
    let (handler, events) = Recorder::echo();
    let handler = handler.on_open(move |ctx, info| {
        let _ = tx.send(ctx.handle(info.id).unwrap());
    });
    (common::spawn(builder, handler), events, handles)
}

#[test]
fn sends_from_other_threads_arrive_in_order() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 500;
    let (server, _events, handles) = server_with_handles(Builder::new());
    let client = connect(server.local_addr());
    let handle = handles.recv_timeout(common::TIMEOUT).unwrap();

    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let handle = handle.clone();
            thread::spawn(move || {
                for seq in 0..PER_THREAD {
                    handle
                        .send(format!("{t}:{seq:05}\n"))
                        .expect("send from another thread");
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }

    // Each thread's messages arrive whole and in the order it sent them.
    let mut next = [0usize; THREADS];
    let mut reader = BufReader::new(client);
    let mut line = String::new();
    for _ in 0..THREADS * PER_THREAD {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let (t, seq) = line
            .trim_end()
            .split_once(':')
            .unwrap_or_else(|| panic!("mangled line {line:?}"));
        let (t, seq): (usize, usize) = (t.parse().unwrap(), seq.parse().unwrap());
        assert_eq!(seq, next[t], "thread {t}: message out of order");
        next[t] += 1;
    }
    assert_eq!(next, [PER_THREAD; THREADS]);
    server.stop_and_join().unwrap();
}

#[test]
fn close_through_handle_writes_queued_output_then_closes() {
    // More than the loopback socket buffers take, so part of it is queued at the close.
    const LEN: usize = 8 * 1024 * 1024;
    let builder = Builder::new().output_limits(1024 * 1024, 256 * 1024, 32 * 1024 * 1024);
    let (server, events, handles) = server_with_handles(builder);
    let mut client = connect(server.local_addr());
    let handle = handles.recv_timeout(common::TIMEOUT).unwrap();
    let closer = thread::spawn(move || {
        handle.send(pattern(0, LEN)).unwrap();
        handle.send("the end").unwrap();
        handle.close();
        handle
    });
    let handle = closer.join().unwrap();
    let got = read_to_eof(&mut client).expect("everything, then EOF");
    assert_eq!(got.len(), LEN + 7);
    assert_pattern(0, &got[..LEN]);
    assert_eq!(&got[LEN..], b"the end");
    assert!(matches!(events.closed(handle.id()), CloseReason::Local));
    assert!(handle.is_closed());
    assert_eq!(handle.queued_bytes(), 0);
    server.stop_and_join().unwrap();
}

#[test]
fn paused_connection_is_not_read_until_resumed() {
    let (server, events, handles) = server_with_handles(Builder::new());
    let mut client = connect(server.local_addr());
    let handle = handles.recv_timeout(common::TIMEOUT).unwrap();
    let id = events.open().id;
    assert_echo(&mut client, b"before the pause");
    events.message(id);

    handle.pause_reading();
    // Commands run in order: once this marker arrives, the pause is in force.
    handle.send("paused\n").unwrap();
    let mut marker = [0u8; 7];
    client.read_exact(&mut marker).unwrap();
    assert_eq!(&marker, b"paused\n");

    client.write_all(b"held back").unwrap();
    events.assert_none_within(
        Duration::from_millis(300),
        "a message was delivered while reading was paused",
        |e| matches!(e, Event::Message(..)),
    );

    handle.resume_reading();
    assert_eq!(events.messages(id, 9), b"held back");
    let mut echoed = [0u8; 9];
    client.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"held back");
    assert_echo(&mut client, b"after the resume");
    server.stop_and_join().unwrap();
}

#[test]
fn server_handle_stops_from_another_thread_and_reports_state() {
    let (server, events) = common::echo_server();
    let handle = server.handle();
    assert!(!handle.is_stop_requested());
    assert!(!handle.is_finished());
    let mut client = connect(server.local_addr());
    assert_echo(&mut client, b"running");

    let stopper = thread::spawn({
        let handle = handle.clone();
        move || handle.stop()
    });
    stopper.join().unwrap();
    assert!(handle.is_stop_requested());
    server.join().expect("the loop returns Ok");
    assert!(handle.is_finished());
    events.wait("on_shutdown", |e| {
        matches!(e, Event::Shutdown).then_some(())
    });
    // Stopping again is harmless.
    handle.stop();
}

#[test]
fn dropping_the_server_thread_stops_it() {
    let (server, events) = common::echo_server();
    let handle = server.handle();
    let mut client = connect(server.local_addr());
    assert_echo(&mut client, b"running");
    drop(server);
    assert!(handle.is_finished(), "drop waits for the loop to end");
    assert_eq!(read_to_eof(&mut client).unwrap(), b"");
    events.wait("on_shutdown", |e| {
        matches!(e, Event::Shutdown).then_some(())
    });
}

#[test]
fn queued_bytes_return_to_zero_when_a_peer_resets_with_sends_in_flight() {
    // Messages sent through a handle travel to the reactor thread before they are queued for
    // writing. If the peer resets while some are on their way, they are dropped with the rest
    // and must not stay counted.
    //
    // To line this up, the handler holds the reactor thread in the `on_close` of another
    // connection (late in a loop turn, after the turn took its commands); meanwhile the test
    // sends through A's handle and resets A. The next turn then sees A's reset before the
    // messages sent to it.
    let (blocked_tx, blocked) = mpsc::channel();
    let (unblock_tx, unblock) = mpsc::channel::<()>();
    let (handles_tx, handles) = mpsc::channel();
    let (handler, events) = Recorder::echo();
    let mut armed = true;
    let handler = handler
        .on_open(move |ctx, info| {
            let _ = handles_tx.send(ctx.handle(info.id).unwrap());
        })
        .on_close(move |_ctx, _conn| {
            if std::mem::take(&mut armed) {
                blocked_tx.send(()).unwrap();
                let _ = unblock.recv_timeout(common::TIMEOUT);
            }
        });
    let server = common::spawn(Builder::new(), handler.quiet());
    let a = connect(server.local_addr());
    let a_handle: ConnHandle = handles.recv_timeout(common::TIMEOUT).unwrap();
    let a_id = events.open().id;
    let c = connect(server.local_addr());
    handles.recv_timeout(common::TIMEOUT).unwrap();

    drop(c);
    blocked.recv_timeout(common::TIMEOUT).unwrap();
    // A command on its way makes the sends queue behind it instead of writing through to the
    // socket, so they are in flight when the reset is seen.
    a_handle.pause_reading();
    for _ in 0..100 {
        a_handle.send(vec![b'x'; 1024]).unwrap();
    }
    assert_eq!(a_handle.queued_bytes(), 100 * 1024);
    common::reset(a);
    unblock_tx.send(()).unwrap();

    let reason = events.closed(a_id);
    assert!(matches!(reason, CloseReason::Reset), "closed with {reason}");
    assert!(a_handle.is_closed());
    assert_eq!(
        a_handle.queued_bytes(),
        0,
        "bytes still counted as queued on a connection closed by a reset"
    );
    let mut b = connect(server.local_addr());
    assert_echo(&mut b, b"the reactor goes on");
    server.stop_and_join().unwrap();
}

#[test]
fn peer_reset_is_noticed_while_reading_is_paused() {
    let (server, events, handles) = server_with_handles(Builder::new());
    let mut client = connect(server.local_addr());
    let handle = handles.recv_timeout(common::TIMEOUT).unwrap();
    let id = events.open().id;
    handle.pause_reading();
    handle.send("paused\n").unwrap();
    let mut marker = [0u8; 7];
    client.read_exact(&mut marker).unwrap();

    client.write_all(b"never read").unwrap();
    common::reset(client);
    let reason = events.closed(id);
    assert!(matches!(reason, CloseReason::Reset), "closed with {reason}");
    assert!(handle.is_closed());
    server.stop_and_join().unwrap();
}
