//! A connection keeps 32-bit time stamps (its idle clock in milliseconds, its timer-wheel tick):
//! timeouts and timers stay right when those stamps wrap. The reactor's clock is started just
//! before each wrap point (a test hook), so the wrap happens during the test.

mod common;

use common::{connect, is_reset};
use epoll_server::{Builder, Bytes, CloseReason, ConnId, ConnInfo, Context, Handler};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// 2^32 milliseconds: where the idle clock's stamp wraps.
const MS_WRAP: u64 = 1 << 32;
/// Where the wheel's tick stamp wraps (ticks are 10 ms).
const TICK_WRAP_MS: u64 = (1 << 32) * 10;

/// Echoes, sets a 50 ms timer on open and on each firing, and reports timer firings and closes.
struct Timed {
    events: mpsc::Sender<(ConnId, Option<CloseReason>)>,
}

impl Handler for Timed {
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnInfo) {
        ctx.set_timer(conn.id, Duration::from_millis(50));
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let _ = self.events.send((conn, None));
        ctx.set_timer(conn, Duration::from_millis(50));
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        let _ = ctx.send(conn, data);
    }
    fn on_close(&mut self, _: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        let _ = self.events.send((conn, Some(reason)));
    }
}

/// Waits for the server to end `stream`; returns how long that took.
fn time_to_end(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    stream.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    let mut buf = [0u8; 16];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue, // an echo
            Err(e) if is_reset(&e) => return start.elapsed(),
            Err(e) => panic!("the connection did not end: {e}"),
        }
    }
}

/// With the clock started `ms_before_wrap` ms before `wrap_ms`: an idle connection times out
/// after its 400 ms (not before, and not a wrap later), a first-byte timeout too, a busy
/// connection outlives both, and a 50 ms timer keeps firing across the wrap.
fn timeouts_across(wrap_ms: u64, ms_before_wrap: u64) {
    let (tx, events) = mpsc::channel();
    let server = Builder::new()
        .clock_offset_for_tests(wrap_ms - ms_before_wrap)
        .idle_timeout(Duration::from_millis(400))
        .first_byte_timeout(Duration::from_millis(300))
        .bind("127.0.0.1:0")
        .unwrap()
        .build(Timed { events: tx })
        .unwrap()
        .spawn()
        .unwrap();
    let addr = server.local_addr();
    let mut silent = connect(addr); // first-byte timeout
    let mut idle = connect(addr);
    idle.write_all(b"x").unwrap(); // then the idle timeout
    let mut busy = connect(addr);
    let started = Instant::now();
    let busy_thread = std::thread::spawn(move || {
        // Keeps talking for 1.2 s: neither timeout may close it.
        while started.elapsed() < Duration::from_millis(1200) {
            busy.write_all(b"b").unwrap();
            let mut b = [0u8; 1];
            busy.read_exact(&mut b).unwrap();
            std::thread::sleep(Duration::from_millis(40));
        }
        busy
    });
    let silent_end = time_to_end(&mut silent);
    let idle_end = time_to_end(&mut idle);
    assert!(
        silent_end >= Duration::from_millis(250) && silent_end < Duration::from_secs(2),
        "first-byte timeout of 300 ms fired after {silent_end:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(390) && idle_end < Duration::from_secs(3),
        "idle timeout of 400 ms fired after {:?}",
        started.elapsed()
    );
    let busy = busy_thread.join().unwrap();
    // Timers fired across the wrap: every connection's 50 ms timer, several times.
    let mut firings = 0;
    let mut timed_out = 0;
    while let Ok((_, close)) = events.try_recv() {
        match close {
            None => firings += 1,
            Some(CloseReason::TimedOut) => timed_out += 1,
            Some(other) => panic!("unexpected close: {other:?}"),
        }
    }
    assert_eq!(timed_out, 2, "the silent and the idle connection");
    assert!(firings >= 10, "only {firings} timer firings in 1.2 s");
    drop(busy);
    server.stop_and_join().unwrap();
}

#[test]
fn timeouts_and_timers_hold_when_the_idle_clock_stamp_wraps() {
    timeouts_across(MS_WRAP, 200);
}

#[test]
fn timeouts_and_timers_hold_when_the_wheel_tick_stamp_wraps() {
    // The wheel's tick 2^32 (low bits 0) comes 200 ms in: an entry is never filed under it.
    timeouts_across(TICK_WRAP_MS, 200);
}
