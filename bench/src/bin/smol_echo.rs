//! smol-native echo server: one task per connection on a single executor.
//!
//! The executor runs inside `smol::block_on` on the main thread, which also
//! drives the async-io reactor while idle (the smol counterpart of tokio's
//! current-thread runtime). Each connection task owns a 64 KiB buffer and
//! loops `read` → `write_all` until EOF, with `TCP_NODELAY` set on accept.

use bench::sys;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};

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

fn main() -> std::io::Result<()> {
    let addr = sys::server_start();
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let listener = TcpListener::bind(addr).await?;
        sys::announce(listener.local_addr()?);
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    ex.spawn(echo(stream)).detach();
                }
                Err(e) => eprintln!("smol_echo: accept: {e}"),
            }
        }
    }))
}
