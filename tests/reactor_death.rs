//! When the reactor thread dies (a bug, simulated with `ServerHandle::inject_panic`), nothing
//! that waits on it hangs: streams end or fail, sinks and flushes fail, `incoming` ends, and
//! joining the server reports the panic.

mod common_async;

use common_async::{connect, eventually, socket_queues, Watchdog};
use epoll_server::{Builder, Bytes};
use futures::{SinkExt, StreamExt};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const BOUND: Duration = Duration::from_secs(10);

// Reactor death (new API inject_panic): a polled stream, a sink blocked in poll_ready, a
// pending flush and a polled `incoming` all end or fail within 2 s; join() returns Err.
#[test]
fn everything_waiting_on_a_dead_reactor_ends_or_fails_within_two_seconds() {
    let _dog = Watchdog::new("reactor death", Duration::from_secs(60));
    let server = Builder::new()
        .output_limits(64 * KIB, 16 * KIB, 64 * MIB)
        .bind_async("127.0.0.1:0")
        .unwrap()
        .build_async()
        .unwrap();
    let addr = server.local_addr();
    let port = addr.port();
    let handle = server.handle();
    let mut incoming = server.incoming();
    let running = server.spawn().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (tx, outcomes) = mpsc::channel::<(&'static str, Result<String, String>, Instant)>();

    // Three peers that never read nor write.
    let mut accept = |what: &str| {
        let client = connect(addr);
        let conn = rt
            .block_on(async { tokio::time::timeout(BOUND, incoming.next()).await })
            .unwrap_or_else(|_| panic!("the {what} connection in time"))
            .expect("a connection");
        (client, conn)
    };
    let (_peer_a, conn_a) = accept("stream");
    let (_peer_b, conn_b) = accept("blocked sink");
    let (_peer_c, conn_c) = accept("pending flush");
    let (port_b, handle_b) = (conn_b.peer_addr().as_tcp().unwrap().port(), conn_b.handle());
    let (port_c, handle_c) = (conn_c.peer_addr().as_tcp().unwrap().port(), conn_c.handle());

    // A stream being polled.
    let done = tx.clone();
    rt.spawn(async move {
        let (mut inbound, _outbound) = conn_a.split();
        let outcome = match inbound.next().await {
            None => Ok("ended".to_string()),
            Some(Err(e)) => Ok(format!("failed: {e}")),
            Some(Ok(buf)) => Err(format!("{} unexpected bytes", buf.len())),
        };
        let _ = done.send(("stream", outcome, Instant::now()));
    });
    // A sink that fills the peer's buffers and then waits in poll_ready.
    let done = tx.clone();
    rt.spawn(async move {
        let (_inbound, mut outbound) = conn_b.split();
        let chunk = Bytes::from(vec![1u8; 64 * KIB]);
        let outcome = loop {
            if let Err(e) = outbound.feed(chunk.clone()).await {
                break Ok(format!("failed: {e}"));
            }
        };
        let _ = done.send(("sink", outcome, Instant::now()));
    });
    // A flush of more than the peer's buffers take.
    let done = tx.clone();
    rt.spawn(async move {
        let (_inbound, mut outbound) = conn_c.split();
        let outcome = match outbound.send(Bytes::from(vec![2u8; 8 * MIB])).await {
            Ok(()) => Err("the flush of unwritten bytes succeeded".to_string()),
            Err(e) => Ok(format!("failed: {e}")),
        };
        let _ = done.send(("flush", outcome, Instant::now()));
    });
    // `incoming` being polled.
    let done = tx.clone();
    rt.spawn(async move {
        let outcome = match incoming.next().await {
            None => Ok("ended".to_string()),
            Some(conn) => Err(format!("unexpected connection from {}", conn.peer_addr())),
        };
        let _ = done.send(("incoming", outcome, Instant::now()));
    });
    drop(tx);

    // Wait until the sink and the flush are stuck: the kernel's buffers are full and output
    // is queued above the high-water mark.
    let stuck = |peer: u16, h: &epoll_server::ConnHandle| {
        h.queued_bytes() > 64 * KIB && socket_queues(port, Some(peer)).is_some_and(|q| q.tx > 0)
    };
    assert!(
        eventually(BOUND, || stuck(port_b, &handle_b)
            && stuck(port_c, &handle_c)),
        "the sink and the flush did not get stuck"
    );
    assert!(
        outcomes.try_recv().is_err(),
        "something ended before the reactor died"
    );

    let injected = Instant::now();
    handle.inject_panic();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let left = (injected + Duration::from_secs(2)).saturating_duration_since(Instant::now());
        match outcomes.recv_timeout(left) {
            Ok((what, outcome, at)) => {
                let outcome =
                    outcome.unwrap_or_else(|e| panic!("{what} after the reactor died: {e}"));
                eprintln!("{what}: {outcome} after {:?}", at - injected);
                seen.push(what);
            }
            Err(_) => {
                panic!("still waiting 2 s after the reactor died; only these ended: {seen:?}")
            }
        }
    }
    let joined = running.join();
    assert!(
        joined.is_err(),
        "join() must report the reactor's panic, got {joined:?}"
    );
    // Nor does a task waiting for the server's end hang.
    rt.block_on(async { tokio::time::timeout(BOUND, handle.stopped()).await })
        .expect("stopped() resolves after the reactor died");
    rt.shutdown_timeout(Duration::from_secs(1));
}
