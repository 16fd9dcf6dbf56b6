//! Echo server on the async face, on the executor of your choice.
//!
//! ```text
//! cargo run --example echo -- [ADDR] [--executor tokio|tokio-mt|smol|futures]
//!     [--idle-timeout SECS] [--first-byte-timeout SECS] [--write-stall-timeout SECS]
//!     [--reactors N]
//! ```
//!
//! ADDR is `IP:PORT` or `unix:/path` (a Unix domain socket, removed again on stop).
//!
//! ADDR defaults to 127.0.0.1:7878 and the executor to tokio (current-thread runtime). The
//! echo code is the same for every executor: only `spawn` differs. The timeouts are off unless
//! given (fractions allowed); a timed-out connection's stream yields `Err(TimedOut)`. Prints
//! `listening on <addr>` first, and stops gracefully on SIGINT or SIGTERM. `--reactors N` runs
//! N reactor threads (default 1); their connections all come through the one `incoming()`.

use epoll_server::{Connection, Incoming, Server};
use futures::{SinkExt, StreamExt};
use std::io::{self, Write};
use std::time::Duration;

/// Echoes one connection: every inbound buffer goes back out, in order. `feed` queues without
/// waiting for the kernel (the reactor writes it anyway); closing the sink at the peer's end of
/// file flushes and half-closes.
async fn echo(conn: Connection) -> io::Result<()> {
    let (mut inbound, mut outbound) = conn.split();
    while let Some(buf) = inbound.next().await {
        outbound.feed(buf?).await?;
    }
    outbound.close().await
}

/// Takes connections until the server stops, spawning `echo` for each with `spawn`.
async fn serve(mut incoming: Incoming, spawn: impl Fn(Connection)) {
    while let Some(conn) = incoming.next().await {
        spawn(conn);
    }
}

fn main() -> io::Result<()> {
    let mut addr = "127.0.0.1:7878".to_string();
    let mut executor = "tokio".to_string();
    let mut builder = Server::builder().max_fds(65_536);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut secs = || -> Duration {
            args.next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
                .map(Duration::from_secs_f64)
                .unwrap_or_else(|| usage(&format!("{arg} needs a number of seconds")))
        };
        builder = match arg.as_str() {
            "--idle-timeout" => builder.idle_timeout(secs()),
            "--first-byte-timeout" => builder.first_byte_timeout(secs()),
            "--write-stall-timeout" => builder.write_stall_timeout(secs()),
            "--reactors" => builder.reactors(
                args.next()
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|&n| n >= 1)
                    .unwrap_or_else(|| usage("--reactors needs a number of at least 1")),
            ),
            "--executor" => {
                executor = args.next().unwrap_or_default();
                builder
            }
            flag if flag.starts_with("--") => usage(&format!("unknown option {flag}")),
            other => {
                addr = other.to_string();
                builder
            }
        };
    }
    let server = builder
        .bind_address_async(&listen_address(&addr))?
        .build_async()?;
    epoll_server::stop_on_signals(&server.handle(), &[libc::SIGINT, libc::SIGTERM])?;
    println!("listening on {}", server.addresses()[0]);
    io::stdout().flush()?;
    let incoming = server.incoming();
    let running = server.spawn()?;
    let report = |r: io::Result<()>| {
        if let Err(e) = r {
            log_error(&e);
        }
    };
    match executor.as_str() {
        "tokio" | "tokio-mt" => {
            let rt = if executor == "tokio" {
                tokio::runtime::Builder::new_current_thread().build()?
            } else {
                tokio::runtime::Builder::new_multi_thread().build()?
            };
            rt.block_on(serve(incoming, |c| {
                tokio::spawn(async move { report(echo(c).await) });
            }));
        }
        "smol" => {
            let ex = smol::LocalExecutor::new();
            smol::block_on(ex.run(serve(incoming, |c| {
                ex.spawn(async move { report(echo(c).await) }).detach();
            })));
        }
        "futures" => {
            let pool = futures::executor::ThreadPool::new()?;
            futures::executor::block_on(serve(incoming, |c| {
                pool.spawn_ok(async move { report(echo(c).await) });
            }));
        }
        other => {
            eprintln!("unknown executor {other:?}: use tokio, tokio-mt, smol or futures");
            running.stop();
        }
    }
    running.join()
}

fn log_error(e: &io::Error) {
    if !matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::TimedOut
    ) {
        eprintln!("connection: {e}");
    }
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: echo [ADDR] [--executor tokio|tokio-mt|smol|futures] [--reactors N] \
         [--idle-timeout SECS] [--first-byte-timeout SECS] [--write-stall-timeout SECS]"
    );
    std::process::exit(2)
}

/// The listen address argument: `IP:PORT` or `unix:/path`; exits with a message if invalid.
fn listen_address(arg: &str) -> epoll_server::Address {
    arg.parse().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    })
}
