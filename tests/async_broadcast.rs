//! Broadcasting one `Bytes` to many async connections: each sink takes a clone (a reference
//! count, not a copy) and every peer receives the full message, in order.

mod common_async;

use common_async::{assert_pattern, connect, join, pattern, read_to_eof, Watchdog};
use epoll_server::{Bytes, Server};
use futures::{SinkExt, StreamExt};
use std::io;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

const CONNECTIONS: usize = 50;
const MESSAGES: u64 = 3;
const MESSAGE_LEN: usize = 16 * 1024;
const SEED: u64 = 0x5e;

#[test]
fn one_buffer_broadcast_to_fifty_sinks_reaches_every_peer() -> io::Result<()> {
    let _dog = Watchdog::new("broadcast", Duration::from_secs(20));
    let server = Server::builder().bind_async("127.0.0.1:0")?.build_async()?;
    let mut incoming = server.incoming();
    let running = server.spawn()?;
    let addr = running.local_addr();

    let streams: Vec<TcpStream> = (0..CONNECTIONS).map(|_| connect(addr)).collect();
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| thread::spawn(move || read_to_eof(&mut s, MESSAGES as usize * MESSAGE_LEN)))
        .collect();

    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    rt.block_on(async {
        let mut sinks = Vec::new();
        for _ in 0..CONNECTIONS {
            let (_inbound, outbound) = incoming.next().await.expect("a connection").split();
            sinks.push(outbound);
        }
        for m in 0..MESSAGES {
            let msg = Bytes::from(pattern(SEED, m * MESSAGE_LEN as u64, MESSAGE_LEN));
            for sink in sinks.iter_mut() {
                let copy = msg.clone();
                assert_eq!(copy.as_ptr(), msg.as_ptr(), "a clone shares the buffer");
                sink.feed(copy).await?;
            }
        }
        for sink in sinks.iter_mut() {
            sink.close().await?;
        }
        io::Result::Ok(())
    })?;
    for r in readers {
        let got = join(r);
        assert_eq!(
            got.len(),
            MESSAGES as usize * MESSAGE_LEN,
            "bytes a peer received"
        );
        assert_pattern("broadcast", SEED, 0, &got);
    }
    running.stop_and_join()
}
