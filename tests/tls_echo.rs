//! The `tls_echo` example, run end to end as a separate process: a rustls client (blocking,
//! `rustls::StreamOwned` over a std `TcpStream`, ring provider) trusting the certificate the
//! example prints, or one the test made and handed over with `--cert/--key`.
//!
//! Each test first runs `cargo build --example tls_echo` (once per test binary, same profile and
//! target directory), so `cargo test --test tls_echo` never tests a stale or missing binary.

mod common;
mod common_process;

use common::is_reset;
use common_process::Example;
use futures_rustls::pki_types::pem::PemObject;
use futures_rustls::pki_types::{CertificateDer, ServerName};
use futures_rustls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rand::RngCore;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long the example may take to exit after a stop signal.
const EXIT_WITHIN: Duration = Duration::from_secs(2);

/// Plaintext written per write call by the echo client.
const CHUNK: usize = 16 * 1024;

/// At most this much plaintext is written and not yet echoed back: far below what the socket
/// buffers hold, so neither side can block the other while the client writes and reads in turn.
const WINDOW: usize = 64 * 1024;

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A running `tls_echo` and the certificate file it printed.
struct TlsEcho {
    example: Example,
    cert: PathBuf,
}

impl TlsEcho {
    /// Starts the example on an ephemeral loopback port with `args` after the address, and
    /// reads its `listening on` and `certificate:` lines.
    fn start(args: &[&str]) -> TlsEcho {
        let example = Example::start("tls_echo", args);
        let line = example.next_line("certificate");
        let cert = PathBuf::from(
            line.strip_prefix("certificate: ")
                .unwrap_or_else(|| panic!("second line is {line:?}")),
        );
        TlsEcho { example, cert }
    }

    fn addr(&self) -> SocketAddr {
        self.example.addr
    }

    /// Sends `signal` and returns the exit status, which must come within [`EXIT_WITHIN`].
    fn stop_with(self, signal: &str) -> ExitStatus {
        self.example.stop_with(signal, EXIT_WITHIN)
    }
}

/// A client configuration (ring provider) trusting only the certificate(s) in `pem`.
fn client_config(pem: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pem).expect("read the certificate") {
        roots.add(cert.expect("parse the certificate")).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A TLS client to `addr`, checking the server's certificate against `name` (a DNS name or an
/// IP address); the handshake completes before it returns.
#[track_caller]
fn tls_connect(addr: SocketAddr, config: &Arc<ClientConfig>, name: &str) -> Tls {
    let sock = common::connect(addr);
    let name = ServerName::try_from(name.to_string()).expect("server name");
    let conn = ClientConnection::new(config.clone(), name).expect("client connection");
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .unwrap_or_else(|e| panic!("TLS handshake: {e}"));
    }
    tls
}

/// Reads at least one byte of plaintext into `got`; end of stream or an error fails the test.
#[track_caller]
fn read_some(tls: &mut Tls, buf: &mut [u8], got: &mut Vec<u8>, expected: usize) {
    match tls.read(buf) {
        Ok(0) => panic!("end of stream after {} of {expected} bytes", got.len()),
        Ok(n) => got.extend_from_slice(&buf[..n]),
        Err(e) => panic!("read after {} of {expected} bytes: {e}", got.len()),
    }
}

/// Writes `data` in chunks while reading the echo (never more than [`WINDOW`] ahead), and
/// checks that exactly the same bytes come back.
#[track_caller]
fn assert_echo(tls: &mut Tls, data: &[u8]) {
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 64 * 1024];
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        tls.write_all(chunk).expect("write to the TLS echo server");
        tls.flush().expect("flush to the TLS echo server");
        let sent = i * CHUNK + chunk.len();
        while got.len() + WINDOW < sent {
            read_some(tls, &mut buf, &mut got, data.len());
        }
    }
    while got.len() < data.len() {
        read_some(tls, &mut buf, &mut got, data.len());
    }
    assert_eq!(got.len(), data.len(), "echoed more than was sent");
    if let Some(i) = (0..data.len()).find(|&i| got[i] != data[i]) {
        panic!(
            "echo differs from what was sent at byte {i} of {}",
            data.len()
        );
    }
}

/// Sends close_notify and expects the server's close_notify (a clean end of stream) back.
#[track_caller]
fn close(mut tls: Tls) {
    tls.conn.send_close_notify();
    tls.flush().expect("send close_notify");
    let mut rest = Vec::new();
    match tls.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{} stray bytes before the end", rest.len()),
        Err(e) => panic!("expected the server's close_notify, got {e}"),
    }
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut data);
    data
}

