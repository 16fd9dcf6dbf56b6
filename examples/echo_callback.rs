//! Echo server on the callback face: every byte a client sends comes back to it.
//!
//! ```text
//! cargo run --example echo_callback -- [ADDR] [--idle-timeout SECS] [--first-byte-timeout SECS]
//!                                           [--write-stall-timeout SECS] [--stats] [--reactors N]
//!                                           [--accept-spread reuseport|shared]
//! ```
//!
//! ADDR is `IP:PORT` or `unix:/path` (a Unix domain socket, removed again on stop).
//!
//! ADDR defaults to 127.0.0.1:7878. The timeouts are off unless given (fractions allowed):
//! a connection silent for `--idle-timeout`, or that sent nothing within
//! `--first-byte-timeout`, is closed; one whose output made no progress for
//! `--write-stall-timeout` is reset. `--stats` prints the server's counters once a second.
//! `--reactors N` serves the connections with N reactor threads (default 1), sharing the
//! listener by `SO_REUSEPORT` sockets or, with `--accept-spread shared`, one socket registered
//! with `EPOLLEXCLUSIVE` in every reactor. With several reactors, `--stats` lines end with
//! each reactor's accepted count (`per reactor accepted A B ...`).
//! Prints `listening on <addr>` first, and stops gracefully on SIGINT or SIGTERM.

use epoll_server::{AcceptSpread, Builder, Bytes, ConnId, Context, Handler, Server};
use std::io::Write;
use std::time::Duration;

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
    let (addr, builder, stats) = parse_args(Server::builder().max_fds(65_536));
    let server = builder
        .bind_address(&listen_address(&addr))?
        .build_with(|_reactor| Echo)?;
    epoll_server::stop_on_signals(&server.handle(), &[libc::SIGINT, libc::SIGTERM])?;
    println!("listening on {}", server.addresses()[0]);
    std::io::stdout().flush()?;
    if stats {
        let handle = server.handle();
        std::thread::spawn(move || print_stats(handle));
    }
    server.run()
}

/// One line of counters a second, until the server stops.
fn print_stats(handle: epoll_server::ServerHandle) {
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_secs(1));
        let s = handle.stats();
        let per = handle.reactor_stats();
        let per_reactor = if per.len() > 1 {
            let counts: Vec<String> = per.iter().map(|r| r.accepted.to_string()).collect();
            format!(" per reactor accepted {}", counts.join(" "))
        } else {
            String::new()
        };
        println!(
            "stats: open {} accepted {} closed {} (peer {} reset {} local {} error {} timed out {}) \
             read {} B written {} B queued {} B paused {} accept errors {} back-offs {} \
             turns {} events {} event buffer {}{}",
            s.open,
            s.accepted,
            s.closed.total(),
            s.closed.peer_closed,
            s.closed.reset,
            s.closed.local,
            s.closed.error,
            s.closed.timed_out,
            s.bytes_read,
            s.bytes_written,
            s.queued_output_bytes,
            s.paused_for_backpressure,
            s.accept_errors,
            s.accept_backoffs,
            s.loop_turns,
            s.events,
            s.event_buffer,
            per_reactor,
        );
        let _ = std::io::stdout().flush();
    }
}

/// The listen address and the timeout options; exits with a usage message on a bad argument.
fn parse_args(mut builder: Builder) -> (String, Builder, bool) {
    let mut addr = "127.0.0.1:7878".to_string();
    let mut stats = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut secs = |name: &str| -> Duration {
            args.next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
                .map(Duration::from_secs_f64)
                .unwrap_or_else(|| usage(&format!("{name} needs a number of seconds")))
        };
        builder = match arg.as_str() {
            "--idle-timeout" => builder.idle_timeout(secs(&arg)),
            "--first-byte-timeout" => builder.first_byte_timeout(secs(&arg)),
            "--write-stall-timeout" => builder.write_stall_timeout(secs(&arg)),
            "--stats" => {
                stats = true;
                builder
            }
            "--reactors" => builder.reactors(reactors_arg(args.next())),
            "--accept-spread" => match args.next().as_deref() {
                Some("reuseport") => builder.accept_spread(AcceptSpread::ReusePort),
                Some("shared") => builder.accept_spread(AcceptSpread::SharedListener),
                _ => usage("--accept-spread needs reuseport or shared"),
            },
            flag if flag.starts_with("--") => usage(&format!("unknown option {flag}")),
            other => {
                addr = other.to_string();
                builder
            }
        };
    }
    (addr, builder, stats)
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: echo_callback [ADDR] [--idle-timeout SECS] \
         [--first-byte-timeout SECS] [--write-stall-timeout SECS] [--stats] [--reactors N] \
         [--accept-spread reuseport|shared]"
    );
    std::process::exit(2)
}

/// The value of `--reactors`: a number of at least 1.
fn reactors_arg(value: Option<String>) -> usize {
    value
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n >= 1)
        .unwrap_or_else(|| usage("--reactors needs a number of at least 1"))
}

/// The listen address argument: `IP:PORT` or `unix:/path`; exits with a message if invalid.
fn listen_address(arg: &str) -> epoll_server::Address {
    arg.parse().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    })
}
