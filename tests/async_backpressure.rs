//! Backpressure on both halves of an async connection: an inbound stream nobody polls stops
//! the reactor reading (the peer's writes block), and an outbound sink whose peer does not read
//! stops accepting above its high-water mark. Nothing is lost either way.

mod common_async;

use common_async::{
    assert_pattern, connect, join, pattern, read_to_eof, socket_queues, SocketQueues, Watchdog,
};
use epoll_server::{Bytes, Server};
use futures::future::poll_fn;
use futures::{Sink, SinkExt, StreamExt};
use std::io::{self, Write};
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// How long a write or a `poll_ready` must make no progress to count as blocked.
const STALL: Duration = Duration::from_millis(300);

/// The largest buffer TCP autotuning may give a socket, from `net.ipv4.<name>` (its third field).
fn sysctl_max(name: &str) -> usize {
    let path = format!("/proc/sys/net/ipv4/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.split_whitespace()
        .nth(2)
        .and_then(|max| max.parse().ok())
        .unwrap_or_else(|| panic!("no maximum in {path}: {text:?}"))
}

#[test]
fn unpolled_inbound_stops_reading_within_its_bound_and_loses_nothing() -> io::Result<()> {
    const BOUND: usize = 256 * KIB;
    const READ_BUFFER: usize = 64 * KIB;
    const SEED: u64 = 0x1b;
    let _dog = Watchdog::new("inbound backpressure", Duration::from_secs(30));
    // What the kernel may buffer on loopback: the client's send buffer and the server's receive
    // buffer, at most their autotuning maxima (here 4 MiB + 32 MiB; 8 MiB is not enough, the
    // receive buffer alone was seen at 4.6 MB).
    let kernel_allowance = sysctl_max("tcp_wmem") + sysctl_max("tcp_rmem");
    let server = Server::builder()
        .inbound_high_water(BOUND)
        .read_buffer_size(READ_BUFFER)
        .bind_async("127.0.0.1:0")?
        .build_async()?;
    let mut incoming = server.incoming();
    let running = server.spawn()?;
    let addr = running.local_addr();

    // The client writes until a write makes no progress for STALL, then reports how much it
    // wrote and what the kernel holds, and half-closes.
    let (blocked_tx, blocked_rx) = futures::channel::oneshot::channel();
    let client = thread::spawn(move || {
        let mut stream = connect(addr);
        stream
            .set_write_timeout(Some(STALL))
            .expect("write timeout");
        let mut written = 0usize;
        let mut chunk = vec![0; 64 * KIB];
        let blocked = loop {
            if written > BOUND + kernel_allowance {
                break false;
            }
            common_async::fill_pattern(SEED, written as u64, &mut chunk);
            match stream.write(&chunk) {
                Ok(n) => written += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break true
                }
                Err(e) => panic!("write after {written} bytes: {e}"),
            }
        };
        let local = stream.local_addr().expect("client address").port();
        let client_q = socket_queues(local, Some(addr.port()));
        let server_q = socket_queues(addr.port(), Some(local));
        blocked_tx
            .send((blocked, written, client_q, server_q))
            .expect("the server side is waiting");
        stream.shutdown(Shutdown::Write).expect("half-close");
        stream
    });

    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let received = rt.block_on(async {
        let conn = incoming.next().await.expect("a connection");
        let (mut inbound, _outbound) = conn.split();
        // Hold the inbound stream without polling it until the client is blocked.
        let (blocked, written, client_q, server_q) = blocked_rx.await.expect("the client reports");
        // Everything the client wrote is in its send queue, in the server's receive queue, or
        // read by the reactor (read buffer, parked frame, inbound channel).
        let (Some(SocketQueues { tx: in_client, .. }), Some(SocketQueues { rx: in_server, .. })) =
            (client_q, server_q)
        else {
            panic!("sockets not found in /proc/net/tcp: {client_q:?} {server_q:?}");
        };
        let held = written as u64 - in_client - in_server;
        let report = format!(
            "client wrote {written} bytes: {in_client} in its send queue, {in_server} in the \
             server's receive queue, {held} held by the server"
        );
        eprintln!("{report}");
        assert!(
            blocked,
            "the client never blocked (bound {BOUND} + {kernel_allowance} for the kernel); {report}"
        );
        assert!(
            held <= (BOUND + 2 * READ_BUFFER) as u64,
            "the server holds {held} bytes of input for a consumer that is not reading \
             (bound {BOUND} + two reads of {READ_BUFFER})"
        );
        // Resume: every byte arrives, in order, then the end of file.
        let mut received = 0u64;
        while let Some(buf) = inbound.next().await {
            let buf = buf?;
            assert_pattern("inbound after resuming", SEED, received, &buf);
            received += buf.len() as u64;
        }
        assert_eq!(received, written as u64, "bytes received after resuming");
        io::Result::Ok(received)
    })?;
    drop(join(client));
    assert!(received > BOUND as u64, "the test never passed the bound");
    running.stop_and_join()
}

#[test]
fn outbound_sink_waits_above_high_water_and_delivers_everything_once_the_peer_reads(
) -> io::Result<()> {
    const HIGH: usize = 64 * KIB;
    const LOW: usize = 16 * KIB;
    const MSG: usize = 8 * KIB;
    // Far more than loopback's kernel buffers can take from a peer that does not read.
    const MAX_SENT: usize = 64 * MIB;
    const SEED: u64 = 0x2c;
    let _dog = Watchdog::new("outbound backpressure", Duration::from_secs(30));
    let server = Server::builder()
        .output_limits(HIGH, LOW, 4 * MIB)
        .bind_async("127.0.0.1:0")?
        .build_async()?;
    let mut incoming = server.incoming();
    let running = server.spawn()?;
    let addr = running.local_addr();

    // The peer connects and reads nothing until told to.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let reader = thread::spawn(move || {
        let mut stream = connect(addr);
        go_rx.recv().expect("the server side says go");
        read_to_eof(&mut stream, MAX_SENT)
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let sent = rt.block_on(async {
        let conn = incoming.next().await.expect("a connection");
        let (_inbound, mut outbound) = conn.split();
        let mut sent = 0usize;
        let blocked = loop {
            if sent >= MAX_SENT {
                break false;
            }
            let ready = poll_fn(|cx| Pin::new(&mut outbound).poll_ready(cx));
            match tokio::time::timeout(STALL, ready).await {
                Err(_stalled) => break true,
                Ok(ready) => ready?,
            }
            Pin::new(&mut outbound).start_send(Bytes::from(pattern(SEED, sent as u64, MSG)))?;
            sent += MSG;
            let queued = outbound.queued_bytes();
            assert!(
                queued <= HIGH + MSG,
                "{queued} bytes queued after sending {sent}: above high water {HIGH} + one \
                 message"
            );
        };
        assert!(blocked, "poll_ready never waited after {sent} bytes");
        let queued = outbound.queued_bytes();
        assert!(
            queued > HIGH && queued <= HIGH + MSG,
            "poll_ready waits with {queued} bytes queued (high water {HIGH}, message {MSG})"
        );
        eprintln!("blocked after {sent} bytes with {queued} queued");
        // The peer reads: the sink drains, and close (flush + half-close) completes.
        go_tx.send(()).expect("the reader waits");
        outbound.close().await?;
        assert_eq!(outbound.queued_bytes(), 0, "queued after close");
        io::Result::Ok(sent)
    })?;
    let received = join(reader);
    assert_eq!(received.len(), sent, "bytes the peer read");
    assert_pattern("output read by the peer", SEED, 0, &received);
    running.stop_and_join()
}
