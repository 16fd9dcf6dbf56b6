//! Output to a peer that does not read is bounded: sends past the hard limit are refused and
//! handed back, echo-style servers stop reading instead of buffering, other connections are
//! served meanwhile, and everything accepted arrives once the peer reads.

mod common;

use common::{assert_echo, assert_pattern, connect, pattern, read_to_eof, Recorder};
use epoll_server::{Builder, CloseReason, ConnHandle, SendErrorKind};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

const HIGH: usize = 256 * 1024;
const LOW: usize = 64 * 1024;
const HARD: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;

#[test]
fn handle_sends_past_hard_limit_are_refused_and_everything_accepted_arrives() {
    let (handles_tx, handles) = mpsc::channel::<ConnHandle>();
    let (handler, events) = Recorder::echo();
    let handler = handler.quiet().on_open(move |ctx, info| {
        let _ = handles_tx.send(ctx.handle(info.id).unwrap());
    });
    let server = common::spawn(Builder::new().output_limits(HIGH, LOW, HARD), handler);
    let addr = server.local_addr();

    // A never reads (until the end); B is an ordinary echo client.
    let mut a = connect(addr);
    let a_handle = handles.recv_timeout(common::TIMEOUT).unwrap();
    let mut b = connect(addr);
    let _b_handle = handles.recv_timeout(common::TIMEOUT).unwrap();

    let mut accepted = 0;
    let mut refused = None;
    // Bounded: 64 MiB is far more than the kernel buffers plus the hard limit.
    for _ in 0..(64 * 1024 * 1024 / CHUNK) {
        let chunk = pattern(accepted, CHUNK);
        match a_handle.send(chunk.clone()) {
            Ok(()) => accepted += CHUNK,
            Err(e) => {
                assert_eq!(e.kind(), SendErrorKind::Full, "refused for {e}");
                assert!(
                    e.into_inner() == chunk,
                    "the refused message is not handed back whole"
                );
                refused = Some(accepted);
                break;
            }
        }
        let queued = a_handle.queued_bytes();
        assert!(queued <= HARD, "queued {queued} bytes, hard limit {HARD}");
    }
    assert!(
        refused.is_some(),
        "64 MiB to a peer that never reads were all accepted"
    );
    assert!(a_handle.queued_bytes() <= HARD);

    // The server still serves others while A's output is stuck.
    assert_echo(&mut b, &pattern(7, 100_000));

    // A refused send left no trace: the stream is exactly the accepted chunks, in order.
    a_handle.close();
    let got = read_to_eof(&mut a).expect("read everything accepted, then EOF");
    assert_eq!(got.len(), accepted, "bytes received vs accepted");
    assert_pattern(0, &got);
    let a_id = a_handle.id();
    assert!(matches!(events.closed(a_id), CloseReason::Local));
    assert_echo(&mut b, b"still here");
    server.stop_and_join().unwrap();
}

#[test]
fn context_sends_past_hard_limit_are_refused_and_handed_back() {
    let (report_tx, reports) = mpsc::channel();
    let (handler, events) = Recorder::new(move |ctx, conn, data| {
        if &data[..] != b"flood" {
            return;
        }
        let mut accepted = 0;
        let mut max_queued = 0;
        let mut refusal = None;
        for _ in 0..1024 {
            let chunk = pattern(accepted, CHUNK);
            match ctx.send(conn, chunk.clone()) {
                Ok(()) => accepted += CHUNK,
                Err(e) => {
                    refusal = Some((e.kind(), e.into_inner() == chunk));
                    break;
                }
            }
            max_queued = max_queued.max(ctx.queued_bytes(conn).unwrap());
        }
        ctx.close(conn);
        let _ = report_tx.send((accepted, max_queued, refusal));
    });
    let server = common::spawn(Builder::new().output_limits(HIGH, LOW, HARD), handler);
    let mut client = connect(server.local_addr());
    client.write_all(b"flood").unwrap();
    let (accepted, max_queued, refusal) = reports.recv_timeout(common::TIMEOUT).unwrap();
    assert_eq!(refusal, Some((SendErrorKind::Full, true)));
    assert!(max_queued <= HARD, "queued {max_queued}, hard limit {HARD}");
    assert!(
        accepted <= HARD && accepted > HARD - CHUNK,
        "accepted {accepted}"
    );

    let got = read_to_eof(&mut client).unwrap();
    assert_eq!(got.len(), accepted);
    assert_pattern(0, &got);
    let id = events.open().id;
    assert!(matches!(events.closed(id), CloseReason::Local));
    server.stop_and_join().unwrap();
}

