//! Echo through the async face on each executor the crate promises to work with: tokio
//! (current-thread and multi-thread), smol, and `futures::executor`. Each run holds 100
//! connections open at once; every connection sends its own byte stream in random-sized
//! chunks and checks every echoed byte, in order, then the end of file.

mod common_async;

use common_async::{assert_pattern, connect, echo, join, pattern, read_exactly, Watchdog};
use epoll_server::{Incoming, Server, ServerThread};
use futures::task::SpawnExt;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

const CONNECTIONS: usize = 100;
const CLIENT_THREADS: usize = 4;
const BYTES_PER_CONN: u64 = 48 * 1024;
const MAX_CHUNK: usize = 8 * 1024;
const LIMIT: Duration = Duration::from_secs(30);

/// What the server side saw: bytes echoed per peer address.
type Echoed = BTreeMap<SocketAddr, u64>;

fn start() -> io::Result<(Incoming, ServerThread)> {
    let server = Server::builder().bind_async("127.0.0.1:0")?.build_async()?;
    let incoming = server.incoming();
    Ok((incoming, server.spawn()?))
}

struct Client {
    stream: TcpStream,
    seed: u64,
    sent: u64,
}

/// Opens every connection (so all are open at once), then drives them from a few threads:
/// round-robin, each writes a random-sized chunk of its own stream and reads the echo back.
fn spawn_clients(addr: SocketAddr, seed: u64) -> (Vec<SocketAddr>, Vec<thread::JoinHandle<()>>) {
    let mut groups: Vec<Vec<Client>> = (0..CLIENT_THREADS).map(|_| Vec::new()).collect();
    let mut locals = Vec::new();
    for i in 0..CONNECTIONS {
        let stream = connect(addr);
        locals.push(stream.local_addr().expect("client address"));
        groups[i % CLIENT_THREADS].push(Client {
            stream,
            seed: seed.wrapping_mul(1000).wrapping_add(i as u64),
            sent: 0,
        });
    }
    let threads = groups
        .into_iter()
        .enumerate()
        .map(|(t, clients)| thread::spawn(move || drive(clients, seed ^ t as u64)))
        .collect();
    (locals, threads)
}

fn drive(mut clients: Vec<Client>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    while clients.iter().any(|c| c.sent < BYTES_PER_CONN) {
        for c in clients.iter_mut().filter(|c| c.sent < BYTES_PER_CONN) {
            let len = rng
                .gen_range(1..=MAX_CHUNK)
                .min((BYTES_PER_CONN - c.sent) as usize);
            common_async::write_all(&mut c.stream, &pattern(c.seed, c.sent, len));
            let echoed = read_exactly(&mut c.stream, len);
            assert_pattern(
                &format!("echo on stream {}", c.seed),
                c.seed,
                c.sent,
                &echoed,
            );
            c.sent += len as u64;
        }
    }
    for c in clients.iter_mut() {
        c.stream.shutdown(Shutdown::Write).expect("half-close");
        let mut rest = Vec::new();
        c.stream
            .read_to_end(&mut rest)
            .expect("read the server's end of file");
        assert!(
            rest.is_empty(),
            "stream {}: {} bytes after the echo",
            c.seed,
            rest.len()
        );
    }
}

/// Joins the clients, then checks the server side echoed every connection's bytes, and stops.
fn finish(
    locals: Vec<SocketAddr>,
    clients: Vec<thread::JoinHandle<()>>,
    echoed: io::Result<Echoed>,
    running: ServerThread,
) -> io::Result<()> {
    for c in clients {
        join(c);
    }
    let echoed = echoed?;
    let expected: Echoed = locals.into_iter().map(|a| (a, BYTES_PER_CONN)).collect();
    assert_eq!(echoed, expected, "bytes echoed per peer");
    running.stop_and_join()
}

#[test]
fn echo_round_trips_every_byte_on_tokio_current_thread() -> io::Result<()> {
    let _dog = Watchdog::new("tokio current-thread echo", LIMIT);
    let (mut incoming, running) = start()?;
    let (locals, clients) = spawn_clients(running.local_addr(), 1);
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let echoed = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            let conn = incoming.next().await.expect("incoming ended early");
            tasks.push((conn.peer_addr().as_tcp().unwrap(), tokio::spawn(echo(conn))));
        }
        let mut echoed = Echoed::new();
        for (peer, task) in tasks {
            echoed.insert(peer, task.await.expect("echo task panicked")?);
        }
        Ok(echoed)
    });
    finish(locals, clients, echoed, running)
}

#[test]
fn echo_round_trips_every_byte_on_tokio_multi_thread() -> io::Result<()> {
    let _dog = Watchdog::new("tokio multi-thread echo", LIMIT);
    let (mut incoming, running) = start()?;
    let (locals, clients) = spawn_clients(running.local_addr(), 2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    let echoed = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            let conn = incoming.next().await.expect("incoming ended early");
            tasks.push((conn.peer_addr().as_tcp().unwrap(), tokio::spawn(echo(conn))));
        }
        let mut echoed = Echoed::new();
        for (peer, task) in tasks {
            echoed.insert(peer, task.await.expect("echo task panicked")?);
        }
        Ok(echoed)
    });
    finish(locals, clients, echoed, running)
}

#[test]
fn echo_round_trips_every_byte_on_smol() -> io::Result<()> {
    let _dog = Watchdog::new("smol echo", LIMIT);
    let (mut incoming, running) = start()?;
    let (locals, clients) = spawn_clients(running.local_addr(), 3);
    let ex = smol::Executor::new();
    let (done, quit) = smol::channel::bounded::<()>(1);
    // Two threads run the executor: this one and a helper that leaves when `done` drops.
    let echoed = thread::scope(|s| {
        // Owned here so a panic below also releases the helper before the scope joins it.
        let done = done;
        s.spawn(|| smol::block_on(ex.run(quit.recv())));
        let echoed = smol::block_on(ex.run(async {
            let mut tasks = Vec::new();
            for _ in 0..CONNECTIONS {
                let conn = incoming.next().await.expect("incoming ended early");
                tasks.push((conn.peer_addr().as_tcp().unwrap(), ex.spawn(echo(conn))));
            }
            let mut echoed = Echoed::new();
            for (peer, task) in tasks {
                echoed.insert(peer, task.await?);
            }
            Ok(echoed)
        }));
        drop(done);
        echoed
    });
    finish(locals, clients, echoed, running)
}

#[test]
fn echo_round_trips_every_byte_on_futures_executor() -> io::Result<()> {
    let _dog = Watchdog::new("futures::executor echo", LIMIT);
    let (mut incoming, running) = start()?;
    let (locals, clients) = spawn_clients(running.local_addr(), 4);
    let pool = futures::executor::ThreadPool::builder()
        .pool_size(2)
        .create()?;
    let echoed = futures::executor::block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            let conn = incoming.next().await.expect("incoming ended early");
            let peer = conn.peer_addr().as_tcp().unwrap();
            tasks.push((
                peer,
                pool.spawn_with_handle(echo(conn))
                    .map_err(io::Error::other)?,
            ));
        }
        let mut echoed = Echoed::new();
        for (peer, task) in tasks {
            echoed.insert(peer, task.await?);
        }
        Ok(echoed)
    });
    finish(locals, clients, echoed, running)
}
