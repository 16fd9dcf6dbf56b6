//! `ServerHandle::stats`: exact counters under a scripted load on real sockets.

mod common;

use common::{assert_echo, connect, Recorder};
use epoll_server::{Builder, CloseReason, ServerHandle, Stats};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Polls (bounded) until the counters satisfy `ok` and stay the same over three snapshots
/// 20 ms apart (the load is scripted, so they settle), and returns them; fails with the last
/// snapshot. The reactor updates a counter just after the system call the client may already
/// have seen, so tests wait for the counters, then compare them exactly.
#[track_caller]
fn stats_when(handle: &ServerHandle, what: &str, ok: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + common::TIMEOUT;
    let mut same = 0;
    let mut last = handle.stats();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let s = handle.stats();
        same = if s == last && ok(&s) { same + 1 } else { 0 };
        if same == 2 {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: counters are {s:#?}");
        last = s;
    }
}

#[test]
fn connections_bytes_and_close_reasons_are_counted_exactly() {
    // "close" makes the server close that connection; everything else is echoed.
    let (handler, _events) = Recorder::new(|ctx, conn, data| {
        if &data[..] == b"close" {
            ctx.close(conn);
        } else {
            common::echo(ctx, conn, data);
        }
    });
    let server = common::spawn(Builder::new(), handler);
    let handle = server.handle();
    let fresh = handle.stats();
    assert_eq!(
        (fresh.open, fresh.accepted, fresh.closed.total()),
        (0, 0, 0)
    );
    assert_eq!(fresh.event_buffer, 4096);

    let mut a = connect(server.local_addr());
    let mut b = connect(server.local_addr());
    let mut c = connect(server.local_addr());
    assert_echo(&mut a, &common::pattern(0, 100_000));
    assert_echo(&mut b, b"hello");
    assert_echo(&mut c, b"12345");
    let total = 100_000 + 5 + 5;
    let s = stats_when(&handle, "after the echoes", |s| s.bytes_written == total);
    assert_eq!((s.open, s.accepted), (3, 3));
    assert_eq!(s.bytes_read, total);
    assert_eq!(s.queued_output_bytes, 0);
    assert_eq!(s.paused_for_backpressure, 0);
    assert!(s.loop_turns > 0 && s.events >= 3, "{s:?}");

    // One of each ending: the peer's end of file, a reset, a local close.
    drop(a);
    common::reset(b);
    c.write_all(b"close").unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    let s = stats_when(&handle, "after the closes", |s| s.closed.total() == 3);
    assert_eq!(s.open, 0);
    assert_eq!(s.accepted, 3);
    assert_eq!(
        (s.closed.peer_closed, s.closed.reset, s.closed.local),
        (1, 1, 1)
    );
    assert_eq!(
        (s.closed.error, s.closed.shutdown, s.closed.timed_out),
        (0, 0, 0)
    );
    assert_eq!(s.bytes_read, total + 5);
    assert_eq!(s.accept_errors, 0);
    assert_eq!(s.accept_backoffs, 0);
    server.stop_and_join().unwrap();
}

#[test]
fn queued_output_and_backpressure_are_gauges() {
    const LEN: usize = 8 * 1024 * 1024;
    let (handler, events) = Recorder::echo();
    let handler = handler.quiet();
    let builder = Builder::new().output_limits(256 * 1024, 64 * 1024, 64 * 1024 * 1024);
    let server = common::spawn(builder, handler);
    let handle = server.handle();
    let mut client = connect(server.local_addr());
    let id = events.open().id;
    // The client writes without reading: the echo backs up, the server stops reading it.
    let mut writer = client.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&common::pattern(0, LEN));
    });
    let s = stats_when(&handle, "paused for backpressure", |s| {
        s.paused_for_backpressure == 1
    });
    assert!(s.queued_output_bytes > 64 * 1024, "{s:?}");
    assert_eq!(
        s.bytes_read,
        s.bytes_written + s.queued_output_bytes,
        "every byte read is queued or written: {s:?}"
    );
    // Now read everything: the queue drains and reading resumes.
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = vec![0u8; LEN];
    client.read_exact(&mut got).unwrap();
    common::assert_pattern(0, &got);
    sender.join().unwrap();
    let s = stats_when(&handle, "drained", |s| s.bytes_written == LEN as u64);
    assert_eq!(s.queued_output_bytes, 0);
    assert_eq!(s.paused_for_backpressure, 0);
    assert_eq!(s.bytes_read, LEN as u64);
    drop(client);
    assert!(matches!(events.closed(id), CloseReason::PeerClosed));
    let s = stats_when(&handle, "closed", |s| s.open == 0);
    assert_eq!((s.accepted, s.closed.peer_closed), (1, 1));
    server.stop_and_join().unwrap();
}

#[test]
fn a_lagging_async_consumer_counts_as_backpressure() {
    let server = Builder::new()
        .inbound_high_water(64 * 1024)
        .bind_async("127.0.0.1:0")
        .and_then(|b| b.build_async())
        .unwrap();
    let mut incoming = server.incoming();
    let running = server.spawn().unwrap();
    let handle = running.handle();
    let mut client = connect(running.local_addr());
    let conn = futures::executor::block_on(futures::StreamExt::next(&mut incoming)).unwrap();
    // Nobody polls the stream: the reactor parks what does not fit and stops reading.
    let mut writer = client.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&vec![7u8; 4 * 1024 * 1024]);
        let _ = writer.shutdown(std::net::Shutdown::Write);
    });
    stats_when(&handle, "paused for the consumer", |s| {
        s.paused_for_backpressure == 1
    });
    // Dropping the connection closes it (locally): the pause is no longer counted.
    drop(conn);
    sender.join().unwrap();
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    let s = stats_when(&handle, "closed", |s| s.open == 0);
    assert_eq!(s.paused_for_backpressure, 0);
    assert_eq!((s.closed.total(), s.closed.local), (1, 1));
    running.stop_and_join().unwrap();
}

#[test]
fn an_idle_server_gives_back_its_grown_event_buffer() {
    // Regression: the buffer was only halved when a later wait returned, so a server that went
    // fully idle after a burst kept the grown buffer for as long as it stayed idle.
    let (handler, _events) = Recorder::echo();
    let server = common::spawn(
        Builder::new()
            .event_capacity(4, 1024)
            .event_shrink_after(Duration::from_millis(100)),
        handler.quiet(),
    );
    let handle = server.handle();
    // A burst: 64 connections, each with a message waiting, fill the 4-entry buffer.
    let mut clients: Vec<_> = (0..64).map(|_| connect(server.local_addr())).collect();
    for c in clients.iter_mut() {
        c.write_all(b"x").unwrap();
    }
    for c in clients.iter_mut() {
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
    }
    let grown = stats_when(&handle, "after the burst", |s| s.bytes_written == 64);
    assert!(
        grown.event_buffer > 4,
        "the burst did not grow the buffer: {grown:?}"
    );
    // Then nothing at all happens: the buffer must come back to its initial size.
    stats_when(&handle, "while idle", |s| s.event_buffer == 4);
    drop(clients);
}
