//! The examples, run end to end as separate processes: they print their address, serve
//! clients, and exit 0 soon after SIGTERM or SIGINT.
//!
//! `cargo test` builds the examples next to the test binaries (`target/<profile>/examples`);
//! when they are not there (e.g. a test binary run on its own), these tests say so and pass.

mod common;

use common::{assert_echo, assert_nothing_to_read, connect, read_to_eof};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

/// How long an example may take to exit after a stop signal.
const EXIT_WITHIN: Duration = Duration::from_secs(2);

/// A running example process; killed if the test ends early.
struct Example {
    child: Child,
    /// Its stdout lines; the channel disconnects when the process closes stdout (exits).
    lines: Receiver<String>,
    addr: SocketAddr,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn example_path(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/<test binary> → target/<profile>/examples/<name>
    let path = exe.parent()?.parent()?.join("examples").join(name);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("{} not built; skipping", path.display());
        None
    }
}

impl Example {
    /// Starts example `name` on an ephemeral loopback port and reads its address line.
    fn start(name: &str) -> Option<Example> {
        Example::start_with(name, &[])
    }

    /// The same, with more arguments after the address.
    fn start_with(name: &str, args: &[&str]) -> Option<Example> {
        let path = example_path(name)?;
        let mut child = Command::new(&path)
            .arg("127.0.0.1:0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let first = lines
            .recv_timeout(common::TIMEOUT)
            .unwrap_or_else(|_| panic!("{name} printed no first line"));
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{name}'s first line is {first:?}"));
        let addr: SocketAddr = addr
            .parse()
            .unwrap_or_else(|e| panic!("{name} printed address {addr:?}: {e}"));
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        assert_ne!(addr.port(), 0, "{name} printed port 0, not the bound port");
        Some(Example { child, lines, addr })
    }

    /// Sends `signal` (a `kill` name such as `TERM`) and returns the exit status, which must
    /// come within [`EXIT_WITHIN`].
    fn stop_with(mut self, signal: &str) -> ExitStatus {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
        // The process's stdout closes when it exits.
        let deadline = std::time::Instant::now() + EXIT_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("still running {EXIT_WITHIN:?} after SIG{signal}")
                }
            }
        }
        self.child.wait().expect("reap the example")
    }
}

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
    let Some(example) = Example::start("echo_callback") else {
        return;
    };
    let mut a = connect(example.addr);
    let mut b = connect(example.addr);
    assert_echo(&mut a, b"hello, example");
    assert_echo(&mut b, &common::pattern(0, 300_000));
    assert_echo(&mut a, b"still there");

    let status = example.stop_with("TERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert_eq!(read_to_eof(&mut a).unwrap(), b"");
}

#[test]
fn echo_callback_example_exits_on_sigint() {
    let Some(example) = Example::start("echo_callback") else {
        return;
    };
    let mut a = connect(example.addr);
    assert_echo(&mut a, b"ping");
    let status = example.stop_with("INT");
    assert!(status.success(), "exit status after SIGINT: {status}");
}

#[test]
fn chat_example_names_announces_and_broadcasts() {
    if let Some(example) = Example::start("chat") {
        chat_script(example);
    }
}

#[test]
fn chat_async_example_names_announces_and_broadcasts() {
    if let Some(example) = Example::start("chat_async") {
        chat_script(example);
    }
}

#[test]
fn async_echo_example_echoes_on_every_executor_and_exits_on_signals() {
    for (executor, signal) in [
        ("tokio", "TERM"),
        ("tokio-mt", "INT"),
        ("smol", "TERM"),
        ("futures", "INT"),
    ] {
        let Some(example) = Example::start_with("echo", &["--executor", executor]) else {
            return;
        };
        let mut a = connect(example.addr);
        let mut b = connect(example.addr);
        assert_echo(&mut a, b"hello, async example");
        assert_echo(&mut b, &common::pattern(1, 300_000));
        let status = example.stop_with(signal);
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

    let status = example.stop_with("INT");
    assert!(status.success(), "exit status after SIGINT: {status}");
    assert_eq!(read_to_eof(&mut alice).unwrap(), b"");
}

#[test]
fn chat_example_exits_on_sigterm() {
    let Some(example) = Example::start("chat") else {
        return;
    };
    let mut c = connect(example.addr);
    expect_text(&mut c, "enter your name: ");
    let status = example.stop_with("TERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
