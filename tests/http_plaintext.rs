//! The `http_plaintext` example (an HTTP/1.1 server on the callback face), run end to end as a
//! separate process on an ephemeral loopback port: hyper's client over one kept-alive
//! connection; the `Date` header; pipelining, `Connection: close`, HTTP/1.0, request bodies,
//! byte-by-byte requests and every error status over raw sockets; SIGTERM.
//!
//! The example is built (or brought up to date) with `cargo build --example http_plaintext`
//! in the test's own profile (see `tests/common_process`). Every socket has 10 s read and
//! write timeouts, so a server that stops answering fails the test instead of hanging it.

mod common;
mod common_process;

use common::connect;
use common_process::Example;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the example may take to exit after a stop signal.
const EXIT_WITHIN: Duration = Duration::from_secs(5);

const HELLO: &[u8] = b"Hello, World!";

fn start() -> Example {
    Example::start("http_plaintext", &[])
}

/// One response read off a blocking socket (`Content-Length` bodies only).
#[derive(Debug)]
struct Response {
    version: u8,
    status: u16,
    /// Names in lower case, values as sent.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// The value of the one header called `name` (lower case), if there is one.
    #[track_caller]
    fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.iter().filter(|(n, _)| n == name);
        let value = values.next().map(|(_, v)| v.as_str());
        assert!(values.next().is_none(), "two {name} headers in {self:?}");
        value
    }
}

/// Reads one whole response, leaving whatever follows it in `pending`.
#[track_caller]
fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Response {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(pending).expect("a well-formed response head") {
            httparse::Status::Complete(len) => {
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        let value = String::from_utf8(h.value.to_vec()).expect("an ASCII value");
                        (h.name.to_ascii_lowercase(), value)
                    })
                    .collect();
                let mut response = Response {
                    version: parsed.version.unwrap(),
                    status: parsed.code.unwrap(),
                    headers,
                    body: Vec::new(),
                };
                pending.drain(..len);
                let length: usize = response
                    .header("content-length")
                    .unwrap_or_else(|| panic!("no content-length in {response:?}"))
                    .parse()
                    .expect("a decimal content-length");
                while pending.len() < length {
                    let n = stream.read(&mut buf).expect("read a response body in time");
                    assert!(n > 0, "end of file inside a response body");
                    pending.extend_from_slice(&buf[..n]);
                }
                response.body = pending.drain(..length).collect();
                return response;
            }
            httparse::Status::Partial => {
                let n = stream.read(&mut buf).expect("read a response head in time");
                assert!(n > 0, "end of file inside a response head: {pending:?}");
                pending.extend_from_slice(&buf[..n]);
            }
        }
    }
}

/// Asserts that the server closes `stream` with nothing more to read (an orderly end of
/// file, not a reset, which could have destroyed the reply).
#[track_caller]
fn assert_closed(stream: &mut TcpStream, pending: &[u8]) {
    assert!(
        pending.is_empty(),
        "bytes after the last response: {pending:?}"
    );
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .expect("an orderly end of file in time");
    assert!(rest.is_empty(), "bytes after the last response: {rest:?}");
}

/// Asserts a `200` with `Hello, World!` and the plaintext test's headers.
#[track_caller]
fn assert_hello(response: &Response) {
    assert_eq!(response.version, 1, "{response:?}");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, HELLO);
    assert_eq!(response.header("content-length"), Some("13"));
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert!(response.header("server").is_some(), "no Server header");
    assert_recent_date(response.header("date").expect("a Date header"));
}

/// Sends `request` on a fresh connection and returns the one response, after which the
/// server must close the connection.
#[track_caller]
fn one_then_closed(example: &Example, request: &[u8]) -> Response {
    let mut stream = connect(example.addr);
    stream.write_all(request).unwrap();
    let mut pending = Vec::new();
    let response = read_response(&mut stream, &mut pending);
    assert_eq!(response.header("connection"), Some("close"), "{response:?}");
    assert_closed(&mut stream, &pending);
    response
}

/// Asserts an error reply: `status`, `Connection: close`, a body as long as it says.
#[track_caller]
fn assert_error(example: &Example, request: &[u8], status: u16) -> Response {
    let response = one_then_closed(example, request);
    assert_eq!(
        response.status,
        status,
        "reply to {:?}",
        String::from_utf8_lossy(request)
    );
    assert!(response.header("date").is_some(), "no Date header");
    response
}

