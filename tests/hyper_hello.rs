//! The `hyper_hello` example (hyper 1.x on the async face, through the I/O view), run end to
//! end as a separate process: curl with keep-alive, a 1 MiB streamed echo and a 404; pipelined
//! requests on a raw socket; 200 concurrent keep-alive connections of hyper's client; SIGINT.
//!
//! The example binary is built (or brought up to date) with `cargo build --example hyper_hello`
//! in the test's own profile and target directory, then found like `tests/examples.rs` finds
//! the examples (`target/<profile>/examples`). The curl parts are skipped, with a message, when
//! curl is not installed (CI installs it).

mod common;
mod common_process;

use common::connect;
use common_process::Example;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rand::RngCore;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the example may take to exit after SIGINT.
const EXIT_WITHIN: Duration = Duration::from_secs(5);

/// How long one curl run may take (`--max-time`).
const CURL_MAX_SECS: &str = "30";

/// Starts `hyper_hello` on an ephemeral loopback port.
fn start() -> Example {
    Example::start("hyper_hello", &[])
}

/// The URL of `path` on `example`.
fn url(example: &Example, path: &str) -> String {
    format!("http://{}{path}", example.addr)
}

/// Sends SIGINT and returns the exit status, which must come within [`EXIT_WITHIN`], and how
/// long it took.
fn interrupt(example: Example) -> (ExitStatus, Duration) {
    let sent = Instant::now();
    let status = example.stop_with("INT", EXIT_WITHIN);
    (status, sent.elapsed())
}

/// Whether curl is installed; if not, says that the curl part of `test` is skipped.
fn have_curl(test: &str) -> bool {
    match Command::new("curl").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        _ => {
            eprintln!("curl is not installed: skipping {test} (CI installs curl)");
            false
        }
    }
}

