//! Chat server on the callback face (the C++ design's example): the first line a client sends
//! is its name; every later line is sent to everyone else as `name: line`; joins and leaves
//! are announced.
//!
//! ```text
//! cargo run --example chat -- [ADDR] [--reactors N]      # default 127.0.0.1:7878, 1 reactor
//! ```
//!
//! ADDR is `IP:PORT` or `unix:/path` (a Unix domain socket, removed again on stop).
//!
//! With `--reactors N`, N reactor threads serve the clients, each with its own handler; the
//! room (who is in it, under what name) is shared, and a broadcast reaches the clients of
//! every reactor: `Context::send` routes an id of another reactor to that reactor's queue,
//! so each sender's lines still arrive in order.
//!
//! Prints `listening on <addr>` first, and stops gracefully on SIGINT or SIGTERM.

use epoll_server::{Bytes, CloseReason, ConnId, ConnInfo, Context, Handler, Server};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Longest line kept before a newline arrives; a longer one closes the client.
const MAX_LINE: usize = 4096;

/// Everyone who has given a name, on every reactor.
type Room = Arc<Mutex<HashMap<ConnId, String>>>;

/// One reactor's handler: its clients' partial lines, and the shared room.
struct Chat {
    /// This reactor's clients, with the bytes of their unfinished line.
    partial: HashMap<ConnId, Vec<u8>>,
    room: Room,
}

impl Chat {
    fn broadcast(&mut self, ctx: &mut Context<'_>, except: ConnId, text: String) {
        let msg = Bytes::from(text);
        let room = self.room.lock().unwrap_or_else(|p| p.into_inner());
        for &id in room.keys() {
            if id != except && ctx.send(id, msg.clone()).is_err() {
                ctx.close(id);
            }
        }
    }

    fn line(&mut self, ctx: &mut Context<'_>, conn: ConnId, line: String) {
        let name = self
            .room
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&conn)
            .cloned();
        match name {
            None => {
                let name = match line.trim() {
                    "" => format!("guest{conn}"),
                    name => name.to_string(),
                };
                let _ = ctx.send(conn, format!("welcome, {name}\n"));
                self.broadcast(ctx, conn, format!("* {name} joined\n"));
                self.room
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(conn, name);
            }
            Some(name) => self.broadcast(ctx, conn, format!("{name}: {line}\n")),
        }
    }
}

impl Handler for Chat {
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnInfo) {
        self.partial.insert(conn.id, Vec::new());
        let _ = ctx.send(conn.id, "enter your name: ");
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        let mut lines = Vec::new();
        if let Some(partial) = self.partial.get_mut(&conn) {
            partial.extend_from_slice(&data);
            while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
                let rest = partial.split_off(pos + 1);
                let mut line = std::mem::replace(partial, rest);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                lines.push(String::from_utf8_lossy(&line).into_owned());
            }
            if partial.len() > MAX_LINE {
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
        self.partial.remove(&conn);
        let left = self
            .room
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&conn);
        if let Some(name) = left {
            self.broadcast(ctx, conn, format!("* {name} left\n"));
        }
    }
}

fn main() -> std::io::Result<()> {
    let (addr, reactors) = parse_args();
    let room = Room::default();
    let server = Server::builder()
        .reactors(reactors)
        .bind_address(&listen_address(&addr))?
        .build_with(|_reactor| Chat {
            partial: HashMap::new(),
            room: room.clone(),
        })?;
    epoll_server::stop_on_signals(&server.handle(), &[libc::SIGINT, libc::SIGTERM])?;
    println!("listening on {}", server.addresses()[0]);
    std::io::stdout().flush()?;
    server.run()
}

/// `[ADDR] [--reactors N]`; exits with a usage message on a bad argument.
fn parse_args() -> (String, usize) {
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
                    .unwrap_or_else(|| usage("--reactors needs a number of at least 1"));
            }
            flag if flag.starts_with("--") => usage(&format!("unknown option {flag}")),
            other => addr = other.to_string(),
        }
    }
    (addr, reactors)
}

fn usage(problem: &str) -> ! {
    eprintln!("{problem}\nusage: chat [ADDR] [--reactors N]");
    std::process::exit(2)
}

fn listen_address(arg: &str) -> epoll_server::Address {
    arg.parse().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    })
}
