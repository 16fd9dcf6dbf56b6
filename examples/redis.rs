//! An in-memory Redis server (RESP2) on the callback face: strings, counters, lists, sets and
//! hashes with key expiry, answered like Redis 7 byte for byte, errors included.
//!
//! ```text
//! cargo run --release --example redis -- [ADDR] [--proto-max-bulk-len BYTES]
//! redis-cli -p 6380 set greeting hello ex 60
//! redis-benchmark -p 6380 -t set,get,incr,lpush,lpop,mset -P 16 -q
//! ```
//!
//! ADDR (`IP:PORT` or `unix:/path`) defaults to 127.0.0.1:6380. Prints `listening on
//! <addr>` first, and stops gracefully on SIGINT or SIGTERM.
//!
//! Commands: PING, ECHO, SET (EX, PX, EXAT, PXAT, NX, XX, KEEPTTL, GET), GET, DEL, EXISTS, INCR,
//! DECR, INCRBY, DECRBY, MSET, MGET, LPUSH, RPUSH, LPOP, RPOP, LRANGE, SADD, SPOP, HSET, HGET,
//! DBSIZE, FLUSHALL, QUIT, CONFIG GET (only `save`, which is empty, and `appendonly`, which is
//! `no`), COMMAND (empty answers), CLIENT SETNAME and CLIENT SETINFO. Names are case-insensitive.
//!
//! The whole database lives in the [`Handler`], on the reactor thread: no locks. The codec is
//! Redis's own request parser, inline and multibulk, with its limits: an argument of at most
//! `--proto-max-bulk-len` bytes (512 MiB by default), an inline request or a length line of at
//! most 64 KiB, a request of at most 1 GiB in all. A protocol error is answered as Redis answers
//! it, and the connection closes once the answer is written. Each request is one frame; a
//! multibulk request's arguments are read in place, as slices of that frame, an inline one's
//! are unquoted into a buffer reused from request to request, so reading a request allocates
//! nothing. Pipelined replies are queued in order and leave in one `sendmsg` per loop turn. Keys
//! expire lazily when touched; `DBSIZE` and every 1024 commands drop the expired ones. String
//! values of up to 38 bytes are stored in their entry, without an allocation of their own.

use bytes::{Buf, BufMut, BytesMut};
use epoll_server::codec::{Decoder, Framing, Raw};
use epoll_server::{Builder, Bytes, ConnId, Context, Handler, Server};
use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::io::{self, Write};
use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

const DEFAULT_ADDR: &str = "127.0.0.1:6380";
/// Redis's `proto-max-bulk-len` default: the longest argument.
const DEFAULT_MAX_BULK_LEN: i64 = 512 * 1024 * 1024;
/// Redis's `PROTO_INLINE_MAX_SIZE`: the longest inline request, and length line.
const INLINE_MAX: usize = 64 * 1024;
/// Redis's `client-query-buffer-limit` default: the largest request, all arguments together.
const QUERY_BUFFER_LIMIT: usize = 1 << 30;
/// Bulk strings up to this size are copied into the reply; longer ones are queued as they are
/// stored, without a copy.
const COPY_MAX: usize = 4096;
/// The longest string value stored in its entry, without an allocation of its own: as long as
/// it leaves a string no larger than a hash, the largest value.
const SHORT_MAX: usize = 38;
/// The reply arena's chunk: replies are slices of one buffer, not one allocation each.
const ARENA_CHUNK: usize = 16 * 1024;

fn main() -> io::Result<()> {
    let (addr, max_bulk_len) = parse_args();
    let framing = Framing::custom(move || RequestDecoder::new(max_bulk_len), || Raw);
    // Reading from a connection pauses while its output is over 1 MiB, so output grows past
    // that only by the replies to one read; like Redis for normal clients, no hard limit.
    let builder = Server::builder()
        .max_fds(65_536)
        .output_limits(1 << 20, 256 << 10, usize::MAX / 2)
        .framing(framing);
    let server = bind(builder, &addr)?.build(Redis::new())?;
    epoll_server::stop_on_signals(&server.handle(), &[libc::SIGINT, libc::SIGTERM])?;
    println!("listening on {}", server.addresses()[0]);
    io::stdout().flush()?;
    server.run()
}

/// Adds the listener for `addr`, a `host:port` address.
/// Binds the listen address: `IP:PORT` or `unix:/path` (a Unix domain socket).
fn bind(builder: Builder, addr: &str) -> io::Result<Builder> {
    let addr: epoll_server::Address = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    builder.bind_address(&addr)
}

/// The listen address and the longest argument; exits with a usage message on a bad argument.
fn parse_args() -> (String, i64) {
    let mut addr = DEFAULT_ADDR.to_string();
    let mut max_bulk_len = DEFAULT_MAX_BULK_LEN;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--proto-max-bulk-len" => {
                max_bulk_len = args
                    .next()
                    .and_then(|v| v.parse::<i64>().ok())
                    .filter(|&v| v > 0)
                    .unwrap_or_else(|| usage("--proto-max-bulk-len needs a number of bytes"));
            }
            flag if flag.starts_with("--") => usage(&format!("unknown option {flag}")),
            other => addr = other.to_string(),
        }
    }
    (addr, max_bulk_len)
}

fn usage(problem: &str) -> ! {
    eprintln!("{problem}\nusage: redis [ADDR] [--proto-max-bulk-len BYTES]");
    std::process::exit(2)
}

// ---------------------------------------------------------------------------------------------
// The request codec: Redis's processInlineBuffer and processMultibulkBuffer.
// ---------------------------------------------------------------------------------------------

/// Splits the inbound bytes into requests, one frame each, the way Redis 7 reads them.
///
/// ```text
/// "*"...   multibulk: *N\r\n then N times $LEN\r\n DATA xx   -> frame: the request as it came
/// else     inline:    words up to \n (quotes as redis-cli)     -> frame: the line, without \r\n
/// *0, *-1, a blank line: consumed, no frame (Redis ignores them)
/// a protocol error: a frame "*-ERR Protocol error: ...\r\n", then every later byte is dropped
/// ```
///
/// A frame's first byte tells the three apart: an inline line never starts with `*`, and a
/// multibulk frame's count is at least 1, so `*-` starts only an error. The inline line is split
/// into arguments by the handler ([`read_request`]), which also finds unbalanced quotes: no copy
/// of the request is made.
///
/// Like Redis, the two bytes after an argument are skipped unread, a length line ends at the
/// first `\r` and a NUL before it hides the end (Redis searches with `strchr`).
struct RequestDecoder {
    max_bulk_len: i64,
    /// Progress through a multibulk request that is not complete yet.
    partial: Option<Multibulk>,
    /// Where the search for the current line's end resumes.
    scanned: usize,
    /// A NUL came before the current line's end: Redis never finds that end.
    blocked: bool,
    /// A protocol error was reported: nothing more is decoded.
    failed: bool,
}