/// Runs curl with `args` (bounded in time, never through a proxy) and checks it succeeded.
#[track_caller]
fn curl(args: &[&str]) -> Output {
    let out = Command::new("curl")
        .args(["--noproxy", "*", "--max-time", CURL_MAX_SECS])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn curl_keeps_the_connection_alive_for_three_requests() {
    if !have_curl("curl_keeps_the_connection_alive_for_three_requests") {
        return;
    }
    let example = start();
    let url = url(&example, "/");
    let out = curl(&["-sS", "-v", &url, &url, &url]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Hello, World!".repeat(3)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    // curl 7 says "Re-using existing connection", curl 8 "Reusing existing ... connection".
    let reuses = log
        .lines()
        .filter(|l| l.contains("Re-using existing") || l.contains("Reusing existing"))
        .count();
    assert_eq!(reuses, 2, "curl did not reuse its connection twice:\n{log}");
    assert!(
        log.to_ascii_lowercase()
            .contains("< content-type: text/plain"),
        "no text/plain content type:\n{log}"
    );
}

#[test]
fn curl_posts_one_mebibyte_and_gets_it_back() {
    if !have_curl("curl_posts_one_mebibyte_and_gets_it_back") {
        return;
    }
    let example = start();
    let mut body = vec![0u8; 1 << 20];
    rand::thread_rng().fill_bytes(&mut body);
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hyper_hello_echo_{}.bin", std::process::id()));
    std::fs::write(&file, &body).expect("write the request body");
    let data = format!("@{}", file.display());
    let url = url(&example, "/echo");
    // `Expect:` turns off curl's 100-continue wait (a second per upload).
    let out = curl(&["-sS", "-H", "Expect:", "--data-binary", &data, &url]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(out.stdout.len(), body.len(), "echoed length");
    assert!(
        out.stdout == body,
        "the echoed body differs from the one sent"
    );
}

#[test]
fn curl_gets_404_for_an_unknown_path() {
    if !have_curl("curl_gets_404_for_an_unknown_path") {
        return;
    }
    let example = start();
    let url = url(&example, "/nope");
    let out = curl(&["-sS", "-o", "/dev/null", "-w", "%{http_code}", &url]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
}

/// One HTTP/1.1 response read off a blocking socket (`Content-Length` bodies only).
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads one whole response, leaving whatever follows it in `pending`.
fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> RawResponse {
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut buf).expect("read a response head in time");
        assert!(n > 0, "end of file inside a response head: {pending:?}");
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(pending[..head_end].to_vec()).expect("an ASCII head");
    pending.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(
        parts.next(),
        Some("HTTP/1.1"),
        "status line {status_line:?}"
    );
    let status = parts.next().unwrap().parse().expect("a status code");
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (name, value) = l.split_once(':').expect("a header line");
            (name.trim().to_ascii_lowercase(), value.trim().to_string())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map(|(_, v)| v.parse().expect("a content length"))
        .unwrap_or_else(|| panic!("no content-length in {head:?}"));
    while pending.len() < length {
        let n = stream.read(&mut buf).expect("read a response body in time");
        assert!(n > 0, "end of file inside a response body");
        pending.extend_from_slice(&buf[..n]);
    }
    let body = pending.drain(..length).collect();
    RawResponse {
        status,
        headers,
        body,
    }
}

#[test]
fn pipelined_requests_are_all_answered_in_order() {
    let example = start();
    let mut stream = connect(example.addr);
    let mut pending = Vec::new();

    // Two GETs in one write.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    for _ in 0..2 {
        let r = read_response(&mut stream, &mut pending);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"Hello, World!");
        assert!(r
            .headers
            .contains(&("content-type".into(), "text/plain".into())));
    }
    assert!(pending.is_empty(), "bytes after two responses: {pending:?}");

    // Then, on the same connection, a mixed pipeline: answers come in request order.
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\npipelined\
              GET /nope HTTP/1.1\r\nHost: a\r\n\r\n\
              GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let echo = read_response(&mut stream, &mut pending);
    assert_eq!((echo.status, &echo.body[..]), (200, &b"pipelined"[..]));
    let missing = read_response(&mut stream, &mut pending);
    assert_eq!(missing.status, 404);
    let hello = read_response(&mut stream, &mut pending);
    assert_eq!(
        (hello.status, &hello.body[..]),
        (200, &b"Hello, World!"[..])
    );
    // `Connection: close` on the last request: the server ends the connection after it.
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("end of file in time");
    assert!(
        pending.is_empty() && rest.is_empty(),
        "bytes after the last response"
    );
}

/// Connections of hyper's client, at once, each making this many requests.
const CLIENTS: usize = 200;
const REQUESTS: usize = 50;

/// One keep-alive connection of hyper's client: `REQUESTS` requests, alternately `GET /` and
/// `POST /echo` with a body unique to the request (and of a length that varies), each checked.
async fn client(addr: SocketAddr, id: usize) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("client {id}: connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("client {id}: handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    for i in 0..REQUESTS {
        let (request, expected) = if i % 2 == 0 {
            let req = Request::get("/")
                .header("host", addr.to_string())
                .body(Full::new(Bytes::new()))
                .unwrap();
            (req, Bytes::from_static(b"Hello, World!"))
        } else {
            let body = Bytes::from(format!("client {id} request {i} ").repeat(1 + (id + i) % 37));
            let req = Request::post("/echo")
                .header("host", addr.to_string())
                .body(Full::new(body.clone()))
                .unwrap();
            (req, body)
        };
        sender
            .ready()
            .await
            .map_err(|e| format!("client {id} request {i}: not ready: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("client {id} request {i}: {e}"))?;
        if response.status() != StatusCode::OK {
            return Err(format!("client {id} request {i}: {}", response.status()));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("client {id} request {i}: body: {e}"))?
            .to_bytes();
        if body != expected {
            return Err(format!(
                "client {id} request {i}: body {body:?}, expected {expected:?}"
            ));
        }
    }
    drop(sender); // the connection task then ends
    driver
        .await
        .map_err(|e| format!("client {id}: connection task: {e}"))?
        .map_err(|e| format!("client {id}: connection: {e}"))
}

#[test]
fn two_hundred_keep_alive_clients_make_fifty_requests_each() {
    let example = start();
    let addr = example.addr;
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = rt.block_on(async {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| tokio::spawn(client(addr, id)))
            .collect();
        let all = async {
            let mut results = Vec::new();
            for c in clients {
                results.push(c.await.map_err(|e| e.to_string()).and_then(|r| r));
            }
            results
        };
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("200 clients × 50 requests within 60 s")
    });
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} clients failed, first: {}",
        failures.len(),
        failures[0]
    );
    eprintln!(
        "{CLIENTS} clients × {REQUESTS} requests in {:?}",
        started.elapsed()
    );
    drop(rt);
    let (status, took) = interrupt(example);
    assert!(status.success(), "exit status after SIGINT: {status}");
    eprintln!("exited {took:?} after SIGINT");
}

#[test]
fn sigint_stops_the_example_with_status_zero() {
    let example = start();
    // A kept-alive connection, idle between requests when the signal comes.
    let mut stream = connect(example.addr);
    let mut pending = Vec::new();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let r = read_response(&mut stream, &mut pending);
    assert_eq!((r.status, &r.body[..]), (200, &b"Hello, World!"[..]));

    let (status, took) = interrupt(example);
    assert!(status.success(), "exit status after SIGINT: {status}");
    eprintln!("exited {took:?} after SIGINT");
    // The server closed the kept-alive connection on its way out.
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("end of file in time");
    assert!(rest.is_empty(), "bytes after SIGINT: {rest:?}");
}
