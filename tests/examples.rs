//! The examples, run end to end as separate processes: they print their address, serve
//! clients, and exit 0 soon after SIGTERM or SIGINT.
//!
//! Each example is built (or brought up to date) with `cargo build --example` before it runs,
//! so a test never runs a missing or stale binary (see `tests/common_process`).

mod common;
mod common_process;

use common::{assert_echo, assert_nothing_to_read, connect, read_to_eof};
use common_process::Example;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long an example may take to exit after a stop signal.
const EXIT_WITHIN: Duration = Duration::from_secs(2);

/// Reads exactly `expected.len()` bytes and compares them as text.
#[track_caller]
fn expect_text(stream: &mut TcpStream, expected: &str) {
    let mut got = vec![0u8; expected.len()];
    stream
        .read_exact(&mut got)
        .unwrap_or_else(|e| panic!("waiting for {expected:?}: {e}"));
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

#[test]
fn echo_callback_example_echoes_and_exits_on_sigterm() {
    let example = Example::start("echo_callback", &[]);
    let mut a = connect(example.addr);
    let mut b = connect(example.addr);
    assert_echo(&mut a, b"hello, example");
    assert_echo(&mut b, &common::pattern(0, 300_000));
    assert_echo(&mut a, b"still there");

    let status = example.stop_with("TERM", EXIT_WITHIN);
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert_eq!(read_to_eof(&mut a).unwrap(), b"");
}

#[test]
fn echo_callback_example_exits_on_sigint() {
    let example = Example::start("echo_callback", &[]);
    let mut a = connect(example.addr);
    assert_echo(&mut a, b"ping");
    let status = example.stop_with("INT", EXIT_WITHIN);
    assert!(status.success(), "exit status after SIGINT: {status}");
}

#[test]
fn chat_example_names_announces_and_broadcasts() {
    chat_script(Example::start("chat", &[]));
}

#[test]
fn chat_async_example_names_announces_and_broadcasts() {
    chat_script(Example::start("chat_async", &[]));
}

#[test]
fn async_echo_example_echoes_on_every_executor_and_exits_on_signals() {
    for (executor, signal) in [
        ("tokio", "TERM"),
        ("tokio-mt", "INT"),
        ("smol", "TERM"),
        ("futures", "INT"),
    ] {
        let example = Example::start("echo", &["--executor", executor]);
        let mut a = connect(example.addr);
        let mut b = connect(example.addr);
        assert_echo(&mut a, b"hello, async example");
        assert_echo(&mut b, &common::pattern(1, 300_000));
        let status = example.stop_with(signal, EXIT_WITHIN);
        assert!(
            status.success(),
            "{executor}: exit status after SIG{signal}: {status}"
        );
        assert_eq!(read_to_eof(&mut a).unwrap(), b"", "{executor}");
    }
}

/// Two clients chat: names (one split across writes, with CRLF), join and leave
/// announcements, broadcast to the others only; then SIGINT stops the server.
fn chat_script(example: Example) {
    let mut alice = connect(example.addr);
    expect_text(&mut alice, "enter your name: ");
    alice.write_all(b"alice\n").unwrap();
    expect_text(&mut alice, "welcome, alice\n");

    let mut bob = connect(example.addr);
    expect_text(&mut bob, "enter your name: ");
    // A name split across writes, with a CRLF ending.
    bob.write_all(b"bo").unwrap();
    bob.write_all(b"b\r\n").unwrap();
    expect_text(&mut bob, "welcome, bob\n");
    expect_text(&mut alice, "* bob joined\n");

    alice.write_all(b"hi bob\n").unwrap();
    expect_text(&mut bob, "alice: hi bob\n");
    bob.write_all(b"hi alice\nhow are you?\n").unwrap();
    expect_text(&mut alice, "bob: hi alice\nbob: how are you?\n");
    // Nobody hears their own lines.
    assert_nothing_to_read(&mut alice, Duration::from_millis(100));
    assert_nothing_to_read(&mut bob, Duration::from_millis(100));

    drop(bob);
    expect_text(&mut alice, "* bob left\n");

    let status = example.stop_with("INT", EXIT_WITHIN);
    assert!(status.success(), "exit status after SIGINT: {status}");
    assert_eq!(read_to_eof(&mut alice).unwrap(), b"");
}

#[test]
fn chat_example_exits_on_sigterm() {
    let example = Example::start("chat", &[]);
    let mut c = connect(example.addr);
    expect_text(&mut c, "enter your name: ");
    let status = example.stop_with("TERM", EXIT_WITHIN);
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[test]
fn chat_example_broadcasts_across_reactors_in_order_per_sender() {
    chat_across_reactors(Example::start("chat", &["--reactors", "2"]));
}

#[test]
fn chat_async_example_broadcasts_across_reactors_in_order_per_sender() {
    chat_across_reactors(Example::start("chat_async", &["--reactors", "2"]));
}

/// Clients join with empty names, so each is named after its id (`guest#0.1`,
/// `guest#1/0.1`: the id names the reactor), until both reactors have two; then one client of
/// each reactor sends 30 numbered lines at once, and every client must get the other
/// senders' lines, each sender's in order.
fn chat_across_reactors(example: Example) {
    use std::io::BufRead;
    let mut clients: Vec<(String, std::io::BufReader<TcpStream>)> = Vec::new();
    let reactor_of = |name: &str| usize::from(name.contains('/'));
    let count = |clients: &Vec<(String, _)>, r: usize| {
        clients.iter().filter(|(n, _)| reactor_of(n) == r).count()
    };
    while count(&clients, 0) < 2 || count(&clients, 1) < 2 {
        assert!(clients.len() < 40, "every client went to one reactor");
        let mut c = connect(example.addr);
        expect_text(&mut c, "enter your name: ");
        c.write_all(b"\n").unwrap();
        let mut reader = std::io::BufReader::new(c);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let name = line
            .strip_prefix("welcome, ")
            .unwrap_or_else(|| panic!("welcome line, got {line:?}"))
            .trim_end()
            .to_string();
        clients.push((name, reader));
    }
    let senders: Vec<usize> = (0..2)
        .map(|r| {
            clients
                .iter()
                .position(|(n, _)| reactor_of(n) == r)
                .unwrap()
        })
        .collect();
    const LINES: usize = 30;
    for n in 0..LINES {
        for &s in &senders {
            let text = format!("line {n}\n");
            clients[s].1.get_mut().write_all(text.as_bytes()).unwrap();
        }
    }
    let names: Vec<String> = clients.iter().map(|(n, _)| n.clone()).collect();
    for (i, (name, reader)) in clients.iter_mut().enumerate() {
        let expected: Vec<usize> = senders.iter().copied().filter(|&s| s != i).collect();
        let mut next = vec![0usize; senders.len()];
        let done = |next: &Vec<usize>| {
            senders
                .iter()
                .zip(next)
                .all(|(&s, &n)| s == i || n == LINES)
        };
        while !done(&next) {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(!line.is_empty(), "{name}: the server closed the chat");
            if line.starts_with("* ") {
                continue; // a join announcement
            }
            let (from, text) = line.trim_end().split_once(": ").expect("name: line");
            let k = senders
                .iter()
                .position(|&s| names[s] == from)
                .unwrap_or_else(|| panic!("{name}: a line from a non-sender {from}"));
            assert!(expected.contains(&senders[k]), "{name} heard itself");
            assert_eq!(
                text,
                format!("line {}", next[k]),
                "{name}: {from}'s lines out of order"
            );
            next[k] += 1;
        }
    }
    let status = example.stop_with("TERM", EXIT_WITHIN);
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
