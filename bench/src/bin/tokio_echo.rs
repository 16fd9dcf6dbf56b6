//! Tokio-native echo server: the idiomatic one-task-per-connection loop.
//!
//! `tokio_echo <addr> --flavor current|multi` picks the current-thread or
//! the multi-thread runtime (default worker count: one per core). Each
//! connection gets a task with its own 64 KiB buffer that does
//! `read` → `write_all` until EOF, with `TCP_NODELAY` set on accept.

use bench::sys;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo(mut stream: TcpStream) {
    let mut buf = vec![0u8; bench::BUF_SIZE];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn serve(addr: std::net::SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    sys::announce(listener.local_addr()?);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(echo(stream));
            }
            Err(e) => eprintln!("tokio_echo: accept: {e}"),
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = sys::server_start();
    let args: Vec<String> = std::env::args().collect();
    let flavor = args
        .iter()
        .position(|a| a == "--flavor")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .unwrap_or("current");
    let rt = match flavor {
        "current" => tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?,
        "multi" => tokio::runtime::Builder::new_multi_thread()
            .enable_io()
            .build()?,
        other => {
            eprintln!("tokio_echo: unknown --flavor {other} (current|multi)");
            std::process::exit(2);
        }
    };
    rt.block_on(serve(addr))
}
