//! Echo through callbacks under load: many concurrent connections, random chunk sizes, every
//! byte checked in order.

mod common;

use common::{connect, Event, Recorder};
use epoll_server::{Builder, CloseReason};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::thread;

const THREADS: usize = 4;
const CONNS_PER_THREAD: usize = 50;
const ROUNDS: usize = 8;

/// One client thread: opens its connections, then round after round sends each a random chunk
/// and reads exactly that chunk back. Returns the bytes it echoed.
fn client(addr: SocketAddr, seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut conns: Vec<_> = (0..CONNS_PER_THREAD).map(|_| connect(addr)).collect();
    let mut total = 0;
    let mut back = Vec::new();
    for round in 0..ROUNDS {
        for (i, conn) in conns.iter_mut().enumerate() {
            // Mostly small chunks, sometimes one larger than the socket buffers (so the server
            // sees partial writes and queues), never near the high-water mark (so a blocking
            // write_all cannot deadlock against a paused reader).
            let len = if rng.gen_bool(0.1) {
                rng.gen_range(16 * 1024..=160 * 1024)
            } else {
                rng.gen_range(1..=4096)
            };
            let mut chunk = vec![0u8; len];
            rng.fill(&mut chunk[..]);
            conn.write_all(&chunk)
                .unwrap_or_else(|e| panic!("seed {seed} round {round} conn {i}: write: {e}"));
            back.resize(len, 0);
            conn.read_exact(&mut back)
                .unwrap_or_else(|e| panic!("seed {seed} round {round} conn {i}: read: {e}"));
            if let Some(at) = (0..len).find(|&j| back[j] != chunk[j]) {
                panic!("seed {seed} round {round} conn {i}: byte {at} of {len} differs");
            }
            total += len;
        }
    }
    total
}

#[test]
fn echoes_every_byte_in_order_on_200_concurrent_connections() {
    let (handler, events) = Recorder::echo();
    let server = common::spawn(Builder::new(), handler.quiet());
    let addr = server.local_addr();

    let clients: Vec<_> = (0..THREADS)
        .map(|t| thread::spawn(move || client(addr, 0x5eed_0000 + t as u64)))
        .collect();
    let echoed: usize = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .sum();
    assert!(echoed > 0);

    // Every connection was opened once and, after its client dropped it, closed by the peer.
    let total = THREADS * CONNS_PER_THREAD;
    let (mut opened, mut closed) = (0, 0);
    let mut listening = false;
    while closed < total {
        match events.next() {
            Event::Listening(_) => listening = true,
            Event::Open(_) => opened += 1,
            Event::Close(id, reason) => {
                assert!(
                    matches!(reason, CloseReason::PeerClosed),
                    "{id} closed with {reason}"
                );
                closed += 1;
            }
            Event::Error(id, e) => panic!("on_error({id:?}): {e}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(listening, "on_listening was not called first");
    assert_eq!(opened, total);
    server.stop_and_join().expect("server stops cleanly");
}
