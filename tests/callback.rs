//! The callback face: which callbacks run, in which order, with which arguments; the idle tick;
//! answers that must outlive the peer's end of file or a local close.

mod common;

use common::{assert_pattern, connect, pattern, read_to_eof, Event, Recorder};
use epoll_server::{Builder, CloseReason};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

/// Output limits roomy enough to queue a payload larger than the loopback socket buffers
/// absorb (about 4 MiB), so that part of it is still queued when the connection ends.
fn big_output() -> Builder {
    Builder::new().output_limits(1024 * 1024, 256 * 1024, 32 * 1024 * 1024)
}

#[test]
fn callbacks_run_in_order_for_one_connection() {
    let (handler, events) = Recorder::echo();
    let server = common::spawn(Builder::new(), handler);

    // on_listening comes first, with the real bound address.
    match events.next() {
        Event::Listening(addrs) => assert_eq!(addrs, server.local_addrs()),
        other => panic!("expected on_listening first, got {other:?}"),
    }

    let mut client = connect(server.local_addr());
    let info = match events.next() {
        Event::Open(info) => info,
        other => panic!("expected on_open, got {other:?}"),
    };
    assert_eq!(
        info.peer,
        client.local_addr().unwrap(),
        "on_open peer address"
    );
    assert_eq!(
        info.local,
        client.peer_addr().unwrap(),
        "on_open local address"
    );

    // Messages arrive in order; each is answered before the next is sent, so TCP cannot
    // merge them.
    for word in ["one", "two", "three", "four"] {
        common::assert_echo(&mut client, word.as_bytes());
        match events.next() {
            Event::Message(id, data) => {
                assert_eq!(id, info.id);
                assert_eq!(&data[..], word.as_bytes());
            }
            other => panic!("expected on_message({word}), got {other:?}"),
        }
    }

    client.shutdown(Shutdown::Write).unwrap();
    match events.next() {
        Event::Close(id, reason) => {
            assert_eq!(id, info.id);
            assert!(matches!(reason, CloseReason::PeerClosed), "{reason}");
        }
        other => panic!("expected on_close, got {other:?}"),
    }
    assert_eq!(read_to_eof(&mut client).unwrap(), b"");

    server.stop_and_join().expect("server stops cleanly");
    let rest = events.drain_until_gone();
    assert!(
        matches!(rest.as_slice(), [Event::Shutdown]),
        "after stop, expected only on_shutdown, got {rest:?}"
    );
}

#[test]
fn idle_tick_fires_while_nothing_happens() {
    let tick = Duration::from_millis(50);
    let (handler, events) = Recorder::echo();
    let server = common::spawn(Builder::new().tick(tick), handler);
    events.wait("on_listening", |e| {
        matches!(e, Event::Listening(_)).then_some(())
    });

    let start = Instant::now();
    for _ in 0..3 {
        events.wait("on_idle", |e| matches!(e, Event::Idle).then_some(()));
    }
    // Three ticks cannot come sooner than three intervals (minus timer rounding).
    assert!(
        start.elapsed() >= tick * 2,
        "3 ticks in {:?}: the tick does not wait its interval",
        start.elapsed()
    );
    server.stop_and_join().unwrap();
}

#[test]
fn idle_tick_does_not_fire_while_a_connection_is_busy() {
    let tick = Duration::from_millis(300);
    let (handler, events) = Recorder::echo();
    let server = common::spawn(Builder::new().tick(tick), handler.quiet());
    let mut client = connect(server.local_addr());
    events.open();
    // Wait for a first tick so the count below starts from a known phase.
    events.wait("first on_idle", |e| matches!(e, Event::Idle).then_some(()));

    // Traffic every few milliseconds for twice the interval: no tick may fire meanwhile. After
    // each echo, whatever the handler reported before answering is already in the channel.
    let busy_until = Instant::now() + tick * 2;
    let mut idle = 0;
    while Instant::now() < busy_until {
        common::assert_echo(&mut client, b"x");
        while let Some(e) = events.next_within(Duration::ZERO) {
            idle += usize::from(matches!(e, Event::Idle));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(idle, 0, "on_idle fired while a connection was busy");
    // Once traffic stops, the tick comes back.
    events.wait("on_idle after traffic", |e| {
        matches!(e, Event::Idle).then_some(())
    });
    server.stop_and_join().unwrap();
}

#[test]
fn answer_to_last_message_before_eof_is_delivered() {
    let (handler, events) = Recorder::new(|ctx, conn, data| {
        if &data[..] == b"ping" {
            ctx.send(conn, "pong")
                .expect("the connection is still open");
        }
    });
    let server = common::spawn(Builder::new(), handler);
    let mut client = connect(server.local_addr());
    client.write_all(b"ping").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut client).unwrap(), b"pong");

    let id = events.open().id;
    assert!(matches!(events.closed(id), CloseReason::PeerClosed));
    server.stop_and_join().unwrap();
}

