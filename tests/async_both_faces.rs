//! One server with a callback listener and an async listener: each listener's connections go
//! to its own face, and both echo at the same time.

mod common_async;

use common_async::{assert_pattern, connect, echo, join, pattern, read_exactly, Watchdog};
use epoll_server::{Bytes, ConnId, ConnInfo, Context, Handler, Server};
use futures::StreamExt;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const PER_FACE: usize = 20;
const ROUNDS: u64 = 8;
const CHUNK: usize = 4096;

/// Echoes on the reactor thread and counts the connections it was given.
struct CallbackEcho {
    opened: Arc<AtomicUsize>,
}

impl Handler for CallbackEcho {
    fn on_open(&mut self, _ctx: &mut Context<'_>, _conn: ConnInfo) {
        self.opened.fetch_add(1, SeqCst);
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        if ctx.send(conn, data).is_err() {
            ctx.close(conn);
        }
    }
}

/// `PER_FACE` clients of `addr`, driven round-robin from one thread; each checks its echo.
fn clients(addr: SocketAddr, seed: u64) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut streams: Vec<_> = (0..PER_FACE).map(|_| connect(addr)).collect();
        for round in 0..ROUNDS {
            for (i, s) in streams.iter_mut().enumerate() {
                let stream_seed = seed + i as u64;
                let start = round * CHUNK as u64;
                common_async::write_all(s, &pattern(stream_seed, start, CHUNK));
                let echoed = read_exactly(s, CHUNK);
                assert_pattern(&format!("echo via {addr}"), stream_seed, start, &echoed);
            }
        }
        for s in streams.iter_mut() {
            s.shutdown(Shutdown::Write).expect("half-close");
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).expect("read the end of file");
            assert!(rest.is_empty(), "{} bytes after the echo", rest.len());
        }
    })
}

#[test]
fn callback_and_async_listeners_echo_side_by_side() -> io::Result<()> {
    let _dog = Watchdog::new("both faces", Duration::from_secs(20));
    let opened = Arc::new(AtomicUsize::new(0));
    let server = Server::builder()
        .bind("127.0.0.1:0")?
        .bind_async("127.0.0.1:0")?
        .build(CallbackEcho {
            opened: opened.clone(),
        })?;
    let (callback_addr, async_addr) = (server.local_addrs()[0], server.local_addrs()[1]);
    let mut incoming = server.incoming();
    let running = server.spawn()?;

    let callback_clients = clients(callback_addr, 1_000);
    let async_clients = clients(async_addr, 2_000);
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let echoed = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..PER_FACE {
            let conn = incoming.next().await.expect("an async connection");
            assert_eq!(
                *conn.local_addr(),
                async_addr,
                "a connection came out of `incoming` from the wrong listener"
            );
            tasks.push(tokio::spawn(echo(conn)));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("echo task panicked")?;
        }
        io::Result::Ok(total)
    });
    join(callback_clients);
    join(async_clients);
    assert_eq!(echoed?, PER_FACE as u64 * ROUNDS * CHUNK as u64);
    assert_eq!(
        opened.load(SeqCst),
        PER_FACE,
        "connections the callback face was given"
    );
    running.stop_and_join()?;
    // No callback connection went to `incoming`: after the stop it ends without another one.
    assert!(futures::executor::block_on(incoming.next()).is_none());
    Ok(())
}
