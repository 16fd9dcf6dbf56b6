//! Every example listens on a Unix domain socket when given `unix:/path`: it prints that
//! address, serves a client over it, exits 0 on SIGTERM and removes the socket file.

mod common;
mod common_process;

use common::TIMEOUT;
use common_process::Example;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// A socket path of its own for each example.
fn socket_path(example: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "epoll-server-example-{example}-{}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

fn client(path: &PathBuf) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect to the example's Unix socket");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

#[track_caller]
fn expect(stream: &mut UnixStream, expected: &[u8]) {
    let mut got = vec![0u8; expected.len()];
    stream.read_exact(&mut got).expect("the example's answer");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
}

/// Starts `name` on a Unix socket, runs `talk` against it, stops it and checks the file went.
fn on_unix(name: &str, args: &[&str], talk: impl FnOnce(&PathBuf)) {
    let path = socket_path(name);
    let example = Example::start_at(name, &format!("unix:{}", path.display()), args);
    talk(&path);
    let status = example.stop_with("TERM", Duration::from_secs(5));
    assert!(
        status.success(),
        "{name} exit status after SIGTERM: {status}"
    );
    assert!(!path.exists(), "{name} left its socket file behind");
}

fn echo_talk(path: &PathBuf) {
    let mut c = client(path);
    c.write_all(b"hello over unix").unwrap();
    expect(&mut c, b"hello over unix");
}

#[test]
fn echo_callback_on_a_unix_socket() {
    on_unix("echo_callback", &[], echo_talk);
}

#[test]
fn async_echo_on_a_unix_socket() {
    on_unix("echo", &["--executor", "tokio"], echo_talk);
}

#[test]
fn chat_examples_on_a_unix_socket() {
    for name in ["chat", "chat_async"] {
        on_unix(name, &[], |path| {
            let mut alice = client(path);
            expect(&mut alice, b"enter your name: ");
            alice.write_all(b"alice\n").unwrap();
            expect(&mut alice, b"welcome, alice\n");
        });
    }
}

#[test]
fn hyper_hello_on_a_unix_socket() {
    on_unix("hyper_hello", &[], |path| {
        let mut c = client(path);
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("Hello, World!"), "{reply}");
    });
}

#[test]
fn tls_echo_listens_on_a_unix_socket() {
    // The TLS handshake itself is tested over TCP (tests/tls_echo.rs); here, that the socket
    // is served: a client that says nothing valid is answered by the TLS layer closing it.
    on_unix("tls_echo", &[], |path| {
        let mut c = client(path);
        c.write_all(b"not a TLS client hello\r\n\r\n").unwrap();
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
    });
}

#[test]
fn proxy_on_a_unix_socket_in_front_of_a_unix_echo() {
    let echo_path = socket_path("proxy-upstream");
    let echo_addr = format!("unix:{}", echo_path.display());
    let echo = Example::start_at("echo_callback", &echo_addr, &[]);
    on_unix("proxy", &[&echo_addr], echo_talk);
    assert!(echo.stop_with("TERM", Duration::from_secs(5)).success());
}

#[test]
fn redis_on_a_unix_socket() {
    on_unix("redis", &[], |path| {
        let mut c = client(path);
        c.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
            .unwrap();
        expect(&mut c, b"+OK\r\n$1\r\nv\r\n");
    });
}

#[test]
fn http_plaintext_on_a_unix_socket() {
    on_unix("http_plaintext", &[], |path| {
        let mut c = client(path);
        c.write_all(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("Hello, World!"), "{reply}");
    });
}