#[test]
fn large_answer_to_last_message_before_eof_is_delivered() {
    // More than the socket buffers take: part of it is still queued when the EOF is seen.
    const LEN: usize = 8 * 1024 * 1024;
    let (handler, events) = Recorder::new(|ctx, conn, data| {
        if &data[..] == b"send it all" {
            ctx.send(conn, pattern(0, LEN))
                .expect("the connection is still open");
        }
    });
    let server = common::spawn(big_output(), handler);
    let mut client = connect(server.local_addr());
    client.write_all(b"send it all").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let got = read_to_eof(&mut client).expect("the whole answer, then EOF");
    assert_eq!(got.len(), LEN);
    assert_pattern(0, &got);
    let id = events.open().id;
    assert!(matches!(events.closed(id), CloseReason::PeerClosed));
    server.stop_and_join().unwrap();
}

#[test]
fn peer_reset_closes_with_reset_reason() {
    let (handler, events) = Recorder::echo();
    let server = common::spawn(Builder::new(), handler.quiet());
    let mut client = connect(server.local_addr());
    let id = events.open().id;
    common::assert_echo(&mut client, b"about to reset");
    common::reset(client);
    let reason = events.closed(id);
    assert!(matches!(reason, CloseReason::Reset), "closed with {reason}");
    server.stop_and_join().unwrap();
}

#[test]
fn close_through_context_writes_queued_output_first() {
    // Larger than the socket buffers take, so part of it is still queued at the close.
    const LEN: usize = 8 * 1024 * 1024;
    let (handler, events) = Recorder::new(|ctx, conn, data| {
        if &data[..] == b"bye" {
            ctx.send(conn, pattern(0, LEN)).expect("queue the payload");
            ctx.send(conn, "end").expect("queue the trailer");
            ctx.close(conn);
            // Closing stops further sends at once.
            let refused = ctx.send(conn, "late").expect_err("send after close");
            assert_eq!(refused.kind(), epoll_server::SendErrorKind::Closed);
        }
    });
    let server = common::spawn(big_output(), handler);
    let mut client = connect(server.local_addr());
    client.write_all(b"bye").unwrap();
    let data = read_to_eof(&mut client).expect("read the payload then EOF");
    assert_eq!(data.len(), LEN + 3, "bytes before EOF");
    assert_pattern(0, &data[..LEN]);
    assert_eq!(&data[LEN..], b"end");

    let id = events.open().id;
    assert!(matches!(events.closed(id), CloseReason::Local));
    server.stop_and_join().unwrap();
}

#[test]
fn greeting_sent_in_on_open_arrives_first() {
    let (handler, events) = Recorder::echo();
    let handler = handler.on_open(|ctx, info| {
        ctx.send(info.id, format!("hello {}\n", info.peer))
            .expect("send in on_open");
    });
    let server = common::spawn(Builder::new(), handler);
    let mut client = connect(server.local_addr());
    let expected = format!("hello {}\n", client.local_addr().unwrap());
    let mut greeting = vec![0u8; expected.len()];
    client.read_exact(&mut greeting).unwrap();
    assert_eq!(greeting, expected.as_bytes());
    common::assert_echo(&mut client, b"after the greeting");
    events.open();
    server.stop_and_join().unwrap();
}

#[test]
fn idle_tick_does_not_fire_while_draining_a_connection() {
    // One-byte reads and budget: draining what one write put in the socket takes a loop turn
    // per byte, turns in which no new epoll event arrives, yet the server is anything but idle.
    const LEN: usize = 48 * 1024;
    let tick = Duration::from_millis(20);
    let (handler, events) = Recorder::new(|_ctx, _conn, _data| {});
    let builder = Builder::new().tick(tick).read_buffer_size(1).read_budget(1);
    let server = common::spawn(builder, handler);
    let mut client = connect(server.local_addr());
    events.open();
    events.wait("first on_idle", |e| matches!(e, Event::Idle).then_some(()));

    // Small enough for the socket buffers: the client is done before the server starts.
    let start = Instant::now();
    client.write_all(&pattern(0, LEN)).unwrap();
    // Count the ticks reported between the first and the last byte's delivery (one channel,
    // so the order is the reactor's).
    let (mut received, mut idle, mut idle_before_first) = (0, 0, 0);
    while received < LEN {
        match events.next() {
            Event::Message(_, data) => received += data.len(),
            Event::Idle if received == 0 => idle_before_first += 1,
            Event::Idle => idle += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let busy = start.elapsed();
    eprintln!("received {LEN} bytes in {busy:?}; {idle_before_first} ticks before the first");
    assert_eq!(
        idle, 0,
        "on_idle fired {idle} times while reading {LEN} bytes for {busy:?} (tick {tick:?})"
    );
    server.stop_and_join().unwrap();
}
