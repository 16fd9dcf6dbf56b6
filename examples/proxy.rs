//! A forwarding proxy on the callback face: each client accepted on LISTEN_ADDR gets its own
//! connection to UPSTREAM_ADDR through the same reactor, and bytes are pumped both ways.
//!
//! ```text
//! cargo run --example proxy -- LISTEN_ADDR UPSTREAM_ADDR
//! cargo run --example proxy -- 127.0.0.1:7879 127.0.0.1:7878
//! cargo run --example proxy -- unix:/tmp/proxy.sock 127.0.0.1:7878
//! ```
//!
//! Either address may be TCP or `unix:/path`. Prints `listening on <addr>` first, and stops
//! gracefully on SIGINT or SIGTERM.
//!
//! - **Backpressure both ways.** When the output queued for one side passes the high-water
//!   mark, the proxy stops reading the other side (the sender then feels TCP flow control);
//!   when that queue drains to the low-water mark (`Handler::on_drained`), it reads again.
//!   Nothing is buffered without bound.
//! - **Half-close.** One side's end of file becomes a `shutdown(SHUT_WR)` on the other, after
//!   the bytes before it; the pair closes once both directions ended.
//! - **Reset.** A side that is reset (or fails) resets the other; a clean close closes the
//!   other after its queued bytes. An upstream that cannot be reached resets the client.

use epoll_server::{Address, Bytes, CloseReason, ConnId, ConnInfo, Context, Handler, Server};
use std::collections::HashMap;
use std::io::{self, Write};

/// Output queued for one side above this pauses reading the other side.
const HIGH_WATER: usize = 256 * 1024;
/// ... and once it drains to this, reading resumes.
const LOW_WATER: usize = 64 * 1024;

/// One side of a proxied pair.
struct Side {
    partner: ConnId,
    /// This side sent its end of file.
    eof: bool,
}

struct Proxy {
    upstream: Address,
    sides: HashMap<ConnId, Side>,
}

impl Proxy {
    /// Ends the pair `conn` belongs to: reset the partner, or close it after its queued bytes.
    fn end_pair(&mut self, ctx: &mut Context<'_>, conn: ConnId, reset: bool) {
        let Some(side) = self.sides.remove(&conn) else {
            return;
        };
        self.sides.remove(&side.partner);
        if reset {
            ctx.reset(side.partner);
        } else {
            ctx.close(side.partner);
        }
    }
}

impl Handler for Proxy {
    fn on_open(&mut self, ctx: &mut Context<'_>, info: ConnInfo) {
        if info.outbound {
            // An upstream connected: what its client sent meanwhile is queued and now goes out.
            return;
        }
        match ctx.connect(self.upstream.clone()) {
            Ok(upstream) => {
                self.sides.insert(
                    info.id,
                    Side {
                        partner: upstream,
                        eof: false,
                    },
                );
                self.sides.insert(
                    upstream,
                    Side {
                        partner: info.id,
                        eof: false,
                    },
                );
            }
            Err(e) => {
                eprintln!("{}: cannot connect to {}: {e}", info.peer, self.upstream);
                ctx.reset(info.id);
            }
        }
    }

    fn on_connect_failed(&mut self, ctx: &mut Context<'_>, conn: ConnId, error: io::Error) {
        eprintln!("upstream: {error}");
        self.end_pair(ctx, conn, true);
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        let Some(partner) = self.sides.get(&conn).map(|s| s.partner) else {
            return;
        };
        if ctx.send(partner, data).is_err() {
            // The partner is closing or over its hard limit: this pair is done.
            self.end_pair(ctx, conn, true);
            return;
        }
        if ctx.queued_bytes(partner).unwrap_or(0) > HIGH_WATER {
            ctx.pause_reading(conn);
        }
    }

    fn on_drained(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        // `conn`'s queue drained: read again from the side that fills it.
        if let Some(side) = self.sides.get(&conn) {
            ctx.resume_reading(side.partner);
        }
    }

    fn on_peer_eof(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let Some(side) = self.sides.get_mut(&conn) else {
            ctx.close(conn);
            return;
        };
        side.eof = true;
        let partner = side.partner;
        // Forward the half-close after the bytes before it.
        ctx.shutdown_write(partner);
        if self.sides.get(&partner).is_some_and(|p| p.eof) {
            // Both directions ended: close both once their queues are written.
            self.sides.remove(&conn);
            self.sides.remove(&partner);
            ctx.close(conn);
            ctx.close(partner);
        }
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        let reset = matches!(reason, CloseReason::Reset | CloseReason::Error(_));
        self.end_pair(ctx, conn, reset);
    }
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: proxy LISTEN_ADDR UPSTREAM_ADDR (IP:PORT or unix:/path)");
        std::process::exit(2);
    };
    let parse = |s: &str| -> Address {
        s.parse().unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        })
    };
    let (listen, upstream) = (parse(&listen), parse(&upstream));
    let server = Server::builder()
        .max_fds(65_536)
        // The proxy pauses the other side itself (see `on_message`).
        .pause_reading_on_backpressure(false)
        .output_limits(HIGH_WATER, LOW_WATER, 16 * HIGH_WATER)
        .bind_address(&listen)?
        .build(Proxy {
            upstream,
            sides: HashMap::new(),
        })?;
    epoll_server::stop_on_signals(&server.handle(), &[libc::SIGINT, libc::SIGTERM])?;
    println!("listening on {}", server.addresses()[0]);
    io::stdout().flush()?;
    server.run()
}
