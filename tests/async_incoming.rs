//! `Server::incoming` is bounded: while nobody takes connections the reactor stops accepting
//! (clients wait in the kernel's accept queue), and accepting resumes as they are taken.

mod common_async;

use common_async::{connect, echo, eventually, join, read_exactly, socket_queues, Watchdog};
use epoll_server::Server;
use futures::StreamExt;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

const CAPACITY: usize = 2;
const CLIENTS: usize = 10;

/// Connections waiting in the accept queue of the listener on `port`.
fn accept_queue(port: u16) -> u64 {
    socket_queues(port, None)
        .expect("the listener in /proc/net/tcp")
        .rx
}

#[test]
fn full_incoming_stops_accepting_until_connections_are_taken() -> io::Result<()> {
    let _dog = Watchdog::new("bounded incoming", Duration::from_secs(20));
    let server = Server::builder()
        .incoming_capacity(CAPACITY)
        .bind_async("127.0.0.1:0")?
        .build_async()?;
    let mut incoming = server.incoming();
    let running = server.spawn()?;
    let port = running.local_addr().port();

    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| connect(running.local_addr()))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        common_async::write_all(c, format!("client {i:02}").as_bytes());
    }

    // The reactor fills `incoming` and leaves the rest in the kernel's accept queue. There is no
    // event for "the reactor accepted", so watch the queue settle.
    let waiting = (CLIENTS - CAPACITY) as u64;
    assert!(
        eventually(Duration::from_secs(5), || accept_queue(port) == waiting),
        "expected {waiting} connections left in the accept queue, found {}",
        accept_queue(port)
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        accept_queue(port),
        waiting,
        "the server accepted beyond `incoming`'s capacity while nobody took connections"
    );

    // Taking connections resumes accepting: all of them arrive, and each one works.
    let check_echoes = std::thread::spawn(move || {
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(read_exactly(c, 9), format!("client {i:02}").as_bytes());
            c.shutdown(Shutdown::Write).expect("half-close");
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let echoed = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let conn = incoming.next().await.expect("every client arrives");
            tasks.push(tokio::spawn(echo(conn)));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("echo task panicked")?;
        }
        io::Result::Ok(total)
    })?;
    join(check_echoes);
    assert_eq!(accept_queue(port), 0, "connections left unaccepted");
    assert_eq!(echoed, 9 * CLIENTS as u64);
    running.stop_and_join()
}

/// Defect 9 of the review: a server whose `incoming()` was never taken accepted async
/// connections and closed them silently, forever. Now spawning it drops the last `Incoming`,
/// which closes the async listeners (with a warning): new clients are refused.
#[test]
fn never_taking_incoming_closes_the_async_listener() -> io::Result<()> {
    let _dog = Watchdog::new("incoming never taken", Duration::from_secs(20));
    let server = Server::builder().bind_async("127.0.0.1:0")?.build_async()?;
    let addr = server.local_addr();
    let running = server.spawn()?;
    assert!(
        eventually(Duration::from_secs(5), || TcpStream::connect(addr).is_err()),
        "the async listener of a server whose incoming() was never taken still accepts"
    );
    assert_eq!(
        TcpStream::connect(addr)
            .expect_err("a closed listener refuses")
            .kind(),
        io::ErrorKind::ConnectionRefused
    );
    running.stop_and_join()
}
