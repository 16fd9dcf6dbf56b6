//! HTTP/1.1 "plaintext" server on the callback face (the TechEmpower plaintext test): every
//! `GET /plaintext` (and `GET /`) is answered with `Hello, World!`.
//!
//! ```text
//! cargo run --release --example http_plaintext -- [ADDR]
//! curl -v http://127.0.0.1:8080/plaintext
//! wrk -t1 -c100 -d5s http://127.0.0.1:8080/plaintext
//! ```
//!
//! ADDR (`IP:PORT` or `unix:/path`) defaults to 127.0.0.1:8080. Prints `listening on
//! <addr>` first, and stops gracefully on SIGINT or SIGTERM.
//!
//! # What it speaks
//!
//! - Request heads are parsed with `httparse`. A request body announced by `Content-Length`
//!   is skipped (it may span reads). A `Transfer-Encoding` request header (chunked bodies) is
//!   rejected with 400: the server has no use for a body, and refusing what it does not
//!   frame keeps it from misreading where the next request starts.
//! - HTTP/1.1 connections stay open unless the request says `Connection: close` (answered with
//!   `Connection: close`, then the connection closes once the reply is written). HTTP/1.0
//!   connections close after the reply unless the request says `Connection: keep-alive`.
//! - Pipelined requests are answered in order. The replies to one read are queued together
//!   and the reactor writes a connection's whole queue with one `sendmsg` per turn.
//! - Errors: 400 for a malformed request (also an HTTP/1.1 request without `Host`, or a bad or
//!   conflicting `Content-Length`), 431 for more than 64 headers or a head over 8 KiB, 404 for
//!   a path other than `/` and `/plaintext`, 405 (with `Allow: GET`) for another method on
//!   those paths. Each error reply carries `Connection: close` and the connection closes after
//!   it. The close does not wait for the rest of a request body: a client still sending one
//!   may see a reset.
//!
//! # Speed
//!
//! The three possible `200` replies (HTTP/1.1 keep-alive, `Connection: close`, HTTP/1.0
//! keep-alive) are built once per second with the current `Date`, and each reply is a clone
//! of one of them: a reference count, no copy, no allocation. Nothing is kept per connection
//! unless a read ends inside a request head or body. Copying the replies to one read into one
//! buffer instead was measured with wrk (16 requests pipelined): no faster, so each reply stays
//! its own buffer in the queue, and the reactor gathers them into one `sendmsg`.
//!
//! The `Date` header is checked against the clock once per read (a `clock_gettime` in the
//! vDSO, no system call) and rebuilt when the second changed. The idle tick
//! ([`Builder::tick`]) is no fit for this: it fires only while the *whole* server is idle, so
//! under load, when dates matter, it would never run.

use bytes::{Buf, BytesMut};
use epoll_server::{Builder, Bytes, CloseReason, ConnId, Context, Handler, Server};
use std::collections::HashMap;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::time::{SystemTime, UNIX_EPOCH};

/// The most headers a request may have (431 beyond).
const MAX_HEADERS: usize = 64;

/// The longest request head, request line and headers with their final empty line (431
/// beyond).
const MAX_HEAD: usize = 8 * 1024;

/// The `Server` header's value.
const SERVER: &str = "epoll-server";

/// The one body this server serves.
const HELLO: &str = "Hello, World!";

/// The `Date` header's value: IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
type HttpDate = [u8; 29];

fn main() -> io::Result<()> {
    let addr = match std::env::args().nth(1) {
        Some(flag) if flag.starts_with('-') => usage(&format!("unknown option {flag}")),
        Some(addr) => addr,
        None => "127.0.0.1:8080".to_string(),
    };
    if std::env::args().nth(2).is_some() {
        usage("too many arguments");
    }
    let server = bind(Server::builder().max_fds(65_536), &addr)?.build(Plaintext::new())?;
    epoll_server::stop_on_signals(&server.handle(), &[libc::SIGINT, libc::SIGTERM])?;
    println!("listening on {}", server.addresses()[0]);
    io::stdout().flush()?;
    server.run()
}

/// Adds the listener for `addr` to `builder`.
/// Binds the listen address: `IP:PORT` or `unix:/path` (a Unix domain socket).
fn bind(builder: Builder, addr: &str) -> io::Result<Builder> {
    let addr: epoll_server::Address = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    builder.bind_address(&addr)
}

fn usage(problem: &str) -> ! {
    eprintln!("{problem}\nusage: http_plaintext [ADDR]");
    std::process::exit(2)
}

