//! Feeds arbitrary bytes, split at arbitrary points, to a real reactor over a loopback
//! connection with an echo handler, and checks the echo byte for byte.
#![no_main]

use arbitrary::Arbitrary;
use epoll_server::{Bytes, ConnId, Context, Handler, Server, ServerThread};
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        if ctx.send(conn, data).is_err() {
            ctx.close(conn);
        }
    }
}

/// One server for the whole fuzzing run; each input gets a new connection.
fn server() -> &'static ServerThread {
    static SERVER: OnceLock<ServerThread> = OnceLock::new();
    SERVER.get_or_init(|| {
        Server::builder()
            // Small budgets and buffers exercise the partial paths with small inputs.
            .read_buffer_size(257)
            .read_budget(1000)
            .bind("127.0.0.1:0")
            .and_then(|b| b.build(Echo))
            .and_then(|s| s.spawn())
            .expect("echo server starts")
    })
}

#[derive(Arbitrary, Debug)]
struct Input {
    data: Vec<u8>,
    /// Chunk sizes for the writes, cycled.
    splits: Vec<u8>,
    /// Half-close after writing, rather than reading the echo with the write side open.
    half_close: bool,
}

fuzz_target!(|input: Input| {
    let data = &input.data[..input.data.len().min(64 * 1024)];
    let mut client = TcpStream::connect(server().local_addr()).expect("connect");
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    client.set_nodelay(true).unwrap();
    let mut reader = client.try_clone().unwrap();
    let expected = data.len();
    let read = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(expected);
        let mut buf = [0u8; 4096];
        while got.len() < expected {
            let n = reader.read(&mut buf).expect("echo arrives in time");
            assert!(n > 0, "connection closed after {} of {expected} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let size = match input.splits.get(i % input.splits.len().max(1)) {
            Some(&s) => (s as usize).max(1),
            None => rest.len(),
        };
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        client.write_all(chunk).expect("write");
        rest = tail;
        i += 1;
    }
    if input.half_close {
        client.shutdown(Shutdown::Write).unwrap();
    }
    let got = read.join().expect("reader thread");
    assert_eq!(got, data, "echo differs");
    if input.half_close {
        // The server closes after echoing everything once the peer half-closed.
        let mut end = [0u8; 1];
        let n = client.read(&mut end).expect("end of file in time");
        assert_eq!(n, 0, "extra bytes after the echo");
    }
});
