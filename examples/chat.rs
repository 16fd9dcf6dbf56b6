//! Chat server on the callback face (the C++ design's example): the first line a client sends
//! is its name; every later line is sent to everyone else as `name: line`; joins and leaves
//! are announced.
//!
//! ```text
//! cargo run --example chat -- [ADDR]      # default 127.0.0.1:7878
//! ```
//!
//! ADDR is `IP:PORT` or `unix:/path` (a Unix domain socket, removed again on stop).
//!
//! Prints `listening on <addr>` first, and stops gracefully on SIGINT or SIGTERM.

use epoll_server::{Bytes, CloseReason, ConnId, ConnInfo, Context, Handler, Server};
use std::collections::HashMap;
use std::io::Write;

/// Longest line kept before a newline arrives; a longer one closes the client.
const MAX_LINE: usize = 4096;

#[derive(Default)]
struct Client {
    name: Option<String>,
    partial: Vec<u8>,
}

#[derive(Default)]
struct Chat {
    clients: HashMap<ConnId, Client>,
}

impl Chat {
    /// Sends one buffer to every named client but `except`: one allocation, shared by all.
    fn broadcast(&mut self, ctx: &mut Context<'_>, except: ConnId, text: String) {
        let msg = Bytes::from(text);
        for (&id, client) in &self.clients {
            if id != except && client.name.is_some() && ctx.send(id, msg.clone()).is_err() {
                // A client that does not read past the hard limit is dropped, not waited for.
                ctx.close(id);
            }
        }
    }

    fn line(&mut self, ctx: &mut Context<'_>, conn: ConnId, line: String) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        match &client.name {
            None => {
                let name = line.trim().to_string();
                let name = if name.is_empty() {
                    format!("guest{conn}")
                } else {
                    name
                };
                client.name = Some(name.clone());
                let _ = ctx.send(conn, format!("welcome, {name}\n"));
                self.broadcast(ctx, conn, format!("* {name} joined\n"));
            }
            Some(name) => {
                let text = format!("{name}: {line}\n");
                self.broadcast(ctx, conn, text);
            }
        }
    }
}

impl Handler for Chat {
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnInfo) {
        self.clients.insert(conn.id, Client::default());
        let _ = ctx.send(conn.id, "enter your name: ");
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        let mut lines = Vec::new();
        if let Some(client) = self.clients.get_mut(&conn) {
            client.partial.extend_from_slice(&data);
            while let Some(pos) = client.partial.iter().position(|&b| b == b'\n') {
                let rest = client.partial.split_off(pos + 1);
                let mut line = std::mem::replace(&mut client.partial, rest);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                lines.push(String::from_utf8_lossy(&line).into_owned());
            }
            if client.partial.len() > MAX_LINE {
                let _ = ctx.send(conn, "line too long\n");
                ctx.close(conn);
                return;
            }
        }
        for line in lines {
            self.line(ctx, conn, line);
        }
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, _reason: CloseReason) {
        if let Some(Client {
            name: Some(name), ..
        }) = self.clients.remove(&conn)
        {
            self.broadcast(ctx, conn, format!("* {name} left\n"));
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let server = Server::builder()
        .bind_address(&listen_address(&addr))?
        .build(Chat::default())?;
    epoll_server::stop_on_signals(&server.handle(), &[libc::SIGINT, libc::SIGTERM])?;
    println!("listening on {}", server.addresses()[0]);
    std::io::stdout().flush()?;
    server.run()
}

/// The listen address argument: `IP:PORT` or `unix:/path`; exits with a message if invalid.
fn listen_address(arg: &str) -> epoll_server::Address {
    arg.parse().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    })
}