#[derive(Clone, Copy)]
struct Multibulk {
    /// Offset of the next unread length line or argument.
    pos: usize,
    args_left: i64,
    /// The length of the argument at `pos`, once its length line is read.
    bulk_len: Option<usize>,
}

enum Step {
    Frame(Bytes),
    /// A request with no arguments was consumed.
    Skip,
    More,
    ProtocolError(String),
}

impl RequestDecoder {
    fn new(max_bulk_len: i64) -> RequestDecoder {
        RequestDecoder {
            max_bulk_len,
            partial: None,
            scanned: 0,
            blocked: false,
            failed: false,
        }
    }

    /// The offset of the first `target` at or after `start`, looking at no more than `window`
    /// bytes; `None` if it is not there (yet), or a NUL comes first.
    fn find(&mut self, buf: &[u8], start: usize, target: u8, window: usize) -> Option<usize> {
        if self.blocked {
            return None;
        }
        let end = buf.len().min(start + window);
        let from = self.scanned.max(start);
        for (i, &b) in buf.get(from..end).unwrap_or_default().iter().enumerate() {
            if b == target {
                self.scanned = 0;
                return Some(from + i);
            }
            if b == 0 {
                self.blocked = true;
                return None;
            }
        }
        self.scanned = end;
        None
    }

    fn inline(&mut self, buf: &mut BytesMut) -> Step {
        // A line of at most INLINE_MAX bytes, then "\r\n" or "\n".
        let too_big = || Step::ProtocolError("too big inline request".into());
        let Some(newline) = self.find(buf, 0, b'\n', INLINE_MAX + 2) else {
            let over = buf.len() > INLINE_MAX + 1
                || (buf.len() == INLINE_MAX + 1 && buf[INLINE_MAX] != b'\r');
            return if over { too_big() } else { Step::More };
        };
        let end = if newline > 0 && buf[newline - 1] == b'\r' {
            newline - 1
        } else {
            newline
        };
        if end > INLINE_MAX {
            return too_big();
        }
        // Blanks alone split into no arguments: no request.
        if buf[..end].iter().all(|&b| is_space(b)) {
            buf.advance(newline + 1);
            return Step::Skip;
        }
        let mut line = buf.split_to(newline + 1);
        line.truncate(end);
        Step::Frame(line.freeze())
    }

    fn multibulk(&mut self, buf: &mut BytesMut) -> Step {
        let mut mb = match self.partial.take() {
            Some(mb) => mb,
            None => {
                let Some(cr) = self.find(buf, 0, b'\r', INLINE_MAX + 1) else {
                    return if buf.len() > INLINE_MAX {
                        Step::ProtocolError("too big mbulk count string".into())
                    } else {
                        Step::More
                    };
                };
                // The line must be followed by one more byte, its '\n' (not checked).
                if cr + 2 > buf.len() {
                    return Step::More;
                }
                let count = match parse_i64(&buf[1..cr]) {
                    Some(n) if n <= i64::from(i32::MAX) => n,
                    _ => return Step::ProtocolError("invalid multibulk length".into()),
                };
                if count <= 0 {
                    buf.advance(cr + 2);
                    return Step::Skip;
                }
                Multibulk {
                    pos: cr + 2,
                    args_left: count,
                    bulk_len: None,
                }
            }
        };
        while mb.args_left > 0 {
            let len = match mb.bulk_len {
                Some(len) => len,
                None => {
                    let Some(cr) = self.find(buf, mb.pos, b'\r', INLINE_MAX + 1) else {
                        if buf.len() - mb.pos > INLINE_MAX {
                            return Step::ProtocolError("too big bulk count string".into());
                        }
                        self.partial = Some(mb);
                        return Step::More;
                    };
                    if cr + 2 > buf.len() {
                        self.partial = Some(mb);
                        return Step::More;
                    }
                    if buf[mb.pos] != b'$' {
                        let got = match buf[mb.pos] {
                            b'\r' | b'\n' => ' ',
                            b => char::from(b),
                        };
                        return Step::ProtocolError(format!("expected '$', got '{got}'"));
                    }
                    let len = match parse_i64(&buf[mb.pos + 1..cr]) {
                        Some(n) if (0..=self.max_bulk_len).contains(&n) => n as usize,
                        _ => return Step::ProtocolError("invalid bulk length".into()),
                    };
                    mb.pos = cr + 2;
                    mb.bulk_len = Some(len);
                    len
                }
            };
            // The argument, then two bytes that should be "\r\n" (skipped unread, as Redis does).
            if buf.len() - mb.pos < len + 2 {
                self.partial = Some(mb);
                return Step::More;
            }
            mb.pos += len + 2;
            mb.bulk_len = None;
            mb.args_left -= 1;
        }
        Step::Frame(buf.split_to(mb.pos).freeze())
    }
}

impl Decoder for RequestDecoder {
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
        loop {
            if self.failed {
                buf.clear();
                return Ok(None);
            }
            if buf.is_empty() {
                return Ok(None);
            }
            let step = if buf[0] == b'*' {
                self.multibulk(buf)
            } else {
                self.inline(buf)
            };
            match step {
                Step::More if buf.len() >= QUERY_BUFFER_LIMIT => {
                    // Redis closes such a client without a reply, too.
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("request longer than the query buffer limit of {QUERY_BUFFER_LIMIT} bytes"),
                    ));
                }
                Step::More => return Ok(None),
                Step::Skip => {}
                Step::Frame(frame) => {
                    self.partial = None;
                    return Ok(Some(frame));
                }
                Step::ProtocolError(msg) => {
                    self.failed = true;
                    buf.clear();
                    return Ok(Some(Bytes::from(format!(
                        "*-ERR Protocol error: {msg}\r\n"
                    ))));
                }
            }
            self.partial = None;
            self.scanned = 0;
        }
    }

    /// A request cut short by the peer's end of file is dropped, as Redis drops it.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
        let frame = self.decode(buf)?;
        if frame.is_none() {
            buf.clear();
        }
        Ok(frame)
    }

    fn max_buffered(&self) -> usize {
        QUERY_BUFFER_LIMIT
    }
}

