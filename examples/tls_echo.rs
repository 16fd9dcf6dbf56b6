//! TLS echo server on the I/O view: `futures_rustls::TlsAcceptor` over [`Connection::into_io`],
//! run on a `futures::executor::ThreadPool` (one task per connection; the accept loop runs on
//! the main thread with `futures::executor::block_on`).
//!
//! ```text
//! cargo run --example tls_echo -- [ADDR] [--cert CERT.pem --key KEY.pem]
//! ```
//!
//! ADDR is `IP:PORT` or `unix:/path` (a Unix domain socket, removed again on stop).
//!
//! ADDR defaults to 127.0.0.1:7878. Without `--cert`/`--key`, a self-signed certificate for
//! `localhost` and `127.0.0.1` is made at start (rcgen) and written as PEM to
//! `$TMPDIR/tls_echo-<pid>.pem` (removed again on a graceful stop). Prints `listening on <addr>`
//! first, then `certificate: <path>` (the PEM a client should trust: the generated one, or the
//! `--cert` file), and stops gracefully on SIGINT or SIGTERM. TLS uses rustls with the *ring*
//! crypto provider, TLS 1.2 and 1.3. A failed handshake is logged to stderr and closes only
//! that connection.
//!
//! Try it with `openssl s_client -connect 127.0.0.1:7878 -CAfile <the printed path>`.

use epoll_server::{Connection, Server};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use futures_rustls::pki_types::pem::PemObject;
use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer};
use futures_rustls::rustls::{self, ServerConfig};
use futures_rustls::TlsAcceptor;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// Plaintext read buffer per connection (rustls hands out at most one record's worth anyway).
const BUF: usize = 16 * 1024;

/// Handshakes, then echoes the plaintext until the client's end of stream (close_notify), then
/// sends close_notify and half-closes. Every chunk read is written and flushed before the next
/// read: the I/O view gathers small writes until a flush, and an echo must not sit on them.
async fn serve_tls(acceptor: TlsAcceptor, conn: Connection) {
    let peer = conn.peer_addr().clone();
    let mut tls = match acceptor.accept(conn.into_io()).await {
        Ok(tls) => tls,
        Err(e) => {
            // Dropping the stream closes this connection only.
            eprintln!("{peer}: TLS handshake failed: {e}");
            return;
        }
    };
    if let Err(e) = echo(&mut tls).await {
        if !matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
        ) {
            eprintln!("{peer}: {e}");
        }
    }
}

async fn echo(tls: &mut (impl futures::AsyncRead + futures::AsyncWrite + Unpin)) -> io::Result<()> {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        tls.write_all(&buf[..n]).await?;
        tls.flush().await?;
    }
    tls.close().await // close_notify, flush, then half-close
}

/// The certificate chain and key: from the given PEM files, or made now (self-signed) and the
/// certificate written to a temp file. Returns the chain, the key, the certificate's path and
/// whether that file is ours to remove.
fn load_or_make(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> io::Result<(
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    PathBuf,
    bool,
)> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
    };
    match (cert, key) {
        (Some(cert_path), Some(key_path)) => {
            let chain = CertificateDer::pem_file_iter(&cert_path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad(&cert_path.display().to_string(), &e))?;
            if chain.is_empty() {
                return Err(bad(
                    &cert_path.display().to_string(),
                    &"no certificate in it",
                ));
            }
            let key = PrivateKeyDer::from_pem_file(&key_path)
                .map_err(|e| bad(&key_path.display().to_string(), &e))?;
            Ok((chain, key, cert_path, false))
        }
        (None, None) => {
            let made = rcgen::generate_simple_self_signed(vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
            ])
            .map_err(|e| bad("self-signed certificate", &e))?;
            let path = std::env::temp_dir().join(format!("tls_echo-{}.pem", std::process::id()));
            std::fs::write(&path, made.cert.pem())?;
            let key = PrivateKeyDer::try_from(made.key_pair.serialize_der())
                .map_err(|e| bad("generated key", &e))?;
            Ok((vec![made.cert.der().clone()], key, path, true))
        }
        _ => usage("--cert and --key go together"),
    }
}

fn main() -> io::Result<()> {
    let mut addr = "127.0.0.1:7878".to_string();
    let (mut cert, mut key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut path = || {
            args.next()
                .map(PathBuf::from)
                .unwrap_or_else(|| usage(&format!("{arg} needs a file")))
        };
        match arg.as_str() {
            "--cert" => cert = Some(path()),
            "--key" => key = Some(path()),
            flag if flag.starts_with("--") => usage(&format!("unknown option {flag}")),
            other => addr = other.to_string(),
        }
    }
    let (chain, key, cert_path, temporary) = load_or_make(cert, key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let server = Server::builder()
        .bind_address_async(&listen_address(&addr))?
        .build_async()?;
    epoll_server::stop_on_signals(&server.handle(), &[libc::SIGINT, libc::SIGTERM])?;
    println!("listening on {}", server.addresses()[0]);
    println!("certificate: {}", cert_path.display());
    io::stdout().flush()?;
    let mut incoming = server.incoming();
    let running = server.spawn()?;

    let pool = futures::executor::ThreadPool::new()?;
    futures::executor::block_on(async {
        while let Some(conn) = incoming.next().await {
            pool.spawn_ok(serve_tls(acceptor.clone(), conn));
        }
    });
    let stopped = running.join();
    if temporary {
        let _ = std::fs::remove_file(&cert_path);
    }
    stopped
}

fn usage(problem: &str) -> ! {
    eprintln!("{problem}\nusage: tls_echo [ADDR] [--cert CERT.pem --key KEY.pem]");
    std::process::exit(2)
}

/// The listen address argument: `IP:PORT` or `unix:/path`; exits with a message if invalid.
fn listen_address(arg: &str) -> epoll_server::Address {
    arg.parse().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    })
}