/// The handler: the replies of the current second, and the connections that stopped inside a
/// request.
struct Plaintext {
    replies: Replies,
    /// Connections whose last read ended inside a request head or body.
    partial: HashMap<ConnId, Partial>,
}

/// Where a connection's last read left it.
#[derive(Default)]
struct Partial {
    /// The start of a request head.
    head: BytesMut,
    /// Body bytes still to skip before the next request.
    skip: usize,
}

/// How far one pass over received bytes got.
enum Served {
    /// Every byte was used.
    All,
    /// A request head starts at this offset and is not complete.
    HeadFrom(usize),
    /// A request body goes on for this many more bytes.
    Skip(usize),
    /// The connection is closing: nothing more is read.
    Closing,
}

impl Plaintext {
    fn new() -> Plaintext {
        Plaintext {
            replies: Replies::new(unix_now()),
            partial: HashMap::new(),
        }
    }

    /// Answers every whole request at the start of `input`.
    fn serve(&mut self, ctx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> Served {
        let mut at = 0;
        while at < input.len() {
            let (reply, closes, len, body) = match parse(&input[at..]) {
                Parsed::Partial => return Served::HeadFrom(at),
                Parsed::Request { len, body, hello } => {
                    (self.replies.hello(hello), hello == Hello::Close, len, body)
                }
                Parsed::Error(status) => (self.replies.error(status), true, 0, 0),
            };
            if ctx.send(conn, reply).is_err() || closes {
                // A refused send: the connection is closed, or the peer reads nothing (its
                // output is at the hard limit).
                ctx.close(conn);
                return Served::Closing;
            }
            at += len;
            let left = input.len() - at;
            if body > left {
                return Served::Skip(body - left);
            }
            at += body;
        }
        Served::All
    }
}

impl Handler for Plaintext {
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        self.replies.refresh(unix_now());
        let mut partial = if self.partial.is_empty() {
            Partial::default()
        } else {
            self.partial.remove(&conn).unwrap_or_default()
        };
        let skipped = partial.skip.min(data.len());
        partial.skip -= skipped;
        let input = &data[skipped..];
        if input.is_empty() {
            // All of it was body.
        } else if partial.head.is_empty() {
            // The common case: requests straight from the read buffer, without a copy.
            match self.serve(ctx, conn, input) {
                Served::All | Served::Closing => {}
                Served::HeadFrom(at) => partial.head.extend_from_slice(&input[at..]),
                Served::Skip(n) => partial.skip = n,
            }
        } else {
            let mut head = std::mem::take(&mut partial.head);
            head.extend_from_slice(input);
            match self.serve(ctx, conn, &head) {
                Served::All | Served::Closing => {}
                Served::HeadFrom(at) => {
                    head.advance(at);
                    partial.head = head;
                }
                Served::Skip(n) => partial.skip = n,
            }
        }
        if (partial.skip > 0 || !partial.head.is_empty()) && ctx.is_open(conn) {
            self.partial.insert(conn, partial);
        }
    }

    fn on_close(&mut self, _: &mut Context<'_>, conn: ConnId, _: CloseReason) {
        self.partial.remove(&conn);
    }
}

/// The `200` replies, by what happens to the connection after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hello {
    /// HTTP/1.1: open by default, no `Connection` header.
    KeepAlive,
    /// HTTP/1.0 that asked for `Connection: keep-alive`, which the reply confirms.
    KeepAlive10,
    /// `Connection: close`, then the connection closes.
    Close,
}

/// The error statuses; every one closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    HeadersTooLarge,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::HeadersTooLarge => "431 Request Header Fields Too Large",
        }
    }
}

/// What the start of the received bytes holds.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// The head is not complete yet (and not over the limits so far).
    Partial,
    /// A good head of `len` bytes, followed by a body of `body` bytes.
    Request {
        len: usize,
        body: usize,
        hello: Hello,
    },
    /// A request to answer with an error (and to close the connection after).
    Error(Status),
}

