//! How an async connection ends: half-close in either direction keeps the other direction
//! working; a reset by the peer is reported on the inbound stream and fails later sends; a send
//! after the connection is gone is an error, never silent.

mod common_async;

use common_async::{
    assert_pattern, connect, join, pattern, read_exactly, read_to_eof, set_linger_zero, Watchdog,
};
use epoll_server::{Bytes, Incoming, Server, ServerThread};
use futures::{SinkExt, StreamExt};
use std::io;
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

fn start() -> io::Result<(Incoming, ServerThread)> {
    let server = Server::builder().bind_async("127.0.0.1:0")?.build_async()?;
    let incoming = server.incoming();
    Ok((incoming, server.spawn()?))
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
}

/// Collects an inbound stream until it ends; fails on an error item.
async fn collect(inbound: &mut epoll_server::Inbound) -> io::Result<Vec<u8>> {
    let mut all = Vec::new();
    while let Some(buf) = inbound.next().await {
        all.extend_from_slice(&buf?);
    }
    Ok(all)
}

#[test]
fn peer_half_close_ends_inbound_while_the_sink_still_reaches_the_peer() -> io::Result<()> {
    let _dog = Watchdog::new("peer half-close", LIMIT);
    let (mut incoming, running) = start()?;
    let addr = running.local_addr();
    let client = thread::spawn(move || {
        let mut stream = connect(addr);
        common_async::write_all(&mut stream, b"question");
        stream.shutdown(Shutdown::Write).expect("half-close");
        read_to_eof(&mut stream, 1024)
    });
    runtime()?.block_on(async {
        let conn = incoming.next().await.expect("a connection");
        let (mut inbound, mut outbound) = conn.split();
        assert_eq!(collect(&mut inbound).await?, b"question");
        assert!(inbound.next().await.is_none(), "the stream stays ended");
        outbound
            .send(Bytes::from_static(b"answer after your end of file"))
            .await?;
        outbound.close().await
    })?;
    assert_eq!(join(client), b"answer after your end of file");
    running.stop_and_join()
}

#[test]
fn closing_the_sink_sends_end_of_file_while_the_peer_can_still_send() -> io::Result<()> {
    let _dog = Watchdog::new("sink close", LIMIT);
    let (mut incoming, running) = start()?;
    let addr = running.local_addr();
    let client = thread::spawn(move || {
        let mut stream = connect(addr);
        assert_eq!(read_to_eof(&mut stream, 1024), b"goodbye");
        common_async::write_all(&mut stream, b"but I am still talking");
        stream.shutdown(Shutdown::Write).expect("half-close");
    });
    runtime()?.block_on(async {
        let conn = incoming.next().await.expect("a connection");
        let (mut inbound, mut outbound) = conn.split();
        outbound.send(Bytes::from_static(b"goodbye")).await?;
        outbound.close().await?;
        let err = outbound
            .send(Bytes::from_static(b"after close"))
            .await
            .expect_err("a send after close must fail");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        assert_eq!(collect(&mut inbound).await?, b"but I am still talking");
        io::Result::Ok(())
    })?;
    join(client);
    running.stop_and_join()
}

#[test]
fn peer_reset_yields_an_error_then_ends_inbound_and_fails_later_sends() -> io::Result<()> {
    const SENT: usize = 100 * 1024;
    const SEED: u64 = 0x3d;
    let _dog = Watchdog::new("peer reset", LIMIT);
    let (mut incoming, running) = start()?;
    let addr = running.local_addr();
    let client = thread::spawn(move || {
        let mut stream = connect(addr);
        common_async::write_all(&mut stream, &pattern(SEED, 0, SENT));
        assert_eq!(read_exactly(&mut stream, 3), b"ack");
        // The server is streaming to us; reset instead of reading it.
        set_linger_zero(&stream);
        drop(stream);
    });
    runtime()?.block_on(async {
        let conn = incoming.next().await.expect("a connection");
        let handle = conn.handle();
        let (mut inbound, mut outbound) = conn.split();
        let mut received = Vec::new();
        while received.len() < SENT {
            let buf = inbound.next().await.expect("data before the reset")?;
            received.extend_from_slice(&buf);
        }
        assert_pattern("inbound before the reset", SEED, 0, &received);
        assert_eq!(received.len(), SENT);
        // "ack" and more output in one buffer (so no send can race the reset): the peer reads
        // the ack and resets while the rest is still on its way.
        let mut reply = b"ack".to_vec();
        reply.resize(3 + 64 * 1024, 7);
        outbound.feed(Bytes::from(reply)).await?;
        match inbound.next().await {
            Some(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
            other => panic!("expected a reset error, got {other:?}"),
        }
        assert!(
            inbound.next().await.is_none(),
            "the stream ends after the error"
        );
        assert!(handle.is_closed(), "the connection is closed after a reset");
        let err = outbound
            .send(Bytes::from_static(b"too late"))
            .await
            .expect_err("a send after a reset must fail");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
        io::Result::Ok(())
    })?;
    join(client);
    running.stop_and_join()
}

#[test]
fn send_after_the_peer_closed_fails_instead_of_vanishing() -> io::Result<()> {
    let _dog = Watchdog::new("send after peer close", LIMIT);
    let (mut incoming, running) = start()?;
    let addr = running.local_addr();
    let (read_tx, read_rx) = std::sync::mpsc::channel::<()>();
    let client = thread::spawn(move || {
        let mut stream = connect(addr);
        common_async::write_all(&mut stream, b"bye");
        stream.shutdown(Shutdown::Write).expect("half-close");
        // Close only once the server read everything, so the close is a FIN, not a reset.
        read_rx.recv().expect("the server read our bytes");
        drop(stream);
    });
    runtime()?.block_on(async {
        let conn = incoming.next().await.expect("a connection");
        let (mut inbound, mut outbound) = conn.split();
        assert_eq!(collect(&mut inbound).await?, b"bye");
        read_tx.send(()).expect("the client waits");
        join(client);
        // The peer's socket is gone: the first send may still reach the kernel (the peer answers
        // it with a reset), but the connection must then report the failure. Nothing announces
        // the reset to us, so retry a bounded number of times.
        let mut attempts = 0;
        let err = loop {
            attempts += 1;
            assert!(attempts <= 200, "every send succeeded on a closed peer");
            match outbound.send(Bytes::from_static(b"anyone there?")).await {
                Err(e) => break e,
                Ok(()) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "after {attempts} sends: {err}"
        );
        let again = outbound.send(Bytes::from_static(b"still?")).await;
        assert!(again.is_err(), "a later send must fail too");
        io::Result::Ok(())
    })?;
    running.stop_and_join()
}