#[test]
fn echo_stops_reading_from_a_peer_that_does_not_read_then_delivers_everything() {
    const TOTAL: usize = 16 * 1024 * 1024;
    const BUDGET: usize = 256 * 1024;
    let max_queued = Arc::new(AtomicUsize::new(0));
    let (paused_tx, paused) = mpsc::channel();
    let seen = max_queued.clone();
    let (handler, _events) = Recorder::new(move |ctx, conn, data| {
        common::echo(ctx, conn, data);
        if let Some(q) = ctx.queued_bytes(conn) {
            if seen.fetch_max(q, SeqCst) <= HIGH && q > HIGH {
                // First time above the high-water mark: reading from this peer pauses now.
                let _ = paused_tx.send(());
            }
        }
    });
    let builder = Builder::new()
        .output_limits(HIGH, LOW, 4 * 1024 * 1024)
        .read_budget(BUDGET)
        .pause_reading_on_backpressure(true);
    let server = common::spawn(builder, handler.quiet());
    let addr = server.local_addr();

    let mut a = connect(addr);
    let mut writer = a.try_clone().unwrap();
    let write_all = thread::spawn(move || {
        for offset in (0..TOTAL).step_by(CHUNK) {
            writer.write_all(&pattern(offset, CHUNK))?;
        }
        Ok::<(), std::io::Error>(())
    });

    paused
        .recv_timeout(common::TIMEOUT)
        .expect("the server's output for a non-reading peer never passed the high-water mark");
    // While A does not read, the server must not go on reading and queueing.
    thread::sleep(Duration::from_millis(100));
    let mut b = connect(addr);
    assert_echo(&mut b, &pattern(3, 50_000));
    let during = max_queued.load(SeqCst);
    assert!(
        during <= HIGH + BUDGET,
        "queued {during} bytes while paused; high water {HIGH} + budget {BUDGET}"
    );

    let mut got = vec![0u8; CHUNK];
    for offset in (0..TOTAL).step_by(CHUNK) {
        a.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("reading at {offset}: {e}"));
        assert_pattern(offset, &got);
    }
    write_all
        .join()
        .unwrap()
        .expect("the writer got everything out");
    let max = max_queued.load(SeqCst);
    assert!(
        max <= HIGH + BUDGET,
        "queued {max} bytes; high water {HIGH} + budget {BUDGET}"
    );
    assert_echo(&mut a, b"and after");
    server.stop_and_join().unwrap();
}

#[test]
fn peer_reset_with_output_queued_closes_with_reset_and_frees_the_queue() {
    let (handles_tx, handles) = mpsc::channel::<ConnHandle>();
    let (handler, events) = Recorder::echo();
    let handler = handler.quiet().on_open(move |ctx, info| {
        // Far more than the socket buffers take from a peer that does not read.
        ctx.send(info.id, pattern(0, 16 * 1024 * 1024)).unwrap();
        let _ = handles_tx.send(ctx.handle(info.id).unwrap());
    });
    let builder = Builder::new().output_limits(HIGH, LOW, 32 * 1024 * 1024);
    let server = common::spawn(builder, handler);
    let client = connect(server.local_addr());
    let handle = handles.recv_timeout(common::TIMEOUT).unwrap();
    let id = events.open().id;
    assert!(handle.queued_bytes() > 0, "nothing stayed queued");

    common::reset(client);
    let reason = events.closed(id);
    assert!(matches!(reason, CloseReason::Reset), "closed with {reason}");
    assert!(handle.is_closed());
    assert_eq!(
        handle.queued_bytes(),
        0,
        "the dropped queue is still counted"
    );
    let err = handle
        .send("after the reset")
        .expect_err("send after reset");
    assert_eq!(err.kind(), SendErrorKind::Closed);
    server.stop_and_join().unwrap();
}

#[test]
fn echo_paused_for_backpressure_still_sees_the_peers_eof() {
    const TOTAL: usize = 8 * 1024 * 1024;
    let (paused_tx, paused) = mpsc::channel();
    let mut signalled = false;
    let (handler, events) = Recorder::new(move |ctx, conn, data| {
        common::echo(ctx, conn, data);
        if !signalled && ctx.queued_bytes(conn).is_some_and(|q| q > HIGH) {
            signalled = true;
            let _ = paused_tx.send(());
        }
    });
    let builder = Builder::new().output_limits(HIGH, LOW, 4 * 1024 * 1024);
    let server = common::spawn(builder, handler.quiet());
    let mut client = connect(server.local_addr());
    let mut writer = client.try_clone().unwrap();
    // Write everything, then end the stream, without reading anything meanwhile.
    let write_all = thread::spawn(move || {
        for offset in (0..TOTAL).step_by(CHUNK) {
            writer.write_all(&pattern(offset, CHUNK))?;
        }
        writer.shutdown(std::net::Shutdown::Write)
    });
    paused
        .recv_timeout(common::TIMEOUT)
        .expect("the server's output never passed the high-water mark");
    let id = events.open().id;

    // Now read: everything comes back, then the server closes after its last echo.
    let got = read_to_eof(&mut client).expect("all echoed bytes, then EOF");
    write_all
        .join()
        .unwrap()
        .expect("the writer got everything out");
    assert_eq!(got.len(), TOTAL);
    assert_pattern(0, &got);
    assert!(matches!(events.closed(id), CloseReason::PeerClosed));
    server.stop_and_join().unwrap();
}
