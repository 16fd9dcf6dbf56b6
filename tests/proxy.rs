//! `examples/proxy.rs` as a child process in front of `echo_callback` (or a test-controlled
//! upstream): 200 verified echo connections, TCP and Unix, backpressure both ways, half-close
//! and reset forwarding, an unreachable upstream.

mod common;
mod common_process;

use common::TIMEOUT;
use common_process::Example;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

fn client(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the proxy");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Sends `len` patterned bytes (seeded by `seed`) in uneven writes from one thread and
/// checks the echo on another.
fn verified_echo(stream: TcpStream, seed: usize, len: usize) {
    let mut reader = stream.try_clone().unwrap();
    let check = std::thread::spawn(move || {
        let mut got = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while got < len {
            let n = reader.read(&mut buf).expect("read the echo");
            assert_ne!(n, 0, "connection {seed}: EOF after {got} of {len} bytes");
            for (i, b) in buf[..n].iter().enumerate() {
                assert_eq!(
                    *b,
                    byte(seed, got + i),
                    "connection {seed}: byte {}",
                    got + i
                );
            }
            got += n;
        }
        reader
    });
    let mut writer = stream;
    let mut sent = 0;
    let mut step = 1 + seed % 7000;
    while sent < len {
        let n = step.min(len - sent);
        let chunk: Vec<u8> = (sent..sent + n).map(|i| byte(seed, i)).collect();
        writer.write_all(&chunk).unwrap();
        sent += n;
        step = step * 3 % 9973 + 1;
    }
    let mut reader = check.join().expect("echo checker panicked");
    // A clean end: the half-close goes through the proxy and comes back as EOF.
    writer.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "connection {seed}: bytes after the echo");
}

fn byte(seed: usize, i: usize) -> u8 {
    (i.wrapping_mul(31).wrapping_add(seed.wrapping_mul(17)) % 251) as u8
}

#[test]
fn two_hundred_connections_through_the_proxy_lose_no_byte() {
    let echo = Example::start("echo_callback", &[]);
    let upstream = echo.addr.to_string();
    let proxy = Example::start("proxy", &[&upstream]);
    let threads: Vec<_> = (0..200)
        .map(|seed| {
            let addr = proxy.addr;
            std::thread::spawn(move || verified_echo(client(addr), seed, 64 * 1024 + seed * 311))
        })
        .collect();
    for t in threads {
        t.join().expect("a client failed");
    }
    assert!(proxy.stop_with("TERM", Duration::from_secs(10)).success());
    assert!(echo.stop_with("TERM", Duration::from_secs(10)).success());
}

#[test]
fn the_proxy_listens_on_and_connects_to_unix_sockets() {
    let dir = std::env::temp_dir();
    let pid = std::process::id();
    let echo_path = dir.join(format!("epoll-server-proxy-echo-{pid}.sock"));
    let proxy_path = dir.join(format!("epoll-server-proxy-{pid}.sock"));
    let echo_addr = format!("unix:{}", echo_path.display());
    let proxy_addr = format!("unix:{}", proxy_path.display());
    let echo = Example::start_at("echo_callback", &echo_addr, &[]);
    let proxy = Example::start_at("proxy", &proxy_addr, &[&echo_addr]);
    for seed in 0..20 {
        let mut c = std::os::unix::net::UnixStream::connect(&proxy_path).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        let data: Vec<u8> = (0..100_000).map(|i| byte(seed, i)).collect();
        let mut w = c.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        assert_eq!(got.len(), 100_000);
        assert!(got.iter().enumerate().all(|(i, b)| *b == byte(seed, i)));
    }
    // A TCP upstream behind a Unix listener works the same; the socket files go on stop.
    assert!(proxy.stop_with("TERM", Duration::from_secs(10)).success());
    assert!(echo.stop_with("TERM", Duration::from_secs(10)).success());
    assert!(
        !proxy_path.exists() && !echo_path.exists(),
        "socket files removed on stop"
    );
}

/// A proxy in front of a listener the test controls.
fn proxy_to_test_upstream() -> (Example, TcpListener) {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = Example::start("proxy", &[&upstream.local_addr().unwrap().to_string()]);
    (proxy, upstream)
}

