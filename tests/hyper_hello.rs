//! The `hyper_hello` example (hyper 1.x on the async face, through the I/O view), run end to
//! end as a separate process: curl with keep-alive, a 1 MiB streamed echo and a 404; pipelined
//! requests on a raw socket; 200 concurrent keep-alive connections of hyper's client; SIGINT.
//!
//! The example binary is built (or brought up to date) with `cargo build --example hyper_hello`
//! in the test's own profile and target directory, then found like `tests/examples.rs` finds
//! the examples (`target/<profile>/examples`). The curl parts are skipped, with a message, when
//! curl is not installed (CI installs it).

mod common;

use common::{connect, TIMEOUT};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rand::RngCore;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// How long the example may take to exit after SIGINT.
const EXIT_WITHIN: Duration = Duration::from_secs(5);

/// How long one curl run may take (`--max-time`).
const CURL_MAX_SECS: &str = "30";

/// The example binary, built once per test process.
fn example_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        // target/<profile dir>/deps/<test binary> → target/<profile dir>/examples/hyper_hello
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let target_dir = profile_dir.parent().expect("the target directory");
        let profile = profile_dir.file_name().unwrap().to_string_lossy();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let mut build = Command::new(cargo);
        build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "build",
                "--quiet",
                "--example",
                "hyper_hello",
                "--target-dir",
            ])
            .arg(target_dir);
        // The `dev` profile builds into `debug`; every other profile into its own name.
        if profile != "debug" {
            build.args(["--profile", &profile]);
        }
        let status = build
            .status()
            .expect("run cargo build --example hyper_hello");
        assert!(
            status.success(),
            "cargo build --example hyper_hello: {status}"
        );
        let path = profile_dir.join("examples").join("hyper_hello");
        assert!(path.is_file(), "{} was not built", path.display());
        path
    })
}

/// The running example; killed if the test ends early.
struct Example {
    child: Child,
    /// Its stdout lines; disconnected when the process closes stdout (exits).
    lines: Receiver<String>,
    addr: SocketAddr,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Example {
    /// Starts the example on an ephemeral loopback port and reads its `listening on` line.
    fn start() -> Example {
        let path = example_binary();
        let mut child = Command::new(path)
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let first = lines
            .recv_timeout(TIMEOUT)
            .expect("hyper_hello printed no first line");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("hyper_hello's first line is {first:?}"));
        let addr: SocketAddr = addr
            .parse()
            .unwrap_or_else(|e| panic!("hyper_hello printed address {addr:?}: {e}"));
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        assert_ne!(
            addr.port(),
            0,
            "hyper_hello printed port 0, not the bound port"
        );
        Example { child, lines, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGINT and returns the exit status, which must come within [`EXIT_WITHIN`].
    fn interrupt(mut self) -> (ExitStatus, Duration) {
        let sent = Instant::now();
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT failed");
        // The process's stdout closes when it exits.
        let deadline = sent + EXIT_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("hyper_hello still running {EXIT_WITHIN:?} after SIGINT")
                }
            }
        }
        let status = self.child.wait().expect("reap the example");
        (status, sent.elapsed())
    }
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
    let example = Example::start();
    let url = example.url("/");
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
    let example = Example::start();
    let mut body = vec![0u8; 1 << 20];
    rand::thread_rng().fill_bytes(&mut body);
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hyper_hello_echo_{}.bin", std::process::id()));
    std::fs::write(&file, &body).expect("write the request body");
    let data = format!("@{}", file.display());
    let url = example.url("/echo");
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
    let example = Example::start();
    let url = example.url("/nope");
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
    let example = Example::start();
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
    let example = Example::start();
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
    let (status, took) = example.interrupt();
    assert!(status.success(), "exit status after SIGINT: {status}");
    eprintln!("exited {took:?} after SIGINT");
}

#[test]
fn sigint_stops_the_example_with_status_zero() {
    let example = Example::start();
    // A kept-alive connection, idle between requests when the signal comes.
    let mut stream = connect(example.addr);
    let mut pending = Vec::new();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let r = read_response(&mut stream, &mut pending);
    assert_eq!((r.status, &r.body[..]), (200, &b"Hello, World!"[..]));

    let (status, took) = example.interrupt();
    assert!(status.success(), "exit status after SIGINT: {status}");
    eprintln!("exited {took:?} after SIGINT");
    // The server closed the kept-alive connection on its way out.
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("end of file in time");
    assert!(rest.is_empty(), "bytes after SIGINT: {rest:?}");
}
