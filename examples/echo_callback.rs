//! Echo server on the callback face: every byte a client sends comes back to it.
//!
//! ```text
//! cargo run --example echo_callback -- [ADDR]      # default 127.0.0.1:7878
//! ```
//!
//! Prints `listening on <addr>` first, and stops gracefully on SIGINT or SIGTERM.

use epoll_server::{Bytes, ConnId, Context, Handler, Server};
use std::io::Write;

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        // Reading pauses while this connection's output is above the high-water mark, so the
        // hard limit is only reached by a peer that never reads; then give up on it.
        if let Err(e) = ctx.send(conn, data) {
            eprintln!("connection {conn}: {e}; closing it");
            ctx.close(conn);
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let server = Server::builder()
        .max_fds(65_536)
        .bind(addr.as_str())?
        .build(Echo)?;
    epoll_server::stop_on_signals(&server.handle(), &[libc::SIGINT, libc::SIGTERM])?;
    println!("listening on {}", server.local_addr());
    std::io::stdout().flush()?;
    server.run()
}
