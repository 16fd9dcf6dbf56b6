//! Stopping a server with async connections open and output queued: every byte queued before
//! the stop still reaches its peer, then the end of file; inbound streams and `incoming` end;
//! sinks fail afterwards; the server thread joins cleanly.

mod common_async;

use common_async::{assert_pattern, connect, join, pattern, read_to_eof, Watchdog};
use epoll_server::{Bytes, Server};
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::io;
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const CONNECTIONS: usize = 100;
const READER_THREADS: usize = 4;
const PIECE: usize = 64 * 1024;
/// Output queued for most connections. Loopback's kernel buffers take all of it...
const LIGHT: usize = 256 * 1024;
/// ...so a few connections get more than a peer that does not read can absorb (its receive
/// buffer plus our send buffer, a few MiB), and the reactor really holds output at the stop.
const HEAVY: usize = 8 * 1024 * 1024;
const HEAVY_CONNECTIONS: usize = 3;

#[test]
fn stop_delivers_queued_output_then_ends_every_stream_and_fails_sinks() -> io::Result<()> {
    let _dog = Watchdog::new("stop with output queued", Duration::from_secs(30));
    let server = Server::builder()
        // Generous, so only a lost byte (not a slow reader on a busy machine) can fail the test.
        .shutdown_deadline(Duration::from_secs(20))
        // The heavy connections queue all their output without waiting for the peer.
        .output_limits(2 * HEAVY, HEAVY, 2 * HEAVY)
        .bind_async("127.0.0.1:0")?
        .build_async()?;
    let mut incoming = server.incoming();
    let running = server.spawn()?;
    let addr = running.local_addr();

    // Clients connect and read nothing yet.
    let clients: Vec<TcpStream> = (0..CONNECTIONS).map(|_| connect(addr)).collect();

    // The server side reports how much it queued for each peer port, and how much of it the
    // reactor still held when it was done.
    let (queued_tx, queued_rx) = mpsc::channel::<(HashMap<u16, usize>, usize)>();
    let server_side = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut halves = Vec::new();
            let mut lengths = HashMap::new();
            for i in 0..CONNECTIONS {
                let conn = incoming
                    .next()
                    .await
                    .expect("incoming ended before the stop");
                // Each connection gets its own stream, named by the peer's port.
                let port = conn.peer_addr().as_tcp().unwrap().port();
                let len = if i < HEAVY_CONNECTIONS { HEAVY } else { LIGHT };
                let (inbound, mut outbound) = conn.split();
                for start in (0..len).step_by(PIECE) {
                    let piece = pattern(u64::from(port), start as u64, PIECE);
                    outbound.feed(Bytes::from(piece)).await?;
                }
                lengths.insert(port, len);
                halves.push((inbound, outbound));
            }
            let held = halves.iter().map(|(_, out)| out.queued_bytes()).sum();
            queued_tx.send((lengths, held)).expect("the test waits");
            // After the stop: every inbound stream ends, without an error.
            for (inbound, _) in halves.iter_mut() {
                if let Some(item) = inbound.next().await {
                    panic!("inbound after the stop yielded {item:?}, expected its end");
                }
            }
            assert!(
                incoming.next().await.is_none(),
                "incoming ends after a stop"
            );
            for (_, outbound) in halves.iter_mut() {
                let sent = outbound.send(Bytes::from_static(b"too late")).await;
                assert!(sent.is_err(), "a send after the stop must fail");
            }
            io::Result::Ok(())
        })
    });

    let (lengths, held) = queued_rx.recv().expect("the server side queued its output");
    assert!(
        held > 0,
        "the reactor held no output at the stop: the test would prove nothing"
    );
    eprintln!("stopping with {held} bytes of output held by the reactor");
    running.stop();

    // Only now do the clients read: everything queued before the stop, then the end of file.
    let mut groups: Vec<Vec<(TcpStream, usize)>> =
        (0..READER_THREADS).map(|_| Vec::new()).collect();
    for (i, stream) in clients.into_iter().enumerate() {
        let port = stream.local_addr().expect("client address").port();
        let len = *lengths.get(&port).expect("the server served every client");
        groups[i % READER_THREADS].push((stream, len));
    }
    let readers: Vec<_> = groups
        .into_iter()
        .map(|group| {
            thread::spawn(move || {
                for (mut stream, len) in group {
                    let port = stream.local_addr().expect("client address").port();
                    let got = read_to_eof(&mut stream, len);
                    assert_eq!(got.len(), len, "bytes read by client {port}");
                    assert_pattern(&format!("client {port}"), u64::from(port), 0, &got);
                }
            })
        })
        .collect();
    for r in readers {
        join(r);
    }
    join(server_side)?;
    running.join()
}
