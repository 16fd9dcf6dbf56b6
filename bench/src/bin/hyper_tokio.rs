//! Hyper on tokio's own `TcpListener`: the peer of the root crate's
//! `examples/hyper_hello` in the `http` scenario.
//!
//! `hyper_tokio <addr>`: a current-thread runtime, a task per connection,
//! hyper 1's HTTP/1.1 server (`http1::Builder` with `pipeline_flush(true)`)
//! over `hyper_util::rt::TokioIo`, `TCP_NODELAY` on accept. `GET /` answers
//! `Hello, World!` (text/plain), `POST /echo` streams the request body back,
//! anything else is 404. Same CLI contract as the echo peers: prints
//! `listening on <addr>` first, exits 0 on SIGTERM/SIGINT.

use bench::sys;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, hyper::Error>;

fn full(b: &'static str) -> Body {
    Full::new(Bytes::from_static(b.as_bytes()))
        .map_err(|never| match never {})
        .boxed()
}

async fn hello(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => {
            let mut r = Response::new(full("Hello, World!"));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        }
        (&Method::POST, "/echo") => Response::new(req.into_body().boxed()),
        _ => {
            let mut r = Response::new(Empty::new().map_err(|never| match never {}).boxed());
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    };
    Ok(resp)
}

async fn serve(addr: std::net::SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    sys::announce(listener.local_addr()?);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("hyper_tokio: accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            // A client closing mid-request is not the server's error; nothing to report.
            let _ = http1::Builder::new()
                .pipeline_flush(true)
                .serve_connection(TokioIo::new(stream), service_fn(hello))
                .await;
        });
    }
}

fn main() -> std::io::Result<()> {
    let addr = sys::server_start();
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?
        .block_on(serve(addr))
}