/// Splits an inline request into arguments like Redis's `sdssplitargs`: blanks separate them,
/// `"..."` knows `\n`, `\r`, `\t`, `\b`, `\a`, `\xHH` and `\<any>`, `'...'` knows `\'`; a closing
/// quote must be followed by a blank or the end. Appends each argument, unquoted, to `out`, and
/// its range in `out` to `argv`; false for unbalanced quotes.
fn split_args(line: &[u8], out: &mut Vec<u8>, argv: &mut Vec<Range<usize>>) -> bool {
    // The line is a C string to Redis: past its end reads as NUL.
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut p = 0;
    loop {
        while at(p) != 0 && is_space(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return true;
        }
        let start = out.len();
        let (mut in_double, mut in_single, mut done) = (false, false, false);
        while !done {
            let c = at(p);
            if in_double {
                let hex = (hex_value(at(p + 2)), hex_value(at(p + 3)));
                if let (b'\\', b'x', (Some(h), Some(l))) = (c, at(p + 1), hex) {
                    out.push(h * 16 + l);
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    out.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return false;
                    }
                    done = true;
                } else if c == 0 {
                    return false;
                } else {
                    out.push(c);
                }
            } else if in_single {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    out.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return false;
                    }
                    done = true;
                } else if c == 0 {
                    return false;
                } else {
                    out.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => out.push(c),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        argv.push(start..out.len());
    }
}

/// C's `isspace`: what separates inline arguments.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// Redis's `string2ll`: an optional `-`, then digits with no leading zero (or just `0`), within
/// `i64`; nothing else, not even blanks.
fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, s),
    };
    match digits {
        [b'0'] if !negative => return Some(0),
        [b'1'..=b'9', ..] if s.len() < 21 => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(v)
    } else {
        i64::try_from(v).ok()
    }
}

const UNBALANCED_QUOTES: &[u8] = b"-ERR Protocol error: unbalanced quotes in request\r\n";

/// The arguments of a decoded request `frame` (see [`RequestDecoder`]): as ranges of the frame,
/// or for an inline request, of `scratch`, where they are written unquoted. `argv` and `scratch`
/// are reused from request to request, so that none allocates. `Err` with the reply to a
/// protocol error, empty for a frame that is no request (none is: the decoder made it).
fn read_request<'a>(
    frame: &'a Bytes,
    scratch: &'a mut Vec<u8>,
    argv: &'a mut Vec<Range<usize>>,
) -> Result<Args<'a>, Bytes> {
    argv.clear();
    let frame: &[u8] = match frame.as_ref() {
        [b'*', b'-', ..] => return Err(frame.slice(1..)),
        [b'*', ..] => {
            if !parse_argv(frame, argv) {
                return Err(Bytes::new());
            }
            frame
        }
        line => {
            scratch.clear();
            if !split_args(line, scratch, argv) {
                return Err(Bytes::from_static(UNBALANCED_QUOTES));
            }
            scratch
        }
    };
    if argv.is_empty() {
        return Err(Bytes::new());
    }
    Ok(Args { frame, argv })
}

