//! Write-through: a send that finds nothing queued writes from its own thread; otherwise it
//! queues behind what is there and the reactor writes it. Whatever the mix (a sink on an
//! executor, `ConnHandle`s on other threads, the reactor's own sends and its flushes of
//! remainders after partial writes), every sender's messages arrive whole and in its order.

mod common;

use common::{Recorder, TIMEOUT};
use epoll_server::{Bytes, ConnHandle, Server};
use futures::{SinkExt, StreamExt};
use std::io::Read;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

/// A message: sender (1 byte), sequence (4 bytes), payload length (4 bytes), payload whose
/// bytes are derived from all three, so a message cut or interleaved with another is caught.
fn message(sender: u8, seq: u32, len: usize) -> Bytes {
    let mut m = Vec::with_capacity(9 + len);
    m.push(sender);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&(len as u32).to_be_bytes());
    m.extend((0..len).map(|i| payload_byte(sender, seq, i)));
    Bytes::from(m)
}

fn payload_byte(sender: u8, seq: u32, i: usize) -> u8 {
    (i as u32)
        .wrapping_mul(7)
        .wrapping_add(seq.wrapping_mul(13))
        .wrapping_add(sender as u32 * 101) as u8
}

/// Sizes that mix tiny writes with ones larger than a socket buffer.
fn size(sender: u8, seq: u32) -> usize {
    let x = (seq as usize)
        .wrapping_mul(2654435761)
        .wrapping_add(sender as usize * 97);
    match x % 10 {
        0 => 300_000 + x % 200_000,
        1..=3 => 5_000 + x % 60_000,
        _ => x % 200,
    }
}

/// Reads messages until every sender's `counts` are in, checking each whole and in order.
/// Reads slowly at first, so that the kernel buffer fills and the reactor finishes partial
/// writes.
fn check_messages(stream: &mut TcpStream, counts: &[(u8, u32)]) {
    let mut next = std::collections::HashMap::new();
    for &(s, _) in counts {
        next.insert(s, 0u32);
    }
    let total: u32 = counts.iter().map(|c| c.1).sum();
    let mut header = [0u8; 9];
    for n in 0..total {
        if n < 20 {
            std::thread::sleep(Duration::from_millis(5));
        }
        stream.read_exact(&mut header).expect("a message header");
        let sender = header[0];
        let seq = u32::from_be_bytes(header[1..5].try_into().unwrap());
        let len = u32::from_be_bytes(header[5..9].try_into().unwrap()) as usize;
        let expected = next
            .get_mut(&sender)
            .unwrap_or_else(|| panic!("unknown sender {sender} (interleaved bytes?)"));
        assert_eq!(seq, *expected, "sender {sender}: out of order");
        *expected += 1;
        assert_eq!(
            len,
            size(sender, seq),
            "sender {sender} message {seq}: length"
        );
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).expect("a message body");
        if let Some(i) = (0..len).find(|&i| body[i] != payload_byte(sender, seq, i)) {
            panic!("sender {sender} message {seq}: byte {i} of {len} is wrong (interleaved?)");
        }
    }
    for &(s, c) in counts {
        assert_eq!(next[&s], c, "sender {s}: messages missing");
    }
}

fn handle_sender(handle: ConnHandle, sender: u8, count: u32) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for seq in 0..count {
            let mut msg = message(sender, seq, size(sender, seq));
            // A full queue hands the message back: wait for room (the reader catches up).
            loop {
                match handle.send(msg) {
                    Ok(()) => break,
                    Err(e) if e.kind() == epoll_server::SendErrorKind::Full => {
                        msg = e.into_inner();
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("sender {sender}: {e}"),
                }
            }
        }
    })
}

#[test]
fn a_sink_and_handles_on_other_threads_interleave_whole_messages_in_order() {
    let server = Server::builder()
        .bind_async("127.0.0.1:0")
        .unwrap()
        .build_async()
        .unwrap();
    let mut incoming = server.incoming();
    let server = server.spawn().unwrap();
    let mut client = common::connect(server.local_addr());
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let conn = futures::executor::block_on(incoming.next()).expect("a connection");
    let h1 = handle_sender(conn.handle(), 1, 300);
    let h2 = handle_sender(conn.handle(), 2, 300);
    let sink = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (_inbound, mut outbound) = conn.split();
            for seq in 0..300 {
                outbound.send(message(3, seq, size(3, seq))).await.unwrap();
            }
            outbound.flush().await.unwrap();
        });
    });
    check_messages(&mut client, &[(1, 300), (2, 300), (3, 300)]);
    h1.join().unwrap();
    h2.join().unwrap();
    sink.join().unwrap();
    let stats = server.handle().stats();
    assert_eq!(stats.queued_output_bytes, 0);
    server.stop_and_join().unwrap();
}

#[test]
fn the_reactors_own_sends_and_a_workers_handle_interleave_whole_messages_in_order() {
    // The callback face answers each client byte with a message of its own (sender 1) and a
    // worker thread sends through a handle at the same time (sender 2).
    let (handles_tx, handles_rx) = mpsc::channel();
    let mut seq = 0u32;
    let (recorder, _events) = Recorder::new(move |ctx, conn, data| {
        for _ in 0..data.len() {
            ctx.send(conn, message(1, seq, size(1, seq)))
                .expect("queued (the hard limit is raised for this test)");
            seq += 1;
        }
    });
    let recorder = recorder.on_open(move |ctx, info| {
        let _ = handles_tx.send(ctx.handle(info.id).unwrap());
    });
    let server = common::spawn(
        Server::builder().output_limits(1 << 20, 256 << 10, 1 << 30),
        recorder.quiet(),
    );
    let mut client = common::connect(server.local_addr());
    let handle = handles_rx.recv_timeout(TIMEOUT).unwrap();
    let worker = handle_sender(handle, 2, 300);
    // 300 requests in small writes, while the worker sends.
    let mut writer = client.try_clone().unwrap();
    let requests = std::thread::spawn(move || {
        use std::io::Write;
        for _ in 0..100 {
            writer.write_all(b"xyz").unwrap();
        }
    });
    check_messages(&mut client, &[(1, 300), (2, 300)]);
    requests.join().unwrap();
    worker.join().unwrap();
    server.stop_and_join().unwrap();
}
