//! Async face: what flushing and dropping the halves of a connection promise.

use epoll_server::{Bytes, Server, ServerThread};
use futures::{SinkExt, StreamExt};
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A server whose first async connection is handed to `task` on its own thread.
fn serve_one<T: Send + 'static>(
    builder: epoll_server::Builder,
    task: impl FnOnce(epoll_server::Connection) -> T + Send + 'static,
) -> (ServerThread, SocketAddr, std::thread::JoinHandle<T>) {
    let server = builder
        .bind_async("127.0.0.1:0")
        .unwrap()
        .build_async()
        .unwrap();
    let addr = server.local_addr();
    let mut incoming = server.incoming();
    let running = server.spawn().unwrap();
    let worker = std::thread::spawn(move || {
        let conn = futures::executor::block_on(incoming.next()).expect("a connection");
        task(conn)
    });
    (running, addr, worker)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn dropping_both_halves_writes_what_was_queued_then_closes() -> io::Result<()> {
    const LEN: usize = 8 << 20;
    let builder = Server::builder().output_limits(64 << 20, 32 << 20, 64 << 20);
    let (running, addr, worker) = serve_one(builder, |conn| {
        futures::executor::block_on(async move {
            let (inbound, mut outbound) = conn.split();
            for chunk in pattern(LEN).chunks(100_000) {
                outbound.feed(Bytes::copy_from_slice(chunk)).await?;
            }
            let queued = outbound.queued_bytes();
            drop(inbound);
            drop(outbound);
            io::Result::Ok(queued)
        })
    });
    let mut client = TcpStream::connect(addr)?;
    client.set_read_timeout(Some(TIMEOUT))?;
    let queued_at_drop = worker.join().unwrap()?;
    assert!(
        queued_at_drop > 0,
        "the test must drop with output still queued"
    );
    let mut got = Vec::new();
    client.read_to_end(&mut got)?;
    assert_eq!(
        got.len(),
        LEN,
        "every queued byte arrives before the end of file"
    );
    assert!(got == pattern(LEN), "bytes arrive intact and in order");
    running.stop_and_join()
}

#[test]
fn flush_resolves_once_everything_sent_is_in_the_kernel() -> io::Result<()> {
    let (running, addr, worker) = serve_one(Server::builder(), |conn| {
        futures::executor::block_on(async move {
            let (_inbound, mut outbound) = conn.split();
            for i in 0..100u8 {
                outbound.feed(Bytes::from(vec![i; 1000])).await?;
            }
            outbound.flush().await?;
            io::Result::Ok(outbound.queued_bytes())
        })
    });
    let mut client = TcpStream::connect(addr)?;
    client.set_read_timeout(Some(TIMEOUT))?;
    assert_eq!(
        worker.join().unwrap()?,
        0,
        "nothing left in the reactor after flush"
    );
    let mut got = vec![0u8; 100_000];
    client.read_exact(&mut got)?;
    assert!(got
        .chunks(1000)
        .enumerate()
        .all(|(i, c)| c.iter().all(|&b| b == i as u8)));
    running.stop_and_join()
}

#[test]
fn dropped_connection_to_a_peer_that_never_reads_is_closed_after_the_deadline() -> io::Result<()> {
    const LEN: usize = 32 << 20;
    let builder = Server::builder()
        .output_limits(64 << 20, 32 << 20, 64 << 20)
        .shutdown_deadline(Duration::from_millis(300));
    let (running, addr, worker) = serve_one(builder, |conn| {
        let handle = conn.handle();
        futures::executor::block_on(async move {
            let (_inbound, mut outbound) = conn.split();
            outbound.feed(Bytes::from(vec![1u8; LEN])).await?;
            io::Result::Ok(())
        })?;
        // Both halves are gone here; the peer never reads, so the queue cannot drain.
        Ok::<_, io::Error>(handle)
    });
    let client = TcpStream::connect(addr)?;
    let handle = worker.join().unwrap()?;
    let start = Instant::now();
    // No event reports this to a handle holder: poll, bounded.
    while !handle.is_closed() {
        assert!(
            start.elapsed() < TIMEOUT,
            "still open long after the deadline"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "closed before the deadline: {:?}",
        start.elapsed()
    );
    drop(client);
    running.stop_and_join()
}