/// Fills `argv` with the ranges of a multibulk request's arguments in `frame`; false if `frame`
/// is not one.
fn parse_argv(frame: &[u8], argv: &mut Vec<Range<usize>>) -> bool {
    // A length line at `from` ("*N" or "$N" up to the first '\r'): its number and the offset
    // after its two line-end bytes.
    let line = |from: usize| -> Option<(usize, usize)> {
        let rest = frame.get(from..)?;
        let cr = from + rest.iter().position(|&b| b == b'\r')?;
        let n = usize::try_from(parse_i64(frame.get(from + 1..cr)?)?).ok()?;
        Some((n, cr + 2))
    };
    let Some((count, mut pos)) = line(0) else {
        return false;
    };
    for _ in 0..count {
        let Some((len, start)) = line(pos) else {
            return false;
        };
        let end = start + len;
        if end + 2 > frame.len() {
            return false;
        }
        argv.push(start..end);
        pos = end + 2;
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Replies.
// ---------------------------------------------------------------------------------------------

const WRONGTYPE: &[u8] = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
const NOT_INTEGER: &[u8] = b"-ERR value is not an integer or out of range\r\n";
const SYNTAX_ERROR: &[u8] = b"-ERR syntax error\r\n";
const NOT_POSITIVE: &[u8] = b"-ERR value is out of range, must be positive\r\n";
const OK: &[u8] = b"+OK\r\n";
const NIL: &[u8] = b"$-1\r\n";
const NULL_ARRAY: &[u8] = b"*-1\r\n";
const EMPTY_ARRAY: &[u8] = b"*0\r\n";

/// `n` in decimal: a buffer and where the digits (and sign) start in it.
fn decimal(n: i64) -> ([u8; 20], usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        digits[i] = b'-';
    }
    (digits, i)
}

/// Pushes `prefix`, `n` in decimal and `"\r\n"`.
fn push_line(buf: &mut BytesMut, prefix: u8, n: i64) {
    let (digits, start) = decimal(n);
    buf.reserve(23);
    buf.put_u8(prefix);
    buf.extend_from_slice(&digits[start..]);
    buf.extend_from_slice(b"\r\n");
}

/// The replies to one request: written into a shared arena, except long stored values, which
/// are queued by reference.
struct Out {
    arena: BytesMut,
    parts: Vec<Bytes>,
    /// Close the connection once the reply is written (QUIT).
    close: bool,
}

impl Out {
    fn raw(&mut self, bytes: &[u8]) {
        self.arena.extend_from_slice(bytes);
    }

    fn int(&mut self, n: i64) {
        push_line(&mut self.arena, b':', n);
    }

    fn array(&mut self, len: usize) {
        push_line(&mut self.arena, b'*', len as i64);
    }

    fn bulk(&mut self, data: &[u8]) {
        push_line(&mut self.arena, b'$', data.len() as i64);
        self.arena.extend_from_slice(data);
        self.arena.extend_from_slice(b"\r\n");
    }

    /// A stored value: copied if short, else queued as it is.
    fn bulk_shared(&mut self, data: &Bytes) {
        if data.len() <= COPY_MAX {
            return self.bulk(data);
        }
        push_line(&mut self.arena, b'$', data.len() as i64);
        self.parts.push(self.arena.split().freeze());
        self.parts.push(data.clone());
        self.arena.extend_from_slice(b"\r\n");
    }

    fn string(&mut self, s: &Str) {
        match s {
            Str::Bytes(b) => self.bulk_shared(b),
            Str::Short(len, bytes) => self.bulk(&bytes[..usize::from(*len)]),
            Str::Int(n) => {
                let (digits, start) = decimal(*n);
                self.bulk(&digits[start..]);
            }
        }
    }

    fn err(&mut self, msg: &str) {
        self.raw(b"-ERR ");
        self.raw(msg.as_bytes());
        self.raw(b"\r\n");
    }

    fn arity(&mut self, fullname: &str) {
        self.err(&format!(
            "wrong number of arguments for '{fullname}' command"
        ));
    }

    /// A user-supplied error text, made safe as Redis does: no line ends inside.
    fn err_bytes(&mut self, msg: &[u8]) {
        self.raw(b"-ERR ");
        for &b in msg {
            self.arena
                .put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        self.raw(b"\r\n");
    }

    /// The request's reply, in order, as buffers to queue.
    fn finish(&mut self) -> std::vec::Drain<'_, Bytes> {
        if !self.arena.is_empty() {
            self.parts.push(self.arena.split().freeze());
        }
        if self.arena.capacity() < 256 {
            self.arena.reserve(ARENA_CHUNK);
        }
        self.parts.drain(..)
    }
}

// ---------------------------------------------------------------------------------------------
// The database.
// ---------------------------------------------------------------------------------------------

/// A string value; stored as an integer when it reads as one, as Redis does, and in the entry
/// itself when it is short.
enum Str {
    Bytes(Bytes),
    /// The first `.0` bytes: a value of at most [`SHORT_MAX`] bytes, without an allocation of
    /// its own (as Redis's embedded strings).
    Short(u8, [u8; SHORT_MAX]),
    Int(i64),
}

impl Str {
    fn from_arg(arg: &[u8]) -> Str {
        if let Some(n) = parse_i64(arg) {
            return Str::Int(n);
        }
        if arg.len() <= SHORT_MAX {
            let mut bytes = [0; SHORT_MAX];
            bytes[..arg.len()].copy_from_slice(arg);
            return Str::Short(arg.len() as u8, bytes);
        }
        Str::Bytes(Bytes::copy_from_slice(arg))
    }
}

enum Value {
    Str(Str),
    List(VecDeque<Bytes>),
    Set(HashSet<Bytes>),
    Hash(HashMap<Bytes, Bytes>),
}

impl Value {
    fn list_mut(&mut self) -> Option<&mut VecDeque<Bytes>> {
        match self {
            Value::List(list) => Some(list),
            _ => None,
        }
    }

    fn set_mut(&mut self) -> Option<&mut HashSet<Bytes>> {
        match self {
            Value::Set(set) => Some(set),
            _ => None,
        }
    }

    fn hash_mut(&mut self) -> Option<&mut HashMap<Bytes, Bytes>> {
        match self {
            Value::Hash(hash) => Some(hash),
            _ => None,
        }
    }
}

struct Entry {
    value: Value,
    /// Unix time in milliseconds after which the key is gone.
    expires_at: Option<i64>,
}

/// The time of the current command, read once if needed (Redis's `commandTimeSnapshot`).
#[derive(Default)]
struct Clock(Cell<Option<i64>>);

impl Clock {
    fn now(&self) -> i64 {
        if let Some(now) = self.0.get() {
            return now;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.0.set(Some(now));
        now
    }

    fn is_live(&self, entry: &Entry) -> bool {
        entry.expires_at.map_or(true, |at| at > self.now())
    }
}

#[derive(Default)]
struct Db {
    keys: HashMap<Bytes, Entry>,
    /// Deadlines of keys with a time to live; entries whose key changed since are stale and
    /// skipped.
    expiries: BinaryHeap<Reverse<(i64, Bytes)>>,
    clock: Clock,
    commands: u64,
}

impl Db {
    /// The live entry at `key`, to read.
    fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.keys.get(key).filter(|e| self.clock.is_live(e))
    }

    /// The live entry at `key`, to change. An expired one stays until it is replaced or purged.
    fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let clock = &self.clock;
        self.keys.get_mut(key).filter(|e| clock.is_live(e))
    }

    /// Stores `value` at `key`, replacing whatever was there.
    fn set(&mut self, key: &[u8], value: Value, expires_at: Option<i64>) {
        let entry = Entry { value, expires_at };
        if let Some(old) = self.keys.get_mut(key) {
            *old = entry;
        } else {
            self.keys.insert(Bytes::copy_from_slice(key), entry);
        }
        if let Some(at) = expires_at {
            self.note_expiry(key, at);
        }
    }

    fn note_expiry(&mut self, key: &[u8], at: i64) {
        if let Some((stored, _)) = self.keys.get_key_value(key) {
            self.expiries.push(Reverse((at, stored.clone())));
        }
        if self.expiries.len() > 2 * self.keys.len() + 1024 {
            // Mostly stale: rebuild from the keys that have a deadline.
            self.expiries = self
                .keys
                .iter()
                .filter_map(|(k, e)| Some(Reverse((e.expires_at?, k.clone()))))
                .collect();
        }
    }

    /// Drops every expired key.
    fn purge(&mut self) {
        let now = self.clock.now();
        while let Some(Reverse((at, _))) = self.expiries.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, key))) = self.expiries.pop() else {
                break;
            };
            if self
                .keys
                .get(&key)
                .is_some_and(|e| e.expires_at == Some(at))
            {
                self.keys.remove(&key);
            }
        }
    }

    /// Removes `key` if it is there and live.
    fn remove(&mut self, key: &[u8]) -> bool {
        match self.keys.remove(key) {
            Some(entry) => self.clock.is_live(&entry),
            None => false,
        }
    }

    /// Runs one request.
    fn execute(&mut self, args: &Args<'_>, out: &mut Out) {
        self.clock = Clock::default();
        self.commands = self.commands.wrapping_add(1);
        if self.commands % 1024 == 0 && !self.expiries.is_empty() {
            self.purge();
        }
        match lookup(args) {
            Ok(spec) => {
                let argc = args.len() as i64;
                let arity = i64::from(spec.arity);
                if (arity > 0 && argc != arity) || argc < -arity {
                    return out.arity(spec.name);
                }
                (spec.run)(self, args, out);
            }
            Err(Unknown::Command) => unknown_command(args, out),
            Err(Unknown::Subcommand) => unknown_subcommand(args, out),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The handler.
// ---------------------------------------------------------------------------------------------

/// The arguments of one request, as ranges of its frame.
struct Args<'a> {
    frame: &'a [u8],
    argv: &'a [Range<usize>],
}

impl Args<'_> {
    fn len(&self) -> usize {
        self.argv.len()
    }
}

impl std::ops::Index<usize> for Args<'_> {
    type Output = [u8];

    fn index(&self, i: usize) -> &[u8] {
        &self.frame[self.argv[i].clone()]
    }
}

struct Redis {
    db: Db,
    argv: Vec<Range<usize>>,
    /// The unquoted arguments of an inline request.
    scratch: Vec<u8>,
    out: Out,
}