#[test]
fn one_mebibyte_of_random_bytes_echoes_byte_for_byte() {
    let started = Instant::now();
    let example = TlsEcho::start(&[]);
    let config = client_config(&example.cert);
    let mut tls = tls_connect(example.addr(), &config, "localhost");
    assert_echo(&mut tls, b"hello over TLS");
    assert_echo(&mut tls, &random_bytes(1 << 20));
    assert_echo(&mut tls, b"and still there");
    close(tls);
    // The certificate also names the IP address.
    let mut by_ip = tls_connect(example.addr(), &config, "127.0.0.1");
    assert_echo(&mut by_ip, &random_bytes(100_000));
    close(by_ip);
    let status = example.stop_with("TERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    eprintln!("1 MiB echo test: {:?}", started.elapsed());
}

#[test]
fn a_bad_handshake_closes_only_that_connection() {
    let example = TlsEcho::start(&[]);
    let config = client_config(&example.cert);
    let mut before = tls_connect(example.addr(), &config, "localhost");
    assert_echo(&mut before, b"before the bad client");

    // Not a ClientHello: the server must close this connection, whatever it sends first (a TLS
    // alert, perhaps); the socket stays open on our side so that it is the server that ends it.
    let mut raw = common::connect(example.addr());
    raw.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\nnot a ClientHello at all")
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut alert = 0;
    loop {
        match raw.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                alert += n;
                assert!(alert < 4096, "{alert} bytes in answer to garbage");
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_reset(&e) => break,
            Err(e) => panic!("expected the server to close the bad connection, got {e}"),
        }
    }

    // The connection that was open goes on, and a new client gets its echo.
    assert_echo(&mut before, b"after the bad client");
    let mut after = tls_connect(example.addr(), &config, "localhost");
    assert_echo(&mut after, &random_bytes(200_000));
    close(after);
    close(before);
    let status = example.stop_with("INT");
    assert!(status.success(), "exit status after SIGINT: {status}");
}

#[test]
fn twenty_concurrent_clients_echo_64_kib_each() {
    let started = Instant::now();
    let example = TlsEcho::start(&[]);
    let config = client_config(&example.cert);
    let addr = example.addr();
    thread::scope(|s| {
        let clients: Vec<_> = (0..20)
            .map(|i| {
                let config = &config;
                s.spawn(move || {
                    let name = if i % 2 == 0 { "localhost" } else { "127.0.0.1" };
                    let mut tls = tls_connect(addr, config, name);
                    // Each client's own bytes, so a mix-up between connections would show.
                    let data: Vec<u8> = (0..64 * 1024).map(|j| (i * 31 + j % 251) as u8).collect();
                    assert_echo(&mut tls, &data);
                    close(tls);
                })
            })
            .collect();
        for client in clients {
            client.join().expect("a client failed");
        }
    });
    let status = example.stop_with("INT");
    assert!(status.success(), "exit status after SIGINT: {status}");
    eprintln!("20 clients × 64 KiB: {:?}", started.elapsed());
}

#[test]
fn cert_and_key_options_serve_the_given_certificate() {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir();
    let tag = format!("tls_echo-test-{}", std::process::id());
    let cert_path = dir.join(format!("{tag}-cert.pem"));
    let key_path = dir.join(format!("{tag}-key.pem"));
    std::fs::write(&cert_path, made.cert.pem()).unwrap();
    std::fs::write(&key_path, made.key_pair.serialize_pem()).unwrap();

    let example = TlsEcho::start(&[
        "--cert",
        cert_path.to_str().unwrap(),
        "--key",
        key_path.to_str().unwrap(),
    ]);
    assert_eq!(example.cert, cert_path, "printed certificate path");
    // Trusting only the test's certificate: the handshake proves the server uses it.
    let config = client_config(&cert_path);
    let mut tls = tls_connect(example.addr(), &config, "localhost");
    assert_echo(&mut tls, &random_bytes(300_000));
    close(tls);
    let status = example.stop_with("INT");
    assert!(status.success(), "exit status after SIGINT: {status}");
    // The given certificate is the user's: it stays.
    assert!(cert_path.is_file(), "the --cert file was removed");
    let _ = std::fs::remove_file(&cert_path);
    let _ = std::fs::remove_file(&key_path);
}

#[test]
fn sigint_exits_zero_and_removes_the_generated_certificate() {
    let example = TlsEcho::start(&[]);
    let cert = example.cert.clone();
    assert!(cert.is_file(), "{} missing", cert.display());
    let config = client_config(&cert);
    let mut tls = tls_connect(example.addr(), &config, "localhost");
    assert_echo(&mut tls, b"ping");
    // A client still connected at the stop: the server closes it.
    let status = example.stop_with("INT");
    assert!(status.success(), "exit status after SIGINT: {status}");
    assert!(!cert.exists(), "{} left behind", cert.display());
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest);
}