/// Parses the request head at the start of `input` and decides its reply.
fn parse(input: &[u8]) -> Parsed {
    let error = Parsed::Error;
    let mut headers = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(input, &mut headers) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Complete(_)) => return error(Status::HeadersTooLarge),
        // Still incomplete at the limit: the whole head would be over it.
        Ok(httparse::Status::Partial) if input.len() >= MAX_HEAD => {
            return error(Status::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return error(Status::HeadersTooLarge),
        Err(_) => return error(Status::BadRequest),
    };
    let http10 = req.version == Some(0);
    let (mut close, mut keep_alive, mut host) = (false, false, false);
    let mut body: Option<usize> = None;
    for header in req.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = trim(token);
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            // Repeated Content-Length headers must agree (RFC 9112, section 6.3).
            match (content_length(header.value), body) {
                (Some(n), None) => body = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => return error(Status::BadRequest),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return error(Status::BadRequest);
        } else if name.eq_ignore_ascii_case("host") {
            host = true;
        }
    }
    if !http10 && !host {
        return error(Status::BadRequest);
    }
    let path = req.path.unwrap_or_default();
    let path = path.split_once('?').map_or(path, |(path, _query)| path);
    if path != "/plaintext" && path != "/" {
        return error(Status::NotFound);
    }
    if req.method != Some("GET") {
        return error(Status::MethodNotAllowed);
    }
    let hello = match (http10, close, keep_alive) {
        (_, true, _) | (true, false, false) => Hello::Close,
        (true, false, true) => Hello::KeepAlive10,
        (false, false, _) => Hello::KeepAlive,
    };
    Parsed::Request {
        len,
        body: body.unwrap_or(0),
        hello,
    }
}

/// A `Content-Length` value: decimal digits only, no sign, no overflow.
fn content_length(value: &[u8]) -> Option<usize> {
    let value = trim(value);
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// `bytes` without leading and trailing spaces and tabs (`<[u8]>::trim_ascii` needs Rust
/// 1.80; the crate supports 1.79).
fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// The replies of the current second, built once with its `Date`.
struct Replies {
    /// The second (since the Unix epoch) the replies carry.
    second: u64,
    keep_alive: Bytes,
    keep_alive_10: Bytes,
    close: Bytes,
    date: HttpDate,
}

impl Replies {
    fn new(now: u64) -> Replies {
        let mut replies = Replies {
            second: now,
            keep_alive: Bytes::new(),
            keep_alive_10: Bytes::new(),
            close: Bytes::new(),
            date: http_date(now),
        };
        replies.build();
        replies
    }

    /// Rebuilds the replies if `now` is another second than theirs.
    fn refresh(&mut self, now: u64) {
        if now != self.second {
            self.second = now;
            self.date = http_date(now);
            self.build();
        }
    }

    fn build(&mut self) {
        self.keep_alive = self.response("200 OK", "", "text/plain", HELLO);
        self.keep_alive_10 =
            self.response("200 OK", "Connection: keep-alive\r\n", "text/plain", HELLO);
        self.close = self.response("200 OK", "Connection: close\r\n", "text/plain", HELLO);
    }

    fn hello(&self, kind: Hello) -> Bytes {
        match kind {
            Hello::KeepAlive => self.keep_alive.clone(),
            Hello::KeepAlive10 => self.keep_alive_10.clone(),
            Hello::Close => self.close.clone(),
        }
    }

    /// An error reply (rare, so built each time), with its reason phrase as the body.
    fn error(&self, status: Status) -> Bytes {
        let allow = match status {
            Status::MethodNotAllowed => "Allow: GET\r\nConnection: close\r\n",
            _ => "Connection: close\r\n",
        };
        let line = status.line();
        let body = format!("{}\n", &line[4..]);
        self.response(line, allow, "text/plain", &body)
    }

    /// A whole response: status line, the common headers, `extra` header lines, the body.
    fn response(&self, status: &str, extra: &str, content_type: &str, body: &str) -> Bytes {
        let date = std::str::from_utf8(&self.date).expect("an ASCII date");
        Bytes::from(format!(
            "HTTP/1.1 {status}\r\nServer: {SERVER}\r\nDate: {date}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n{extra}\r\n{body}",
            body.len()
        ))
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `secs` since the Unix epoch as an IMF-fixdate (RFC 9110, section 5.6.7), e.g.
/// `Sun, 06 Nov 1994 08:49:37 GMT` for 784111777.
fn http_date(secs: u64) -> HttpDate {
    const DAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days);
    let second_of_day = secs % 86_400;
    let (hour, minute, second) = (
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
    );
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    // 1970-01-01 was a Thursday.
    out[0..3].copy_from_slice(DAYS[((days + 4) % 7) as usize]);
    two_digits(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    two_digits(&mut out[12..14], year / 100 % 100);
    two_digits(&mut out[14..16], year % 100);
    two_digits(&mut out[17..19], hour);
    two_digits(&mut out[20..22], minute);
    two_digits(&mut out[23..25], second);
    out
}

fn two_digits(out: &mut [u8], n: u64) {
    out[0] = b'0' + (n / 10 % 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

/// The proleptic Gregorian (year, month 1–12, day 1–31) of a day count since 1970-01-01: Howard
/// Hinnant's `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>), for
/// days on or after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Count from 0000-03-01, so that the leap day ends each 400-year era's years.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