impl Redis {
    fn new() -> Redis {
        Redis {
            db: Db::default(),
            argv: Vec::new(),
            scratch: Vec::new(),
            out: Out {
                arena: BytesMut::with_capacity(ARENA_CHUNK),
                parts: Vec::new(),
                close: false,
            },
        }
    }
}

impl Handler for Redis {
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, frame: Bytes) {
        // After QUIT or a protocol error, later requests of the same read are not run.
        if !ctx.is_open(conn) {
            return;
        }
        let args = match read_request(&frame, &mut self.scratch, &mut self.argv) {
            Ok(args) => args,
            Err(reply) => {
                // A protocol error: answer it, then close.
                if !reply.is_empty() {
                    let _ = ctx.send(conn, reply);
                }
                ctx.close(conn);
                return;
            }
        };
        self.db.execute(&args, &mut self.out);
        let close = std::mem::take(&mut self.out.close);
        for part in self.out.finish() {
            if ctx.send(conn, part).is_err() {
                ctx.close(conn);
                break;
            }
        }
        if close {
            ctx.close(conn);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The command table.
// ---------------------------------------------------------------------------------------------

type Run = fn(&mut Db, &Args<'_>, &mut Out);

/// A command: its full name as Redis names it in errors, its arity as in Redis's command table
/// (negative: at least that many arguments, the name included), and what runs it.
struct Spec {
    name: &'static str,
    arity: i32,
    run: Run,
    subcommands: &'static [Spec],
}

const fn spec(name: &'static str, arity: i32, run: Run) -> Spec {
    Spec {
        name,
        arity,
        run,
        subcommands: &[],
    }
}

static PING: Spec = spec("ping", -1, ping);
static ECHO: Spec = spec("echo", 2, echo);
static SET: Spec = spec("set", -3, set);
static GET: Spec = spec("get", 2, get);
static DEL: Spec = spec("del", -2, del);
static EXISTS: Spec = spec("exists", -2, exists);
static INCR: Spec = spec("incr", 2, |db, a, out| incr_by(db, &a[1], 1, out));
static DECR: Spec = spec("decr", 2, |db, a, out| incr_by(db, &a[1], -1, out));
static INCRBY: Spec = spec("incrby", 3, incrby);
static DECRBY: Spec = spec("decrby", 3, decrby);
static MSET: Spec = spec("mset", -3, mset);
static MGET: Spec = spec("mget", -2, mget);
static LPUSH: Spec = spec("lpush", -3, |db, a, out| push(db, a, true, out));
static RPUSH: Spec = spec("rpush", -3, |db, a, out| push(db, a, false, out));
static LPOP: Spec = spec("lpop", -2, |db, a, out| pop(db, a, true, out));
static RPOP: Spec = spec("rpop", -2, |db, a, out| pop(db, a, false, out));
static LRANGE: Spec = spec("lrange", 4, lrange);
static SADD: Spec = spec("sadd", -3, sadd);
static SPOP: Spec = spec("spop", -2, spop);
static HSET: Spec = spec("hset", -4, hset);
static HGET: Spec = spec("hget", 3, hget);
static DBSIZE: Spec = spec("dbsize", 1, dbsize);
static FLUSHALL: Spec = spec("flushall", -1, flushall);
static QUIT: Spec = spec("quit", -1, |_, _, out| {
    out.raw(OK);
    out.close = true;
});
// Redis logs these (an HTTP request sent to it) and drops the client without a reply.
static POST: Spec = spec("post", -1, |_, _, out| out.close = true);
static HOST: Spec = spec("host:", -1, |_, _, out| out.close = true);
static CONFIG: Spec = Spec {
    subcommands: &[spec("config|get", -3, config_get)],
    ..spec("config", -2, |_, _, out| out.raw(EMPTY_ARRAY))
};
static COMMAND: Spec = Spec {
    subcommands: &[
        spec("command|count", 2, |_, _, out| out.int(COMMAND_COUNT)),
        spec("command|docs", -2, |_, _, out| out.raw(EMPTY_ARRAY)),
        spec("command|info", -2, |_, _, out| out.raw(EMPTY_ARRAY)),
        spec("command|list", -2, |_, _, out| out.raw(EMPTY_ARRAY)),
    ],
    ..spec("command", -1, |_, _, out| out.raw(EMPTY_ARRAY))
};
static CLIENT: Spec = Spec {
    subcommands: &[
        spec("client|setname", 3, client_setname),
        spec("client|setinfo", 4, client_setinfo),
    ],
    ..spec("client", -2, |_, _, out| out.raw(EMPTY_ARRAY))
};
/// What COMMAND COUNT says: the top-level commands above.
const COMMAND_COUNT: i64 = 30;

enum Unknown {
    Command,
    Subcommand,
}

/// The command `args` names, as Redis's `lookupCommand` finds it: a container (CONFIG, COMMAND,
/// CLIENT) alone is itself, with a second argument it names a subcommand.
fn lookup(args: &Args<'_>) -> Result<&'static Spec, Unknown> {
    let name = &args[0];
    let mut lower = [0u8; 8];
    let Some(lower) = lower.get_mut(..name.len()) else {
        return Err(Unknown::Command);
    };
    for (l, b) in lower.iter_mut().zip(name) {
        *l = b.to_ascii_lowercase();
    }
    let spec = match &*lower {
        b"ping" => &PING,
        b"echo" => &ECHO,
        b"set" => &SET,
        b"get" => &GET,
        b"del" => &DEL,
        b"exists" => &EXISTS,
        b"incr" => &INCR,
        b"decr" => &DECR,
        b"incrby" => &INCRBY,
        b"decrby" => &DECRBY,
        b"mset" => &MSET,
        b"mget" => &MGET,
        b"lpush" => &LPUSH,
        b"rpush" => &RPUSH,
        b"lpop" => &LPOP,
        b"rpop" => &RPOP,
        b"lrange" => &LRANGE,
        b"sadd" => &SADD,
        b"spop" => &SPOP,
        b"hset" => &HSET,
        b"hget" => &HGET,
        b"dbsize" => &DBSIZE,
        b"flushall" => &FLUSHALL,
        b"quit" => &QUIT,
        b"post" => &POST,
        b"host:" => &HOST,
        b"config" => &CONFIG,
        b"command" => &COMMAND,
        b"client" => &CLIENT,
        _ => return Err(Unknown::Command),
    };
    if spec.subcommands.is_empty() || args.len() == 1 {
        return Ok(spec);
    }
    let sub = &args[1];
    spec.subcommands
        .iter()
        .find(|s| {
            s.name
                .rsplit('|')
                .next()
                .unwrap_or_default()
                .as_bytes()
                .eq_ignore_ascii_case(sub)
        })
        .ok_or(Unknown::Subcommand)
}

/// `s` as C's `%.{max}s` prints it: up to its first NUL, at most `max` bytes.
fn c_str(s: &[u8], max: usize) -> &[u8] {
    let s = s.split(|&b| b == 0).next().unwrap_or_default();
    &s[..s.len().min(max)]
}

fn unknown_command(args: &Args<'_>, out: &mut Out) {
    let mut msg = b"unknown command '".to_vec();
    msg.extend_from_slice(c_str(&args[0], 128));
    msg.extend_from_slice(b"', with args beginning with: ");
    let mut quoted = Vec::new();
    for i in 1..args.len() {
        if quoted.len() >= 128 {
            break;
        }
        let room = 128 - quoted.len();
        quoted.push(b'\'');
        quoted.extend_from_slice(c_str(&args[i], room));
        quoted.extend_from_slice(b"' ");
    }
    msg.extend_from_slice(&quoted);
    out.err_bytes(&msg);
}

fn unknown_subcommand(args: &Args<'_>, out: &mut Out) {
    let mut msg = b"unknown subcommand '".to_vec();
    msg.extend_from_slice(c_str(&args[1], 128));
    msg.extend_from_slice(b"'. Try ");
    msg.extend(
        c_str(&args[0], usize::MAX)
            .iter()
            .map(u8::to_ascii_uppercase),
    );
    msg.extend_from_slice(b" HELP.");
    out.err_bytes(&msg);
}

// ---------------------------------------------------------------------------------------------
// The commands.
// ---------------------------------------------------------------------------------------------

fn ping(_: &mut Db, a: &Args<'_>, out: &mut Out) {
    match a.len() {
        1 => out.raw(b"+PONG\r\n"),
        2 => out.bulk(&a[1]),
        _ => out.arity("ping"),
    }
}

fn echo(_: &mut Db, a: &Args<'_>, out: &mut Out) {
    out.bulk(&a[1]);
}

/// Options of SET, parsed as Redis's `parseExtendedStringArgumentsOrReply` does.
#[derive(Default)]
struct SetOptions<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    /// The expire argument, its unit in milliseconds, and whether it is absolute.
    expire: Option<(&'a [u8], i64, bool)>,
}

fn set_options<'a>(a: &'a Args<'_>) -> Option<SetOptions<'a>> {
    let mut o = SetOptions::default();
    let mut j = 3;
    while j < a.len() {
        let opt = c_str(&a[j], usize::MAX);
        let next = (j + 1 < a.len()).then(|| &a[j + 1]);
        let is = |name: &str| opt.eq_ignore_ascii_case(name.as_bytes());
        let has_expire = o.expire.is_some();
        let expire_kind = o.expire.map(|(_, unit, abs)| (unit, abs));
        if is("nx") && !o.xx {
            o.nx = true;
        } else if is("xx") && !o.nx {
            o.xx = true;
        } else if is("get") {
            o.get = true;
        } else if is("keepttl") && !has_expire {
            o.keep_ttl = true;
        } else if let (Some(next), Some(kind)) = (next, expire_option(opt)) {
            // The same option again is allowed (the last one counts), another one is not.
            if o.keep_ttl || expire_kind.is_some_and(|k| k != kind) {
                return None;
            }
            o.expire = Some((next, kind.0, kind.1));
            j += 1;
        } else {
            return None;
        }
        j += 1;
    }
    Some(o)
}

/// EX, PX, EXAT, PXAT: the unit in milliseconds and whether the time is absolute.
fn expire_option(opt: &[u8]) -> Option<(i64, bool)> {
    let is = |name: &str| opt.eq_ignore_ascii_case(name.as_bytes());
    if is("ex") {
        Some((1000, false))
    } else if is("px") {
        Some((1, false))
    } else if is("exat") {
        Some((1000, true))
    } else if is("pxat") {
        Some((1, true))
    } else {
        None
    }
}

fn set(db: &mut Db, a: &Args<'_>, out: &mut Out) {
    let Some(o) = set_options(a) else {
        return out.raw(SYNTAX_ERROR);
    };
    let expires_at = match o.expire {
        None => None,
        Some((arg, unit, absolute)) => {
            let Some(n) = parse_i64(arg) else {
                return out.raw(NOT_INTEGER);
            };
            let at = if n <= 0 {
                None
            } else {
                n.checked_mul(unit).and_then(|ms| {
                    let at = if absolute {
                        Some(ms)
                    } else {
                        ms.checked_add(db.clock.now())
                    }?;
                    (at > 0).then_some(at)
                })
            };
            match at {
                Some(at) => Some(at),
                None => return out.err("invalid expire time in 'set' command"),
            }
        }
    };
    let key = &a[1];
    let old = db.get(key);
    if o.get {
        match old.map(|e| &e.value) {
            None => out.raw(NIL),
            Some(Value::Str(s)) => out.string(s),
            Some(_) => return out.raw(WRONGTYPE),
        }
    }
    let found = old.is_some();
    if (o.nx && found) || (o.xx && !found) {
        if !o.get {
            out.raw(NIL);
        }
        return;
    }
    let expires_at = if o.keep_ttl {
        old.and_then(|e| e.expires_at)
    } else {
        expires_at
    };
    db.set(key, Value::Str(Str::from_arg(&a[2])), expires_at);
    if !o.get {
        out.raw(OK);
    }
}

fn get(db: &mut Db, a: &Args<'_>, out: &mut Out) {
    match db.get(&a[1]).map(|e| &e.value) {
        None => out.raw(NIL),
        Some(Value::Str(s)) => out.string(s),
        Some(_) => out.raw(WRONGTYPE),
    }
}

fn del(db: &mut Db, a: &Args<'_>, out: &mut Out) {
    let removed = (1..a.len()).filter(|&i| db.remove(&a[i])).count();
    out.int(removed as i64);
}

fn exists(db: &mut Db, a: &Args<'_>, out: &mut Out) {
    let found = (1..a.len()).filter(|&i| db.get(&a[i]).is_some()).count();
    out.int(found as i64);
}

fn incrby(db: &mut Db, a: &Args<'_>, out: &mut Out) {
    match parse_i64(&a[2]) {
        Some(by) => incr_by(db, &a[1], by, out),
        None => out.raw(NOT_INTEGER),
    }
}

fn decrby(db: &mut Db, a: &Args<'_>, out: &mut Out) {
    match parse_i64(&a[2]) {
        Some(i64::MIN) => out.err("decrement would overflow"),
        Some(by) => incr_by(db, &a[1], -by, out),
        None => out.raw(NOT_INTEGER),
    }
}

fn incr_by(db: &mut Db, key: &[u8], by: i64, out: &mut Out) {
    let Some(entry) = db.get_mut(key) else {
        db.set(key, Value::Str(Str::Int(by)), None);
        return out.int(by);
    };
    let old = match &entry.value {
        Value::Str(Str::Int(n)) => Some(*n),
        Value::Str(Str::Bytes(b)) => parse_i64(b),
        Value::Str(Str::Short(len, bytes)) => parse_i64(&bytes[..usize::from(*len)]),
        _ => return out.raw(WRONGTYPE),
    };
    let Some(old) = old else {
        return out.raw(NOT_INTEGER);
    };
    let Some(new) = old.checked_add(by) else {
        return out.err("increment or decrement would overflow");
    };
    // The time to live stays.
    entry.value = Value::Str(Str::Int(new));
    out.int(new);
}

fn mset(db: &mut Db, a: &Args<'_>, out: &mut Out) {
    if a.len() % 2 == 0 {
        return out.arity("mset");
    }
    for i in (1..a.len()).step_by(2) {
        db.set(&a[i], Value::Str(Str::from_arg(&a[i + 1])), None);
    }
    out.raw(OK);
}

fn mget(db: &mut Db, a: &Args<'_>, out: &mut Out) {
    out.array(a.len() - 1);
    for i in 1..a.len() {
        match db.get(&a[i]).map(|e| &e.value) {
            Some(Value::Str(s)) => out.string(s),
            _ => out.raw(NIL),
        }
    }
}

fn push(db: &mut Db, a: &Args<'_>, front: bool, out: &mut Out) {
    let key = &a[1];
    let fill = |list: &mut VecDeque<Bytes>| {
        for i in 2..a.len() {
            let item = Bytes::copy_from_slice(&a[i]);
            if front {
                list.push_front(item);
            } else {
                list.push_back(item);
            }
        }
        list.len() as i64
    };
    add_to_collection(db, key, out, Value::list_mut, Value::List, fill);
}

/// Adds to the collection at `key` with `fill` (which returns the count to answer), first
/// making an empty one if the key is absent; `WRONGTYPE` if the key holds another kind of
/// value (`kind` picks the collection out of a value, `wrap` makes a new one a value).
fn add_to_collection<T: Default>(
    db: &mut Db,
    key: &[u8],
    out: &mut Out,
    kind: fn(&mut Value) -> Option<&mut T>,
    wrap: impl FnOnce(T) -> Value,
    fill: impl FnOnce(&mut T) -> i64,
) {
    if let Some(entry) = db.get_mut(key) {
        return match kind(&mut entry.value) {
            Some(collection) => out.int(fill(collection)),
            None => out.raw(WRONGTYPE),
        };
    }
    let mut collection = T::default();
    out.int(fill(&mut collection));
    db.set(key, wrap(collection), None);
}

/// A count argument of LPOP, RPOP or SPOP.
fn positive_count(arg: &[u8]) -> Option<usize> {
    parse_i64(arg).and_then(|n| usize::try_from(n).ok())
}

fn pop(db: &mut Db, a: &Args<'_>, front: bool, out: &mut Out) {
    if a.len() > 3 {
        return out.arity(if front { "lpop" } else { "rpop" });
    }
    let count = match a.len() {
        3 => match positive_count(&a[2]) {
            Some(n) => Some(n),
            None => return out.raw(NOT_POSITIVE),
        },
        _ => None,
    };
    let key = &a[1];
    let Some(entry) = db.get_mut(key) else {
        return out.raw(if count.is_some() { NULL_ARRAY } else { NIL });
    };
    let Value::List(list) = &mut entry.value else {
        return out.raw(WRONGTYPE);
    };
    let take = |list: &mut VecDeque<Bytes>, out: &mut Out| {
        let item = if front {
            list.pop_front()
        } else {
            list.pop_back()
        };
        if let Some(item) = item {
            out.bulk_shared(&item);
        }
    };
    match count {
        Some(n) => {
            let n = n.min(list.len());
            out.array(n);
            for _ in 0..n {
                take(list, out);
            }
        }
        None => take(list, out),
    }
    if list.is_empty() {
        db.keys.remove(key);
    }
}

fn lrange(db: &mut Db, a: &Args<'_>, out: &mut Out) {
    let (Some(mut start), Some(mut end)) = (parse_i64(&a[2]), parse_i64(&a[3])) else {
        return out.raw(NOT_INTEGER);
    };
    let list = match db.get(&a[1]).map(|e| &e.value) {
        None => return out.raw(EMPTY_ARRAY),
        Some(Value::List(list)) => list,
        Some(_) => return out.raw(WRONGTYPE),
    };
    let len = list.len() as i64;
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    if start > end || start >= len {
        return out.raw(EMPTY_ARRAY);
    }
    end = end.min(len - 1);
    out.array((end - start + 1) as usize);
    for item in list.range(start as usize..=end as usize) {
        out.bulk_shared(item);
    }
}

fn sadd(db: &mut Db, a: &Args<'_>, out: &mut Out) {
    let key = &a[1];
    let fill = |set: &mut HashSet<Bytes>| {
        let mut added = 0;
        for i in 2..a.len() {
            if !set.contains(&a[i]) {
                set.insert(Bytes::copy_from_slice(&a[i]));
                added += 1;
            }
        }
        added
    };
    add_to_collection(db, key, out, Value::set_mut, Value::Set, fill);
}

fn spop(db: &mut Db, a: &Args<'_>, out: &mut Out) {
    if a.len() > 3 {
        return out.raw(SYNTAX_ERROR);
    }
    let count = match a.len() {
        3 => match positive_count(&a[2]) {
            Some(n) => Some(n),
            None => return out.raw(NOT_POSITIVE),
        },
        _ => None,
    };
    let key = &a[1];
    let Some(entry) = db.get_mut(key) else {
        return out.raw(if count.is_some() { EMPTY_ARRAY } else { NIL });
    };
    let Value::Set(set) = &mut entry.value else {
        return out.raw(WRONGTYPE);
    };
    // The hasher's random keys make the first member in iteration order a random one.
    let take = |set: &mut HashSet<Bytes>, out: &mut Out| {
        if let Some(member) = set.iter().next().cloned() {
            set.remove(&member);
            out.bulk_shared(&member);
        }
    };
    match count {
        Some(n) => {
            let n = n.min(set.len());
            out.array(n);
            for _ in 0..n {
                take(set, out);
            }
        }
        None => take(set, out),
    }
    if set.is_empty() {
        db.keys.remove(key);
    } else if set.len() * 4 < set.capacity() {
        // Keeps finding the first member cheap as the set empties.
        set.shrink_to_fit();
    }
}

fn hset(db: &mut Db, a: &Args<'_>, out: &mut Out) {
    if a.len() % 2 == 1 {
        return out.arity("hset");
    }
    let key = &a[1];
    let fill = |hash: &mut HashMap<Bytes, Bytes>| {
        let mut added = 0;
        for i in (2..a.len()).step_by(2) {
            let value = Bytes::copy_from_slice(&a[i + 1]);
            match hash.get_mut(&a[i]) {
                Some(old) => *old = value,
                None => {
                    hash.insert(Bytes::copy_from_slice(&a[i]), value);
                    added += 1;
                }
            }
        }
        added
    };
    add_to_collection(db, key, out, Value::hash_mut, Value::Hash, fill);
}

fn hget(db: &mut Db, a: &Args<'_>, out: &mut Out) {
    match db.get(&a[1]).map(|e| &e.value) {
        None => out.raw(NIL),
        Some(Value::Hash(hash)) => match hash.get(&a[2]) {
            Some(value) => out.bulk_shared(value),
            None => out.raw(NIL),
        },
        Some(_) => out.raw(WRONGTYPE),
    }
}

fn dbsize(db: &mut Db, _: &Args<'_>, out: &mut Out) {
    db.purge();
    out.int(db.keys.len() as i64);
}

fn flushall(db: &mut Db, a: &Args<'_>, out: &mut Out) {
    let mode_ok = match a.len() {
        1 => true,
        2 => a[1].eq_ignore_ascii_case(b"sync") || a[1].eq_ignore_ascii_case(b"async"),
        _ => false,
    };
    if !mode_ok {
        return out.raw(SYNTAX_ERROR);
    }
    db.keys = HashMap::new();
    db.expiries = BinaryHeap::new();
    out.raw(OK);
}

/// The configuration CONFIG GET knows: what redis-benchmark asks for. Nothing is ever saved.
const CONFIG_VALUES: [(&str, &str); 2] = [("save", ""), ("appendonly", "no")];

fn config_get(_: &mut Db, a: &Args<'_>, out: &mut Out) {
    let mut found: Vec<(&str, &str)> = Vec::new();
    for i in 2..a.len() {
        for (name, value) in CONFIG_VALUES {
            if glob_match(&a[i], name.as_bytes()) && !found.iter().any(|(n, _)| *n == name) {
                found.push((name, value));
            }
        }
    }
    out.array(found.len() * 2);
    for (name, value) in found {
        out.bulk(name.as_bytes());
        out.bulk(value.as_bytes());
    }
}

/// Case-insensitive glob matching with `*`, `?` and `\` escapes (Redis's `stringmatchlen`
/// without character classes), backtracking only to the last `*`: linear in practice.
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // After a `*`: where the pattern resumes, and the next name offset to try it at.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                star = Some((p, n));
                continue;
            }
            Some(b'?') => {
                p += 1;
                n += 1;
                continue;
            }
            Some(&c) => {
                let (c, width) = match (c, pattern.get(p + 1)) {
                    (b'\\', Some(&escaped)) => (escaped, 2),
                    _ => (c, 1),
                };
                if c.eq_ignore_ascii_case(&name[n]) {
                    p += width;
                    n += 1;
                    continue;
                }
            }
            None => {}
        }
        match star {
            Some((after, from)) => {
                p = after;
                n = from + 1;
                star = Some((after, from + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

fn client_setname(_: &mut Db, a: &Args<'_>, out: &mut Out) {
    if a[2].iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return out.err("Client names cannot contain spaces, newlines or special characters.");
    }
    out.raw(OK);
}

fn client_setinfo(_: &mut Db, a: &Args<'_>, out: &mut Out) {
    let attr = &a[2];
    if !attr.eq_ignore_ascii_case(b"lib-name") && !attr.eq_ignore_ascii_case(b"lib-ver") {
        let mut msg = b"Unrecognized option '".to_vec();
        msg.extend_from_slice(c_str(attr, usize::MAX));
        msg.push(b'\'');
        return out.err_bytes(&msg);
    }
    out.raw(OK);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Decodes `input` fed in pieces cut at `cuts`, as the reactor would; frames, then whether
    /// the decoder failed.
    fn decode_in_pieces(input: &[u8], cuts: &[usize]) -> (Vec<Bytes>, bool) {
        let mut decoder = RequestDecoder::new(1024);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut from = 0;
        for &to in cuts.iter().chain([&input.len()]) {
            buf.extend_from_slice(&input[from..to]);
            from = to;
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(_) => return (frames, true),
                }
            }
            assert!(buf.len() < decoder.max_buffered());
        }
        (frames, false)
    }

    #[test]
    fn any_split_decodes_the_same_frames() {
        let input: &[u8] =
            b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\nPING\r\n\r\n*0\r\nset k \"a\\x41\"\n\
            *3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*1\r\n$-1\r\nPING\r\n";
        let (whole, failed) = decode_in_pieces(input, &[]);
        assert!(!failed);
        assert_eq!(whole.len(), 5, "{whole:?}");
        assert!(whole[4].starts_with(b"*-ERR Protocol error: invalid bulk length"));
        for a in 0..=input.len() {
            for b in a..=input.len() {
                assert_eq!(
                    decode_in_pieces(input, &[a, b]).0,
                    whole,
                    "cut at {a} and {b}"
                );
            }
        }
    }

    #[test]
    fn a_short_string_makes_no_value_larger() {
        let hash = std::mem::size_of::<HashMap<Bytes, Bytes>>();
        assert!(std::mem::size_of::<Str>() <= hash);
        assert!(std::mem::size_of::<Value>() <= hash + 8);
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let alphabet = b"*$\r\n0123456789-+ \"'\\xabPING\0";
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let input: Vec<u8> = (0..len)
                .map(|_| match rng.gen_range(0..4) {
                    0 => rng.gen(),
                    _ => alphabet[rng.gen_range(0..alphabet.len())],
                })
                .collect();
            let mut cuts: Vec<usize> = (0..3).map(|_| rng.gen_range(0..=len)).collect();
            cuts.sort_unstable();
            let (frames, _) = decode_in_pieces(&input, &cuts);
            let (mut scratch, mut argv) = (Vec::new(), Vec::new());
            for frame in &frames {
                // Every frame is a request the handler can read, or a protocol error.
                match read_request(frame, &mut scratch, &mut argv) {
                    Ok(args) => assert!(args.len() > 0),
                    Err(reply) => assert!(reply.starts_with(b"-ERR Protocol error: ")),
                }
            }
        }
    }
}
