//! An HTTP/1.1 server with hyper 1.x on the async face, through the I/O view of a connection.
//!
//! ```text
//! cargo run --example hyper_hello -- [ADDR]
//! curl http://127.0.0.1:7878/                                  # Hello, World!
//! curl --data-binary @some-file http://127.0.0.1:7878/echo     # the body, streamed back
//! ```
//!
//! ADDR is `IP:PORT` or `unix:/path` (a Unix domain socket, removed again on stop).
//!
//! ADDR defaults to 127.0.0.1:7878 (`127.0.0.1:0` picks a free port). Routes: `GET /` answers
//! `Hello, World!`, `POST /echo` streams the request body back as the response body, anything
//! else is a 404. Keep-alive and pipelined requests work. Each connection goes
//! `Connection::into_io()` (futures-io) → tokio-util's `compat` (tokio-io) → hyper-util's
//! `TokioIo` (hyper's I/O traits), served by a task on a tokio current-thread runtime while the
//! reactor does the socket I/O on its own thread. Prints `listening on <addr>` first, and stops
//! gracefully on SIGINT or SIGTERM.

use epoll_server::{Connection, Server};
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io::{self, Write};
use tokio_util::compat::FuturesAsyncReadCompatExt;

type Body = BoxBody<Bytes, hyper::Error>;

/// The routes: `GET /`, `POST /echo`, and 404 for the rest.
async fn route(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => {
            let body = Full::new(Bytes::from_static(b"Hello, World!"))
                .map_err(|never| match never {})
                .boxed();
            let mut response = Response::new(body);
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
        }
        // The request body streams straight back, frame by frame, as it arrives.
        (&Method::POST, "/echo") => Response::new(req.into_body().boxed()),
        _ => {
            let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    };
    Ok(response)
}

/// Serves one connection with hyper until the client or the server ends it.
async fn serve(conn: Connection) {
    let io = TokioIo::new(conn.into_io().compat());
    let served = hyper::server::conn::http1::Builder::new()
        // Answers to pipelined requests are flushed together, once the pipeline is drained.
        .pipeline_flush(true)
        .serve_connection(io, service_fn(route))
        .await;
    if let Err(e) = served {
        // A client that goes away mid-request is routine; anything else is worth a line.
        if !e.is_incomplete_message() {
            eprintln!("connection: {e}");
        }
    }
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7878".to_string());
    if let Some(extra) = args.next() {
        eprintln!("unexpected argument {extra:?}\nusage: hyper_hello [ADDR]");
        std::process::exit(2);
    }
    let server = Server::builder()
        .bind_address_async(&listen_address(&addr))?
        .build_async()?;
    epoll_server::stop_on_signals(&server.handle(), &[libc::SIGINT, libc::SIGTERM])?;
    println!("listening on {}", server.addresses()[0]);
    io::stdout().flush()?;

    // Taken before `spawn`: the stream of accepted connections, which ends when the server stops.
    let mut incoming = server.incoming();
    let running = server.spawn()?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    rt.block_on(async {
        while let Some(conn) = incoming.next().await {
            tokio::spawn(serve(conn));
        }
    });
    // Stopped: queued answers are written (up to the shut-down deadline), then the thread ends.
    running.join()
}

/// The listen address argument: `IP:PORT` or `unix:/path`; exits with a message if invalid.
fn listen_address(arg: &str) -> epoll_server::Address {
    arg.parse().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    })
}
