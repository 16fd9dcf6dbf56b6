//! A panicking handler closes the one connection it concerned, is reported through `on_error`
//! and `on_close`, and never takes the server down.

mod common;

use common::{assert_echo, connect, is_reset, Event, Recorder};
use epoll_server::{Builder, CloseReason};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

/// Reads until the server ends the connection: end of file or a reset are both fine.
fn assert_connection_ends(stream: &mut std::net::TcpStream) {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected {n} bytes from a connection that should close"),
        Err(e) if is_reset(&e) => {}
        Err(e) => panic!("connection did not end: {e}"),
    }
}

#[test]
fn panic_in_on_message_closes_only_that_connection() {
    let (handler, events) = Recorder::new(|ctx, conn, data| {
        if data.windows(4).any(|w| w == b"boom") {
            panic!("boom requested by the test");
        }
        common::echo(ctx, conn, data);
    });
    let server = common::spawn(Builder::new(), handler.quiet());
    let addr = server.local_addr();

    let mut a = connect(addr);
    let a_id = events.open().id;
    let mut b = connect(addr);
    let b_id = events.open().id;
    assert_echo(&mut a, b"fine so far");

    a.write_all(b"boom").unwrap();
    assert_connection_ends(&mut a);

    // on_error first, naming the panic, then on_close with the error.
    let msg = match events.next() {
        Event::Error(Some(id), msg) if id == a_id => msg,
        other => panic!("expected on_error({a_id}), got {other:?}"),
    };
    assert!(msg.contains("panicked"), "on_error message: {msg}");
    assert!(
        msg.contains("boom requested by the test"),
        "on_error message: {msg}"
    );
    match events.next() {
        Event::Close(id, CloseReason::Error(e)) if id == a_id => {
            assert!(e.to_string().contains("boom requested"), "close error: {e}")
        }
        other => panic!("expected on_close({a_id}, Error), got {other:?}"),
    }

    // Other connections, old and new, are still served.
    assert_echo(&mut b, b"b is unaffected");
    let mut c = connect(addr);
    assert_echo(&mut c, b"new connections too");
    events.assert_none_within(
        std::time::Duration::ZERO,
        "b closed",
        |e| matches!(e, Event::Close(id, _) if *id == b_id),
    );
    server
        .stop_and_join()
        .expect("the reactor survived the panic");
}

#[test]
fn panic_in_on_open_closes_that_connection() {
    let armed = Arc::new(AtomicBool::new(true));
    let trigger = armed.clone();
    let (handler, events) = Recorder::echo();
    let handler = handler.on_open(move |_ctx, _info| {
        if trigger.swap(false, SeqCst) {
            panic!("on_open refuses the first connection");
        }
    });
    let server = common::spawn(Builder::new(), handler);
    let addr = server.local_addr();

    let mut a = connect(addr);
    let a_id = events.open().id;
    assert_connection_ends(&mut a);
    let msg = events.wait("on_error", |e| match e {
        Event::Error(Some(id), msg) if *id == a_id => Some(msg.clone()),
        _ => None,
    });
    assert!(msg.contains("on_open refuses"), "on_error message: {msg}");
    assert!(matches!(events.closed(a_id), CloseReason::Error(_)));

    let mut b = connect(addr);
    assert_echo(&mut b, b"the second connection is served");
    server.stop_and_join().unwrap();
}

#[test]
fn panic_in_on_idle_is_reported_and_the_server_goes_on() {
    let armed = Arc::new(AtomicBool::new(true));
    let trigger = armed.clone();
    let (handler, events) = Recorder::echo();
    let handler = handler.on_idle(move |_ctx| {
        if trigger.swap(false, SeqCst) {
            panic!("idle tick panics once");
        }
    });
    let server = common::spawn(
        Builder::new().tick(std::time::Duration::from_millis(20)),
        handler,
    );
    let msg = events.wait("on_error(None)", |e| match e {
        Event::Error(None, msg) => Some(msg.clone()),
        _ => None,
    });
    assert!(
        msg.contains("idle tick panics once"),
        "on_error message: {msg}"
    );
    // The tick keeps coming and connections are served.
    events.wait("another on_idle", |e| {
        matches!(e, Event::Idle).then_some(())
    });
    let mut client = connect(server.local_addr());
    assert_echo(&mut client, b"served after the panic");
    server.stop_and_join().unwrap();
}