// ---- the Date header ---------------------------------------------------------------------

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) strictly, weekday included, into
/// seconds since the Unix epoch.
fn parse_imf_fixdate(date: &str) -> Option<u64> {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = date.as_bytes();
    if b.len() != 29 || &date[3..5] != ", " || &date[25..] != " GMT" {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u64> {
        let digits = &date[range];
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let separators = [(7, b' '), (11, b' '), (16, b' '), (19, b':'), (22, b':')];
    if separators.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let day = number(5..7)?;
    let month = MONTHS.iter().position(|m| *m == &date[8..11])? as u64 + 1;
    let year = number(12..16)?;
    let (hour, minute, second) = (number(17..19)?, number(20..22)?, number(23..25)?);
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 || year < 1970 {
        return None;
    }
    // Days since 1970-01-01 by counting: years, then the months of this one.
    let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days: u64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    let month_days = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day > month_days[month as usize - 1] {
        return None;
    }
    days += month_days[..month as usize - 1].iter().sum::<u64>() + day - 1;
    // 1970-01-01 was a Thursday.
    if DAYS[((days + 4) % 7) as usize] != &date[..3] {
        return None;
    }
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Asserts that `date` is an IMF-fixdate within two seconds of now.
#[track_caller]
fn assert_recent_date(date: &str) {
    let secs = parse_imf_fixdate(date).unwrap_or_else(|| panic!("not an IMF-fixdate: {date:?}"));
    let now = unix_now();
    assert!(
        secs.abs_diff(now) <= 2,
        "Date {date:?} is {secs}, the clock says {now}"
    );
}

#[test]
fn the_date_parser_knows_the_rfc_example() {
    assert_eq!(
        parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(
        parse_imf_fixdate("Thu, 29 Feb 2024 23:59:59 GMT"),
        Some(1_709_251_199)
    );
    assert_eq!(parse_imf_fixdate("Mon, 06 Nov 1994 08:49:37 GMT"), None);
    assert_eq!(parse_imf_fixdate("Sun, 6 Nov 1994 08:49:37 GMT"), None);
}

#[test]
fn the_date_header_moves_with_the_clock() {
    let example = start();
    let mut stream = connect(example.addr);
    let mut pending = Vec::new();
    let mut ask = |stream: &mut TcpStream| {
        stream
            .write_all(b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let response = read_response(stream, &mut pending);
        assert_hello(&response);
        response.header("date").unwrap().to_string()
    };
    let first = ask(&mut stream);
    // Keep asking (no sleeping) until the second turns over: at most a little over 1 s.
    let deadline = Instant::now() + Duration::from_secs(3);
    let next = loop {
        let date = ask(&mut stream);
        if date != first {
            break date;
        }
        assert!(Instant::now() < deadline, "Date stuck at {first:?} for 3 s");
    };
    assert_eq!(
        parse_imf_fixdate(&next).unwrap(),
        parse_imf_fixdate(&first).unwrap() + 1,
        "{first:?} then {next:?}"
    );
}

// ---- hyper's client ----------------------------------------------------------------------

#[test]
fn hyper_client_makes_many_requests_over_one_kept_alive_connection() {
    let example = start();
    let addr = example.addr;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let run = async {
            // One TCP connection under the one sender: every request below goes over it, and
            // a server that closed it would fail the next one.
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap();
            let driver = tokio::spawn(conn);
            for i in 0..50 {
                let path = if i % 2 == 0 { "/plaintext" } else { "/" };
                let request = Request::get(path)
                    .header("host", addr.to_string())
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                sender.ready().await.expect("the connection is still open");
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK, "request {i}");
                let headers = response.headers();
                assert_eq!(headers["content-length"], "13");
                assert_eq!(headers["content-type"], "text/plain");
                assert!(headers.contains_key("server"));
                assert!(!headers.contains_key("connection"), "{headers:?}");
                assert_recent_date(headers["date"].to_str().unwrap());
                let body = response.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&body[..], HELLO, "request {i}");
            }
            assert!(!sender.is_closed(), "the server closed the connection");
            drop(sender); // the connection task then ends
            driver.await.unwrap().unwrap();
        };
        tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("50 requests within 20 s");
    });
}

// ---- raw sockets: keep-alive, pipelining, bodies -----------------------------------------

#[test]
fn a_hundred_pipelined_requests_in_one_write_are_answered_in_order() {
    let example = start();
    let mut stream = connect(example.addr);
    // Every third request is HTTP/1.0 with keep-alive, whose reply says so: that marks the
    // order. Every fifth carries a body to skip. The last one asks to close.
    let mut requests = Vec::new();
    for i in 0..100 {
        let version = if i % 3 == 0 { "1.0" } else { "1.1" };
        let connection = match i {
            99 => "Connection: close\r\n",
            _ if i % 3 == 0 => "Connection: keep-alive\r\n",
            _ => "",
        };
        let body = if i % 5 == 0 { "x=1&y=2" } else { "" };
        write!(
            requests,
            "GET /plaintext HTTP/{version}\r\nHost: a\r\n{connection}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    }
    stream.write_all(&requests).unwrap();
    let mut pending = Vec::new();
    for i in 0..100 {
        let response = read_response(&mut stream, &mut pending);
        assert_hello(&response);
        let expected = match i {
            99 => Some("close"),
            _ if i % 3 == 0 => Some("keep-alive"),
            _ => None,
        };
        assert_eq!(response.header("connection"), expected, "reply {i}");
    }
    assert_closed(&mut stream, &pending);
}

#[test]
fn a_request_split_byte_by_byte_is_answered() {
    let example = start();
    let mut stream = connect(example.addr);
    stream.set_nodelay(true).unwrap();
    // A body split too, then a second request, to show where the first one ended.
    let request = b"GET /plaintext?q=1 HTTP/1.1\r\nHost: example\r\nUser-Agent: test\r\n\
                    Content-Length: 5\r\n\r\nhello\
                    GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    for byte in request {
        stream.write_all(std::slice::from_ref(byte)).unwrap();
    }
    let mut pending = Vec::new();
    let first = read_response(&mut stream, &mut pending);
    assert_hello(&first);
    assert_eq!(first.header("connection"), None);
    let second = read_response(&mut stream, &mut pending);
    assert_hello(&second);
    assert_eq!(second.header("connection"), Some("close"));
    assert_closed(&mut stream, &pending);
}

#[test]
fn a_body_in_later_writes_is_skipped() {
    let example = start();
    let mut stream = connect(example.addr);
    stream.set_nodelay(true).unwrap();
    let mut pending = Vec::new();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 20000\r\n\r\n")
        .unwrap();
    // The reply comes before the body: the server does not wait for it.
    assert_hello(&read_response(&mut stream, &mut pending));
    // The body, in pieces, with the start of a request after its last byte; bodies that
    // look like requests must not be taken for them.
    let body = b"GET /nope HTTP/1.1\r\n\r\n".repeat(1000);
    stream.write_all(&body[..10_000]).unwrap();
    stream.write_all(&body[10_000..20_000]).unwrap();
    stream.write_all(b"GET /plaintext HTTP/1.1\r\nHo").unwrap();
    stream.write_all(b"st: a\r\n\r\n").unwrap();
    assert_hello(&read_response(&mut stream, &mut pending));
    assert!(pending.is_empty(), "bytes after the replies: {pending:?}");
}

#[test]
fn connection_close_is_answered_then_the_connection_closes() {
    let example = start();
    let response = one_then_closed(
        &example,
        b"GET /plaintext HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_hello(&response);
    // Tokens are case-insensitive and may come in a list.
    let response = one_then_closed(
        &example,
        b"GET / HTTP/1.1\r\nHost: a\r\nconnection: Upgrade, CLOSE\r\n\r\n",
    );
    assert_hello(&response);
}

#[test]
fn requests_after_connection_close_are_not_answered() {
    let example = start();
    let mut stream = connect(example.addr);
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n\
              GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .unwrap();
    let mut pending = Vec::new();
    assert_hello(&read_response(&mut stream, &mut pending));
    assert_closed(&mut stream, &pending);
}

#[test]
fn http_1_0_closes_after_the_reply_unless_asked_to_keep_alive() {
    let example = start();
    // No Host needed in HTTP/1.0.
    let response = one_then_closed(&example, b"GET /plaintext HTTP/1.0\r\n\r\n");
    assert_hello(&response);

    let mut stream = connect(example.addr);
    let mut pending = Vec::new();
    for _ in 0..3 {
        stream
            .write_all(b"GET /plaintext HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap();
        let response = read_response(&mut stream, &mut pending);
        assert_hello(&response);
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let response = read_response(&mut stream, &mut pending);
    assert_hello(&response);
    assert_eq!(response.header("connection"), Some("close"));
    assert_closed(&mut stream, &pending);
}

// ---- errors ------------------------------------------------------------------------------

#[test]
fn a_malformed_request_gets_400_and_the_connection_closes() {
    let example = start();
    assert_error(&example, b"GET\x01/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    assert_error(&example, b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n", 400);
    assert_error(&example, b"GET / HTTP/9.9\r\nHost: a\r\n\r\n", 400);
    // HTTP/1.1 requires Host.
    assert_error(&example, b"GET / HTTP/1.1\r\n\r\n", 400);
    assert_error(
        &example,
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        400,
    );
    assert_error(
        &example,
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        400,
    );
}

#[test]
fn a_chunked_request_body_is_rejected_with_400() {
    let example = start();
    assert_error(
        &example,
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn the_400_comes_after_the_good_requests_before_it() {
    let example = start();
    let mut stream = connect(example.addr);
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nBAD\x7f\r\n\r\n",
        )
        .unwrap();
    let mut pending = Vec::new();
    assert_hello(&read_response(&mut stream, &mut pending));
    assert_hello(&read_response(&mut stream, &mut pending));
    let error = read_response(&mut stream, &mut pending);
    assert_eq!(error.status, 400);
    assert_eq!(error.header("connection"), Some("close"));
    assert_closed(&mut stream, &pending);
}

#[test]
fn more_than_64_headers_get_431_and_the_connection_closes() {
    let example = start();
    let head = |n: usize| {
        let mut request = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 1..n {
            write!(request, "X-Header-{i}: {i}\r\n").unwrap();
        }
        request.extend_from_slice(b"\r\n");
        request
    };
    // 64 headers are fine.
    let mut stream = connect(example.addr);
    stream.write_all(&head(64)).unwrap();
    assert_hello(&read_response(&mut stream, &mut Vec::new()));
    assert_error(&example, &head(65), 431);
}

#[test]
fn a_head_over_8_kib_gets_431_and_the_connection_closes() {
    let example = start();
    let head = |len: usize| {
        let start = b"GET / HTTP/1.1\r\nHost: a\r\nX-Padding: ";
        let end = b"\r\n\r\n";
        let mut request = start.to_vec();
        request.resize(len - end.len(), b'p');
        request.extend_from_slice(end);
        request
    };
    // 8 KiB exactly is fine.
    let mut stream = connect(example.addr);
    stream.write_all(&head(8192)).unwrap();
    assert_hello(&read_response(&mut stream, &mut Vec::new()));
    assert_error(&example, &head(8193), 431);
    // Also when it comes in pieces, before its end: 8 KiB without the end are too many.
    // (Only what the server reads before it answers is sent, so no unread byte turns its
    // close into a reset.)
    let mut stream = connect(example.addr);
    stream.set_nodelay(true).unwrap();
    let big = head(20_000);
    for piece in big[..8192].chunks(1024) {
        stream.write_all(piece).unwrap();
    }
    let mut pending = Vec::new();
    let response = read_response(&mut stream, &mut pending);
    assert_eq!(response.status, 431);
    assert_closed(&mut stream, &pending);
}

#[test]
fn another_path_gets_404_and_the_connection_closes() {
    let example = start();
    let response = assert_error(&example, b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n", 404);
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_error(
        &example,
        b"GET /plaintext/ HTTP/1.1\r\nHost: a\r\n\r\n",
        404,
    );
    assert_error(&example, b"POST /nope HTTP/1.1\r\nHost: a\r\n\r\n", 404);
}

#[test]
fn another_method_gets_405_with_allow_get_and_the_connection_closes() {
    let example = start();
    for method in ["POST", "PUT", "HEAD", "DELETE"] {
        let request =
            format!("{method} /plaintext HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        let response = assert_error(&example, request.as_bytes(), 405);
        assert_eq!(response.header("allow"), Some("GET"), "{method}");
    }
}

// ---- the process -------------------------------------------------------------------------

#[test]
fn sigterm_stops_the_example_with_status_zero() {
    let example = start();
    // A kept-alive connection, idle when the signal comes.
    let mut stream = connect(example.addr);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut pending = Vec::new();
    assert_hello(&read_response(&mut stream, &mut pending));
    let status = example.stop_with("TERM", EXIT_WITHIN);
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert_closed(&mut stream, &pending);
}