fn accept(listener: &TcpListener) -> TcpStream {
    let (s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Writes without blocking until the socket takes no more (the peer side stopped reading
/// and every buffer between is full), giving up after `limit` bytes.
fn fill(stream: &mut TcpStream, limit: usize) -> usize {
    stream.set_nonblocking(true).unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    let mut total = 0;
    let mut idle_rounds = 0;
    while total < limit {
        match stream.write(&chunk) {
            Ok(n) => {
                total += n;
                idle_rounds = 0;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // The proxy may still be moving bytes along; it has stopped when the socket
                // stays full across several waits.
                idle_rounds += 1;
                if idle_rounds == 20 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    stream.set_nonblocking(false).unwrap();
    total
}

fn drain_exactly(stream: &mut TcpStream, len: usize) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    while got < len {
        let n = stream
            .read(&mut buf[..(len - got).min(256 * 1024)])
            .unwrap();
        assert_ne!(n, 0, "EOF after {got} of {len}");
        assert!(buf[..n].iter().all(|&b| b == 0x5a));
        got += n;
    }
}

#[test]
fn a_slow_side_pauses_the_other_both_ways_without_unbounded_buffering() {
    let (proxy, upstream) = proxy_to_test_upstream();
    let mut c = client(proxy.addr);
    c.write_all(b"!").unwrap();
    let mut up = accept(&upstream);
    let mut one = [0u8; 1];
    up.read_exact(&mut one).unwrap();
    // Client → upstream, the upstream not reading: the client's writes stop within a bound
    // (the kernel's buffers on both legs plus the proxy's 256 KiB high-water mark).
    let limit = 512 * 1024 * 1024;
    let sent = fill(&mut c, limit);
    assert!(sent < limit, "the proxy buffered without bound");
    assert!(sent > 256 * 1024, "sent only {sent} bytes");
    // Once the upstream reads, everything arrives.
    drain_exactly(&mut up, sent);
    // Upstream → client, the client not reading.
    let sent = fill(&mut up, limit);
    assert!(sent < limit, "the proxy buffered without bound");
    drain_exactly(&mut c, sent);
    // Both directions still work.
    c.write_all(b"ok").unwrap();
    let mut two = [0u8; 2];
    up.read_exact(&mut two).unwrap();
    assert_eq!(&two, b"ok");
    assert!(proxy.stop_with("TERM", Duration::from_secs(10)).success());
}

#[test]
fn a_half_close_is_forwarded_as_a_half_close_both_ways() {
    let (proxy, upstream) = proxy_to_test_upstream();
    let mut c = client(proxy.addr);
    c.write_all(b"request").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut up = accept(&upstream);
    let mut req = Vec::new();
    up.read_to_end(&mut req).unwrap();
    assert_eq!(
        req, b"request",
        "the request, then the client's end of file"
    );
    // The other direction is still open.
    up.write_all(b"response").unwrap();
    up.shutdown(Shutdown::Write).unwrap();
    let mut resp = Vec::new();
    c.read_to_end(&mut resp).unwrap();
    assert_eq!(resp, b"response");
    assert!(proxy.stop_with("TERM", Duration::from_secs(10)).success());
}

#[test]
fn a_reset_is_forwarded_as_a_reset_both_ways() {
    let (proxy, upstream) = proxy_to_test_upstream();
    // The client resets: the upstream sees a reset.
    let c = client(proxy.addr);
    (&c).write_all(b"x").unwrap();
    let mut up = accept(&upstream);
    let mut one = [0u8; 1];
    up.read_exact(&mut one).unwrap();
    common::reset(c);
    let got = common::read_until_reset(&mut up);
    assert!(got.is_empty());
    // The upstream resets: the client sees a reset.
    let mut c = client(proxy.addr);
    c.write_all(b"y").unwrap();
    let up = accept(&upstream);
    (&up).read_exact(&mut one).unwrap();
    common::reset(up);
    let got = common::read_until_reset(&mut c);
    assert!(got.is_empty());
    assert!(proxy.stop_with("TERM", Duration::from_secs(10)).success());
}

#[test]
fn an_unreachable_upstream_resets_the_client_only() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let proxy = Example::start("proxy", &[&closed.to_string()]);
    for _ in 0..3 {
        // No write first: a write that met the reset would consume its error, and the read
        // after it would see a plain end of file.
        let mut c = client(proxy.addr);
        let got = common::read_until_reset(&mut c);
        assert!(got.is_empty());
    }
    assert!(proxy.stop_with("TERM", Duration::from_secs(10)).success());
}
