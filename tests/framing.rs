//! Framing codecs on a real server: whole frames reach the handler and the async stream,
//! outbound frames are encoded, and an oversize frame closes only its own connection.

use epoll_server::codec::{Framing, LengthWidth};
use epoll_server::{Bytes, CloseReason, ConnId, Context, Handler, SendErrorKind, Server};
use futures::{SinkExt, StreamExt};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Echoes each frame back, and reports what it saw.
struct FrameEcho {
    events: mpsc::Sender<String>,
}

impl Handler for FrameEcho {
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        let _ = self
            .events
            .send(format!("frame {}", String::from_utf8_lossy(&data)));
        if data.as_ref() == b"bad\nline" {
            unreachable!("a decoded line never holds a newline");
        }
        let reply = Bytes::from(format!("<{}>", String::from_utf8_lossy(&data)));
        ctx.send(conn, reply).expect("reply queued");
    }

    fn on_close(&mut self, _ctx: &mut Context<'_>, _conn: ConnId, reason: CloseReason) {
        let text = match reason {
            CloseReason::Error(e) => format!("closed error {:?} {e}", e.kind()),
            other => format!("closed {other}"),
        };
        let _ = self.events.send(text);
    }
}

/// A callback server with line framing (lines of at most `max` bytes) and a `FrameEcho`.
fn line_echo_server(max: usize) -> (epoll_server::ServerThread, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .framing(Framing::lines(max))
        .bind("127.0.0.1:0")
        .unwrap()
        .build(FrameEcho { events: tx })
        .unwrap()
        .spawn()
        .unwrap();
    (server, rx)
}

#[test]
fn line_echo_through_callbacks_delivers_whole_lines_however_they_are_split() {
    let (server, rx) = line_echo_server(64);
    let mut client = connect(server.local_addr());
    // One line split over three writes, then two lines (one CRLF) in one write.
    for part in [&b"hel"[..], b"lo wor", b"ld\n", b"second\r\nthird\n"] {
        client.write_all(part).unwrap();
        client.flush().unwrap();
    }
    let mut reader = BufReader::new(client.try_clone().unwrap());
    for want in ["<hello world>", "<second>", "<third>"] {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, format!("{want}\n"), "each reply is one encoded line");
    }
    for want in ["frame hello world", "frame second", "frame third"] {
        assert_eq!(rx.recv_timeout(TIMEOUT).unwrap(), want);
    }
    server.stop_and_join().unwrap();
}

#[test]
fn oversize_line_closes_only_that_connection_with_invalid_data() {
    let (server, rx) = line_echo_server(100);
    let mut good = connect(server.local_addr());
    let mut bad = connect(server.local_addr());
    bad.write_all(&[b'x'; 1000]).unwrap();
    // The offender is closed: its reads end (EOF or reset), never with a reply.
    let mut buf = [0u8; 16];
    match bad.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the oversize line got {n} bytes of reply"),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
    }
    let closed = rx.recv_timeout(TIMEOUT).unwrap();
    assert!(
        closed.starts_with("closed error InvalidData") && closed.contains("100"),
        "close reason names the limit: {closed}"
    );
    // The other connection is unaffected.
    good.write_all(b"still here\n").unwrap();
    let mut line = String::new();
    BufReader::new(good).read_line(&mut line).unwrap();
    assert_eq!(line, "<still here>\n");
    server.stop_and_join().unwrap();
}

struct Sender;

impl Handler for Sender {
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        // A frame the line encoder cannot write is refused, not sent mangled.
        let err = ctx.send(conn, Bytes::from_static(b"a\nb")).unwrap_err();
        assert_eq!(err.kind(), SendErrorKind::Invalid);
        ctx.send(conn, data).unwrap();
    }
}

#[test]
fn encoder_refuses_a_frame_it_cannot_encode() {
    let server = Server::builder()
        .framing(Framing::lines(100))
        .bind("127.0.0.1:0")
        .unwrap()
        .build(Sender)
        .unwrap()
        .spawn()
        .unwrap();
    let mut client = connect(server.local_addr());
    client.write_all(b"ok\n").unwrap();
    let mut line = String::new();
    BufReader::new(client).read_line(&mut line).unwrap();
    assert_eq!(line, "ok\n");
    server.stop_and_join().unwrap();
}

#[test]
fn length_prefixed_frames_through_the_async_face() {
    let server = Server::builder()
        .framing(Framing::length_prefixed(LengthWidth::U16, 1000))
        .bind_async("127.0.0.1:0")
        .unwrap()
        .build_async()
        .unwrap();
    let addr = server.local_addr();
    let mut incoming = server.incoming();
    let running = server.spawn().unwrap();
    let task = std::thread::spawn(move || {
        futures::executor::block_on(async {
            let conn = incoming.next().await.expect("a connection");
            let (mut inbound, mut outbound) = conn.split();
            let mut seen = Vec::new();
            while let Some(frame) = inbound.next().await {
                match frame {
                    Ok(frame) => {
                        seen.push(frame.clone());
                        outbound.send(frame).await.expect("echo");
                    }
                    Err(e) => return (seen, Some(e)),
                }
            }
            (seen, None)
        })
    });
    let mut client = connect(addr);
    let frames: [&[u8]; 3] = [b"one", b"", &[7u8; 999]];
    let mut wire = Vec::new();
    for f in frames {
        wire.extend_from_slice(&(f.len() as u16).to_be_bytes());
        wire.extend_from_slice(f);
    }
    // Byte by byte for the first frames: the stream still yields whole frames.
    for b in &wire[..10] {
        client.write_all(std::slice::from_ref(b)).unwrap();
    }
    client.write_all(&wire[10..]).unwrap();
    let mut echoed = vec![0u8; wire.len()];
    client.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, wire, "frames are re-encoded with their headers");
    // A declared length over the maximum ends the stream with InvalidData naming the limit.
    client.write_all(&2000u16.to_be_bytes()).unwrap();
    let (seen, err) = task.join().unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(&seen[2][..], &[7u8; 999][..]);
    let err = err.expect("the oversize frame is an error");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("1000"), "{err}");
    running.stop_and_join().unwrap();
}

#[test]
fn line_echo_through_the_async_face() {
    let server = Server::builder()
        .framing(Framing::lines(1 << 16))
        .bind_async("127.0.0.1:0")
        .unwrap()
        .build_async()
        .unwrap();
    let addr = server.local_addr();
    let mut incoming = server.incoming();
    let running = server.spawn().unwrap();
    let task = std::thread::spawn(move || {
        futures::executor::block_on(async {
            let conn = incoming.next().await.expect("a connection");
            let (inbound, outbound) = conn.split();
            inbound.forward(outbound).await
        })
    });
    let mut client = connect(addr);
    let mut expected = String::new();
    let mut sent = Vec::new();
    for i in 0..200 {
        let line = format!("line {i} {}\n", "z".repeat(i * 13 % 300));
        expected.push_str(&line);
        sent.extend_from_slice(line.as_bytes());
    }
    for chunk in sent.chunks(97) {
        client.write_all(chunk).unwrap();
    }
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = String::new();
    client.read_to_string(&mut got).unwrap();
    assert_eq!(got, expected);
    task.join().unwrap().unwrap();
    running.stop_and_join().unwrap();
}
