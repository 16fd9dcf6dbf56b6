//! The chat server of `examples/chat.rs`, written with the async face: the first line a client
//! sends is its name; every later line goes to everyone else as `name: line`; joins and leaves
//! are announced. One buffer is shared by all recipients of a broadcast (a `Bytes` clone is a
//! reference count, not a copy).
//!
//! ```text
//! cargo run --example chat_async -- [ADDR] [--reactors N]   # default 127.0.0.1:7878, on tokio
//! ```
//!
//! ADDR is `IP:PORT` or `unix:/path` (a Unix domain socket, removed again on stop).
//! `--reactors N` runs N reactor threads (default 1): a client's `ConnHandle` reaches it on
//! whichever reactor serves it.
//!
//! Prints `listening on <addr>` first, and stops gracefully on SIGINT or SIGTERM.

use epoll_server::{Bytes, ConnHandle, ConnId, Connection, Server};
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// Longest line kept before a newline arrives; a longer one closes the client.
const MAX_LINE: usize = 4096;

/// Named clients, each reachable through a thread-safe handle.
type Members = Arc<Mutex<HashMap<ConnId, ConnHandle>>>;

fn broadcast(members: &Members, except: ConnId, text: String) {
    let msg = Bytes::from(text);
    let members = members.lock().unwrap_or_else(|p| p.into_inner());
    for (&id, handle) in members.iter() {
        // A member that does not read past its output limit is dropped rather than waited for.
        if id != except && handle.send(msg.clone()).is_err() {
            handle.close();
        }
    }
}

async fn client(conn: Connection, members: Members) -> io::Result<()> {
    let id = conn.id();
    let handle = conn.handle();
    let (mut inbound, mut outbound) = conn.split();
    outbound
        .send(Bytes::from_static(b"enter your name: "))
        .await?;
    let mut name: Option<String> = None;
    let mut partial = Vec::new();
    let result = async {
        while let Some(buf) = inbound.next().await {
            partial.extend_from_slice(&buf?);
            while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
                let rest = partial.split_off(pos + 1);
                let mut line = std::mem::replace(&mut partial, rest);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let line = String::from_utf8_lossy(&line).into_owned();
                match &name {
                    None => {
                        let n = match line.trim() {
                            "" => format!("guest{id}"),
                            n => n.to_string(),
                        };
                        outbound
                            .feed(Bytes::from(format!("welcome, {n}\n")))
                            .await?;
                        broadcast(&members, id, format!("* {n} joined\n"));
                        members
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(id, handle.clone());
                        name = Some(n);
                    }
                    Some(n) => broadcast(&members, id, format!("{n}: {line}\n")),
                }
            }
            if partial.len() > MAX_LINE {
                outbound
                    .send(Bytes::from_static(b"line too long\n"))
                    .await?;
                break;
            }
        }
        io::Result::Ok(())
    }
    .await;
    members
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    if let Some(n) = name {
        broadcast(&members, id, format!("* {n} left\n"));
    }
    result
}

fn main() -> io::Result<()> {
    let mut addr = "127.0.0.1:7878".to_string();
    let mut reactors = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--reactors" => {
                reactors = args
                    .next()
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|&n| n >= 1)
                    .unwrap_or_else(|| {
                        eprintln!("--reactors needs a number of at least 1");
                        std::process::exit(2)
                    });
            }
            other => addr = other.to_string(),
        }
    }
    let server = Server::builder()
        .reactors(reactors)
        .bind_address_async(&listen_address(&addr))?
        .build_async()?;
    epoll_server::stop_on_signals(&server.handle(), &[libc::SIGINT, libc::SIGTERM])?;
    println!("listening on {}", server.addresses()[0]);
    io::stdout().flush()?;
    let mut incoming = server.incoming();
    let running = server.spawn()?;
    let members: Members = Arc::default();
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    rt.block_on(async {
        while let Some(conn) = incoming.next().await {
            let members = members.clone();
            tokio::spawn(async move {
                if let Err(e) = client(conn, members).await {
                    eprintln!("client: {e}");
                }
            });
        }
    });
    running.join()
}

/// The listen address argument: `IP:PORT` or `unix:/path`; exits with a message if invalid.
fn listen_address(arg: &str) -> epoll_server::Address {
    arg.parse().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    })
}
